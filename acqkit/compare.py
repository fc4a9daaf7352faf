"""Several strategies x seeds on one task and budget, sharing everything that is the same."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from .config import CompareConfig, to_toml
from .loop import RESULT_COLUMNS, run
from .plugins import Registry, registry as default_registry
from .rundir import write_csv
from .session import Session


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in text).strip("_") or "run"


def compare(ccfg: CompareConfig, out: str | Path, registry: Registry | None = None,
            on_run_done=None) -> pd.DataFrame:
    """Run the grid; writes ``out/results.csv`` after every finished run and returns it."""
    reg = registry or default_registry()
    for name in ccfg.strategies:  # fail on a bad name before any model is loaded
        reg.build("strategy", name)
    reg.get("labeler", ccfg.base.labeler), reg.get("refiner", ccfg.base.refiner), reg.get("task", ccfg.base.task)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(to_toml(ccfg))
    t0 = time.perf_counter()
    session = Session.open(ccfg.base, reg)
    frames = []
    for cfg in ccfg.runs():
        frames.append(run(cfg, session, out / "runs" / slug(cfg.strategy) / f"seed-{cfg.seed}", reg))
        results = pd.concat(frames, ignore_index=True)[RESULT_COLUMNS]
        write_csv(results, out / "results.csv")
        if on_run_done:
            on_run_done(cfg, results, time.perf_counter() - t0)
    return results
