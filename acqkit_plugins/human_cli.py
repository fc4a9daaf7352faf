"""``human-cli``: a person labels pairs in the terminal.

Shows the prompt and responses A and B side by side (rich), with progress
"n of m", and reads one key per pair: ``a``, ``b``, ``t`` (tie) or ``s``
(skip). On a terminal a single keypress answers; from a pipe each line is one
answer (its first character), so ``printf 'a\\nb\\n' | acqkit run ...`` works.
At the end of input the remaining pairs count as skipped.
Options: ``annotator`` (files labels under ``human(annotator=...)`` in the ledger).
"""
from __future__ import annotations

import sys

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from acqkit import Labeler, hookimpl

from ._human import CHOICES, NAMES, Answers, identity, items_from


def read_key(stream) -> str | None:
    """One answer key from ``stream``; None at end of input."""
    if stream.isatty():
        try:
            import termios
            import tty
        except ImportError:  # not POSIX: fall back to lines
            pass
        else:
            fd = stream.fileno()
            old = termios.tcgetattr(fd)
            try:
                tty.setcbreak(fd)  # keeps Ctrl-C working
                ch = stream.read(1)
            finally:
                termios.tcsetattr(fd, termios.TCSADRAIN, old)
            return ch or None
    line = stream.readline()
    if not line:
        return None
    return line.strip()[:1] or " "


class HumanCliLabeler(Labeler):
    paid = True

    def __init__(self, annotator: str = ""):
        self.annotator = str(annotator)
        self.ledger_identity = identity(self.annotator)

    def label(self, pairs, table, context):
        console = Console(stderr=True, highlight=False)
        stdin = sys.stdin
        answers = Answers(items_from(pairs, table, context), context.extras.get("ledger"), "human")
        total = len(answers.items)
        keys = " / ".join(f"[bold]{k}[/bold] {NAMES[k]}" for k in CHOICES)
        for item in answers.items:
            console.rule(f"pair {item.index + 1} of {total}")
            console.print(Panel(Text(item.prompt), title="prompt", title_align="left"))
            side_by_side = Table.grid(expand=True, padding=(0, 1))
            side_by_side.add_column(ratio=1)
            side_by_side.add_column(ratio=1)
            side_by_side.add_row(Panel(Text(item.text_a), title="A"), Panel(Text(item.text_b), title="B"))
            console.print(side_by_side)
            while True:
                console.print(f"{keys}: ", end="")
                key = read_key(stdin)
                if key is None:
                    left = total - answers.done
                    console.print(f"\n[yellow]end of input: the remaining {left} pair(s) are skipped[/yellow]")
                    return answers.labels(pairs)
                if key.lower() in CHOICES:
                    answers.answer(item.index, key)
                    console.print(NAMES[key.lower()])
                    break
                console.print(f"[red]{key!r} is not an answer[/red]")
        return answers.labels(pairs)


@hookimpl
def acqkit_register_labelers(register):
    register("human-cli", HumanCliLabeler)
