"""Turn per-(strategy, seed, round) results into a summary table for people."""
from __future__ import annotations

import math

import pandas as pd
from rich.table import Table

from .stats import mean_ci

METRICS = [("win_rate", "gold win rate", "{:.3f}"), ("gold_reward", "gold reward", "{:.3f}"),
           ("kl", "KL to ref", "{:.2f}"), ("length", "length", "{:.1f}"), ("labels_spent", "labels", "{:.0f}")]


def summarize(results: pd.DataFrame, round: int | None = None) -> pd.DataFrame:
    """Mean and 95% CI half-width over seeds, per strategy, at ``round`` (default: the last)."""
    rnd = int(results["round"].max()) if round is None else round
    rows = []
    for strategy, group in results[results["round"] == rnd].groupby("strategy", sort=False):
        row = {"strategy": strategy, "round": rnd, "seeds": group["seed"].nunique()}
        for col, _, _ in METRICS:
            row[col], row[col + "_ci"] = mean_ci(group[col].tolist())
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(mean: float, ci: float, fmt: str) -> str:
    if math.isnan(mean):
        return "-"
    return fmt.format(mean) if math.isnan(ci) or ci == 0 else f"{fmt.format(mean)} ± {fmt.format(ci)}"


def rich_table(summary: pd.DataFrame, title: str) -> Table:
    table = Table(title=title, caption="mean ± 95% CI half-width over seeds")
    table.add_column("strategy", style="bold")
    table.add_column("seeds", justify="right")
    for _, header, _ in METRICS:
        table.add_column(header, justify="right")
    for _, row in summary.iterrows():
        table.add_row(str(row["strategy"]), str(row["seeds"]),
                      *[_cell(row[c], row[c + "_ci"], fmt) for c, _, fmt in METRICS])
    return table
