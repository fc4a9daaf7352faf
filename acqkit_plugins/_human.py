"""What the terminal and web labelers share: the queue of pairs and the answers so far.

A person answers ``a`` (A is better), ``b``, ``t`` (tie) or ``s`` (skip). Every
answer except a skip goes to the label ledger the moment it is given, so
closing the page, a crash or Ctrl-C loses nothing; a rerun asks only about the
pairs still unanswered. A skipped pair is not a label: it costs nothing, is
not stored and is left out of this round's training (a later round may ask
about it again).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd

from acqkit.store.ledger import prompt_text

CHOICES = {"a": 1.0, "b": 0.0, "t": 0.5, "s": None}
NAMES = {"a": "A is better", "b": "B is better", "t": "tie", "s": "skip"}


@dataclass(frozen=True)
class Item:
    index: int
    a: int
    b: int
    prompt: str
    text_a: str
    text_b: str


def items_from(pairs: pd.DataFrame, table: pd.DataFrame, context) -> list[Item]:
    texts = table.set_index("response_id")["text"]
    prompts = {p.id: p for p in context.extras["prompts"]}
    return [Item(i, int(a), int(b), prompt_text(prompts[pid].messages), str(texts.loc[a]), str(texts.loc[b]))
            for i, (pid, a, b) in enumerate(pairs[["prompt_id", "a", "b"]].itertuples(index=False))]


def identity(annotator: str) -> tuple[str, dict]:
    """One ledger identity for every human labeler: a person's label does not depend on the screen."""
    return ("human", {"annotator": annotator} if annotator else {})


class Answers:
    """The answers given so far, thread-safe (the web server answers from its threads)."""

    def __init__(self, items: list[Item], ledger, source: str):
        self.items = items
        self.ledger = ledger  # a RoundLedger, or None outside the loop
        self.source = source
        self.choices: dict[int, str] = {}
        self._lock = threading.Lock()
        self.finished = threading.Event()
        if not items:
            self.finished.set()

    def answer(self, index: int, key: str) -> bool:
        """Record one answer (the first one for an item wins). True if it was new."""
        key = key.lower()
        if key not in CHOICES:
            raise ValueError(f"unknown answer {key!r}; expected one of {', '.join(CHOICES)}")
        with self._lock:
            if not 0 <= index < len(self.items) or index in self.choices:
                return False
            item, p = self.items[index], CHOICES[key]
            if p is not None and self.ledger is not None:
                self.ledger.put(item.a, item.b, p, self.source, cost=1)  # durable before we acknowledge
            self.choices[index] = key
            if len(self.choices) == len(self.items):
                self.finished.set()
            return True

    def next_item(self) -> Item | None:
        with self._lock:
            return next((it for it in self.items if it.index not in self.choices), None)

    @property
    def done(self) -> int:
        return len(self.choices)

    def labels(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """The labels table; skipped or unanswered pairs get ``p = NaN`` (dropped by the loop)."""
        p = [CHOICES.get(self.choices.get(i, "s")) for i in range(len(pairs))]
        p = np.array([np.nan if v is None else v for v in p], dtype=float)
        return pairs.assign(p=p, source=self.source, cost=np.where(np.isnan(p), 0, 1).astype(int))
