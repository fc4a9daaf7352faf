"""Hook specifications: the whole contract between acqkit and its plugins.

Every hook is called with keyword arguments, so an implementation may accept
fewer arguments than the spec names and keep working when a hook grows.
Changing a spec in an incompatible way bumps ``API_VERSION``.
"""
import pluggy

PROJECT = "acqkit"
API_VERSION = "1.0"

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
def acqkit_round_end(run, round, metrics):
    """Observe a finished round (loggers, trackers). ``metrics`` is a dict."""
