"""The label stage: ask a labeler once per distinct pair, through the ledger, and keep every answer.

``label_pairs`` is what the loop calls; ``ask_once`` is the ledger protocol
(look up, ask only the misses, store the answers in one transaction);
``check_labels`` and ``check_skips`` hold a labeler's answers to the contract
in :mod:`acqkit.components` before anything is stored or trained on.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from acqkit.components import LABEL_COLUMNS, LabelContext, Labeler, declared, gold_rewards
from acqkit.distributed import from_main
from acqkit.errors import PluginOutputError
from acqkit.store.ledger import Ledger, RoundLedger, labeler_identity, ledger_path
from acqkit.round.session import stage_seed
from acqkit.store.rundir import append_jsonl

if TYPE_CHECKING:
    from acqkit.config import RunConfig
    from acqkit.round.session import Session


def label_pairs(session: Session, cfg: RunConfig, labeler, name: str, pairs, table, round: int, run_dir,
                ledger_dir=None, previous=None):
    """Labels for ``pairs``, each persisted before it is used.

    A paying labeler (``paid``, default True) goes through the label ledger: it
    is asked only about pairs the ledger does not know. A hit costs 0, unless
    this run's own ledger bought it for this very round before a crash, which
    keeps a resumed run's ``labels_spent`` equal to an uninterrupted one's.
    Pairs it skips (``p`` missing) are dropped.
    """
    ctx = LabelContext(task=session.task, rng=np.random.default_rng(stage_seed(cfg.seed, round, "label")),
                       round=round, extras={"prompts": session.train_prompts, "policy": session.policy,
                                            "reference": session.reference, "tokenizer": session.tokenizer,
                                            "previous": previous})
    def ask():
        if not declared(labeler, Labeler, "paid"):
            return answered(labeler.label(pairs, table, ctx), pairs, name)
        with Ledger(ledger_path(cfg.ledger, ledger_dir or run_dir)) as book:
            view = RoundLedger(book, labeler_identity(labeler, name), table, session.train_prompts, round,
                               owned=not cfg.ledger)
            return ask_once(view, labeler, name, pairs, table, ctx)

    labels = from_main(ask)  # several processes: one asks (and pays), all train on its answers
    if run_dir:
        texts = table.set_index("response_id")["text"]
        append_jsonl(run_dir / "labels.jsonl", labels.assign(
            round=round, text_a=list(texts.loc[labels["a"]]), text_b=list(texts.loc[labels["b"]])))
    return labels


def gold_agreement(session: Session, labels: pd.DataFrame, table: pd.DataFrame) -> float:
    """Share of labels whose direction matches the gold oracle's (evaluation only: never spent, never trained on)."""
    decided = labels[labels["p"] != 0.5]
    if decided.empty:
        return float("nan")
    rows = table.set_index("response_id")
    prompts = {p.id: p for p in session.train_prompts}
    plist = [prompts[pid] for pid in decided["prompt_id"]]
    both = list(decided["a"]) + list(decided["b"])
    gold = gold_rewards(session.task, plist * 2, list(rows.loc[both, "text"]), rows.loc[both, "n_tokens"])
    diff = gold[: len(decided)] - gold[len(decided):]
    mask = diff != 0
    if not mask.any():
        return float("nan")
    return float(((diff > 0) == (decided["p"].to_numpy() > 0.5))[mask].mean())


def check_labels(labels: pd.DataFrame, pairs: pd.DataFrame, name: str) -> pd.DataFrame:
    who = f"labeler {name!r}"
    if not isinstance(labels, pd.DataFrame):
        raise PluginOutputError(f"{who} returned {type(labels).__name__}, expected a DataFrame")
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise PluginOutputError(f"{who} returned labels without column(s) {missing}")
    if len(labels) != len(pairs):
        raise PluginOutputError(f"{who} returned {len(labels)} labels for {len(pairs)} pairs")
    same = (labels["a"].to_numpy() == pairs["a"].to_numpy()) & (labels["b"].to_numpy() == pairs["b"].to_numpy())
    if not same.all():
        i = int(np.argmin(same))
        raise PluginOutputError(f"{who} answered pair ({labels['a'].iloc[i]}, {labels['b'].iloc[i]}) at row {i} "
                                f"where it was asked ({pairs['a'].iloc[i]}, {pairs['b'].iloc[i]}); return the "
                                "pairs in the order given")
    p = pd.to_numeric(labels["p"], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        raise PluginOutputError(f"{who} returned preference(s) outside [0, 1] or not finite: {p[bad][:5].tolist()}")
    cost = pd.to_numeric(labels["cost"], errors="coerce").to_numpy(float)
    if not (np.isfinite(cost) & (cost >= 0) & (cost == np.round(cost))).all():
        raise PluginOutputError(f"{who} returned a cost that is not a whole number >= 0: "
                                f"{labels['cost'].tolist()[:5]}")
    return labels.reset_index(drop=True)


def check_skips(skipped: pd.DataFrame, name: str) -> None:
    """A skip is ``p`` missing with ``cost`` 0; a missing ``p`` that was charged for is a failed oracle."""
    if "cost" not in skipped.columns or skipped.empty:
        return
    charged = pd.to_numeric(skipped["cost"], errors="coerce").fillna(1).to_numpy() != 0
    if charged.any():
        raise PluginOutputError(f"labeler {name!r} returned p = NaN (no preference) for {int(charged.sum())} "
                                "pair(s) it charged for; a skipped pair has p missing and cost 0")


def answered(labels, pairs: pd.DataFrame, name: str) -> pd.DataFrame:
    """Check a labeler's answer and drop skipped pairs (``p`` missing: NaN or None, and ``cost`` 0).

    A missing ``p`` that was charged for is an oracle failure, not a skip: an error.
    """
    if isinstance(labels, pd.DataFrame) and "p" in labels.columns and len(labels) == len(pairs):
        keep = labels["p"].notna().to_numpy()
        check_skips(labels[~keep], name)
        return check_labels(labels[keep], pairs[keep], name)
    return check_labels(labels, pairs, name)


def ask_once(book: RoundLedger, labeler, name: str, pairs: pd.DataFrame, table: pd.DataFrame,
             context) -> pd.DataFrame:
    """Labels for ``pairs``: ledger hits cost 0; misses are asked once each and stored.

    Pairs the labeler skips are left out of the result (not trained on, not
    charged, not stored), so a later round may ask about them again.

    A shared ledger (``ledger = PATH``: other runs and processes use it too) is
    locked from the lookup to the commit, so a pair two processes both need is
    bought once: the second waits, then finds the first's answers. The price:
    while one process waits for a slow labeler (a person), every other process
    at its label stage on that ledger waits too. A run's own ledger needs no
    lock: its run directory has one writer (:mod:`acqkit.store.claim`).
    """
    if book.owned:
        return _lookup_ask_store(book, labeler, name, pairs, table, context)
    ledger = book.ledger
    with ledger.exclusive(on_wait=lambda pid: print(
            f"label ledger {ledger.name}: waiting for PID {pid}, which is asking its labeler "
            "(a shared ledger is asked by one process at a time)", file=sys.stderr, flush=True)):
        return _lookup_ask_store(book, labeler, name, pairs, table, context)


def _lookup_ask_store(book: RoundLedger, labeler, name: str, pairs: pd.DataFrame, table: pd.DataFrame,
                      context) -> pd.DataFrame:
    keys = [book.key(a, b) for a, b in pairs[["a", "b"]].itertuples(index=False)]
    ask, seen = [], set()
    for i, key in enumerate(keys):
        if key not in seen and book.ledger.get(key) is None:
            ask.append(i)
        seen.add(key)
    asked = pairs.iloc[ask].reset_index(drop=True)
    fresh = {}
    if len(asked):
        context.extras["ledger"] = book
        labels = answered(labeler.label(asked, table, context), asked, name)
        rows = list(labels.itertuples(index=False))
        book.ledger.put_many([book.record(r.a, r.b, r.p, r.source, r.cost) for r in rows])  # one transaction
        fresh = {(r.a, r.b): r for r in rows}
    out, charged = [], set()
    for i, (a, b) in enumerate(pairs[["a", "b"]].itertuples(index=False)):
        rec = book.ledger.get(keys[i])
        if rec is None:
            continue  # skipped by the labeler
        new = fresh.pop((a, b), None)
        if new is not None:
            cost = int(new.cost)
        elif book.owned and rec.round == book.round and rec.source != "import" and keys[i] not in charged:
            cost = int(rec.cost)  # paid for this round before a crash: it is this run's spend
        else:
            cost = 0
        charged.add(keys[i])
        row = pairs.iloc[i].to_dict()
        row.update(p=rec.p_for(book.text(a)), source=new.source if new else rec.source, cost=cost)
        out.append(row)
    extra = [c for c in pairs.columns if c not in LABEL_COLUMNS]
    return pd.DataFrame(out, columns=LABEL_COLUMNS + extra).astype({"a": "int64", "b": "int64"})
