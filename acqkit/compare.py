"""Several strategies x seeds on one task and budget, sharing everything that is the same."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from .config import CompareConfig, to_toml
from .loop import RESULT_COLUMNS, run
from .plugins import Registry, parse_spec, registry as default_registry
from .rundir import write_csv, write_parquet
from .session import Session


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in text).strip("_") or "run"


def compare(ccfg: CompareConfig, out: str | Path, registry: Registry | None = None,
            on_run_done=None, resume: bool = False) -> pd.DataFrame:
    """Run the grid; writes ``out/results.csv`` after every finished run and returns it.

    ``resume=True`` keeps every finished (strategy, seed, round) and continues the rest.
    """
    reg = registry or default_registry()
    for name in ccfg.strategies:  # fail on a bad name before any model is loaded
        reg.build("strategy", name)
    for kind, spec in (("labeler", ccfg.base.labeler), ("refiner", ccfg.base.refiner), ("task", ccfg.base.task)):
        reg.get(kind, parse_spec(spec)[0])  # specs may carry options: pairrm(model=...)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(to_toml(ccfg))
    t0 = time.perf_counter()
    session = Session.open(ccfg.base, reg)
    session.workdir = out  # the shared warm start's labels go to the comparison's ledger
    frames = []
    for cfg in ccfg.runs():
        frames.append(run(cfg, session, out / "runs" / slug(cfg.strategy) / f"seed-{cfg.seed}", reg, resume=resume))
        results = pd.concat(frames, ignore_index=True)[RESULT_COLUMNS]
        write_csv(results, out / "results.csv")
        write_parquet(results, out / "results.parquet")
        if on_run_done:
            on_run_done(cfg, results, time.perf_counter() - t0)
    return results
