"""The ``acqkit`` command line: run, compare, plugins."""
from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from acqkit import progress as progress_mod
from acqkit.cli import labels as labels_cli
from acqkit.cli.options import compare_config, config_options, given, refuse_with_resume
from acqkit.config import from_preset
from acqkit.hookspecs import API_VERSION
from acqkit.errors import AcqkitError
from acqkit.plugins import KINDS, registry, split_specs
from acqkit.distributed import is_main
from acqkit.report.summary import (load_many, markdown_table, rich_table, select, summarize, title as report_title,
                                   write_summary)

console = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True)


def print_wide(table) -> None:
    """Print a table whole: in a log or a pipe (no terminal to fit), widen the page rather than crop columns."""
    if console.is_terminal:
        return console.print(table)
    from rich.measure import Measurement

    natural = Measurement.get(console, console.options.update(width=1000), table).maximum
    Console(width=max(150, natural)).print(table)

@contextlib.contextmanager
def progress_display(quiet: bool):
    if quiet or not err.is_terminal or not is_main():  # several processes: the main one reports
        yield None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=True) as prog, progress_mod.use(prog):
        yield prog


def user_errors(func):
    """Turn acqkit's errors (:class:`acqkit.errors.AcqkitError`) into one-line CLI messages.

    Only those: any other exception is a bug, and its traceback is what a bug report needs.
    """
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except AcqkitError as exc:
            raise click.ClickException(str(exc)) from exc
    return wrapper


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
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path),
              help="continue an interrupted run in this directory, with its saved config")
@click.option("--overwrite", is_flag=True, help="--out holds an earlier run: move it aside to OUT.old-TIMESTAMP")
@user_errors
def run(preset: str, quiet: bool, strategy: str, seed: int, out: Path, resume_dir, overwrite: bool, **overrides):
    """Run one strategy for a few rounds and print its metrics per round."""
    from acqkit.config import load_compare
    from acqkit.round.loop import run as run_loop
    from acqkit.store.claim import claim
    from acqkit import track

    ctx = click.get_current_context()
    if resume_dir:
        refuse_with_resume(ctx, ["preset", "strategy", "seed", *overrides], resume_dir)
        cfg, out = load_compare(resume_dir / "config.toml").base, resume_dir
    else:
        cfg = from_preset(preset, {"strategy": strategy, "seed": seed, **given(ctx, overrides)})
    registry().build("strategy", cfg.strategy)
    trackers = track.check_trackers(registry(), cfg.track, out)  # a tracker that cannot run: fail before loading
    t0 = time.perf_counter()
    with progress_display(quiet), claim(out, resume=bool(resume_dir), overwrite=overwrite), \
            track.tracking(registry(), trackers, out, bool(resume_dir)):
        results = track.tracked_run(registry(), cfg, out, lambda: run_loop(cfg, out=out, resume=bool(resume_dir)))
    console.print(results.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    console.print(f"[dim]{time.perf_counter() - t0:.0f}s; results in {out / 'results.csv'}[/dim]")


@cli.command()
@config_options
@click.option("--strategies", default="random,smallest-margin", show_default=True,
              help="comma-separated strategy specs, e.g. 'random,margin(instance=smallest, corpus=smallest)'")
@click.option("--seeds", default="3", show_default=True, help="a count (3 = seeds 0,1,2) or a list (0,5,9)")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/compare"), show_default=True)
@click.option("--config", "config_file", type=click.Path(path_type=Path),
              help="a TOML file with strategies, seeds and [base] fields; flags you give override it")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path),
              help="continue an interrupted comparison in this directory, with its saved config")
@click.option("--overwrite", is_flag=True,
              help="--out holds an earlier comparison: move it aside to OUT.old-TIMESTAMP")
@click.option("--show-rounds", type=click.Choice(["final", "all"]), default="final", show_default=True,
              help="rounds in the summary table")
@click.option("--baseline", default="random", show_default=True, help="strategy the paired differences are to")
@user_errors
def compare(preset: str, quiet: bool, strategies: str, seeds: str, out: Path, config_file, resume_dir,
            overwrite: bool, show_rounds: str, baseline: str, **overrides):
    """Compare strategies x seeds under the same task and annotation budget."""
    from acqkit.compare import compare as compare_grid
    from acqkit.config import load_compare

    ctx = click.get_current_context()
    if resume_dir:
        refuse_with_resume(ctx, ["preset", "strategies", "seeds", "config_file", *overrides], resume_dir)
        ccfg, out = load_compare(resume_dir / "config.toml"), resume_dir
    else:  # typed flags override the preset or the --config file, and config.toml records the result
        ccfg = compare_config(ctx, preset, strategies, seeds, config_file, overrides)
    n = len(ccfg.runs())
    t0 = time.perf_counter()

    def done(cfg, results, elapsed):
        if quiet or not is_main():
            return
        err.print(f"[green]done[/green] {cfg.strategy} seed {cfg.seed} "
                  f"({len(results.groupby(['strategy', 'seed']))}/{n}, {elapsed:.0f}s)")

    with progress_display(quiet):
        compare_grid(ccfg, out, on_run_done=done, resume=bool(resume_dir), overwrite=overwrite)
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
    from acqkit.report.plots import write_plots

    results, config, files = load_many(run_dirs)
    results = select(results, strategies)
    title = report_title(results, config, rounds)
    summary = summarize(results, rounds, baseline)
    if markdown:
        click.echo(markdown_table(summary, title, baseline))
    else:
        print_wide(rich_table(summary, title, baseline))
    plots_dir = plots_dir or (files[0].parent if len(files) == 1 else None)
    if plots_dir is None:
        console.print("[dim]plots: none (give --plots DIR to draw several run directories together)[/dim]")
        return
    plots_dir.mkdir(parents=True, exist_ok=True)
    pngs = write_plots(results, plots_dir)
    console.print(f"[dim]plots: {', '.join(str(p) for p in pngs)}[/dim]")
    console.print(f"[dim]summary: {write_summary(summary, plots_dir / 'summary.csv')}[/dim]")
    if len(run_dirs) == 1:
        show_diagnostics(run_dirs[0], list(dict.fromkeys(results["strategy"])), plots_dir / "diagnostics")


def show_diagnostics(run_dir: Path, strategies: list[str] | None, out_dir: Path) -> None:
    """Overlap, margins, label quality and flip detection from the run directory's logs (docs/reporting.md)."""
    from acqkit.report.diagnostic_plots import write_diagnostic_plots
    from acqkit.report.diagnostics import diagnose, tables, write_csvs

    found = diagnose(run_dir, strategies)
    shown = tables(found)
    if not shown:
        console.print(f"[dim]diagnostics: none (no run in {run_dir} logged labels.jsonl and pool.jsonl)[/dim]")
        return
    for table in shown:
        console.print(table)
    files = write_csvs(found, out_dir) + write_diagnostic_plots(found, out_dir)
    console.print(f"[dim]diagnostics: {', '.join(str(p) for p in files)}[/dim]")


@cli.command(name="plugins")
@user_errors
def plugins_cmd():
    """List every registered component with its kind and providing package, and any broken plugin."""
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
    for b in reg.broken.values():  # set aside at load: the others work without it
        console.print(f"broken: {b.message()}", soft_wrap=True, markup=False, highlight=False)


cli.add_command(labels_cli.labels)


def main():
    cli(prog_name="acqkit")


if __name__ == "__main__":
    sys.exit(main())
