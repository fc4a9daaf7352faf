"""Check a configuration before any model is loaded or any file is written.

A typo in a strategy name, a model path that does not exist or a budget no
task can fill should cost a second and leave nothing behind, not fail after
minutes of sampling with a half-made run directory that ``--resume`` would trust.
"""
from __future__ import annotations

from math import comb
from pathlib import Path

from acqkit.round import budget as budgets
from acqkit import models
from acqkit.components import Labeler, Strategy, declared
from acqkit.config import RunConfig
from acqkit.errors import ConfigError
from acqkit.store.ledger import LEDGER_FILE, Ledger
from acqkit.plugins import Registry, UnknownComponent, parse_spec


_PREFLIGHTED: set[str] = set()


def check_config(cfg: RunConfig, reg: Registry, n_train: int | None = None) -> None:
    """Raise a clear error for anything in ``cfg`` that cannot run; ``n_train``: the task's train prompts."""
    strategy = _named("strategy", cfg.strategy, "strategy", reg)
    labeler = declared(strategy, Strategy, "labeler") or cfg.labeler  # a recipe may bring its own
    refiner = declared(strategy, Strategy, "refiner") or cfg.refiner
    for spec, field in [(labeler, "labeler")] + [(cfg.seed_labeler, "seed_labeler")] * bool(cfg.seed_labels):
        built = _named("labeler", spec, field, reg)  # built: a labeler's missing model or bad option fails here
        if spec not in _PREFLIGHTED:  # once per labeler spec and process, not once per grid cell
            declared(built, Labeler, "preflight")()  # e.g. a judge's server is up and accepts the key
            _PREFLIGHTED.add(spec)
    _named("refiner", refiner, "refiner", reg, build=False)
    _named("task", cfg.task, "task", reg, build=False)
    _named("sampler", cfg.sampler, "sampler", reg, build=False)
    if cfg.model not in models.EMBEDDED:
        models.resolve(cfg.model)  # a local path must hold a model
        if not models.is_local(cfg.model):
            models.check_hub_model(cfg.model)
    per_round = budgets.per_round(cfg.budget, cfg.schedule, cfg.rounds)
    check_budget(cfg, strategy, per_round, task_size(cfg, reg) if n_train is None else n_train)


def task_size(cfg: RunConfig, reg: Registry) -> int:
    """How many train prompts the configured task has (building it reads and checks its prompts)."""
    return len(_named("task", cfg.task, "task", reg).train_prompts())


def check_budget(cfg: RunConfig, strategy, per_round: list[int], n_train: int) -> None:
    """Every round's budget must fit in the pairs that can exist: train prompts x C(responses, 2)."""
    if cfg.seed_labels > n_train:
        raise ConfigError(f"config field 'seed_labels' = {cfg.seed_labels}: the warm start labels one pair per "
                          f"prompt and task {cfg.task!r} has {n_train} train prompts")
    for rnd, b in enumerate(per_round, 1):
        n = declared(strategy, Strategy, "plan")(b, cfg.n_responses, cfg.temperature).n_responses
        exist = n_train * comb(n, 2)
        if b > exist:
            raise ConfigError(f"config field 'budget' = {cfg.budget}: round {rnd} of {cfg.rounds} would buy {b} "
                              f"labels but only {exist} distinct pairs exist ({n_train} train prompts of task "
                              f"{cfg.task!r} x C({n}, 2)); lower the budget or add rounds")


def check_resume(run_dir: Path) -> None:
    """Open an existing label ledger once, so a corrupted one stops the resume before any work."""
    path = Path(run_dir) / LEDGER_FILE
    if path.exists():
        with Ledger(path):
            pass


def _named(kind: str, spec: str, field: str, reg: Registry, build: bool = True):
    try:
        return reg.build(kind, spec) if build else reg.get(kind, parse_spec(spec)[0])
    except UnknownComponent as exc:
        raise UnknownComponent(f"config field {field!r}: {exc}") from exc
