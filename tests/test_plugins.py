"""Plugins load through entry points; names are checked; broken plugins name themselves."""
import pytest

from acqkit import Strategy, hookimpl
from acqkit.plugins import ComponentError, UnknownComponent, collect, make_manager, parse_spec, registry, split_specs

BUILTIN_MODULES = {"acqkit_plugins.margin", "acqkit_plugins.apl", "acqkit_plugins.gold",
                   "acqkit_plugins.no_refiner", "acqkit_plugins.sentiment"}


def test_builtins_come_from_entry_points_of_the_acqkit_distribution():
    pm = make_manager()
    from_entry_points = {plugin.__name__: dist.project_name for plugin, dist in pm.list_plugin_distinfo()}
    assert BUILTIN_MODULES <= set(from_entry_points)
    assert {from_entry_points[m] for m in BUILTIN_MODULES} == {"acqkit"}
    # ...and nothing else feeds the registry: with entry points off, it is empty.
    empty = collect(make_manager(load_entrypoints=False))
    assert all(not empty.names(kind) for kind in ("strategy", "labeler", "refiner", "task"))


def test_registry_lists_the_builtins_with_their_package():
    reg = registry()
    assert {"random", "smallest-margin"} <= set(reg.names("strategy"))
    assert reg.get("labeler", "gold").package == "acqkit"
    assert reg.get("task", "sentiment").package == "acqkit"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownComponent, match="known strategies: .*random.*smallest-margin"):
        registry().get("strategy", "no-such-thing")


def test_blocking_a_plugin_by_environment(monkeypatch):
    monkeypatch.setenv("ACQKIT_BLOCK_PLUGINS", "gold")
    reg = collect(make_manager())
    assert "gold" not in reg.names("labeler") and "random" in reg.names("strategy")


class Dup:
    @hookimpl
    def acqkit_register_strategies(self, register):
        register("random", Strategy)


class Broken:
    @hookimpl
    def acqkit_register_labelers(self, register):
        raise RuntimeError("boom")


def test_duplicate_names_are_an_error_naming_both():
    with pytest.raises(ComponentError, match="registered twice.*acqkit"):
        collect(make_manager(extra_plugins=[Dup()]))


def test_a_failing_plugin_names_itself():
    with pytest.raises(ComponentError, match="Broken.*boom|boom"):
        collect(make_manager(extra_plugins=[Broken()]))


def test_parse_spec():
    assert parse_spec("random") == ("random", {})
    assert parse_spec("margin(instance=smallest, corpus=largest, keep=0.25, normalize=true)") == (
        "margin", {"instance": "smallest", "corpus": "largest", "keep": 0.25, "normalize": True})
    assert parse_spec("x(f=1|2|3)") == ("x", {"f": [1, 2, 3]})
    with pytest.raises(ComponentError):
        parse_spec("margin(instance)")


def test_split_specs_keeps_commas_inside_parentheses():
    assert split_specs("random, margin(instance=smallest, corpus=smallest),apl-hybrid") == [
        "random", "margin(instance=smallest, corpus=smallest)", "apl-hybrid"]


def test_bad_options_name_the_component_and_package():
    with pytest.raises(ComponentError, match="strategy 'margin\\(colour=red\\)' \\(from package acqkit\\)"):
        registry().build("strategy", "margin(colour=red)")
