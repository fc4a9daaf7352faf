"""Run configuration: one small validated dataclass, presets, and TOML for run directories.

Each field's command-line help is in its metadata: ``acqkit.cli.options``
generates the ``run``/``compare`` flags from this class, so the two cannot drift.
"""
from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path

from acqkit.errors import ConfigError

SEED_SHARE = 0.033  # SPA: 2K seed labels, about 3.3% of UltraFeedback
NONE = "none"  # None in a TOML file or on the command line (TOML has no null)


def opt(default, help: str, none: str = ""):
    """A field with its ``--help`` text; ``none`` says what None means for an optional field."""
    return field(default=default, metadata={"help": help, "none": none})


@dataclass(frozen=True)
class RunConfig:
    # what runs
    model: str = opt("smollm2", "tiny | smollm2 | a Hugging Face model id | a local model directory")
    task: str = opt("sentiment", "task name (see `acqkit plugins`), or your prompts: file:PATH (.jsonl, .csv, "
                                 ".parquet)")
    strategy: str = opt("random", "acquisition strategy spec")
    labeler: str = opt("gold", "labeler spec (see `acqkit plugins`)")
    refiner: str = opt("none", "refiner spec (see `acqkit plugins`)")
    seed: int = opt(0, "random seed of the run")
    # the budget
    rounds: int = opt(1, "online rounds")
    budget: int = opt(12, "labels over all online rounds")
    budget_usd: float | None = opt(None, "money over all online rounds, in USD, for a labeler that reports its "
                                         "cost (judge): asking stops once it is spent (docs/labelers.md#judge)",
                                   none="no money budget")
    schedule: str = opt("constant", "split of the budget over rounds: constant | increase | decrease | fractions "
                                    "like 1/6,2/6,3/6")
    seed_labels: int | None = opt(None, "gold labels for the shared warm-start stage, round 0 (0 = none; a "
                                        "preset's value holds at the preset's budget only)",
                                  none="3.3% of the budget, at least 1 (SPA's seed share)")
    seed_epochs: int = opt(2, "DPO epochs of the warm start")
    seed_labeler: str = opt("gold", "labeler of the warm-start pairs")
    ledger: str = opt("", "label ledger file, may be shared by several comparisons (empty: "
                          "<run dir>/ledger.sqlite; in memory without a run dir)")
    warm_start_seed: int | None = opt(0, "seed of the one warm start that every seed starts from, a fixed "
                                         "checkpoint", none="one warm start per seed")
    # sampling
    n_responses: int = opt(4, "responses sampled per prompt")
    temperature: float = opt(1.0, "sampling temperature (0 = greedy)")
    top_k: int = opt(50, "sampling top-k (0 = off)")
    max_new_tokens: int = opt(32, "maximum response length in tokens")
    gen_batch_size: int = opt(64, "sequences per generate call (bounds the memory of sampling)")
    sampler: str = opt("hf", "generation backend (see `acqkit plugins`; hf = transformers generate in this process)")
    # training
    beta: float = opt(0.1, "DPO beta")
    lr: float = opt(3e-5, "learning rate")
    epochs: int = opt(2, "DPO epochs per online round")
    batch_size: int = opt(8, "pairs per optimizer step, over all processes")
    grad_accum: int = opt(1, "forward passes per process per optimizer step (memory, not maths)")
    train_layers: int | None = opt(None, "train only the last k transformer blocks (large models)",
                                   none="all blocks")
    precision: str = opt("fp32", "auto | fp32 | bf16: compute dtype of sampling, scoring, training and evaluation "
                                 "(bf16 autocast, float32 weights and log-probs; auto = bf16 where the CPU or GPU "
                                 "has it; docs/performance.md)")
    group_by_length: bool = opt(True, "train on batches of pairs of similar length (less padding), in a seeded "
                                      "random batch order")
    mixed_precision: str = opt("no", "deprecated: use --precision (bf16 here means --precision bf16)")
    lora_rank: int = opt(0, "train only LoRA adapters of this rank (0 = off; needs acqkit[lora])")
    lora_alpha: float | None = opt(None, "LoRA scale numerator", none="2 x lora rank")
    lora_dropout: float = opt(0.0, "LoRA dropout")
    lora_targets: str = opt("q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
                            "modules that get adapters: comma-separated names (Llama-style) or all-linear")
    # evaluation
    eval_prompts: int = opt(30, "held-out prompts for evaluation")
    eval_samples: int = opt(1, "sampled responses per eval prompt for the win rate, drawn with the same random "
                               "streams for every strategy of a seed (0 = one greedy response; docs/reporting.md)")
    kl_samples: int = opt(1, "samples per eval prompt for the KL estimate (0 = skip)")
    score_batch_size: int = opt(16, "sequences per scoring forward pass (bounds the memory of scoring)")
    ref_cache: str = opt("off", "off | exact: score each response once per session under the reference "
                                "(batch of one; acqkit.round.refcache)")
    trust_remote_code: bool = opt(False, "run Python code shipped with the model (only for models you trust)")
    checkpoint: bool = opt(True, "keep the last finished round's policy (safetensors) in the run directory")
    track: str = opt("", "experiment trackers, comma-separated specs: wandb, tensorboard, e.g. 'wandb(project=acqkit, "
                         "mode=offline)' (empty: none; needs acqkit[track]; docs/reporting.md)")

    def __post_init__(self):
        if self.seed_labels is None:
            auto = max(1, math.ceil(SEED_SHARE * self.budget)) if self.budget else 0
            object.__setattr__(self, "seed_labels", auto)
        for name in ("rounds", "n_responses", "max_new_tokens", "epochs", "batch_size", "grad_accum",
                     "gen_batch_size", "score_batch_size", "eval_prompts", "seed_epochs"):
            _at_least(name, getattr(self, name), 1)
        for name in ("budget", "seed_labels", "top_k", "kl_samples", "eval_samples", "temperature", "lora_rank"):
            _at_least(name, getattr(self, name), 0)
        if self.train_layers is not None:
            _at_least("train_layers", self.train_layers, 1)
        if self.budget_usd is not None and not (math.isfinite(self.budget_usd) and self.budget_usd >= 0):
            raise ConfigError(f"config field 'budget_usd' must be a number >= 0, got {self.budget_usd}")
        if self.n_responses < 2:
            raise ConfigError("config field 'n_responses' must be >= 2 to form pairs")
        for name in ("beta", "lr") + (("lora_alpha",) if self.lora_alpha is not None else ()):
            if not getattr(self, name) > 0:
                raise ConfigError(f"config field {name!r} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"config field 'lora_dropout' must be in [0, 1), got {self.lora_dropout}")
        _one_of("ref_cache", self.ref_cache, ("off", "exact"))
        _one_of("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        _one_of("precision", self.precision, PRECISIONS)
        if self.mixed_precision == "bf16":  # the old setting: read as precision = "bf16", saved in the new form
            if self.precision == "auto":
                raise ConfigError("config fields 'mixed_precision' (deprecated) and 'precision' disagree; "
                                  "drop mixed_precision")
            warnings.warn("config field 'mixed_precision' is deprecated: mixed_precision = \"bf16\" is read as "
                          "precision = \"bf16\" (which now also covers sampling, scoring and evaluation, on CPUs "
                          "with native bf16 too)", FutureWarning, stacklevel=3)
            object.__setattr__(self, "precision", "bf16")
            object.__setattr__(self, "mixed_precision", "no")


MIXED_PRECISION = ("no", "bf16")
PRECISIONS = ("auto", "fp32", "bf16")  # acqkit.models.precision resolves them on the hardware


def _at_least(name: str, value, low) -> None:
    if value < low:
        raise ConfigError(f"config field {name!r} must be >= {low}, got {value}")


def _one_of(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"config field {name!r} must be {' or '.join(map(repr, allowed))}, got {value!r}")


PRESETS: dict[str, dict] = {
    # SmolLM2-135M on a 2-core CPU: sized so `make compare` (2 strategies x 3 seeds) fits in 15 minutes.
    "default": dict(seed_labels=12),
    # The tiny random model: a whole comparison in well under a minute.
    "smoke": dict(model="tiny", rounds=2, budget=32, n_responses=4, max_new_tokens=16, eval_prompts=16,
                  lr=3e-3, epochs=2, batch_size=8, seed_labels=16),
}
DEFAULTS = {f.name: f.default for f in fields(RunConfig)}


def preset(name: str, **overrides) -> RunConfig:
    """A preset with ``overrides`` on top; an override of None means "not given" (see :func:`from_preset`)."""
    return from_preset(name, {k: v for k, v in overrides.items() if v is not None})


def from_preset(name: str, overrides: dict) -> RunConfig:
    """A preset with ``overrides`` on top (None is a value here: e.g. ``warm_start_seed=None``).

    A preset's ``seed_labels`` belongs to the preset's budget: with another
    budget and no ``seed_labels`` of its own, the run takes the documented
    default, SPA's 3.3% of the budget.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    fixed = PRESETS[name]
    values = {**fixed, **overrides}
    own_budget = fixed.get("budget", DEFAULTS["budget"])
    if "seed_labels" not in overrides and values.get("budget", DEFAULTS["budget"]) != own_budget:
        values.pop("seed_labels", None)
    _check_names(values, "")
    return RunConfig(**values)


@dataclass(frozen=True)
class CompareConfig:
    base: RunConfig
    strategies: tuple[str, ...] = ("random", "smallest-margin")
    seeds: tuple[int, ...] = (0, 1, 2)

    def runs(self) -> list[RunConfig]:
        return [replace(self.base, strategy=s, seed=seed) for seed in self.seeds for s in self.strategies]


def read_toml(path: Path) -> dict:
    """Parse a TOML file; errors name the file."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def load_compare(path, overrides: dict | None = None) -> CompareConfig:
    """A CompareConfig from a TOML file: top-level ``strategies`` and ``seeds``, the rest under ``[base]``.

    A file without a ``[base]`` table is read as flat: every RunConfig field at
    the top level. ``overrides`` (fields given as flags) replace the file's
    fields before the config is built, so a field the file leaves to its
    default (``seed_labels``) follows them. The string ``"none"`` stands for
    None in a field that may be None (``to_toml`` writes it).
    """
    path = Path(path)
    data = read_toml(path)
    base = data.pop("base", None)
    strategies = data.pop("strategies", CompareConfig.strategies)
    seeds = data.pop("seeds", CompareConfig.seeds)
    if base is None:
        base, data = data, {}
    if data:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(sorted(data))}")
    _check_names(base, f"{path}: ")
    base = {k: None if v == NONE and _optional(k) else v for k, v in base.items()}
    if isinstance(seeds, int):
        seeds = list(range(seeds))
    try:
        return CompareConfig(base=RunConfig(**{**base, **(overrides or {})}), strategies=tuple(strategies),
                             seeds=tuple(seeds))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _check_names(values: dict, where: str) -> None:
    bad = sorted(set(values) - set(DEFAULTS))
    if bad:
        raise ConfigError(f"{where}unknown config field(s) {', '.join(bad)}; known: {', '.join(sorted(DEFAULTS))}")


def _optional(name: str) -> bool:
    """Whether a RunConfig field may be None (its type says ``| None``)."""
    return "None" in str(next(f.type for f in fields(RunConfig) if f.name == name))


def to_toml(config) -> str:
    """Flat TOML for a (nested) dataclass; enough for configs, no extra dependency.

    TOML has no null and an absent key means the field's default, so None is
    left out where it is the default (``train_layers``) and written as
    ``"none"`` where it is not (``warm_start_seed``, default 0): a saved config
    loads back equal (``load_compare``).
    """
    lines, tables = [], []
    for key, value in _items(config):
        if is_dataclass(value):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in _items(table)]
    return "\n".join(lines) + "\n"


def _items(obj):
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is None and f.default is None:
            continue  # absent = the default, None
        yield f.name, value


def _toml_value(v) -> str:
    if v is None:
        return f'"{NONE}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
