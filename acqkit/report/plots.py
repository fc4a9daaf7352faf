"""PNG plots of a comparison: what each label bought, and how every round moved the policy.

Drawn on matplotlib's Agg canvas directly (no pyplot), so plotting needs no display and leaves
no global figure state behind in a long-lived process.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from acqkit.report.summary import METRICS, summarize

PER_ROUND = ["win_rate", "gold_reward", "kl", "length"]
HEADERS = {col: header for col, header, _ in METRICS}


def write_plots(results: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Write ``winrate_vs_labels.png`` and ``rounds.png`` into ``out_dir``; returns their paths."""
    summary = summarize(results, rounds="all", baseline=None)
    colors = {s: f"C{i % 10}" for i, s in enumerate(dict.fromkeys(summary["strategy"]))}
    out_dir = Path(out_dir)
    paths = [out_dir / "winrate_vs_labels.png", out_dir / "rounds.png"]
    _save(_winrate_vs_labels(summary, colors), paths[0])
    _save(_rounds(summary, colors), paths[1])
    return paths


def _curve(ax, summary: pd.DataFrame, x: str, y: str, colors: dict, bounds=(-np.inf, np.inf)) -> None:
    """Mean over seeds as a line, its 95% CI as a band (no band where one seed gives no interval).

    ``bounds`` clips the band to the metric's range: a t-interval on 3 seeds can pass 1 for a win rate.
    """
    for strategy, color in colors.items():
        s = summary[summary["strategy"] == strategy].sort_values("round")
        mean, ci = s[y].to_numpy(float), s[y + "_ci"].fillna(0).to_numpy(float)
        ax.plot(s[x], mean, marker="o", color=color, label=strategy)
        ax.fill_between(s[x], np.clip(mean - ci, *bounds), np.clip(mean + ci, *bounds), color=color, alpha=0.2,
                        linewidth=0)


def _winrate_vs_labels(summary: pd.DataFrame, colors: dict) -> Figure:
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)  # 0.5 = no better than the starting policy
    _curve(ax, summary, "labels_spent", "win_rate", colors, bounds=(0, 1))
    ax.set_xlabel("labels spent (mean over seeds)")
    ax.set_ylabel("gold win rate vs initial policy")
    ax.set_title("gold win rate vs labels spent (mean, 95% CI band)")
    ax.legend()
    return fig


def _rounds(summary: pd.DataFrame, colors: dict) -> Figure:
    fig = Figure(figsize=(9.6, 7.2), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    for ax, col in zip(axes, PER_ROUND):
        _curve(ax, summary, "round", col, colors, bounds=(0, 1) if col == "win_rate" else (-np.inf, np.inf))
        ax.set_title(HEADERS[col])
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend()
    fig.suptitle("per-round metrics (mean over seeds, 95% CI band)")
    return fig


def _save(fig: Figure, path: Path) -> None:
    """Render to a temp file then rename, so a reader never sees half a PNG."""
    tmp = path.with_name(path.name + ".tmp")
    FigureCanvasAgg(fig)
    fig.savefig(tmp, format="png", dpi=110)
    os.replace(tmp, path)
