"""Plugins load through entry points; hooks go through pluggy; names are checked; broken plugins name themselves."""
import ast
import inspect
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from acqkit import Oracle, Strategy, hookimpl
from acqkit.cli import cli
from acqkit.errors import ConfigError, PluginError, PluginOutputError
from acqkit.plugins import (HOOKS, KINDS, ComponentError, UnknownComponent, collect, make_manager, parse_spec,
                            registry, split_specs)

BUILTIN_MODULES = {"acqkit_plugins.margin", "acqkit_plugins.apl", "acqkit_plugins.gold",
                   "acqkit_plugins.no_refiner", "acqkit_plugins.sentiment"}
ROOT = Path(__file__).resolve().parents[1]


def test_builtins_come_from_entry_points_of_the_acqkit_distribution(monkeypatch):
    pm = make_manager()
    modules = {pm.get_plugin(name).__name__: package for name, package in pm.packages.items()}
    assert BUILTIN_MODULES <= set(modules)
    assert {modules[m] for m in BUILTIN_MODULES} == {"acqkit"}
    assert all(registry().names(kind) for kind in KINDS)
    # ...and nothing else feeds the registry: with every built-in entry point blocked, no kind has a component.
    builtin = [ep.name for ep in entry_points(group="acqkit") if ep.value.startswith("acqkit_plugins.")]
    monkeypatch.setenv("ACQKIT_BLOCK_PLUGINS", ",".join(builtin))
    blocked = collect(make_manager())
    assert {kind: blocked.names(kind) for kind in KINDS} == {kind: [] for kind in KINDS}


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
        register("half-done", Strategy)
        raise RuntimeError("boom")


def test_duplicate_names_are_an_error_naming_both():
    with pytest.raises(ComponentError, match=r"strategy 'random' registered twice: by acqkit \(margin\) "
                                             r"and by test_plugins \(Dup\)"):
        collect(make_manager(extra_plugins=[Dup()]))


def test_a_plugin_failing_while_registering_names_itself_and_the_others_keep_working(caplog):
    reg = collect(make_manager(extra_plugins=[Broken()]))
    line = inspect.getsourcelines(Broken.acqkit_register_labelers)[1] + 3
    message = (f"plugin 'Broken' from package test_plugins is broken and was skipped: failed while registering "
               f"labelers: RuntimeError: boom (at {__file__}:{line}). Fix or uninstall test_plugins, or switch it "
               "off with ACQKIT_BLOCK_PLUGINS=Broken")
    assert reg.broken["Broken"].message() == message
    assert [r.getMessage() for r in caplog.records] == [f"acqkit: {message}"]
    assert "half-done" not in reg.names("labeler") and "gold" in reg.names("labeler")  # all or nothing


def write_plugin(site: Path, package: str, entry: str, module: str, code: str) -> None:
    """A distribution with an ``acqkit`` entry point, as pip would install it."""
    info = site / f"{package.replace('-', '_')}-0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text(f"[acqkit]\n{entry} = {module}\n")
    (site / f"{module}.py").write_text(code)


BROKEN_AT_IMPORT = "import acqkit\n\nimport no_such_module_for_acqkit  # line 3\n"
BROKEN_AT_REGISTER = """from acqkit import Strategy, hookimpl


@hookimpl
def acqkit_register_strategies(register):
    register("flaky", Strategy)
    raise OSError("the license server is down")  # line 7
"""


@pytest.fixture
def broken_site(tmp_path):
    site = tmp_path / "site"
    write_plugin(site, "acqkit-broken", "broken", "acqkit_broken", BROKEN_AT_IMPORT)
    write_plugin(site, "acqkit-flaky", "flaky", "acqkit_flaky", BROKEN_AT_REGISTER)
    return site


def test_a_plugin_that_fails_to_import_is_set_aside_with_one_line_and_the_others_work(broken_site, monkeypatch,
                                                                                     caplog):
    monkeypatch.syspath_prepend(str(broken_site))
    reg = collect(make_manager())
    assert set(reg.broken) == {"broken", "flaky"}
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and all("\n" not in s for s in said)
    assert (f"acqkit: plugin 'broken' from package acqkit-broken is broken and was skipped: entry point broken = "
            f"acqkit_broken failed to load: ModuleNotFoundError: No module named 'no_such_module_for_acqkit' "
            f"(at {broken_site / 'acqkit_broken.py'}:3). Fix or uninstall acqkit-broken, or switch it off with "
            "ACQKIT_BLOCK_PLUGINS=broken") in said
    assert (f"failed while registering strategies: OSError: the license server is down "
            f"(at {broken_site / 'acqkit_flaky.py'}:7)") in reg.broken["flaky"].error
    assert "gold" in reg.names("labeler") and "flaky" not in reg.names("strategy")
    with pytest.raises(UnknownComponent, match=r"unknown strategy 'flaky'; known strategies: .*; plugin 'flaky' "
                                               r"from package acqkit-flaky may provide it, but failed while "
                                               r"registering strategies: OSError: the license server is down"):
        reg.build("strategy", "flaky")


def test_acqkit_plugins_lists_broken_plugins_and_every_command_still_works(broken_site):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(broken_site), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "acqkit", "plugins"], capture_output=True, text=True, env=env,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 2 and all(line.startswith("acqkit: plugin '") for line in errors), result.stderr
    assert any("'broken' from package acqkit-broken" in line and "ACQKIT_BLOCK_PLUGINS=broken" in line
               for line in errors)
    out = " ".join(result.stdout.split())
    assert "gold" in out and "broken: plugin 'broken' from package acqkit-broken is broken and was skipped" in out
    assert "broken: plugin 'flaky' from package acqkit-flaky is broken" in out


def test_hooks_are_called_through_pluggy_once_per_plugin():
    """A monitor (tracing) and a wrapper see every registration call, each made with keyword arguments."""
    seen, wrapped = [], []

    class Wrapper:
        @hookimpl(wrapper=True)
        def acqkit_register_strategies(self, register):
            wrapped.append(register)
            return (yield)

    pm = make_manager(extra_plugins=[Wrapper()])
    pm.add_hookcall_monitoring(lambda name, impls, kwargs: seen.append((name, sorted(kwargs), len(impls))),
                               lambda outcome, name, impls, kwargs: None)
    reg = collect(pm)
    strategy_plugins = {c.plugin for c in reg.components["strategy"].values()}
    calls = [s for s in seen if s[0] == HOOKS["strategy"]]
    assert len(calls) == len(strategy_plugins) == len(wrapped) >= 2  # margin, apl, selfee: one call each
    assert {tuple(args) for _, args, _ in seen} == {("register",)}
    assert all(n == 2 for _, _, n in calls)  # the plugin's own implementation plus the wrapper
    assert {name for name, _, _ in seen} == {HOOKS[k] for k in KINDS}


class Boom(Oracle):
    def reward(self, prompts, responses):
        return pd.DataFrame({"x": [1]}).loc[:, "no-such-column"]  # a KeyError deep inside pandas


class NaNOracle(Oracle):
    def reward(self, prompts, responses):
        return np.full(len(responses), np.nan)


def not_built():
    raise KeyError("api_key")


class Oracles:
    @hookimpl
    def acqkit_register_oracles(self, register):
        register("boom", Boom)
        register("all-nan", NaNOracle)
        register("unbuildable", not_built)


@pytest.fixture(scope="module")
def with_oracles():
    return collect(make_manager(extra_plugins=[Oracles()]))


def test_an_outside_oracle_is_blamed_not_its_task(with_oracles):
    who = r"oracle 'unbuildable' \(plugin 'Oracles' from package test_plugins\)"
    with pytest.raises(PluginError, match=f"^{who} raised KeyError while being built: 'api_key' "
                                          rf"\(at {__file__}:\d+\)"):
        with_oracles.build("task", "sentiment(oracle=unbuildable)")
    task = with_oracles.build("task", "sentiment(oracle=boom)")
    line = inspect.getsourcelines(Boom.reward)[1] + 1
    with pytest.raises(PluginError, match=r"^oracle 'boom' \(plugin 'Oracles' from package test_plugins\) raised "
                                          rf"KeyError in reward\(\): 'no-such-column' \(at {__file__}:{line}\)$"):
        task.gold_reward(task.eval_prompts()[:1], ["a fine film"])


def test_an_oracle_returning_nan_is_named_before_any_label_is_made(with_oracles):
    task = with_oracles.build("task", "sentiment(oracle=all-nan)")
    who = r"oracle 'all-nan' \(plugin 'Oracles' from package test_plugins\)"
    with pytest.raises(PluginOutputError, match=f"^{who} returned 2 NaN or infinite reward\\(s\\) from "
                                                r"reward\(\): \[nan, nan\]"):
        task.gold_reward(task.eval_prompts()[:2], ["good", "bad"])


def test_guard_does_not_import_the_registry():
    tree = ast.parse((ROOT / "acqkit" / "guard.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "acqkit.plugins" not in imported and "acqkit" not in imported


def test_the_cli_prints_acqkit_errors_on_one_line_and_lets_bugs_show_their_traceback(monkeypatch, tmp_path):
    def fails(exc):
        def load_many(*args, **kwargs):
            raise exc
        return load_many

    monkeypatch.setattr("acqkit.cli.load_many", fails(ConfigError("config field 'x': fix me")))
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 1 and result.output == "Error: config field 'x': fix me\n"
    monkeypatch.setattr("acqkit.cli.load_many", fails(ValueError("a bug in acqkit")))
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert type(result.exception) is ValueError  # not turned into a one-line message: python prints the traceback
    assert "Error:" not in result.output


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


def test_bad_options_name_the_component_plugin_and_package():
    with pytest.raises(ComponentError, match=r"strategy 'margin\(colour=red\)' \(plugin 'margin' from package "
                                             r"acqkit\): bad options: .*colour"):
        registry().build("strategy", "margin(colour=red)")
    with pytest.raises(ComponentError, match=r"strategy 'margin\(keep=2\)' \(plugin 'margin' from package acqkit\): "
                                             r"bad options: keep must be a fraction in \(0, 1\]"):
        registry().build("strategy", "margin(keep=2)")
