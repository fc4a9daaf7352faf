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
    _replace(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Same rows as the CSV with their types kept; atomic like ``write_csv``."""
    _replace(path, lambda tmp: frame.to_parquet(tmp, index=False))


def _replace(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
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


def save_checkpoint(model, run_dir: Path, round: int) -> Path:
    """Replace ``run_dir/checkpoint`` with the policy after ``round`` (safetensors, atomic rename)."""
    import shutil

    final = run_dir / "checkpoint"
    tmp = run_dir / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    (tmp / "ACQKIT_ROUND").write_text(str(round))
    old = run_dir / "checkpoint.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(run_dir: Path) -> dict:
    """The policy weights saved by :func:`save_checkpoint`, tied weights included.

    Only safetensors are read: a checkpoint folder holding pickle files is refused.
    """
    from transformers import AutoModelForCausalLM

    ckpt = run_dir / "checkpoint"
    pickles = [p.name for p in ckpt.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    if pickles:
        raise ValueError(f"{ckpt}: refusing to load pickle files {pickles}; acqkit checkpoints are safetensors")
    if not list(ckpt.glob("*.safetensors")):
        raise FileNotFoundError(f"{ckpt}: no safetensors checkpoint to resume from")
    try:
        return AutoModelForCausalLM.from_pretrained(ckpt).state_dict()
    except Exception as exc:
        raise ValueError(f"{ckpt}: cannot load the checkpoint ({type(exc).__name__}: {exc})") from exc


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {i}: not valid JSON ({exc.msg})") from exc
    return out


def keep_rounds(path: Path, last: int) -> None:
    """Drop the records of rounds after ``last`` (-1: all of them), atomically: they will be redone."""
    if not path.exists():
        return
    kept = [r for r in read_jsonl(path) if last >= 0 and r.get("round", 0) <= last]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in kept:
            fh.write(json.dumps(rec, default=_json_default, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
