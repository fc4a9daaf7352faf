"""The configuration flags of ``run`` and ``compare``, generated from :class:`RunConfig`.

Every field's help is in its metadata and its default is read from the class,
so ``--help`` shows the real defaults and a new field gets its flag for free.
Only flags the user typed override a preset or a ``--config`` file: each
option defaults to None and the command asks click where a value came from.
"""
from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import click
from click.core import ParameterSource

from acqkit.config import NONE, PRESETS, CompareConfig, RunConfig, from_preset, load_compare
from acqkit.errors import ConfigError
from acqkit.plugins import split_specs

# RunConfig fields without a generated flag, and the flags that set them instead.
NOT_GENERATED = {
    "strategy": "`run --strategy`; `compare --strategies`",
    "seed": "`run --seed`; `compare --seeds`",
    # On purpose (docs/gpus.md, docs/reliability.md): running a model's own code is a decision
    # written in a config file, not a flag picked up from shell history.
    "trust_remote_code": "`trust_remote_code = true` in a `--config` file only",
}
FLAG_FIELDS = [f for f in fields(RunConfig) if f.name not in NOT_GENERATED]
TYPES = {"int": int, "float": float, "str": str, "bool": bool}


class OrNone(click.ParamType):
    """An int or float that also takes the word ``none``: the field's None (``--warm-start-seed none``)."""

    def __init__(self, base: type):
        self.base, self.name = base, f"{base.__name__.upper()}|none"

    def convert(self, value, param, ctx):
        if value is None or (isinstance(value, str) and value.strip().lower() == NONE):
            return None
        try:
            return self.base(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither {'an integer' if self.base is int else 'a number'} nor 'none'",
                      param, ctx)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def show(f, value) -> str:
    """A value as the user would type it."""
    if value is None:
        return f.metadata["none"]
    if isinstance(value, bool):
        return flag(f.name) if value else "--no-" + flag(f.name)[2:]
    return repr(value) if value == "" else str(value)


def help_text(f) -> str:
    """The field's help, its default, and what each preset changes it to."""
    text = f.metadata["help"]
    if f.metadata["none"] and f.default is not None:
        text += f" (none = {f.metadata['none']})"
    presets = ", ".join(f"{name}: {show(f, values[f.name])}" for name, values in PRESETS.items()
                        if values.get(f.name, f.default) != f.default)
    return f"{text}  [default: {show(f, f.default)}" + (f"; --preset {presets}]" if presets else "]")


def config_options(func):
    """Add one flag per user-facing RunConfig field, plus ``--preset`` and ``--quiet``."""
    for f in reversed(FLAG_FIELDS):
        base = TYPES[str(f.type).replace(" | None", "")]
        if base is bool:
            decl = f"{flag(f.name)}/--no-{flag(f.name)[2:]}"
            func = click.option(decl, f.name, default=None, help=help_text(f))(func)
        else:
            typ = OrNone(base) if "None" in str(f.type) else base
            func = click.option(flag(f.name), f.name, type=typ, default=None, help=help_text(f))(func)
    func = click.option("--preset", type=click.Choice(sorted(PRESETS)), default="default", show_default=True,
                        help="starting configuration; flags override it")(func)
    func = click.option("--quiet", is_flag=True, help="no progress display")(func)
    return func


def typed(ctx: click.Context, names) -> list[str]:
    """The parameters among ``names`` that the user gave on the command line (or through the environment)."""
    return [n for n in names if ctx.get_parameter_source(n) in (ParameterSource.COMMANDLINE,
                                                                 ParameterSource.ENVIRONMENT)]


def given(ctx: click.Context, values: dict) -> dict:
    """The config fields the user typed, with their values (None for ``none``)."""
    return {name: values[name] for name in typed(ctx, values)}


def refuse_with_resume(ctx: click.Context, names, resume_dir: Path) -> None:
    """``--resume`` continues with the saved config; a typed flag would be silently ignored, so say so."""
    opts = {p.name: p.opts[0] for p in ctx.command.params}
    extra = [opts[n] for n in typed(ctx, names)]
    if extra:
        hint = (f" (--config {resume_dir / 'config.toml'} takes the saved fields as a starting point)"
                if "config_file" in opts else "")
        raise ConfigError(f"--resume {resume_dir} continues with its saved config.toml and cannot change it; "
                          f"drop {', '.join(extra)}, or start anew in another directory{hint}")


def parse_seeds(text: str) -> tuple[int, ...]:
    """``3`` means seeds 0, 1, 2; ``0,5,9`` is an explicit list."""
    parts = [p for p in text.split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise click.BadParameter(f"expected a count or a comma-separated list of integers, got {text!r}")
    if len(values) == 1:
        if values[0] < 1:
            raise click.BadParameter("the number of seeds must be >= 1")
        return tuple(range(values[0]))
    return tuple(values)


def compare_config(ctx: click.Context, preset: str, strategies: str, seeds: str, config_file: Path | None,
                   overrides: dict) -> CompareConfig:
    """The grid from a preset or a ``--config`` file, with the typed flags on top (saved as run)."""
    fields_given = given(ctx, overrides)
    if config_file is None:
        return CompareConfig(base=from_preset(preset, fields_given), strategies=tuple(split_specs(strategies)),
                             seeds=parse_seeds(seeds))
    if typed(ctx, ["preset"]):
        raise ConfigError(f"--preset and --config {config_file} both give the starting configuration; use one "
                          f"(flags override either)")
    ccfg = load_compare(config_file, fields_given)
    if typed(ctx, ["strategies"]):
        ccfg = replace(ccfg, strategies=tuple(split_specs(strategies)))
    if typed(ctx, ["seeds"]):
        ccfg = replace(ccfg, seeds=parse_seeds(seeds))
    return ccfg
