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

from . import labels_cli, progress as progress_mod
from .config import PRESETS, CompareConfig, RunConfig, preset
from .hookspecs import API_VERSION
from .plugins import KINDS, ComponentError, PluginError, UnknownComponent, registry, split_specs
from .distributed import is_main
from .report import load_many, markdown_table, rich_table, select, summarize, title as report_title

console = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True)

# Config fields settable from the command line, with the option's help.
OPTIONS = {
    "model": "tiny | smollm2 | a Hugging Face model id | a local model directory",
    "task": "task name (see `acqkit plugins`), or your prompts: file:PATH (.jsonl, .csv, .parquet)",
    "labeler": "labeler name",
    "refiner": "refiner name",
    "rounds": "online rounds",
    "budget": "labels over all online rounds",
    "schedule": "constant | increase | decrease | fractions like 1/6,2/6,3/6",
    "seed_labels": "gold labels for the shared warm-start stage (0 = none; default 3.3% of the budget)",
    "n_responses": "responses sampled per prompt",
    "max_new_tokens": "maximum response length in tokens",
    "sampler": "generation backend (see `acqkit plugins`; default hf = transformers generate)",
    "beta": "DPO beta",
    "lr": "learning rate",
    "epochs": "DPO epochs per round",
    "batch_size": "pairs per micro-batch",
    "grad_accum": "micro-batches per optimizer step",
    "train_layers": "train only the last k transformer blocks (default: all)",
    "mixed_precision": "no | bf16 (GPU only)",
    "lora_rank": "train only LoRA adapters of this rank (0 = off; needs acqkit[lora])",
    "lora_alpha": "LoRA alpha (default 2 x rank)",
    "lora_dropout": "LoRA dropout (default 0)",
    "lora_targets": "modules that get adapters: comma-separated names or all-linear (default: Llama projections)",
    "eval_prompts": "held-out prompts for evaluation",
    "kl_samples": "samples per eval prompt for the KL estimate (0 = skip)",
    "ref_cache": "off | exact: score each response once per session under the reference (batch of one)",
}
TYPES = {f.name: f.type for f in fields(RunConfig)}


def config_options(func):
    for name, help_text in reversed(OPTIONS.items()):
        typ = {"int": int, "float": float, "str": str}[str(TYPES[name]).replace(" | None", "")]
        func = click.option("--" + name.replace("_", "-"), name, type=typ, default=None, help=help_text)(func)
    func = click.option("--preset", type=click.Choice(sorted(PRESETS)), default="default", show_default=True,
                        help="starting configuration; flags override it")(func)
    func = click.option("--quiet", is_flag=True, help="no progress display")(func)
    return func


@contextlib.contextmanager
def progress_display(quiet: bool):
    if quiet or not err.is_terminal or not is_main():  # several processes: the main one reports
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
        except (UnknownComponent, ComponentError, FileNotFoundError, ValueError, PluginError) as exc:
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


COMPLETION = """Shell completion: add one line to your shell's startup file (docs/cli.md).

\b
  bash  eval "$(_ACQKIT_COMPLETE=bash_source acqkit)"      (~/.bashrc)
  zsh   eval "$(_ACQKIT_COMPLETE=zsh_source acqkit)"       (~/.zshrc)
  fish  _ACQKIT_COMPLETE=fish_source acqkit | source    (~/.config/fish/completions/acqkit.fish)
"""


@click.group(epilog=COMPLETION)
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
@click.option("--config", "config_file", type=click.Path(path_type=Path),
              help="a TOML file with strategies, seeds and [base] fields (flags are ignored)")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path),
              help="continue an interrupted comparison in this directory, with its saved config")
@click.option("--show-rounds", type=click.Choice(["final", "all"]), default="final", show_default=True,
              help="rounds in the summary table")
@click.option("--baseline", default="random", show_default=True, help="strategy the paired differences are to")
@user_errors
def compare(preset: str, quiet: bool, strategies: str, seeds: str, out: Path, config_file, resume_dir,
            show_rounds: str, baseline: str, **overrides):
    """Compare strategies x seeds under the same task and annotation budget."""
    from .compare import compare as compare_grid
    from .config import load_compare

    if resume_dir:
        ccfg, out = load_compare(resume_dir / "config.toml"), resume_dir
    elif config_file:
        ccfg = load_compare(config_file)
    else:
        ccfg = CompareConfig(base=_preset(preset, **overrides), strategies=tuple(split_specs(strategies)),
                             seeds=parse_seeds(seeds))
    n = len(ccfg.runs())
    t0 = time.perf_counter()

    def done(cfg, results, elapsed):
        if quiet or not is_main():
            return
        err.print(f"[green]done[/green] {cfg.strategy} seed {cfg.seed} "
                  f"({len(results.groupby(['strategy', 'seed']))}/{n}, {elapsed:.0f}s)")

    with progress_display(quiet):
        compare_grid(ccfg, out, on_run_done=done, resume=bool(resume_dir))
    if not is_main():
        return  # the main process writes the results and prints the table
    show_report([out], show_rounds, baseline)
    console.print(f"[dim]wall time {time.perf_counter() - t0:.0f}s; per-round rows in {out / 'results.csv'}[/dim]")


@cli.command()
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--rounds", type=click.Choice(["final", "all"]), default="final", show_default=True,
              help="rounds in the summary table")
@click.option("--baseline", default="random", show_default=True, help="strategy the paired differences are to")
@click.option("--strategies", default=None,
              help="only these strategies, in this order (comma-separated names as the table shows them)")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="directory for the PNG plots (default: the run directory; none for several unless given)")
@click.option("--markdown", is_flag=True, help="print the table as GitHub markdown")
@user_errors
def report(run_dirs: tuple[Path, ...], rounds: str, baseline: str, strategies: str | None, plots_dir: Path | None,
           markdown: bool):
    """Re-render the table and plots of a comparison from its results file alone (no models).

    Several RUN_DIRs make one table: each strategy is tagged with the config fields that differ
    between the directories, e.g. three budget schedules of one strategy side by side.
    """
    show_report(list(run_dirs), rounds, baseline, markdown, split_specs(strategies) if strategies else None,
                plots_dir)


def show_report(run_dirs: list[Path], rounds: str, baseline: str, markdown: bool = False,
                strategies: list[str] | None = None, plots_dir: Path | None = None) -> None:
    """The one rendering path for `compare` and `report`, so both print the same table."""
    from .plots import write_plots

    results, config, files = load_many(run_dirs)
    results = select(results, strategies)
    title = report_title(results, config, rounds)
    summary = summarize(results, rounds, baseline)
    if markdown:
        click.echo(markdown_table(summary, title, baseline))
    else:
        console.print(rich_table(summary, title, baseline))
    plots_dir = plots_dir or (files[0].parent if len(files) == 1 else None)
    if plots_dir is None:
        console.print("[dim]plots: none (give --plots DIR to draw several run directories together)[/dim]")
        return
    plots_dir.mkdir(parents=True, exist_ok=True)
    pngs = write_plots(results, plots_dir)
    console.print(f"[dim]plots: {', '.join(str(p) for p in pngs)}[/dim]")


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


cli.add_command(labels_cli.labels)


def main():
    cli(prog_name="acqkit")


if __name__ == "__main__":
    sys.exit(main())
