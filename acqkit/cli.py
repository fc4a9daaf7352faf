"""The ``acqkit`` command line: run, compare, plugins."""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import fields
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import progress as progress_mod
from .config import PRESETS, CompareConfig, RunConfig, preset
from .hookspecs import API_VERSION
from .plugins import KINDS, ComponentError, UnknownComponent, registry, split_specs
from .report import rich_table, summarize

console = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True)

# Config fields settable from the command line, with the option's help.
OPTIONS = {
    "model": "tiny | smollm2 | a Hugging Face model id | a local model directory",
    "task": "task name (see `acqkit plugins`)",
    "labeler": "labeler name",
    "refiner": "refiner name",
    "rounds": "online rounds",
    "budget": "labels over all online rounds",
    "schedule": "constant | increase | decrease | fractions like 1/6,2/6,3/6",
    "seed_labels": "gold labels for the shared warm-start stage (0 = none)",
    "n_responses": "responses sampled per prompt",
    "max_new_tokens": "maximum response length in tokens",
    "beta": "DPO beta",
    "lr": "learning rate",
    "epochs": "DPO epochs per round",
    "batch_size": "pairs per optimizer step",
    "eval_prompts": "held-out prompts for evaluation",
    "kl_samples": "samples per eval prompt for the KL estimate (0 = skip)",
}
TYPES = {f.name: f.type for f in fields(RunConfig)}


def config_options(func):
    for name, help_text in reversed(OPTIONS.items()):
        typ = {"int": int, "float": float, "str": str}[TYPES[name] if isinstance(TYPES[name], str)
                                                       else TYPES[name].__name__]
        func = click.option("--" + name.replace("_", "-"), name, type=typ, default=None, help=help_text)(func)
    func = click.option("--preset", type=click.Choice(sorted(PRESETS)), default="default", show_default=True,
                        help="starting configuration; flags override it")(func)
    func = click.option("--quiet", is_flag=True, help="no progress display")(func)
    return func


@contextlib.contextmanager
def progress_display(quiet: bool):
    if quiet or not err.is_terminal:
        yield None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=True) as prog, progress_mod.use(prog):
        yield prog


def user_errors(func):
    """Turn acqkit's input errors into clean CLI messages (no traceback)."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (UnknownComponent, ComponentError, FileNotFoundError, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc
    return wrapper


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


@click.group()
@click.version_option(package_name="acqkit")
def cli():
    """acqkit: choose which preference pairs are worth a label, and prove it."""


@cli.command()
@config_options
@click.option("--strategy", default="random", show_default=True, help="acquisition strategy spec")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/run"), show_default=True)
@user_errors
def run(preset: str, quiet: bool, strategy: str, seed: int, out: Path, **overrides):
    """Run one strategy for a few rounds and print its metrics per round."""
    from .loop import run as run_loop

    cfg = _preset(preset, strategy=strategy, seed=seed, **overrides)
    registry().build("strategy", cfg.strategy)
    t0 = time.perf_counter()
    with progress_display(quiet):
        results = run_loop(cfg, out=out)
    console.print(results.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    console.print(f"[dim]{time.perf_counter() - t0:.0f}s; results in {out / 'results.csv'}[/dim]")


@cli.command()
@config_options
@click.option("--strategies", default="random,smallest-margin", show_default=True,
              help="comma-separated strategy specs, e.g. 'random,margin(instance=smallest, corpus=smallest)'")
@click.option("--seeds", default="3", show_default=True, help="a count (3 = seeds 0,1,2) or a list (0,5,9)")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/compare"), show_default=True)
@user_errors
def compare(preset: str, quiet: bool, strategies: str, seeds: str, out: Path, **overrides):
    """Compare strategies x seeds under the same task and annotation budget."""
    from .compare import compare as compare_grid

    base = _preset(preset, **overrides)
    ccfg = CompareConfig(base=base, strategies=tuple(split_specs(strategies)), seeds=parse_seeds(seeds))
    n = len(ccfg.runs())
    t0 = time.perf_counter()

    def done(cfg, results, elapsed):
        if quiet:
            return
        err.print(f"[green]done[/green] {cfg.strategy} seed {cfg.seed} "
                  f"({len(results.groupby(['strategy', 'seed']))}/{n}, {elapsed:.0f}s)")

    with progress_display(quiet):
        results = compare_grid(ccfg, out, on_run_done=done)
    title = (f"{base.task} on {base.model}: {base.rounds} round(s), budget {base.budget} "
             f"+ {base.seed_labels} warm-start labels, {len(ccfg.seeds)} seeds")
    console.print(rich_table(summarize(results), title))
    console.print(f"[dim]wall time {time.perf_counter() - t0:.0f}s; per-round rows in {out / 'results.csv'}[/dim]")


@cli.command(name="plugins")
def plugins_cmd():
    """List every registered component with its kind and providing package."""
    reg = registry()
    from rich.table import Table

    table = Table(title=f"acqkit plugins (plugin API {API_VERSION})")
    for col in ("name", "kind", "package", "plugin"):
        table.add_column(col)
    for kind in KINDS:
        for name in reg.names(kind):
            comp = reg.get(kind, name)
            table.add_row(name, kind, comp.package, comp.plugin)
    console.print(table)


def _preset(name: str, **overrides) -> RunConfig:
    return preset(name, **{k: v for k, v in overrides.items() if v is not None})


def main():
    cli(prog_name="acqkit")


if __name__ == "__main__":
    sys.exit(main())
