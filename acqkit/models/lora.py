"""LoRA adapters through peft (optional extra ``acqkit[lora]``): only the adapters train.

Adapters are injected into the policy in place (``peft.inject_adapter_in_model``),
so the policy stays the same ``transformers`` class and every stage (sampling,
scoring, training, evaluation) runs unchanged. ``lora_B`` starts at zero, so the
initial policy computes exactly what the frozen reference computes.

Checkpoints hold the adapter only, in peft's own format (``adapter_config.json``
plus ``adapter_model.safetensors``, loadable by ``peft.PeftModel.from_pretrained``):
the base never trains, so adapter + ``--model`` reconstruct the policy exactly,
and a round's checkpoint is megabytes, not the whole model.
"""
from __future__ import annotations

import re
from pathlib import Path

from acqkit.errors import ConfigError, RunDirError

LLAMA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
PREFIX = "base_model.model."  # peft's key prefix in saved adapters
_ADAPTER_KEY = re.compile(r"\.(lora_[A-Za-z_]+)\.default\.")  # in the live state dict
_SAVED_KEY = re.compile(r"\.(lora_[A-Za-z_]+)\.")  # in the saved file (no adapter name)


def has_adapters(model) -> bool:
    """True for a model that :func:`add_lora` (or peft's injection) gave adapters."""
    return bool(getattr(model, "peft_config", None))


def is_adapter_param(name: str) -> bool:
    return "lora_" in name


def require_peft() -> None:
    """Fail with the install line, before any model is loaded, when the optional extra is missing."""
    try:
        import peft  # noqa: F401
    except ImportError as exc:
        raise ConfigError("lora_rank > 0 needs peft, which is not installed: pip install 'acqkit[lora]'") from exc


def add_lora(model, rank: int, alpha: float | None = None, dropout: float = 0.0,
             targets: str = LLAMA_TARGETS, seed: int = 0):
    """Inject LoRA adapters of ``rank`` into ``model`` (in place) and return it.

    ``alpha`` defaults to ``2 * rank``; ``targets`` is a comma-separated list of
    module names or ``all-linear``. The random ``lora_A`` init is seeded inside a
    forked RNG, so it is reproducible and the global torch RNG is left as it was.
    """
    import torch

    require_peft()
    from peft import LoraConfig, inject_adapter_in_model

    names = targets.strip() if targets.strip() == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    config = LoraConfig(r=rank, lora_alpha=2 * rank if alpha is None else alpha, lora_dropout=dropout,
                        target_modules=names, bias="none")
    config.base_model_name_or_path = getattr(model, "name_or_path", None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            inject_adapter_in_model(config, model)
        except ValueError as exc:
            raise ConfigError(f"--lora-targets {targets!r} does not fit {type(model).__name__} ({exc}); "
                              "name its linear layers or use 'all-linear'") from exc
    return model


def adapter_state(model) -> dict[str, torch.Tensor]:
    """The adapter tensors under peft's saved names (``base_model.model.…lora_A.weight``)."""
    return {PREFIX + _ADAPTER_KEY.sub(r".\1.", k): v.detach().contiguous()
            for k, v in model.state_dict().items() if is_adapter_param(k)}


def save_adapters(model, directory: Path) -> None:
    """Write the adapter in peft's format: safetensors weights plus ``adapter_config.json``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state(model), str(directory / WEIGHTS), metadata={"format": "pt"})
    model.peft_config["default"].save_pretrained(str(directory))


def is_adapter_checkpoint(directory: Path) -> bool:
    return (Path(directory) / CONFIG).exists()


class AdapterState(dict):
    """Adapter tensors under the policy's state-dict names, read from an adapter checkpoint."""

    def complete(self, base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A full policy state dict: ``base`` (the untouched base weights) with these adapters in place.

        Every adapter tensor of ``base`` must be here and every tensor here must
        fit one, so a checkpoint from a different ``--lora-*`` setting is refused.
        """
        wanted = {k for k in base if is_adapter_param(k)}
        if not wanted:
            raise ConfigError("an adapter checkpoint, but this run's policy has no LoRA adapters "
                              "(was it run with --lora-rank?)")
        if set(self) != wanted:
            raise ConfigError(f"the saved adapter ({len(self)} tensors, e.g. {next(iter(sorted(self)), None)}) "
                              f"does not match this run's LoRA settings ({len(wanted)} adapter tensors)")
        state = dict(base)
        for key, value in self.items():
            if value.shape != base[key].shape:
                raise ConfigError(f"saved adapter tensor {key} has shape {tuple(value.shape)}, "
                                  f"this run's policy expects {tuple(base[key].shape)} (another --lora-rank?)")
            state[key] = value.to(base[key].dtype)
        return state


def load_adapters(directory: Path) -> AdapterState:
    """The adapter saved by :func:`save_adapters`; :meth:`AdapterState.complete` adds the base."""
    from safetensors.torch import load_file

    saved = load_file(str(Path(directory) / WEIGHTS))
    bad = [k for k in saved if not k.startswith(PREFIX) or not _SAVED_KEY.search(k)]
    if bad:
        raise RunDirError(f"{directory}: {bad[0]!r} is not a LoRA adapter tensor in peft's format")
    return AdapterState({_SAVED_KEY.sub(r".\1.default.", k[len(PREFIX):]): v for k, v in saved.items()})


def parameter_counts(model) -> tuple[int, int]:
    """``(trainable adapter parameters, all parameters)``."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for n, p in model.named_parameters() if is_adapter_param(n)), total
