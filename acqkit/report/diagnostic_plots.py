"""PNG plots of the diagnostics (acqkit/report/diagnostics.py): overlap, margins, label quality.

Same drawing rules as plots.py: matplotlib's Agg canvas, no pyplot, each file renamed into place.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from acqkit.report.diagnostics import Diagnostics
from acqkit.report.plots import _save


def write_diagnostic_plots(d: Diagnostics, out_dir: str | Path) -> list[Path]:
    """``overlap.png``, ``margins.png``, ``label_quality.png`` in ``out_dir`` (those with data)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data, draw in (("overlap.png", d.overlap, _overlap), ("margins.png", d.margins, _margins),
                             ("label_quality.png", d.quality, _quality)):
        if not data.empty:
            _save(draw(data), out_dir / name)
            written.append(out_dir / name)
    return written


def _overlap(matrix) -> Figure:
    n = len(matrix)
    fig = Figure(figsize=(2.2 + 1.1 * n, 1.6 + 0.9 * n), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix.to_numpy(float), vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(n), matrix.columns, rotation=30, ha="right")
    ax.set_yticks(range(n), matrix.index)
    for i in range(n):
        for j in range(n):
            v = matrix.iat[i, j]
            ax.text(j, i, "-" if math.isnan(v) else f"{v:.2f}", ha="center", va="center",
                    color="white" if not math.isnan(v) and v < 0.6 else "black")
    fig.colorbar(image, ax=ax, label="Jaccard overlap")
    ax.set_title("round-1 pairs chosen: Jaccard overlap (mean over seeds)")
    return fig


def _margins(long) -> Figure:
    names = list(dict.fromkeys(long["strategy"]))
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    top = float(long["margin"].max()) if len(long) else 1.0
    bins = np.linspace(0, top if top > 0 else 1.0, 21)
    for ax, name in zip(axes, names):
        mine = long[long["strategy"] == name]
        for kind, color in (("pool", "grey"), ("chosen", "C0")):
            values = mine.loc[mine["kind"] == kind, "margin"].to_numpy(float)
            if len(values):
                ax.hist(values, bins=bins, density=True, alpha=0.5 if kind == "pool" else 0.7, color=color,
                        label=f"{kind} ({len(values)})")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("|implicit-reward margin|")
        ax.legend(fontsize=8)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle("margins of the chosen pairs vs their pool (density)")
    return fig


def _quality(table) -> Figure:
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    for i, (who, g) in enumerate(table.groupby("strategy", sort=False)):
        style = dict(color="black", linewidth=2.5) if who == "all" else dict(color=f"C{i % 10}", alpha=0.8)
        ax.plot(g["decile"], g["agreement"], marker="o", label=who, **style)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)  # 0.5: labels no better than coin flips
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("margin decile of the labelled pairs (1 = smallest |margin|)")
    ax.set_ylabel("label agreement with gold")
    ax.set_title("label quality by margin")
    ax.legend(fontsize=8)
    return fig
