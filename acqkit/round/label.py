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

from acqkit.components import LABEL_COLUMNS, LabelContext, Labeler, Task, declared, gold_rewards
from acqkit.distributed import from_main
from acqkit.errors import PluginOutputError
from acqkit.store.ledger import Ledger, RoundLedger, labeler_identity, ledger_path
from acqkit.round.session import stage_seed
from acqkit.store.rundir import append_jsonl

if TYPE_CHECKING:
    from acqkit.config import RunConfig
    from acqkit.round.session import Session

# A labeler that knowingly reverses an answer (noise injection: acqkit_plugins/flip.py) ends its
# ``source`` with this mark, which the ledger keeps; labels.jsonl records it as ``flipped``.
FLIPPED = "+flipped"


def label_pairs(session: Session, cfg: RunConfig, labeler, name: str, pairs, table, round: int, run_dir,
                ledger_dir=None, previous=None, usd_left=None):
    """Labels for ``pairs``, each persisted before it is used.

    A paying labeler (``paid``, default True) goes through the label ledger: it
    is asked only about pairs the ledger does not know. A hit costs 0, unless
    this run's own ledger bought it for this very round before a crash, which
    keeps a resumed run's ``labels_spent`` equal to an uninterrupted one's.
    Pairs it skips (``p`` missing) are dropped. ``usd_left`` (None: no money
    budget) is the money the run may still spend, in ``context.extras``.
    """
    ctx = LabelContext(task=session.task, rng=np.random.default_rng(stage_seed(cfg.seed, round, "label")),
                       round=round, extras={"prompts": session.train_prompts, "policy": session.policy,
                                            "reference": session.reference, "tokenizer": session.tokenizer,
                                            "previous": previous, "usd_left": usd_left})
    def ask():
        if not declared(labeler, Labeler, "paid"):
            return answered(labeler.label(pairs, table, ctx), pairs, name)
        with Ledger(ledger_path(cfg.ledger, ledger_dir or run_dir)) as book:
            view = RoundLedger(book, labeler_identity(labeler, name), table, session.train_prompts, round,
                               owned=not cfg.ledger)
            return ask_once(view, labeler, name, pairs, table, ctx)

    return from_main(ask)  # several processes: one asks (and pays), all train on its answers


def log_labels(session: Session, labels: pd.DataFrame, table: pd.DataFrame, round: int, run_dir) -> float:
    """Append the round's labels to ``labels.jsonl`` (with ``run_dir``) and return their gold agreement.

    The gold oracle is asked once per label for both (evaluation only: never spent, never trained on).
    """
    diff = gold_differences(session, labels, table)
    if run_dir:
        append_jsonl(run_dir / "labels.jsonl", logged(session, labels, table, round, diff))
    return agreement(diff, labels["p"].to_numpy(float))


def logged(session: Session, labels: pd.DataFrame, table: pd.DataFrame, round: int, diff=None) -> pd.DataFrame:
    """A round's labels as labels.jsonl records them: texts, and for diagnostics only (never trained on)
    the gold preference ``gold_p``, whether the label agrees with it (``gold_agrees``, None on a tie) and
    whether the labeler reversed it on purpose (``flipped``). ``diff``: :func:`gold_differences`, if known."""
    texts = table.set_index("response_id")["text"]
    diff = gold_differences(session, labels, table) if diff is None else diff
    p = labels["p"].to_numpy(float)
    tau = declared(session.task, Task, "tau")
    with np.errstate(over="ignore"):
        gold_p = 1 / (1 + np.exp(-diff / tau)) if tau > 0 else 0.5 + 0.5 * np.sign(diff)
    agrees = [None if d == 0 or q == 0.5 else bool((d > 0) == (q > 0.5)) for d, q in zip(diff, p)]
    return labels.assign(round=round, text_a=list(texts.loc[labels["a"]]), text_b=list(texts.loc[labels["b"]]),
                         gold_p=gold_p, gold_agrees=agrees, flipped=labels["source"].astype(str).str.endswith(FLIPPED))


def gold_differences(session: Session, labels: pd.DataFrame, table: pd.DataFrame) -> np.ndarray:
    """Gold reward of ``a`` minus that of ``b``, per label (evaluation only: never spent, never trained on)."""
    if labels.empty:
        return np.zeros(0)
    rows = table.set_index("response_id")
    prompts = {p.id: p for p in session.train_prompts}
    plist = [prompts[pid] for pid in labels["prompt_id"]]
    both = list(labels["a"]) + list(labels["b"])
    gold = gold_rewards(session.task, plist * 2, list(rows.loc[both, "text"]), rows.loc[both, "n_tokens"])
    return gold[: len(labels)] - gold[len(labels):]


def agreement(diff: np.ndarray, p: np.ndarray) -> float:
    """Share of decided labels (p != 0.5, gold not tied) whose direction matches the gold reward difference."""
    mask = (p != 0.5) & (diff != 0)
    if not mask.any():
        return float("nan")
    return float(((diff > 0) == (p > 0.5))[mask].mean())


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
    ask, seen, prior_usd = [], set(), 0.0
    for i, key in enumerate(keys):
        rec = None if key in seen else book.ledger.get(key)
        if key not in seen and rec is None:
            ask.append(i)
        elif rec is not None and book.owned and rec.round == book.round and rec.source != "import":
            prior_usd += rec.usd  # this round's money, paid before a crash
        seen.add(key)
    asked = pairs.iloc[ask].reset_index(drop=True)
    fresh, unlabeled_usd = {}, 0.0
    if len(asked):
        context.extras["ledger"] = book
        if context.extras.get("usd_left") is not None:
            context.extras["usd_left"] -= prior_usd
        raw = labeler.label(asked, table, context)
        unlabeled_usd = skipped_usd(raw)
        labels = answered(raw, asked, name)
        rows = list(labels.itertuples(index=False))
        book.ledger.put_many([book.record(r.a, r.b, r.p, r.source, r.cost, getattr(r, "cost_usd", 0.0),
                                          _meta(r)) for r in rows])  # one transaction
        fresh = {(r.a, r.b): r for r in rows}
    out, charged = [], set()
    for i, (a, b) in enumerate(pairs[["a", "b"]].itertuples(index=False)):
        rec = book.ledger.get(keys[i])
        if rec is None:
            continue  # skipped by the labeler
        new = fresh.pop((a, b), None)
        if new is not None:
            cost, usd = int(new.cost), rec.usd
        elif book.owned and rec.round == book.round and rec.source != "import" and keys[i] not in charged:
            cost, usd = int(rec.cost), rec.usd  # paid for this round before a crash: it is this run's spend
        else:
            cost, usd = 0, 0.0
        charged.add(keys[i])
        row = pairs.iloc[i].to_dict()
        row.update(p=rec.p_for(book.text(a)), source=new.source if new else rec.source, cost=cost,
                   cost_usd=usd, consistency=(rec.meta or {}).get("consistency", float("nan")))
        out.append(row)
    extra = [c for c in pairs.columns if c not in LABEL_COLUMNS + MONEY_COLUMNS]
    frame = pd.DataFrame(out, columns=LABEL_COLUMNS + MONEY_COLUMNS + extra).astype({"a": "int64", "b": "int64"})
    frame.attrs["unlabeled_usd"] = unlabeled_usd
    return frame


# What a paid label carries beside LABEL_COLUMNS: its money cost (0 for hits) and, for a labeler that
# asks in both orders (the judge), whether the two orders agreed (1.0 / 0.0; NaN when not asked twice).
MONEY_COLUMNS = ["cost_usd", "consistency"]


def skipped_usd(labels) -> float:
    """Money a labeler spent on pairs it then skipped (tokens billed for an answer it could not use)."""
    if not isinstance(labels, pd.DataFrame) or not {"p", "cost_usd"} <= set(labels.columns):
        return 0.0
    return float(pd.to_numeric(labels.loc[labels["p"].isna(), "cost_usd"], errors="coerce").fillna(0).sum())


def _meta(row) -> dict:
    consistency = getattr(row, "consistency", float("nan"))
    return {} if pd.isna(consistency) else {"consistency": float(consistency)}
