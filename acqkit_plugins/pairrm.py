"""``pairrm``: PairRM (llm-blender's pairwise reward model) as the labeler.

PairRM reads the prompt and both responses in one DeBERTa-v3 pass and returns
a logit for "A is better than B"; ``p = sigmoid(logit)`` is a soft label.
Needs ``pip install 'acqkit[pairrm]'``.

Options:
    model: hub id (default ``llm-blender/PairRM``, from the local Hugging Face
        cache when offline) or a local ranker directory (``config.json`` in
        llm-blender's RankerConfig layout + ``model.safetensors``). A relative
        ``model_name`` (the DeBERTa backbone) in that config.json is resolved
        against the directory, so a ranker directory can carry its backbone.
    order: ``both`` (default: score [A,B] and [B,A] and average, which cancels
        PairRM's position bias at twice the cost), ``random`` (one pass, A/B
        positions swapped at random with the run's seeded RNG) or ``fixed``.
    hard: false (default) keeps the soft p; true thresholds it to 0 / 1.
    batch_size, device (default: cuda when available).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from acqkit import Labeler, hookimpl
from acqkit.errors import MissingFileError

from ._llm_blender_shim import import_llm_blender, patch_tokenizer

DEFAULT_MODEL = "llm-blender/PairRM"
ORDERS = ("both", "random", "fixed")


def resolve_model(model: str) -> Path:
    """A local ranker directory for ``model``: the directory itself, or the hub snapshot in the cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise MissingFileError(f"PairRM ranker directory {path} has no config.json")
        return path.resolve()
    if path.is_absolute() or model.startswith((".", "~")) or model.count("/") != 1:
        raise MissingFileError(f"PairRM ranker {model!r}: no such directory (and not a hub id like "
                               f"{DEFAULT_MODEL})")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model))
    except Exception as exc:  # offline, unknown repo, no cache: all mean "the weights are not here"
        raise MissingFileError(
            f"cannot load the PairRM ranker {model!r}: it is not a local directory and the Hugging Face Hub "
            f"could not provide it ({type(exc).__name__}: {exc}). On a machine with network run "
            f"`hf download {model}` and `hf download microsoft/deberta-v3-large` "
            "(its backbone), or pass pairrm(model=/path/to/ranker-dir)."
        ) from exc


@lru_cache(maxsize=2)
def load_blender(directory: str, device: str):
    """Load once per process: a comparison builds the labeler once per run."""
    llm_blender = import_llm_blender()
    overrides = {}
    backbone = json.loads((Path(directory) / "config.json").read_text()).get("model_name")
    if backbone and not os.path.isabs(backbone) and (Path(directory) / backbone).is_dir():
        overrides["model_name"] = str(Path(directory) / backbone)
    with _quiet():
        blender = llm_blender.Blender(llm_blender.BlenderConfig(device=device, use_tqdm=False))
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # RankerConfig.from_dict warns about None fields; loadranker prints a success line
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="dataclasses_json")
        blender.loadranker(directory, device=device, **overrides)
    patch_tokenizer(blender.ranker_tokenizer)
    return blender


@contextlib.contextmanager
def _quiet():
    """Blender() logs two warnings about the fuser and ranker it was not given."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _source(messages) -> str:
    messages = list(messages)
    if len(messages) == 1:
        return str(messages[0]["content"])
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


class PairRMLabeler(Labeler):
    paid = True  # model calls cost compute; keeping them makes reruns free and identical

    def __init__(self, model: str = DEFAULT_MODEL, order: str = "both", hard: bool = False,
                 batch_size: int = 8, device: str | None = None):
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")
        self.model, self.order, self.hard = str(model), order, bool(hard)
        self.batch_size = int(batch_size)
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.directory = resolve_model(self.model)  # fail before any sampling when the weights are missing
        self.ledger_identity = ("pairrm", {"model": self.model, "order": self.order, "hard": self.hard})

    def logits(self, sources: list[str], first: list[str], second: list[str]) -> np.ndarray:
        """PairRM's logit that ``first`` beats ``second`` (positive = first is better)."""
        blender = load_blender(str(self.directory), self.device)
        mode = "[A,B]+[B,A]" if self.order == "both" else "[A,B]"
        out = blender.compare(sources, first, second, batch_size=self.batch_size, return_logits=True,
                              mode=mode, disable_tqdm=True)
        out = np.asarray(out, dtype=float)
        return out / 2 if self.order == "both" else out  # both: the sum of the two orders' logits

    def label(self, pairs: pd.DataFrame, table: pd.DataFrame, context) -> pd.DataFrame:
        if pairs.empty:
            return pairs.assign(p=[], source=[], cost=[])
        texts = table.set_index("response_id")["text"]
        prompts = {p.id: p for p in context.extras["prompts"]}
        sources = [_source(prompts[pid].messages) for pid in pairs["prompt_id"]]
        a, b = list(texts.loc[pairs["a"]].astype(str)), list(texts.loc[pairs["b"]].astype(str))
        swap = (context.rng.random(len(pairs)) < 0.5 if self.order == "random"
                else np.zeros(len(pairs), dtype=bool))
        first = [y if s else x for x, y, s in zip(a, b, swap)]
        second = [x if s else y for x, y, s in zip(a, b, swap)]
        logit = self.logits(sources, first, second)
        logit = np.where(swap, -logit, logit)  # back to "a beats b"
        p = np.sign(logit) * 0.5 + 0.5 if self.hard else 1.0 / (1.0 + np.exp(-logit))
        return pairs.assign(p=p, source="pairrm", cost=1)


@hookimpl
def acqkit_register_labelers(register):
    register("pairrm", PairRMLabeler)
