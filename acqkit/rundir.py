"""Durable writes to a run directory: fsync'd appends and atomic replaces."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd


def append_jsonl(path: Path, frame: pd.DataFrame) -> None:
    """Append rows and fsync: a paid label is on disk before anything else happens."""
    with open(path, "a", encoding="utf-8") as fh:
        for rec in frame.to_dict(orient="records"):
            fh.write(json.dumps(rec, default=_json_default, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write to a temp file then rename, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _json_default(v):
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"cannot serialise {type(v).__name__}")
