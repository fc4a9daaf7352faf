"""The plugin manager and the registries of named components.

Built-in components are loaded exactly like third-party ones: from the
``acqkit`` entry-point group. ``ACQKIT_BLOCK_PLUGINS`` (comma-separated
plugin names) switches entry-point plugins off. A plugin that fails to import
or to register is set aside with a one-line warning naming it and its package;
the others keep working, ``acqkit plugins`` lists it as broken, and asking for
a component by a name only it could provide repeats its error.

Hooks are called through pluggy (``pm.hook``), once per plugin, so every
component is filed under the plugin and package that registered it, each
implementation receives only the arguments it names, and hook wrappers and
call monitors see every call.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import re
import sys
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

import pluggy

from acqkit import hookspecs
from acqkit.errors import AcqkitError, ComponentError, PluginError, UnknownComponent  # noqa: F401 (re-exported)
from acqkit.guard import OUTPUT_CHECKS, Guarded, raised_at

KINDS = ("strategy", "labeler", "refiner", "task", "oracle", "sampler", "tracker")
PLURAL = {"strategy": "strategies"}
HOOKS = {kind: f"acqkit_register_{plural}" for kind, plural in
         (("strategy", "strategies"), ("labeler", "labelers"), ("refiner", "refiners"), ("task", "tasks"),
          ("oracle", "oracles"), ("sampler", "samplers"), ("tracker", "trackers"))}
log = logging.getLogger("acqkit.plugins")


def plural(kind: str) -> str:
    return PLURAL.get(kind, kind + "s")


@dataclass
class Component:
    name: str
    kind: str
    factory: Callable[..., Any]
    package: str
    plugin: str
    roots: tuple[str, ...] = ()  # where the plugin's code lives: its frames in a traceback are the ones to show


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin set aside because it raised while loading or registering."""

    name: str
    package: str
    error: str  # what it raised, where: "failed to import: ModuleNotFoundError: ... (at file.py:3)"

    def message(self) -> str:
        return (f"plugin {self.name!r} from package {self.package} is broken and was skipped: {self.error}. "
                f"Fix or uninstall {self.package}, or switch it off with ACQKIT_BLOCK_PLUGINS={self.name}")


class Manager(pluggy.PluginManager):
    """pluggy's manager, plus what blame needs: each plugin's package, and the plugins set aside as broken."""

    def __init__(self):
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.packages: dict[str, str] = {}  # plugin name -> distribution name
        self.broken: dict[str, BrokenPlugin] = {}

    def load_entry_points(self) -> None:
        """pluggy's ``load_setuptools_entrypoints``, one plugin at a time: one that fails is set aside."""
        for dist in importlib.metadata.distributions():
            for ep in dist.entry_points.select(group=hookspecs.PROJECT):
                if self.has_plugin(ep.name) or self.is_blocked(ep.name) or ep.name in self.broken:
                    continue
                package = dist.metadata["name"]
                try:
                    self.register(ep.load(), name=ep.name)
                except Exception as exc:
                    self.set_aside(ep.name, package, f"entry point {ep.name} = {ep.value} failed to load", exc,
                                   _roots(ep.module))
                else:
                    self.packages[ep.name] = package

    def add(self, plugin) -> None:
        """Register a plugin object (a test's, a module) under a readable, unique name."""
        base = getattr(plugin, "__name__", None) or type(plugin).__name__
        name, n = base, 1
        while self.has_plugin(name) or self.is_blocked(name):
            n += 1
            name = f"{base}#{n}"
        self.register(plugin, name=name)

    def package_of(self, name: str, plugin) -> str:
        return self.packages.get(name) or _module_of(plugin)

    def set_aside(self, name: str, package: str, what: str, exc: BaseException, roots=()) -> None:
        self.set_blocked(name)  # unregisters it, and nothing loads it again
        self.broken[name] = BrokenPlugin(name, package, f"{what}: {type(exc).__name__}: {exc} "
                                                        f"(at {raised_at(exc, roots)})")

    def check_plugins(self) -> None:
        """``check_pending`` that sets aside a plugin implementing a hook acqkit does not have (a typo)."""
        while True:
            try:
                self.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                name = self.get_name(exc.plugin)
                self.set_aside(name, self.package_of(name, exc.plugin), "implements an unknown hook", exc)


def _module_of(plugin) -> str:
    return plugin.__name__ if isinstance(plugin, ModuleType) else getattr(plugin, "__module__", None) or "?"


def _roots(module: str | None) -> tuple[str, ...]:
    """The file, or the top-level package directory, that a module's code lives in."""
    top = (module or "").split(".")[0]
    if not top:
        return ()
    mod = sys.modules.get(top)
    try:
        spec = getattr(mod, "__spec__", None) if mod else importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return ()
    if spec is None:
        file = getattr(mod, "__file__", None)
        return (file,) if file else ()
    if spec.submodule_search_locations:
        return tuple(spec.submodule_search_locations)
    return (spec.origin,) if spec.origin and os.path.exists(spec.origin) else ()


@dataclass
class Registry:
    """Components of every kind, by name, plus the manager that found them and the plugins it set aside."""

    pm: pluggy.PluginManager
    components: dict[str, dict[str, Component]] = field(default_factory=dict)
    broken: dict[str, BrokenPlugin] = field(default_factory=dict)

    def names(self, kind: str) -> list[str]:
        return sorted(self.components.get(kind, {}))

    def get(self, kind: str, name: str) -> Component:
        known = self.components.get(kind, {})
        if name not in known:
            hint = "".join(f"; plugin {b.name!r} from package {b.package} may provide it, but {b.error}"
                           for b in self.broken.values())
            raise UnknownComponent(f"unknown {kind} {name!r}; known {plural(kind)}: "
                                   f"{', '.join(sorted(known)) or '(none)'}{hint}")
        return known[name]

    def describe(self, kind: str, spec: str) -> str:
        """``strategy 'margin(keep=0.5)' (plugin 'margin' from package acqkit)``."""
        comp = self.get(kind, parse_spec(spec)[0])
        return f"{kind} {spec!r} (plugin {comp.plugin!r} from package {comp.package})"

    def build(self, kind: str, spec: str, **context):
        """Build a component from a spec such as ``margin(instance=smallest, keep=0.5)``.

        The one build path: a failure while building, or later in any of the
        component's methods, names the component, its plugin and its package.
        """
        name, options = parse_spec(spec)
        comp = self.get(kind, name)
        who = self.describe(kind, spec)
        token = _building.set(self)  # a factory that builds a component (a task's oracle) sees this registry
        try:
            obj = comp.factory(**context, **options)
        except AcqkitError:
            raise  # names what to fix itself (a task's oracle, a prompt file)
        except (TypeError, ValueError) as exc:
            raise ComponentError(f"{who}: bad options: {exc}") from exc
        except Exception as exc:  # a bug in the factory: say whose
            raise PluginError(f"{who} raised {type(exc).__name__} while being built: {exc} "
                              f"(at {raised_at(exc, comp.roots)})") from exc
        finally:
            _building.reset(token)
        return Guarded(obj, who, comp.roots, OUTPUT_CHECKS.get(kind))


_PATH_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+):(.+)$", re.S)  # name:PATH, options after
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
    options may follow: ``file:my.jsonl(oracle=vader)``. An option's value may be a nested spec:
    ``sentiment(oracle=reward-model(model=M, index=1))``.
    """
    m = _PATH_SPEC.match(spec)
    if m:
        path, args = _trailing_group(spec, m.group(2))
        name, options = m.group(1), _options(spec, args)
        if "path" in options:
            raise ComponentError(f"in {spec!r}: the path is given twice (before the colon and as path=)")
        return name, {"path": path, **options}
    m = _SPEC.match(spec)
    if not m:
        raise ComponentError(f"cannot parse component spec {spec!r}; expected name or name(key=value, ...)")
    return m.group(1), _options(spec, m.group(2))


def _trailing_group(spec: str, text: str) -> tuple[str, str | None]:
    """``PATH(args)`` -> ``(PATH, args)``: the options are the balanced group that ends the spec, so a
    path may hold parentheses (``runs(1)/p.jsonl``) and an option a nested spec."""
    text = text.strip()
    if text.endswith(")"):
        depth = 0
        for i in range(len(text) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(text[i], 0)
            if depth == 0:
                if not text[:i].strip():
                    raise ComponentError(f"in {spec!r}: no path before the options")
                return text[:i].strip(), text[i + 1 : -1]
    return text, None


def _options(spec: str, args: str | None) -> dict[str, Any]:
    """``a=1, oracle=rm(model=x, index=1), f=1|2`` -> options; commas and ``|`` split at the top level only,
    so an option's value may be a whole nested spec (a task's ``oracle``)."""
    options: dict[str, Any] = {}
    if args and args.strip():
        if not _balanced(args):
            raise ComponentError(f"in {spec!r}: unbalanced parentheses in the options {args!r}")
        for part in split_specs(args, keep_empty=True):
            if "=" not in part:
                raise ComponentError(f"in {spec!r}: option {part.strip()!r} is not key=value")
            key, value = part.split("=", 1)
            key = key.strip().replace("-", "_")
            values = split_specs(value, sep="|", keep_empty=True)
            options[key] = [parse_value(v) for v in values] if len(values) > 1 else parse_value(value)
    return options


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def split_specs(text: str, sep: str = ",", keep_empty: bool = False) -> list[str]:
    """Split a comma-separated list of specs, keeping commas inside parentheses (and a report's [tags])."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == sep and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip() or (keep_empty and out):
        out.append(cur.strip())
    return out


def make_manager(load_entrypoints: bool = True, extra_plugins=()) -> Manager:
    pm = Manager()
    blocked = [b.strip() for b in os.environ.get("ACQKIT_BLOCK_PLUGINS", "").split(",") if b.strip()]
    for name in blocked:
        pm.set_blocked(name)
    if load_entrypoints:
        pm.load_entry_points()
    for plugin in extra_plugins:
        pm.add(plugin)
    pm.check_plugins()
    return pm


def collect(pm: pluggy.PluginManager) -> Registry:
    """Ask each plugin, through ``pm.hook``, to register its components.

    A plugin that raises is set aside (its components dropped, a warning
    logged); a name registered twice is an error naming both.
    """
    broken = pm.broken if isinstance(pm, Manager) else {}
    reg = Registry(pm=pm, broken=broken)
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue  # blocked
        package = pm.package_of(name, plugin) if isinstance(pm, Manager) else _module_of(plugin)
        staged: dict[str, dict[str, Component]] = {}
        try:
            for kind, hook in HOOKS.items():
                caller = _only(pm, hook, plugin)
                if caller is not None:
                    caller(register=_register(reg, staged, kind, name, package, _roots(_module_of(plugin))))
        except ComponentError:
            raise  # a duplicate name: which of the two is meant cannot be guessed
        except Exception as exc:  # a broken plugin names itself, and the others keep working
            what = f"failed while registering {plural(kind)}"
            if isinstance(pm, Manager):
                pm.set_aside(name, package, what, exc, _roots(_module_of(plugin)))
            else:
                broken[name] = BrokenPlugin(name, package, f"{what}: {type(exc).__name__}: {exc}")
            continue
        for kind, table in staged.items():
            reg.components.setdefault(kind, {}).update(table)
    for kind in KINDS:
        reg.components.setdefault(kind, {})
    for b in broken.values():
        log.warning("acqkit: %s", b.message())
    return reg


def _only(pm: pluggy.PluginManager, hook: str, plugin):
    """The hook restricted to ``plugin``'s implementation (others' wrappers still see the call); None if it has none."""
    impls = getattr(pm.hook, hook).get_hookimpls()
    if not any(i.plugin is plugin and not (i.hookwrapper or i.wrapper) for i in impls):
        return None
    others = [i.plugin for i in impls if i.plugin is not plugin and not (i.hookwrapper or i.wrapper)]
    return pm.subset_hook_caller(hook, others)


def _register(reg: Registry, staged: dict, kind: str, plugin: str, package: str, roots: tuple):
    """The ``register(name, factory)`` callback one plugin gets for one kind."""

    def register(name, factory):
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"register(name, factory): the name must be a non-empty string, got {name!r}")
        if not callable(factory):
            raise TypeError(f"register({name!r}, factory): the factory must be callable, got {factory!r}")
        table = staged.setdefault(kind, {})
        other = reg.components.get(kind, {}).get(name) or table.get(name)
        if other is not None:
            raise ComponentError(f"{kind} {name!r} registered twice: by {other.package} ({other.plugin}) "
                                 f"and by {package} ({plugin})")
        home = getattr(factory, "__module__", None)  # a plugin may register a class from another of its modules
        extra = _roots(home) if home and home.split(".")[0] != "acqkit" else ()
        table[name] = Component(name, kind, factory, package, plugin, tuple(dict.fromkeys(roots + extra)))

    return register


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
    registry is honoured; outside any build, the installed plugins. The component
    is guarded like any other: an oracle that raises or returns NaN is named.
    """
    return (_building.get() or registry()).build(kind, spec, **context)
