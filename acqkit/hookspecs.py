"""Hook specifications: the whole contract between acqkit and its plugins.

Every hook is called with keyword arguments, so an implementation may accept
fewer arguments than the spec names and keep working when a hook grows.
Changing a spec in an incompatible way bumps ``API_VERSION``.

API versions: 1.0 strategies, labelers, refiners, tasks and ``acqkit_round_end``;
1.1 (additive) ``acqkit_register_oracles``: gold oracles by name, which tasks
(the sentiment task, ``file:PATH`` prompt files) look up; and
``acqkit_register_samplers``: generation backends (``hf``, or an outside engine);
1.2 (additive) the strategy building blocks (``acqkit.strategies``, re-exported
from ``acqkit``), ``Strategy.training_set`` / ``TrainingSet``, ``checkpointed``
component state, ``declared`` (the interface defaults for duck-typed
components), ``Prompt.extras`` and ``token_counts`` on oracles and tasks;
1.3 (additive) ``Labeler.preflight()`` (checked before any model loads); experiment trackers: ``acqkit_register_trackers`` (``--track``),
``acqkit_run_start`` / ``acqkit_run_end`` around each (strategy, seed) run,
``acqkit_compare_end`` with the comparison's plots, and ``acqkit_round_end``
also for round 0 (the warm start's results row).
"""
import pluggy

PROJECT = "acqkit"
API_VERSION = "1.4"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def acqkit_register_strategies(register):
    """Register acquisition strategies: ``register(name, factory)``.

    ``factory(**options)`` returns an object with the :class:`acqkit.Strategy`
    interface; options come from the command line as ``name(key=value, ...)``.
    """


@hookspec
def acqkit_register_labelers(register):
    """Register labelers: ``register(name, factory)``; see :class:`acqkit.Labeler`."""


@hookspec
def acqkit_register_refiners(register):
    """Register label refiners: ``register(name, factory)``; see :class:`acqkit.Refiner`."""


@hookspec
def acqkit_register_tasks(register):
    """Register tasks (prompt sets with a gold oracle): ``register(name, factory)``."""


@hookspec
def acqkit_register_oracles(register):
    """Register gold oracles: ``register(name, factory)``; see :class:`acqkit.Oracle`.

    A task names its oracle (``file(path=..., oracle=vader)``) and builds it with
    :func:`acqkit.build`, so one oracle serves any prompt set. Added in 1.1.
    """


@hookspec
def acqkit_register_samplers(register):
    """Register generation backends: ``register(name, factory)``; see :class:`acqkit.Sampler`.

    ``--sampler NAME`` picks one (default ``hf``, transformers ``generate``). Added in 1.1.
    """


@hookspec
def acqkit_register_trackers(register):
    """Register experiment trackers: ``register(name, factory)``; see :class:`acqkit.track.Tracker`.

    ``--track wandb,tensorboard`` picks them; the factory gets ``out`` (the run or
    comparison directory) and the spec's options. Added in 1.3.
    """


@hookspec
def acqkit_run_start(run, run_dir):
    """A (strategy, seed) run starts: ``run`` is its resolved config as a dict, ``run_dir`` its directory. 1.3."""


@hookspec
def acqkit_round_end(run, round, metrics):
    """Observe a finished round (loggers, trackers). ``metrics`` is its results row, a dict.

    Called for round 0 (the warm start; since 1.3) and for every online round, whose row and
    checkpoint are on disk by then.
    """


@hookspec
def acqkit_run_end(run, run_dir, results):
    """A (strategy, seed) run finished: ``results`` holds its rows (a DataFrame, round 0 first). 1.3."""


@hookspec
def acqkit_compare_end(config, out, results, plots):
    """A comparison finished: its config (a dict), directory, results and plot PNG paths. 1.3."""
