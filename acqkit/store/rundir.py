"""Durable writes to a run directory: fsync'd appends and atomic replaces (by the main process only)."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from acqkit.distributed import main_only
from acqkit.errors import MissingFileError, RunDirError
from acqkit.models.lora import has_adapters, is_adapter_checkpoint, load_adapters, save_adapters


ROUND_MARKER = "ACQKIT_ROUND"  # written last into a checkpoint directory: its round, and "complete"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")


@main_only
def append_jsonl(path: Path, frame: pd.DataFrame) -> None:
    """Append rows and fsync: a paid label is on disk before anything else happens.

    A failed append (a full disk) is cut back off, so the file keeps only whole lines.
    """
    text = "".join(json.dumps(rec, default=_json_default, ensure_ascii=False) + "\n"
                   for rec in frame.to_dict(orient="records"))
    with open(path, "a", encoding="utf-8") as fh:
        size = fh.tell()
        try:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        except OSError:
            with contextlib.suppress(OSError):
                os.truncate(path, size)
            raise


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write to a temp file then rename, so a reader never sees half a file."""
    _replace(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Same rows as the CSV with their types kept; atomic like ``write_csv``."""
    _replace(path, lambda tmp: frame.to_parquet(tmp, index=False))


def write_text(path: Path, text: str) -> None:
    """Atomic ``Path.write_text``: a kill leaves the old file or the new one, never half of one."""
    _replace(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


@main_only
def _replace(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    except BaseException as exc:  # e.g. a full disk: the old file stays, and no half-written temp file
        with contextlib.suppress(OSError):
            tmp.unlink()
        _reraise(exc, tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _reraise(exc: BaseException, path: Path):
    """Raise a writer's failure as the ``OSError`` it is, naming ``path``.

    safetensors and pyarrow wrap ENOSPC in their own errors, and a failed
    ``write`` does not say which file it was writing.
    """
    if isinstance(exc, OSError) and exc.filename:
        raise exc
    code = getattr(exc, "errno", None) or _errno_in(str(exc))
    if not code:
        raise exc
    raise OSError(code, os.strerror(code), str(path)) from exc


def _errno_in(text: str) -> int | None:
    import re

    found = re.search(r"(?:os error|errno) (\d+)", text)
    return int(found.group(1)) if found else None


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a power cut after it keeps the new name)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. a platform that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _json_default(v):
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"cannot serialise {type(v).__name__}")


@main_only
def save_checkpoint(model, run_dir: Path, round: int, extra: dict[str, dict] | None = None) -> Path:
    """Replace ``run_dir/checkpoint`` with the policy after ``round`` (safetensors, atomic rename).

    ``extra`` maps a name to a state dict saved beside it as ``NAME.safetensors``
    (e.g. the previous iterate a judge needs), inside the same atomic rename.
    """
    import shutil

    from safetensors.torch import save_file

    final = run_dir / "checkpoint"
    tmp = run_dir / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if has_adapters(model):
            save_adapters(model, tmp)  # LoRA: the adapter alone, in peft's format (acqkit.models.lora)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        for name, state in (extra or {}).items():
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / f"{name}.safetensors"))
        for f in tmp.iterdir():  # the weights are on disk before the marker says they are complete
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        write_text(tmp / ROUND_MARKER, str(round))  # last: a checkpoint dir without it is incomplete
    except Exception as exc:  # e.g. a full disk: the previous checkpoint stays, the partial one goes
        shutil.rmtree(tmp, ignore_errors=True)
        _reraise(exc, tmp)
    old = run_dir / "checkpoint.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)  # a kill between these two renames is undone by recover_checkpoint
    fsync_dir(run_dir)
    shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoint_round(ckpt: Path) -> int | None:
    """The round a checkpoint directory holds, or None if it is missing or incomplete."""
    try:
        return int((Path(ckpt) / ROUND_MARKER).read_text())
    except (OSError, ValueError):
        return None


@main_only
def recover_checkpoint(run_dir: Path) -> None:
    """Finish a checkpoint swap that a kill interrupted (``checkpoint`` gone, ``checkpoint.old`` left).

    The complete new checkpoint wins when there is one (its results row was
    written before it); otherwise the old one goes back in place.
    """
    import shutil

    final, tmp, old = run_dir / "checkpoint", run_dir / "checkpoint.tmp", run_dir / "checkpoint.old"
    if final.exists() or not old.exists():
        return
    keep, drop = (tmp, old) if checkpoint_round(tmp) is not None else (old, tmp)
    keep.rename(final)
    fsync_dir(run_dir)
    shutil.rmtree(drop, ignore_errors=True)


def load_checkpoint(run_dir: Path, trust_remote_code: bool = False) -> dict:
    """The policy weights saved by :func:`save_checkpoint`, tied weights included.

    Only safetensors are read: a checkpoint folder holding pickle files is refused,
    and code shipped in it runs only if the run's config set ``trust_remote_code``.
    """
    from transformers import AutoModelForCausalLM

    ckpt = run_dir / "checkpoint"
    pickles = [p.name for p in ckpt.glob("*") if p.suffix in PICKLE_SUFFIXES]
    if pickles:
        raise RunDirError(f"{ckpt}: refusing to load pickle files {pickles}; acqkit checkpoints are safetensors")
    if not list(ckpt.glob("*.safetensors")):
        raise MissingFileError(f"{ckpt}: no safetensors checkpoint to resume from")
    try:
        if is_adapter_checkpoint(ckpt):  # LoRA: Session.reset_policy adds the (frozen) base weights
            return load_adapters(ckpt)
        return AutoModelForCausalLM.from_pretrained(ckpt, trust_remote_code=trust_remote_code).state_dict()
    except Exception as exc:
        raise RunDirError(f"{ckpt}: cannot load the checkpoint ({type(exc).__name__}: {exc})") from exc


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return _parse_jsonl(path, path.read_text(encoding="utf-8"))


def _parse_jsonl(path: Path, text: str) -> list[dict]:
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise RunDirError(f"{path}, line {i}: not valid JSON ({exc.msg})") from exc
    return out


def load_extra_state(run_dir: Path, name: str) -> dict:
    """A state dict saved with ``save_checkpoint(extra={name: ...})``."""
    from safetensors.torch import load_file

    path = run_dir / "checkpoint" / f"{name}.safetensors"
    if not path.exists():
        raise MissingFileError(f"{path}: missing; the checkpoint was written without the {name!r} state")
    try:
        return load_file(str(path))
    except Exception as exc:
        raise RunDirError(f"{path}: cannot load ({type(exc).__name__}: {exc})") from exc


@main_only
def keep_rounds(path: Path, last: int) -> None:
    """Drop the records of rounds after ``last`` (-1: all of them), atomically: they will be redone.

    A last line without its newline is the tail of an append a kill cut short:
    it belongs to an unfinished round, so it is dropped, not an error.
    """
    if not path.exists():
        return
    data = path.read_bytes()
    whole = data[: data.rfind(b"\n") + 1].decode("utf-8")  # a torn tail may even end mid-character
    kept = [r for r in _parse_jsonl(path, whole) if last >= 0 and r.get("round", 0) <= last]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in kept:
            fh.write(json.dumps(rec, default=_json_default, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
