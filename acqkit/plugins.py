"""The plugin manager and the registries of named components.

Built-in components are loaded exactly like third-party ones: from the
``acqkit`` entry-point group. ``ACQKIT_BLOCK_PLUGINS`` (comma-separated
plugin names) switches entry-point plugins off.
"""
from __future__ import annotations

import os
import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from . import hookspecs

KINDS = ("strategy", "labeler", "refiner", "task", "oracle", "sampler")
PLURAL = {"strategy": "strategies"}


class UnknownComponent(ValueError):
    """A component name that no plugin registered."""


class ComponentError(ValueError):
    """A component spec that cannot be parsed or built."""


class PluginError(RuntimeError):
    """A plugin's code raised; the message names the component, its plugin and package (see acqkit.guard)."""


@dataclass
class Component:
    name: str
    kind: str
    factory: Callable[..., Any]
    package: str
    plugin: str


@dataclass
class Registry:
    """Components of every kind, by name, plus the manager that found them."""

    pm: pluggy.PluginManager
    components: dict[str, dict[str, Component]] = field(default_factory=dict)

    def names(self, kind: str) -> list[str]:
        return sorted(self.components.get(kind, {}))

    def get(self, kind: str, name: str) -> Component:
        known = self.components.get(kind, {})
        if name not in known:
            raise UnknownComponent(
                f"unknown {kind} {name!r}; known {PLURAL.get(kind, kind + 's')}: {', '.join(sorted(known)) or '(none)'}"
            )
        return known[name]

    def build(self, kind: str, spec: str, **context):
        """Build a component from a spec such as ``margin(instance=smallest, keep=0.5)``."""
        name, options = parse_spec(spec)
        comp = self.get(kind, name)
        token = _building.set(self)  # a factory that builds a component (a task's oracle) sees this registry
        try:
            return comp.factory(**context, **options)
        except TypeError as exc:
            raise ComponentError(
                f"{kind} {spec!r} (from package {comp.package}): bad options: {exc}"
            ) from exc
        except (ValueError, OSError, PluginError):
            raise  # input errors (a bad option value, a missing file) carry their own message
        except Exception as exc:  # a bug in the factory: say whose
            from .guard import raised_at

            raise PluginError(f"{kind} {spec!r} (plugin {comp.plugin!r} from package {comp.package}) raised "
                              f"{type(exc).__name__} while being built: {exc} (at {raised_at(exc)})") from exc
        finally:
            _building.reset(token)


_PATH_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+):(.+?)(?:\((.*)\))?\s*$")
_SPEC = re.compile(r"^\s*([A-Za-z0-9_.:/\-]+)\s*(?:\((.*)\))?\s*$")


def parse_value(text: str):
    text = text.strip()
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if "/" in text and all(p.strip().replace(".", "", 1).isdigit() for p in text.split("/")):
        num, den = text.split("/")
        return float(num) / float(den)
    return text.strip("'\"")


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name(a=1, b=x)"`` -> ``("name", {"a": 1, "b": "x"})``. Lists use ``|``: ``f=1|2|3``.

    ``name:PATH`` is short for ``name(path=PATH)`` and keeps PATH verbatim (``file:my.jsonl``);
    options may follow: ``file:my.jsonl(oracle=vader)``.
    """
    m = _PATH_SPEC.match(spec)
    if m:
        name, options = m.group(1), _options(spec, m.group(3))
        if "path" in options:
            raise ComponentError(f"in {spec!r}: the path is given twice (before the colon and as path=)")
        return name, {"path": m.group(2).strip(), **options}
    m = _SPEC.match(spec)
    if not m:
        raise ComponentError(f"cannot parse component spec {spec!r}; expected name or name(key=value, ...)")
    return m.group(1), _options(spec, m.group(2))


def _options(spec: str, args: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args and args.strip():
        for part in args.split(","):
            if "=" not in part:
                raise ComponentError(f"in {spec!r}: option {part.strip()!r} is not key=value")
            key, value = part.split("=", 1)
            key = key.strip().replace("-", "_")
            options[key] = [parse_value(v) for v in value.split("|")] if "|" in value else parse_value(value)
    return options


def split_specs(text: str) -> list[str]:
    """Split a comma-separated list of specs, keeping commas inside parentheses (and a report's [tags])."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def make_manager(load_entrypoints: bool = True, extra_plugins=()) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    blocked = [b.strip() for b in os.environ.get("ACQKIT_BLOCK_PLUGINS", "").split(",") if b.strip()]
    for name in blocked:
        pm.set_blocked(name)
    if load_entrypoints:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    for plugin in extra_plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


def _package_of(pm: pluggy.PluginManager, plugin) -> str:
    for p, dist in pm.list_plugin_distinfo():
        if p is plugin:
            return dist.project_name
    return getattr(plugin, "__name__", type(plugin).__name__)


def collect(pm: pluggy.PluginManager) -> Registry:
    """Ask every plugin to register its components; duplicate names are an error."""
    reg = Registry(pm=pm)
    hooks = {
        "strategy": pm.hook.acqkit_register_strategies,
        "labeler": pm.hook.acqkit_register_labelers,
        "refiner": pm.hook.acqkit_register_refiners,
        "task": pm.hook.acqkit_register_tasks,
        "oracle": pm.hook.acqkit_register_oracles,
        "sampler": pm.hook.acqkit_register_samplers,
    }
    for kind, hook in hooks.items():
        table = reg.components.setdefault(kind, {})
        for impl in hook.get_hookimpls():
            plugin = impl.plugin
            package = _package_of(pm, plugin)

            def register(name, factory, _kind=kind, _table=table, _pkg=package, _plugin=impl.plugin_name):
                if name in _table:
                    other = _table[name]
                    raise ComponentError(
                        f"{_kind} {name!r} registered twice: by {other.package} ({other.plugin}) "
                        f"and by {_pkg} ({_plugin})"
                    )
                _table[name] = Component(name, _kind, factory, _pkg, _plugin)

            try:
                impl.function(**{a: register for a in impl.argnames})
            except ComponentError:
                raise
            except Exception as exc:  # a broken plugin must name itself
                raise ComponentError(
                    f"plugin {impl.plugin_name!r} from package {package} failed while registering "
                    f"{kind}s: {type(exc).__name__}: {exc}"
                ) from exc
    return reg


_default: Registry | None = None
_building: ContextVar[Registry | None] = ContextVar("acqkit_building", default=None)


def registry(refresh: bool = False) -> Registry:
    """The registry of installed plugins (built once per process)."""
    global _default
    if _default is None or refresh:
        _default = collect(make_manager())
    return _default


def build(kind: str, spec: str, **context):
    """Build a component from inside another's factory (a task building its oracle).

    Uses the registry that is building the caller, so a test's or a session's own
    registry is honoured; outside any build, the installed plugins.
    """
    return (_building.get() or registry()).build(kind, spec, **context)
