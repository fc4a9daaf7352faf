"""Several strategies x seeds on one task and budget, sharing everything that is the same."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from acqkit.config import CompareConfig, to_toml
from acqkit.round.loop import RESULT_COLUMNS, run
from acqkit.plugins import Registry, registry as default_registry
from acqkit.preflight import check_config, check_resume, task_size
from acqkit.store.claim import claim
from acqkit.store.rundir import write_csv, write_parquet, write_text
from acqkit.track import check_trackers, end_comparison, tracked_run, tracking
from acqkit.round.session import Session


def preflight(ccfg: CompareConfig, reg: Registry, resume_dir: Path | None = None) -> None:
    """Every run of the grid is checked (names, model, budget) before anything is loaded or written."""
    n_train = task_size(ccfg.base, reg)
    for cfg in ccfg.runs():
        check_config(cfg, reg, n_train)
    if resume_dir is not None:
        check_resume(resume_dir)


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in text).strip("_") or "run"


def run_dir(out: str | Path, cfg) -> Path:
    """Where one (strategy, seed) of a comparison keeps its files: ``OUT/runs/STRATEGY/seed-N``."""
    return Path(out) / "runs" / slug(cfg.strategy) / f"seed-{cfg.seed}"


def compare(ccfg: CompareConfig, out: str | Path, registry: Registry | None = None,
            on_run_done=None, resume: bool = False, overwrite: bool = False) -> pd.DataFrame:
    """Run the grid; writes ``out/results.csv`` after every finished run and returns it.

    ``resume=True`` keeps every finished (strategy, seed, round) and continues the rest;
    ``overwrite=True`` moves a directory that holds earlier results aside first
    (without either, such a directory is refused: :func:`acqkit.store.claim.claim`).
    """
    reg = registry or default_registry()
    out = Path(out)
    preflight(ccfg, reg, out if resume else None)  # bad names, paths, budgets: fail before loading a model
    trackers = check_trackers(reg, ccfg.base.track, out)  # not installed, not logged in: fail now, not after hours
    with claim(out, resume=resume, overwrite=overwrite), tracking(reg, trackers, out, resume):
        t0 = time.perf_counter()
        session = Session.open(ccfg.base, reg)  # reads and checks the prompts: a bad file leaves no run directory
        write_text(out / "config.toml", to_toml(ccfg))
        session.workdir = out  # the shared warm start's labels go to the comparison's ledger
        frames = []
        for cfg in ccfg.runs():
            cell = run_dir(out, cfg)
            frames.append(tracked_run(reg, cfg, cell, lambda: run(cfg, session, cell, reg, resume=resume)))
            results = pd.concat(frames, ignore_index=True)[RESULT_COLUMNS]
            write_csv(results, out / "results.csv")
            write_parquet(results, out / "results.parquet")
            if on_run_done:
                on_run_done(cfg, results, time.perf_counter() - t0)
        end_comparison(reg, ccfg, out, results)  # the plots, to the trackers (only if a plugin listens)
    return results
