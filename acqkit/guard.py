"""Blame the plugin: a component that raises is named, with its plugin, package and the line that raised.

:meth:`acqkit.plugins.Registry.build` wraps every component it builds in
:class:`Guarded`, a thin proxy that turns any exception from a component's
method into a :class:`PluginError` saying whose code failed (and at which of
*its* lines, not the deepest frame inside pandas), so a user who installed a
third-party strategy is not left reading an anonymous traceback. What a
gold oracle or a task's ``gold_reward`` returns is checked here too: a NaN
reward would silently become a training label.

This module knows nothing of the registry, so ``plugins`` imports it and not
the other way round.
"""
from __future__ import annotations

import functools
import os
import traceback

import numpy as np

from acqkit.errors import AcqkitError, PluginError, PluginOutputError


def guarded_build(reg, kind: str, spec: str, **context):
    """``reg.build``, kept for callers of the old name: every build is guarded now."""
    return reg.build(kind, spec, **context)


def raised_at(exc: BaseException, roots=()) -> str:
    """``file.py:42``: the innermost frame under one of ``roots`` (the plugin's own code), else the innermost."""
    frames = traceback.extract_tb(exc.__traceback__)
    real = [os.path.realpath(r) for r in roots if r]
    own = [f for f in frames if any(_under(os.path.realpath(f.filename), r) for r in real)]
    pick = own or [f for f in frames if not f.filename.startswith("<")] or frames
    return f"{pick[-1].filename}:{pick[-1].lineno}" if pick else "unknown location"


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def finite_rewards(out, who: str, what: str, args: tuple, kwargs: dict):
    """A gold oracle's (or task's) rewards: one finite number per response, else an error naming the plugin."""
    responses = kwargs.get("responses", args[1] if len(args) > 1 else None)
    try:
        r = np.asarray(out, dtype=float)
    except (TypeError, ValueError):
        raise PluginOutputError(f"{who} returned {type(out).__name__} from {what}, expected one number per "
                                "response") from None
    if responses is not None and r.shape != (len(responses),):
        raise PluginOutputError(f"{who} returned {r.size} reward(s) from {what} for {len(responses)} responses")
    bad = ~np.isfinite(r)
    if bad.any():
        raise PluginOutputError(f"{who} returned {int(bad.sum())} NaN or infinite reward(s) from {what}: "
                                f"{r[bad][:5].tolist()}; a gold reward must be a finite number (stopped before "
                                "any label, score or result was made from it)")
    return out


# What acqkit checks in a component's answers, by kind and method, before it uses them.
OUTPUT_CHECKS = {"oracle": {"reward": finite_rewards}, "task": {"gold_reward": finite_rewards}}


def blamed(fn, who: str, what: str, roots=(), check=None):
    """``fn`` re-raising foreign exceptions as PluginError; a returned callable is blamed too.

    ``check(out, who, what, args, kwargs)`` vets the answer before anyone uses it.
    """

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            out = fn(*args, **kwargs)
        except AcqkitError:
            raise  # already names what to fix (a task's oracle, a prompt file)
        except Exception as exc:
            raise PluginError(f"{who} raised {type(exc).__name__} in {what}: {exc} "
                              f"(at {raised_at(exc, roots)})") from exc
        if check is not None:
            return check(out, who, what, args, kwargs)
        if callable(out) and not isinstance(out, type):
            return blamed(out, who, f"the function its {what} returned", roots)  # in_training's targets
        return out

    return call


class Guarded:
    """Forward everything to the component; wrap its methods with :func:`blamed`.

    ``who`` names the component (``strategy 'x' (plugin 'p' from package q)``);
    ``roots`` are the paths of its plugin's code, for :func:`raised_at`.
    """

    __slots__ = ("_obj", "_who", "_roots", "_checks")

    def __init__(self, obj, who: str, roots=(), checks=None):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_who", who)
        object.__setattr__(self, "_roots", tuple(roots))
        object.__setattr__(self, "_checks", dict(checks or {}))

    @property
    def __class__(self):  # isinstance(component, MyTask) still holds for the plugin that made it
        return type(self._obj)

    def __getattr__(self, name):
        value = getattr(self._obj, name)
        if callable(value) and not isinstance(value, type) and not name.startswith("__"):
            return blamed(value, self._who, f"{name}()", self._roots, self._checks.get(name))
        return value

    def __setattr__(self, name, value):
        setattr(self._obj, name, value)

    def __eq__(self, other):
        return self._obj == (other._obj if isinstance(other, Guarded) else other)

    def __hash__(self):
        return hash(self._obj)

    def __repr__(self) -> str:
        return f"Guarded({self._obj!r})"
