"""Run configuration: one small dataclass, presets, and a TOML dump for run directories."""
from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

SEED_SHARE = 0.033  # SPA: 2K seed labels, about 3.3% of UltraFeedback


@dataclass(frozen=True)
class RunConfig:
    # what runs
    model: str = "smollm2"
    task: str = "sentiment"
    strategy: str = "random"
    labeler: str = "gold"
    refiner: str = "none"
    seed: int = 0
    # the budget
    rounds: int = 1
    budget: int = 12  # labels over all rounds
    schedule: str = "constant"
    # gold labels for the shared warm-start DPO stage (round 0); 0 = none;
    # None = SPA's seed share, 3.3% of the budget (at least 1)
    seed_labels: int | None = None
    seed_epochs: int = 2
    seed_labeler: str = "gold"
    ledger: str = ""  # label ledger file; "" = <run dir>/ledger.sqlite (in memory without a run dir)
    warm_start_seed: int | None = 0  # one warm start for every seed (a fixed checkpoint); None = per seed
    # sampling
    n_responses: int = 4
    temperature: float = 1.0
    top_k: int = 50
    max_new_tokens: int = 32
    gen_batch_size: int = 64
    sampler: str = "hf"  # generation backend (a plugin); hf = transformers generate in this process
    # training
    beta: float = 0.1
    lr: float = 3e-5
    epochs: int = 2
    batch_size: int = 8
    grad_accum: int = 1
    train_layers: int | None = None  # train only the last k transformer blocks (large models)
    mixed_precision: str = "no"  # "bf16" on GPU
    lora_rank: int = 0  # > 0: train only LoRA adapters of this rank (peft: pip install acqkit[lora])
    lora_alpha: float | None = None  # LoRA scale numerator; None = 2 x lora_rank
    lora_dropout: float = 0.0
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"  # Llama-style; or all-linear
    # evaluation
    eval_prompts: int = 24
    kl_samples: int = 1
    score_batch_size: int = 16
    ref_cache: str = "off"  # "exact": each response scored once per session by the reference (acqkit.refcache)
    trust_remote_code: bool = False
    checkpoint: bool = True  # keep the last finished round's policy (safetensors) in the run directory

    def __post_init__(self):
        if self.seed_labels is None:
            auto = max(1, math.ceil(SEED_SHARE * self.budget)) if self.budget else 0
            object.__setattr__(self, "seed_labels", auto)
        for name in ("rounds", "n_responses", "max_new_tokens", "epochs", "batch_size", "grad_accum",
                     "gen_batch_size", "score_batch_size", "eval_prompts"):
            if getattr(self, name) < 1:
                raise ValueError(f"config field {name!r} must be >= 1, got {getattr(self, name)}")
        for name in ("budget", "seed_labels"):
            if getattr(self, name) < 0:
                raise ValueError(f"config field {name!r} must be >= 0, got {getattr(self, name)}")
        if self.n_responses < 2:
            raise ValueError("config field 'n_responses' must be >= 2 to form pairs")
        if self.beta <= 0:
            raise ValueError(f"config field 'beta' must be > 0, got {self.beta}")
        if self.lora_rank < 0 or not 0 <= self.lora_dropout < 1:
            raise ValueError(f"config fields 'lora_rank' >= 0 and 0 <= 'lora_dropout' < 1, got "
                             f"{self.lora_rank} and {self.lora_dropout}")
        if self.ref_cache not in ("off", "exact"):
            raise ValueError(f"config field 'ref_cache' must be 'off' or 'exact', got {self.ref_cache!r}")


PRESETS: dict[str, dict] = {
    # SmolLM2-135M on a 2-core CPU: sized so `make compare` (2 strategies x 3 seeds) fits in 15 minutes.
    "default": dict(seed_labels=12),
    # The tiny random model: a whole comparison in well under a minute.
    "smoke": dict(model="tiny", rounds=2, budget=32, n_responses=4, max_new_tokens=16, eval_prompts=16,
                  lr=3e-3, epochs=2, batch_size=8, seed_labels=16),
}


def preset(name: str, **overrides) -> RunConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    known = {f.name for f in fields(RunConfig)}
    bad = sorted(set(values) - known)
    if bad:
        raise ValueError(f"unknown config field(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
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
        raise FileNotFoundError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from exc


def load_compare(path) -> CompareConfig:
    """A CompareConfig from a TOML file: top-level ``strategies`` and ``seeds``, the rest under ``[base]``.

    A file without a ``[base]`` table is read as flat: every RunConfig field at the top level.
    """
    path = Path(path)
    data = read_toml(path)
    base = data.pop("base", None)
    strategies = data.pop("strategies", CompareConfig.strategies)
    seeds = data.pop("seeds", CompareConfig.seeds)
    if base is None:
        base, data = data, {}
    if data:
        raise ValueError(f"{path}: unknown top-level key(s) {', '.join(sorted(data))}")
    known = {f.name for f in fields(RunConfig)}
    bad = sorted(set(base) - known)
    if bad:
        raise ValueError(f"{path}: unknown config field(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
    if isinstance(seeds, int):
        seeds = list(range(seeds))
    try:
        return CompareConfig(base=RunConfig(**base), strategies=tuple(strategies), seeds=tuple(seeds))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def to_toml(config) -> str:
    """Flat TOML for a (nested) dataclass; enough for configs, no extra dependency."""
    data = asdict(config)
    lines, tables = [], []
    for key, value in data.items():
        if value is None:
            continue  # TOML has no null: an absent key means the default
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

