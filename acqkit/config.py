"""Run configuration: one small dataclass, presets, and a TOML dump for run directories."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


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
    budget: int = 32  # labels over all rounds
    schedule: str = "constant"
    seed_labels: int = 16  # gold labels for the shared warm-start DPO stage (round 0); 0 = none
    seed_epochs: int = 3
    seed_labeler: str = "gold"
    # sampling
    n_responses: int = 4
    temperature: float = 1.0
    top_k: int = 50
    max_new_tokens: int = 32
    gen_batch_size: int = 64
    # training
    beta: float = 0.1
    lr: float = 5e-6
    epochs: int = 2
    batch_size: int = 8
    grad_accum: int = 1
    # evaluation
    eval_prompts: int = 32
    kl_samples: int = 1
    score_batch_size: int = 16
    trust_remote_code: bool = False

    def __post_init__(self):
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


PRESETS: dict[str, dict] = {
    # SmolLM2-135M on a 2-core CPU: sized so `make compare` (2 strategies x 3 seeds) fits in 15 minutes.
    "default": {},
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


def to_toml(config) -> str:
    """Flat TOML for a (nested) dataclass; enough for configs, no extra dependency."""
    data = asdict(config)
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

