"""Blame the plugin: a component that raises is named, with its plugin, package and the line that raised.

The loop talks to strategies, labelers, refiners and tasks through
:func:`guarded`, a thin proxy that turns any exception from a component's
method into a :class:`PluginError` saying whose code failed, so a user who
installed a third-party strategy is not left reading an anonymous traceback.
"""
from __future__ import annotations

import functools
import traceback

from .plugins import PluginError, Registry, parse_spec


def describe(reg: Registry, kind: str, spec: str) -> str:
    """``strategy 'margin(keep=0.5)' (plugin 'margin' from package acqkit)``."""
    comp = reg.get(kind, parse_spec(spec)[0])
    return f"{kind} {spec!r} (plugin {comp.plugin!r} from package {comp.package})"


def guarded_build(reg: Registry, kind: str, spec: str, **context):
    """``reg.build`` whose result blames its plugin when a method raises."""
    return Guarded(reg.build(kind, spec, **context), describe(reg, kind, spec))


def raised_at(exc: BaseException) -> str:
    """``file.py:42``: the innermost frame of the exception's traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "unknown location"


def blamed(fn, who: str, what: str):
    """``fn`` re-raising foreign exceptions as PluginError; a returned callable is blamed too."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            out = fn(*args, **kwargs)
        except PluginError:
            raise  # already names a plugin (a task's oracle, say)
        except Exception as exc:
            raise PluginError(f"{who} raised {type(exc).__name__} in {what}: {exc} "
                              f"(at {raised_at(exc)})") from exc
        if callable(out) and not isinstance(out, type):
            return blamed(out, who, f"the function its {what} returned")  # in_training's targets
        return out

    return call


class Guarded:
    """Forward everything to the component; wrap its methods with :func:`blamed`."""

    __slots__ = ("_obj", "_who")

    def __init__(self, obj, who: str):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_who", who)

    def __getattr__(self, name):
        value = getattr(self._obj, name)
        if callable(value) and not isinstance(value, type) and not name.startswith("__"):
            return blamed(value, self._who, f"{name}()")
        return value

    def __setattr__(self, name, value):
        setattr(self._obj, name, value)

    def __eq__(self, other):
        return self._obj == (other._obj if isinstance(other, Guarded) else other)

    def __hash__(self):
        return hash(self._obj)

    def __repr__(self) -> str:
        return f"Guarded({self._obj!r})"
