"""``acqkit labels``: export a ledger to TRL's DPO JSONL, or import such a file into one."""
from __future__ import annotations

from pathlib import Path

import click

from acqkit.store.ledger import Ledger, LedgerError
from acqkit.store.ledger_io import FORMATS, export_jsonl, import_jsonl


@click.group()
def labels():
    """Move labelled pairs between a label ledger and JSONL files."""


@labels.command("export")
@click.argument("ledger", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="plain", show_default=True,
              help="TRL DPO layout: plain strings or chat messages")
def export_cmd(ledger: Path, out: Path, fmt: str):
    """Write every label in LEDGER to OUT.jsonl as prompt/chosen/rejected (ties are skipped)."""
    try:
        with Ledger(ledger) as book:
            counts = export_jsonl(book, out, fmt)
    except (LedgerError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"exported {counts.written} pair(s) to {out}; skipped {counts.skipped} tie(s)")


@labels.command("import")
@click.argument("src", metavar="IN.jsonl", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("ledger", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--labeler", required=True,
              help="labeler spec the labels are filed under, e.g. 'human' or 'pairrm(...)'; a run with that "
                   "labeler reuses them instead of asking again")
def import_cmd(src: Path, ledger: Path, labeler: str):
    """Add the pairs of IN.jsonl (TRL DPO layout, plain or conversational) to LEDGER."""
    try:
        with Ledger(ledger) as book:
            counts = import_jsonl(src, book, labeler)
    except (LedgerError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"imported {counts.written} pair(s) into {ledger}; {counts.skipped} already there")
