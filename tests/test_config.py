"""The config is the single source: flags come from its fields, files round-trip, flags override files."""
from dataclasses import fields

import pytest
from click.testing import CliRunner

from acqkit.cli import cli, compare, run
from acqkit.cli.options import NOT_GENERATED, compare_config, flag, show
from acqkit.config import CompareConfig, RunConfig, from_preset, load_compare, preset, to_toml
from acqkit.errors import ConfigError
from acqkit.round.train import TrainConfig
from kill_helpers import CONFIG


def opts(command) -> set[str]:
    return {o for p in command.params for o in p.opts + p.secondary_opts}


def parsed(args: list[str]):
    """``acqkit compare ARGS`` parsed by click as the command would be (nothing runs)."""
    return compare.make_context("compare", args)


def grid(ctx) -> CompareConfig:
    p = ctx.params
    return compare_config(ctx, p["preset"], p["strategies"], p["seeds"], p["config_file"],
                          {f.name: p[f.name] for f in fields(RunConfig) if f.name in p})


def test_every_config_field_is_a_flag_or_a_documented_exclusion():
    for f in fields(RunConfig):
        assert f.metadata["help"], f"RunConfig.{f.name} has no help text"
        if f.name not in NOT_GENERATED:
            assert flag(f.name) in opts(run) and flag(f.name) in opts(compare), f.name
    assert {"--strategy", "--seed"} <= opts(run) and {"--strategies", "--seeds"} <= opts(compare)
    assert set(NOT_GENERATED) == {"strategy", "seed", "trust_remote_code"}
    assert "--trust-remote-code" not in opts(compare) | opts(run)  # a config-file decision (docs/gpus.md)


def test_help_shows_each_fields_default_and_what_a_preset_changes():
    ctx = compare.make_context("compare", [])
    records = {p.name: p.get_help_record(ctx)[1] for p in compare.params}
    for f in fields(RunConfig):
        if f.name not in NOT_GENERATED:
            assert f"[default: {show(f, f.default)}" in records[f.name], f.name
    assert "[default: 64]" in records["gen_batch_size"]
    assert "[default: 12; --preset smoke: 32]" in records["budget"]
    assert "3.3% of the budget" in records["seed_labels"] and "smoke: 16" in records["seed_labels"]
    out = CliRunner().invoke(cli, ["compare", "--help"], terminal_width=200).output
    assert "--gen-batch-size INTEGER" in out and "[default: 64]" in out


def test_a_preset_keeps_its_seed_labels_only_at_its_own_budget():
    assert preset("default").seed_labels == 12  # `make compare`: budget 12 + 12 warm-start labels
    assert preset("default", budget=12).seed_labels == 12
    assert preset("default", budget=3000).seed_labels == 99  # 3.3%, as --help says
    assert preset("smoke").seed_labels == 16 and preset("smoke", budget=8).seed_labels == 1
    assert preset("default", budget=3000, seed_labels=5).seed_labels == 5
    assert grid(parsed(["--budget", "3000"])).base.seed_labels == 99
    assert grid(parsed([])).base == preset("default")


@pytest.mark.parametrize("overrides", [dict(warm_start_seed=None), dict(warm_start_seed=3, train_layers=2,
                                                                       lora_alpha=8.0)])
def test_a_saved_config_loads_back_equal(tmp_path, overrides):
    ccfg = CompareConfig(base=from_preset("smoke", overrides), strategies=("random", "selfee"), seeds=(0, 4))
    (tmp_path / "config.toml").write_text(to_toml(ccfg))
    assert load_compare(tmp_path / "config.toml") == ccfg


def test_none_is_typed_as_none_on_the_command_line():
    assert grid(parsed(["--warm-start-seed", "none"])).base.warm_start_seed is None
    assert grid(parsed(["--warm-start-seed", "2"])).base.warm_start_seed == 2
    result = CliRunner().invoke(cli, ["compare", "--warm-start-seed", "x"])
    assert result.exit_code == 2 and "'x' is neither an integer nor 'none'" in result.output


def test_typed_flags_override_a_config_file_and_untyped_ones_do_not(tmp_path):
    config = tmp_path / "grid.toml"
    config.write_text(CONFIG)
    file_only = grid(parsed(["--config", str(config)]))
    assert (file_only.base.budget, file_only.base.lr, file_only.strategies) == (8, 0.003, ("smallest-margin",
                                                                                          "apl-certainty(og=2)"))
    both = grid(parsed(["--config", str(config), "--budget", "6", "--no-checkpoint", "--strategies", "random",
                        "--seeds", "0,7"]))
    assert (both.base.budget, both.base.checkpoint, both.strategies, both.seeds) == (6, False, ("random",), (0, 7))
    assert (both.base.lr, both.base.labeler, both.base.seed_labels) == (0.003, "counting-gold", 4)


def test_a_compare_with_config_and_flags_saves_the_result(tmp_path):
    config = tmp_path / "grid.toml"
    config.write_text(CONFIG.replace('"counting-gold"', '"gold"'))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["compare", "--config", str(config), "--budget", "4", "--rounds", "1",
                                      "--strategies", "random", "--seeds", "1", "--kl-samples", "0",
                                      "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    saved = load_compare(out / "config.toml")
    assert (saved.base.budget, saved.base.rounds, saved.base.kl_samples, saved.strategies, saved.seeds) == \
        (4, 1, 0, ("random",), (0,))
    assert (saved.base.lr, saved.base.max_new_tokens) == (0.003, 8)  # the rest from the file


@pytest.mark.parametrize("args, message", [
    (["compare", "--preset", "smoke", "--config", "grid.toml"], "--preset and --config grid.toml both give"),
    (["compare", "--resume", "old", "--budget", "6"], "--resume old continues with its saved config.toml and "
                                                      "cannot change it; drop --budget"),
    (["compare", "--resume", "old", "--config", "grid.toml"], "drop --config"),
    (["run", "--resume", "old", "--strategy", "selfee", "--no-checkpoint"], "drop --strategy, --checkpoint"),
])
def test_flags_that_would_be_ignored_are_refused(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grid.toml").write_text(CONFIG)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and message in result.output
    assert not (tmp_path / "old").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("make, match", [
    (lambda: RunConfig(budget=-1), "config field 'budget' must be >= 0, got -1"),
    (lambda: RunConfig(mixed_precision="fp8"), "config field 'mixed_precision' must be 'no' or 'bf16'"),
    (lambda: RunConfig(train_layers=0), "config field 'train_layers' must be >= 1"),
    (lambda: preset("nope"), "unknown preset 'nope'"),
    (lambda: preset("smoke", bugdet=3), "unknown config field.s. bugdet"),
    (lambda: load_compare("missing.toml"), "missing.toml: no such config file"),
])
def test_config_errors_are_config_errors_naming_the_field_or_file(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_a_config_file_error_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[base]\nbudget = -3\n")
    with pytest.raises(ConfigError, match=f"{path}: config field 'budget' must be >= 0"):
        load_compare(path)
    path.write_text("[base]\nbudget = 'many'\n")
    with pytest.raises(ConfigError, match=f"{path}: "):
        load_compare(path)


@pytest.mark.parametrize("field, value, match", [
    ("lr", 0.0, "'lr' must be > 0"), ("beta", -1.0, "'beta' must be > 0"), ("epochs", 0, "'epochs' must be >= 1"),
    ("batch_size", 0, "'batch_size' must be >= 1"), ("grad_accum", 0, "'grad_accum' must be >= 1"),
    ("warmup", 1.5, "'warmup' must be a fraction"), ("max_grad_norm", -1.0, "'max_grad_norm' must be >= 0"),
    ("train_layers", 0, "'train_layers' must be >= 1"),  # precision is the model's (acqkit.models.precision)
])
def test_train_config_validates_its_fields(field, value, match):
    TrainConfig(**{field: TrainConfig.__dataclass_fields__[field].default})  # the default is fine
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**{field: value})
