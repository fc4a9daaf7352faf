"""What the strategies did, beyond win rates: computed from each run's own logs alone (no models).

- overlap: how alike the strategies' round-1 choices are (Jaccard of the pairs chosen, per seed, averaged);
- margins: the implicit-reward margin of each chosen pair against every pair its round's pool offered;
- label quality: gold agreement of the labels by margin decile (where the labels are noisy);
- flip detection: when labels were reversed on purpose (the ``flip`` labeler) and a refiner logged which
  training pairs it smoothed, the precision and recall of its smoothing as a detector of the flips.

The inputs are each run directory's ``labels.jsonl`` (with ``gold_agrees`` and ``flipped``),
``pool.jsonl`` (every sampled response's implicit reward), ``refiner.jsonl`` and ``results.csv``.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from acqkit.config import read_toml
from acqkit.store.rundir import read_jsonl

DECILES = 10
SMOOTHED_SHARE = 0.5  # a pair counts as down-weighted when smoothed in at least this share of its logged steps


@dataclass
class RunLogs:
    """One run's logs: what it chose, from which pool, and what its refiner did."""

    strategy: str
    seed: int
    path: Path
    labels: pd.DataFrame
    pool: pd.DataFrame
    refiner: pd.DataFrame
    trained: dict  # round -> pairs_trained (results.csv)


@dataclass
class Diagnostics:
    runs: list[RunLogs]
    overlap: pd.DataFrame = field(default_factory=pd.DataFrame)  # strategy x strategy, mean Jaccard
    margins: pd.DataFrame = field(default_factory=pd.DataFrame)  # strategy, kind (pool/chosen), margin
    margin_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    quality: pd.DataFrame = field(default_factory=pd.DataFrame)  # strategy (or "all"), decile, lo, hi, n, agreement
    flips: pd.DataFrame = field(default_factory=pd.DataFrame)  # strategy, precision and recall of smoothing


def find_runs(path: str | Path) -> list[Path]:
    """The run directories under ``path``: itself (`acqkit run`) or ``runs/*/seed-*`` (`acqkit compare`)."""
    path = Path(path)
    if (path / "labels.jsonl").exists():
        return [path]
    return sorted(p for p in path.glob("runs/*/seed-*") if (p / "labels.jsonl").exists())


def load_run(path: Path) -> RunLogs:
    cfg = read_toml(path / "config.toml") if (path / "config.toml").exists() else {}
    cfg = cfg.get("base", cfg)
    frame = lambda name: pd.DataFrame(read_jsonl(path / name))  # noqa: E731
    trained = {}
    if (path / "results.csv").exists():
        res = pd.read_csv(path / "results.csv")
        trained = dict(zip(res["round"].astype(int), res["pairs_trained"].astype(int)))
    return RunLogs(str(cfg.get("strategy", path.parent.name)), int(cfg.get("seed", 0)), path,
                   frame("labels.jsonl"), frame("pool.jsonl"), frame("refiner.jsonl"), trained)


def diagnose(path: str | Path, strategies: list[str] | None = None) -> Diagnostics:
    runs = [load_run(p) for p in find_runs(path)]
    if strategies:
        runs = [r for r in runs if r.strategy in strategies]
    order = list(dict.fromkeys(s for s in (strategies or [r.strategy for r in runs])))
    runs.sort(key=lambda r: (order.index(r.strategy) if r.strategy in order else len(order), r.seed))
    d = Diagnostics(runs)
    d.overlap = overlap(runs)
    d.margins = margins(runs)
    d.margin_summary = margin_summary(d.margins)
    d.quality = label_quality(runs)
    d.flips = flip_detection(runs)
    return d


def _pair_keys(labels: pd.DataFrame, rnd: int) -> set:
    """A chosen pair by prompt and its two texts (unordered): comparable across strategies' tables."""
    if labels.empty or "round" not in labels:
        return set()
    mine = labels[labels["round"] == rnd]
    return {(pid, frozenset((ta, tb))) for pid, ta, tb in mine[["prompt_id", "text_a", "text_b"]].itertuples(index=False)}


def overlap(runs: list[RunLogs], rnd: int = 1) -> pd.DataFrame:
    """Mean over shared seeds of the Jaccard overlap of the round-``rnd`` pairs two strategies chose."""
    names = list(dict.fromkeys(r.strategy for r in runs))
    chosen = {(r.strategy, r.seed): _pair_keys(r.labels, rnd) for r in runs}
    out = pd.DataFrame(np.nan, index=names, columns=names)
    for s, t in itertools.product(names, names):
        values = []
        for (name, seed), mine in chosen.items():
            other = chosen.get((t, seed))
            if name != s or other is None or not (mine | other):
                continue
            values.append(len(mine & other) / len(mine | other))
        out.loc[s, t] = float(np.mean(values)) if values else np.nan
    return out


def _rewards(pool: pd.DataFrame) -> dict:
    return {(int(r), int(i)): float(w) for r, i, w in pool[["round", "response_id", "reward"]].itertuples(index=False)}


def chosen_margins(run: RunLogs) -> pd.Series:
    """|implicit-reward margin| of each online label's pair (NaN where the pool was not logged), by label row."""
    labels = run.labels
    if labels.empty or run.pool.empty:
        return pd.Series(np.nan, index=labels.index, dtype=float)
    reward = _rewards(run.pool)
    return pd.Series([abs(reward[(r, a)] - reward[(r, b)]) if (r, a) in reward and (r, b) in reward else np.nan
                      for r, a, b in labels[["round", "a", "b"]].astype(int).itertuples(index=False)],
                     index=labels.index, dtype=float)


def pool_margins(pool: pd.DataFrame) -> np.ndarray:
    """Every candidate pair's |margin|: all response pairs of each prompt in each round."""
    out = []
    for _, group in pool.groupby(["round", "prompt_id"], sort=False):
        r = group["reward"].to_numpy(float)
        i, j = np.triu_indices(len(r), k=1)
        out.append(np.abs(r[i] - r[j]))
    return np.concatenate(out) if out else np.zeros(0)


def margins(runs: list[RunLogs]) -> pd.DataFrame:
    """Long table: ``strategy``, ``kind`` (``pool`` or ``chosen``), ``margin``, over online rounds and seeds."""
    frames = []
    for run in runs:
        if run.pool.empty:
            continue
        chosen = chosen_margins(run)[run.labels["round"] >= 1].dropna()
        frames.append(pd.DataFrame({"strategy": run.strategy, "kind": "pool", "margin": pool_margins(run.pool)}))
        frames.append(pd.DataFrame({"strategy": run.strategy, "kind": "chosen", "margin": chosen.to_numpy()}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["strategy", "kind", "margin"])


def margin_summary(long: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: median margin of its pool and of its chosen pairs, and where the chosen sit in the pool."""
    rows = []
    for strategy, g in long.groupby("strategy", sort=False):
        pool = np.sort(g.loc[g["kind"] == "pool", "margin"].to_numpy(float))
        chosen = g.loc[g["kind"] == "chosen", "margin"].to_numpy(float)
        pct = (np.searchsorted(pool, chosen, "left") + np.searchsorted(pool, chosen, "right")) / 2 / max(len(pool), 1)
        rows.append({"strategy": strategy, "pool_pairs": len(pool), "chosen_pairs": len(chosen),
                     "pool_median": float(np.median(pool)) if len(pool) else math.nan,
                     "chosen_median": float(np.median(chosen)) if len(chosen) else math.nan,
                     "chosen_percentile": float(100 * pct.mean()) if len(chosen) else math.nan})
    return pd.DataFrame(rows)


def label_quality(runs: list[RunLogs]) -> pd.DataFrame:
    """Gold agreement of online labels by decile of their pair's margin (deciles over every strategy's labels)."""
    frames = []
    for run in runs:
        lab = run.labels
        if lab.empty or "gold_agrees" not in lab or run.pool.empty:
            continue
        frames.append(pd.DataFrame({"strategy": run.strategy, "margin": chosen_margins(run),
                                    "agrees": lab["gold_agrees"], "round": lab["round"]}))
    if not frames:
        return pd.DataFrame(columns=["strategy", "decile", "lo", "hi", "n", "agreement"])
    every = pd.concat(frames, ignore_index=True)
    every = every[(every["round"] >= 1) & every["margin"].notna() & every["agrees"].notna()]
    if every.empty:
        return pd.DataFrame(columns=["strategy", "decile", "lo", "hi", "n", "agreement"])
    bins = pd.qcut(every["margin"].rank(method="first"), min(DECILES, len(every)), labels=False)
    every = every.assign(decile=bins.astype(int) + 1, agrees=every["agrees"].astype(bool))
    rows = []
    for who, part in [("all", every), *every.groupby("strategy", sort=False)]:
        for decile, g in part.groupby("decile"):
            edges = every.loc[every["decile"] == decile, "margin"]
            rows.append({"strategy": who, "decile": int(decile), "lo": float(edges.min()), "hi": float(edges.max()),
                         "n": len(g), "agreement": float(g["agrees"].mean())})
    return pd.DataFrame(rows)


def smoothed_labels(run: RunLogs) -> pd.DataFrame:
    """Per online label a refiner logged: its share of logged steps smoothed, with the label's ``flipped``.

    ``index`` in refiner.jsonl is a position in the round's training list. When the round trained on
    exactly its own labels (results.csv's ``pairs_trained`` equals the round's labels) that list is the
    round's labels in order; when it trained on every online label so far (``reinit``), it is rounds
    1..r in order. Another training set cannot be mapped and is left out.
    """
    log, lab = run.refiner, run.labels
    if log.empty or lab.empty:
        return pd.DataFrame(columns=["round", "row", "share", "flipped"])
    online = lab[lab["round"] >= 1]
    frames = []
    for rnd, g in log.groupby("round"):
        mine = online[online["round"] == rnd]
        so_far = online[online["round"] <= rnd]
        trained = run.trained.get(int(rnd))
        rows = mine if trained == len(mine) else so_far if trained == len(so_far) else None
        if rows is None:
            continue
        share = g.groupby("index")["smoothed"].mean()
        share = share[share.index < len(rows)]
        picked = rows.iloc[share.index.to_numpy(int)]
        frames.append(pd.DataFrame({"round": int(rnd), "row": picked.index, "share": share.to_numpy(float),
                                    "flipped": picked["flipped"].to_numpy(bool) if "flipped" in picked
                                    else np.zeros(len(picked), bool)}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["round", "row", "share", "flipped"])


def flip_detection(runs: list[RunLogs]) -> pd.DataFrame:
    """Per strategy: of the trained labels its refiner logged, how many were flipped, smoothed, and both."""
    counts: dict[str, dict] = {}
    for run in runs:
        seen = smoothed_labels(run)
        if seen.empty:
            continue
        down = seen["share"].to_numpy(float) >= SMOOTHED_SHARE
        flipped = seen["flipped"].to_numpy(bool)
        c = counts.setdefault(run.strategy, {"labels": 0, "flipped": 0, "smoothed": 0, "both": 0})
        c["labels"] += len(seen)
        c["flipped"] += int(flipped.sum())
        c["smoothed"] += int(down.sum())
        c["both"] += int((down & flipped).sum())
    rows = [{"strategy": s, **c, "precision": c["both"] / c["smoothed"] if c["smoothed"] else math.nan,
             "recall": c["both"] / c["flipped"] if c["flipped"] else math.nan,
             "flip_rate": c["flipped"] / c["labels"] if c["labels"] else math.nan} for s, c in counts.items()]
    return pd.DataFrame(rows, columns=["strategy", "labels", "flipped", "smoothed", "both", "precision", "recall",
                                       "flip_rate"])


def write_csvs(d: Diagnostics, out_dir: Path) -> list[Path]:
    """``overlap.csv``, ``margins.csv``, ``label_quality.csv``, ``flip_detection.csv`` (those with data)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame, index in (("overlap.csv", d.overlap, True), ("margins.csv", d.margin_summary, False),
                               ("label_quality.csv", d.quality, False), ("flip_detection.csv", d.flips, False)):
        if not frame.empty:
            frame.to_csv(out_dir / name, index=index)
            written.append(out_dir / name)
    return written


def tables(d: Diagnostics) -> list:
    """The diagnostics as rich tables for the terminal (those with data)."""
    from rich.table import Table

    fmt = lambda v, spec="{:.2f}": "-" if v is None or (isinstance(v, float) and math.isnan(v)) else spec.format(v)  # noqa: E731
    out = []
    if not d.overlap.empty:
        t = Table(title="round-1 pairs chosen: Jaccard overlap (mean over seeds)")
        t.add_column("", style="bold")
        for name in d.overlap.columns:
            t.add_column(name, justify="right")
        for name, row in d.overlap.iterrows():
            t.add_row(name, *(fmt(v) for v in row))
        out.append(t)
    if not d.margin_summary.empty:
        t = Table(title="margins of the chosen pairs vs their pool (online rounds)",
                  caption="percentile: where the chosen pairs' |margin| sits among every candidate pair's (mean)")
        for col in ("strategy", "pool pairs", "chosen", "pool median", "chosen median", "percentile"):
            t.add_column(col, justify="left" if col == "strategy" else "right")
        for r in d.margin_summary.itertuples(index=False):
            t.add_row(r.strategy, str(r.pool_pairs), str(r.chosen_pairs), fmt(r.pool_median, "{:.3f}"),
                      fmt(r.chosen_median, "{:.3f}"), fmt(r.chosen_percentile, "{:.0f}"))
        out.append(t)
    if not d.quality.empty:
        every = d.quality[d.quality["strategy"] == "all"]
        t = Table(title="label agreement with gold by margin decile (all strategies' online labels)")
        for col in ("decile", "|margin| range", "labels", "agreement"):
            t.add_column(col, justify="right")
        for r in every.itertuples(index=False):
            t.add_row(str(r.decile), f"{r.lo:.3f}-{r.hi:.3f}", str(r.n), fmt(r.agreement))
        out.append(t)
    if not d.flips.empty:
        t = Table(title="flipped labels the refiner smoothed (noise detection)",
                  caption=f"smoothed: in >= {SMOOTHED_SHARE:.0%} of the steps it was logged in; "
                          "precision = flipped among smoothed, recall = smoothed among flipped")
        for col in ("strategy", "labels", "flipped", "smoothed", "both", "precision", "recall"):
            t.add_column(col, justify="left" if col == "strategy" else "right")
        for r in d.flips.itertuples(index=False):
            t.add_row(r.strategy, str(r.labels), str(r.flipped), str(r.smoothed), str(r.both), fmt(r.precision),
                      fmt(r.recall))
        out.append(t)
    return out
