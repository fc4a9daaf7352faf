"""Turn per-(strategy, seed, round) results into a summary table for people.

Everything here works from the results file alone (no models), so `acqkit report` can re-render
any finished or half-finished comparison and print exactly what `acqkit compare` printed.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from rich.table import Table

from acqkit.config import read_toml
from acqkit.errors import ConfigError, MissingFileError, RunDirError
from acqkit.report.stats import (differences, holm, mde, mean_ci, p_value, sd, seeds_needed, verdict_words,
                                  versus_chance)
from acqkit.store.rundir import write_csv

METRICS = [("win_rate", "gold win rate", "{:.3f}"), ("gold_reward", "gold reward", "{:.3f}"),
           ("kl", "KL to ref", "{:.2f}"), ("length", "length", "{:.1f}"), ("labels_spent", "labels", "{:.0f}"),
           ("label_agreement", "label\nagreement", "{:.2f}")]
# Shown beside the metric they follow, and only when the results hold a value for them: money from a
# labeler that charges it (the judge), order consistency from one that asks in both orders.
OPTIONAL_METRICS = {"labels_spent": ("cost_usd_spent", "cost\nUSD", "{:.4f}"),
                    "label_agreement": ("label_consistency", "order\nconsistency", "{:.2f}")}
KEYS = ["strategy", "seed", "round"]
REQUIRED = KEYS + [col for col, _, _ in METRICS]
RESULT_FILES = ("results.csv", "results.parquet")


def load_results(path: str | Path) -> tuple[pd.DataFrame, Path]:
    """Read ``results.csv`` (else ``results.parquet``) from a run directory, or the file given."""
    path = Path(path)
    candidates = [path / name for name in RESULT_FILES] if path.is_dir() else [path]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise MissingFileError(f"no results file: expected {' or '.join(str(p) for p in candidates)}")
    try:
        frame = pd.read_parquet(found) if found.suffix == ".parquet" else pd.read_csv(found)
    except (ValueError, UnicodeDecodeError, OSError) as exc:  # pandas' ParserError and pyarrow's are ValueErrors
        raise RunDirError(f"{found}: cannot read the results ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise RunDirError(f"{found} lacks required column(s): {', '.join(missing)}")
    if frame.empty:
        raise RunDirError(f"{found} has no rows yet: no run has finished a round")
    return frame, found


def read_config(run_dir: Path) -> dict:
    """The run directory's ``config.toml`` (the compare grid's ``[base]`` table), or ``{}``."""
    try:
        data = read_toml(run_dir / "config.toml")
    except (OSError, ValueError):
        return {}
    return data.get("base", data)


def load_many(paths: list[str | Path]) -> tuple[pd.DataFrame, dict, list[Path]]:
    """Several run directories as one table, e.g. the same strategy under three budget schedules.

    With more than one, each strategy is tagged with the config fields that tell its directory
    apart (``always-smallest [schedule=decrease]``), or with the directory's path if none do;
    in the returned config a field that differs holds a tuple of the directories' distinct
    values, so the title can say ``12/48/192 warm-start labels``. Seeds pair across directories
    (``strategy`` and ``seed`` are columns already, so two ``acqkit run`` directories never tag by them).
    """
    loaded = [load_results(p) for p in paths]
    configs = [read_config(found.parent) for _, found in loaded]
    files = [found for _, found in loaded]
    if len(loaded) == 1:
        return loaded[0][0], configs[0], files
    keys = list(dict.fromkeys(k for c in configs for k in c))
    differ = [k for k in keys if k not in KEYS and len({repr(c.get(k)) for c in configs}) > 1]
    frames = []
    for (frame, found), config in zip(loaded, configs):
        tag = ", ".join(f"{k}={_value(config.get(k))}" for k in differ) or str(found.parent)
        frames.append(frame.assign(strategy=frame["strategy"].astype(str) + f" [{tag}]"))
    common = {k: v for k, v in configs[0].items() if k not in differ}
    common.update({k: tuple(dict.fromkeys(_value(c.get(k)) for c in configs)) for k in differ})
    return pd.concat(frames, ignore_index=True), common, files


def _value(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, list) else str(v)


def metrics(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    """METRICS plus each optional metric that ``frame`` has a value for (a nonzero cost, a consistency)."""
    out = []
    for metric in METRICS:
        out.append(metric)
        extra = OPTIONAL_METRICS.get(metric[0])
        if extra and extra[0] in frame.columns:
            values = pd.to_numeric(frame[extra[0]], errors="coerce")
            if (values.fillna(0) != 0).any() if extra[0].startswith("cost") else values.notna().any():
                out.append(extra)
    return out


def select(results: pd.DataFrame, strategies: list[str] | None) -> pd.DataFrame:
    """Only the named strategies, in that order; an unknown name lists the ones there are."""
    if not strategies:
        return results
    known = list(dict.fromkeys(results["strategy"]))
    unknown = [s for s in strategies if s not in known]
    if unknown:
        raise ConfigError(f"--strategies: no results for {', '.join(map(repr, unknown))}; "
                          f"the results hold {', '.join(map(repr, known))}")
    chosen = results[results["strategy"].isin(strategies)]
    order = {s: i for i, s in enumerate(strategies)}
    return chosen.sort_values("strategy", key=lambda col: col.map(order), kind="stable").reset_index(drop=True)


def summarize(results: pd.DataFrame, rounds: str | int = "final", baseline: str | None = "random") -> pd.DataFrame:
    """Mean and 95% CI half-width over seeds per strategy and round, plus the paired difference to ``baseline``.

    ``rounds`` is ``"final"`` (the last round present), ``"all"`` or one round number. For each metric
    ``m`` the frame holds ``m``, ``m_ci``, and ``m_diff``, ``m_diff_ci``, ``m_diff_n`` (pairs by seed),
    ``m_diff_sd``, ``m_diff_p`` (paired t), ``m_diff_p_holm`` (Holm over the strategies compared with the
    baseline in the same round), ``m_diff_mde`` (80% power, alpha 0.05) and ``m_diff_seeds`` (seeds for
    80% power at the observed difference); ``verdict`` says it in words for the win rate, and
    ``label_agreement_vs_chance`` whether the labels beat a coin flip (:func:`versus_chance`).
    """
    dupes = results.duplicated(KEYS)
    if dupes.any():
        first = results.loc[dupes, KEYS].iloc[0].tolist()
        raise RunDirError(f"results have more than one row for (strategy, seed, round) = {tuple(first)}")
    if rounds == "final":
        results = results[results["round"] == results["round"].max()]
    elif rounds != "all":
        results = results[results["round"] == int(rounds)]
    base = results[results["strategy"] == baseline].set_index(["round", "seed"])
    shown = metrics(results)
    order = list(dict.fromkeys(results["strategy"]))
    order.sort(key=lambda s: s != baseline)  # the baseline first, others as they first appear
    rows = []
    for strategy in order:
        mine = results[results["strategy"] == strategy]
        for rnd, group in sorted(mine.groupby("round"), key=lambda kv: kv[0]):
            group = group.set_index("seed").sort_index()
            ref = base.loc[rnd] if strategy != baseline and rnd in base.index.get_level_values(0) else None
            seeds = group.index.intersection(ref.index) if ref is not None else []
            row = {"strategy": strategy, "round": int(rnd), "seeds": len(group)}
            for col, _, _ in shown:
                row[col], row[col + "_ci"] = mean_ci(group[col].tolist())
                d = differences(group.loc[seeds, col].tolist(), ref.loc[seeds, col].tolist()) if ref is not None else []
                row.update(_paired(col, d))
            row["label_agreement_vs_chance"] = versus_chance(group["label_agreement"].tolist())
            rows.append(row)
    return _corrected(pd.DataFrame(rows), baseline)


def _paired(col: str, d: list[float]) -> dict:
    """The paired-difference columns of one metric, from its per-seed differences ``d``."""
    mean, ci = mean_ci(d) if d else (math.nan, math.nan)
    s, n = sd(d), len(d)
    return {col + "_diff": mean, col + "_diff_ci": ci, col + "_diff_n": n, col + "_diff_sd": s,
            col + "_diff_p": p_value(mean, s, n), col + "_diff_mde": mde(s, n), col + "_diff_seeds": seeds_needed(mean, s)}


def _corrected(summary: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """Holm-adjusted p-values per round (the family: every strategy against the baseline) and the verdicts."""
    if summary.empty:
        return summary
    others = summary["strategy"] != baseline
    for col, _, _ in METRICS:
        summary[col + "_diff_p_holm"] = math.nan
        for _, idx in summary[others].groupby("round").groups.items():
            summary.loc[idx, col + "_diff_p_holm"] = holm(summary.loc[idx, col + "_diff_p"].tolist())
    summary["verdict"] = [
        "baseline" if s == baseline else
        verdict_words(r["win_rate_diff"], r["win_rate_diff_sd"], int(r["win_rate_diff_n"]), r["win_rate_diff_p_holm"],
                      r["win_rate_diff_mde"])
        for s, (_, r) in zip(summary["strategy"], summary.iterrows())]
    return summary


def family_sizes(summary: pd.DataFrame, baseline: str | None) -> set[int]:
    """How many comparisons with the baseline each round's Holm correction spans (tested ones only)."""
    tested = summary[(summary["strategy"] != baseline) & summary["win_rate_diff_p"].notna()]
    return set(tested.groupby("round").size().tolist())


def write_summary(summary: pd.DataFrame, path: str | Path) -> Path:
    """The summary as a results file (``summary.csv``): every mean, interval, power figure and verdict."""
    path = Path(path)
    write_csv(summary, path)
    return path


def title(results: pd.DataFrame, config: dict, rounds: str | int) -> str:
    """What was compared and which rounds the table shows; task and budget come from config.toml if present."""
    last = int(results["round"].max())
    scope = {"final": f"final round ({last})", "all": f"rounds 0-{last}"}.get(rounds, f"round {rounds}")
    head = ""
    if {"task", "model"} <= config.keys():
        head = f"{_shown(config['task'])} on {_shown(config['model'])}"
        if "budget" in config:
            head += f", budget {_shown(config['budget'])} + {_shown(config.get('seed_labels', 0))} warm-start labels"
        head += ": "
    return f"{head}{scope}, {results['seed'].nunique()} seeds"


def _shown(value) -> str:
    """A config value for the title; several directories' differing values as ``12/48/192``."""
    return "/".join(value) if isinstance(value, tuple) else str(value)


def _cell(mean: float, ci: float, fmt: str) -> str:
    if math.isnan(mean):
        return "-"
    return fmt.format(mean) if math.isnan(ci) or ci == 0 else f"{fmt.format(mean)} ± {fmt.format(ci)}"


def diff_cell(mean: float, ci: float, n: int, fmt: str = "{:+.3f}") -> str:
    """``+0.062 ± 0.270``, ``+0.100`` (one seed: no interval), or ``n/a`` (no paired seed)."""
    if n < 1 or math.isnan(mean):
        return "n/a"
    if n < 2 or math.isnan(ci):
        return fmt.format(mean)
    return f"{fmt.format(mean)} ± {fmt.format(ci).lstrip('+')}"


# Marks a label-agreement cell whose labels do not beat a coin flip; the caption explains the mark.
CHANCE_MARKS = {"not distinguishable": "†", "below": "‡"}
CHANCE_NOTES = {"†": "† label agreement not above chance: its 95% CI reaches 0.5, so these labels may be coin flips",
                "‡": "‡ label agreement below chance: its 95% CI lies under 0.5, so these labels point the wrong way"}


def agreement_cell(mean: float, ci: float, fmt: str, vs_chance) -> str:
    """The label-agreement cell, marked when the labels do not beat a coin flip."""
    mark = CHANCE_MARKS.get(vs_chance) if isinstance(vs_chance, str) else None
    text = _cell(mean, ci, fmt)
    return f"{text} {mark}" if mark else text


def seeds_cell(seeds: float) -> str:
    return "-" if math.isnan(seeds) else "∞" if math.isinf(seeds) else f"{seeds:.0f}"


def table_cells(summary: pd.DataFrame, baseline: str | None = "random") -> tuple[list[str], list[list[str]]]:
    """Headers and formatted rows shared by the terminal and the markdown table."""
    by_round = summary["round"].nunique() > 1
    shown = metrics(summary)
    headers = ["strategy"] + (["round"] if by_round else []) + ["seeds"] + [h for _, h, _ in shown]
    headers += [f"Δ win rate\nvs {baseline}", "verdict", "seeds\nneeded"]
    rows = []
    for _, row in summary.iterrows():
        cells = [str(row["strategy"])] + ([str(row["round"])] if by_round else []) + [str(row["seeds"])]
        cells += [agreement_cell(row[c], row[c + "_ci"], fmt, row.get("label_agreement_vs_chance"))
                  if c == "label_agreement" else _cell(row[c], row[c + "_ci"], fmt) for c, _, fmt in shown]
        if row["strategy"] == baseline:
            cells += ["baseline", "-", "-"]
        else:
            cells += [diff_cell(row["win_rate_diff"], row["win_rate_diff_ci"], int(row["win_rate_diff_n"])),
                      row["verdict"], seeds_cell(row["win_rate_diff_seeds"])]
        rows.append(cells)
    return headers, rows


def caption(baseline: str | None, summary: pd.DataFrame | None = None) -> str:
    """What the numbers are; with several strategies against one baseline, the Holm correction too."""
    lines = [f"mean ± 95% CI half-width over seeds (t); Δ = paired by seed and round, minus {baseline or 'no baseline'}",
             "verdict: paired t-test at α = 0.05; \"no difference larger than X\": X is the smallest true Δ it "
             "detects with 80% power at the observed SD (MDE); seeds needed: for 80% power at the observed Δ"]
    sizes = family_sizes(summary, baseline) if summary is not None else set()
    if max(sizes, default=0) > 1:
        count = "/".join(str(s) for s in sorted(sizes))
        lines.append(f"Holm correction over the {count} comparisons with {baseline} per round (family-wise α = 0.05)")
    if summary is not None and "label_agreement_vs_chance" in summary.columns:
        marks = {CHANCE_MARKS.get(v) for v in summary["label_agreement_vs_chance"] if isinstance(v, str)}
        lines += [note for mark, note in CHANCE_NOTES.items() if mark in marks]
    return "\n".join(lines)


def rich_table(summary: pd.DataFrame, title: str, baseline: str | None = "random") -> Table:
    """One row per strategy (and round, when the summary holds several); the last column is Δ win rate."""
    headers, rows = table_cells(summary, baseline)
    table = Table(title=title, caption=caption(baseline, summary))
    longest = max([len(cells[0]) for cells in rows] + [len(headers[0])])
    # a long spec wraps, never loses its end, and never shrinks below a readable width on a narrow console
    table.add_column(headers[0], style="bold", overflow="fold", min_width=min(longest, 24))
    for header in headers[1:]:
        if header == "verdict":  # words may wrap ("no difference / larger than 0.25"); numbers never do
            table.add_column(header, justify="left", min_width=12, max_width=16)
        else:
            table.add_column(header, justify="right", no_wrap=True)  # a number and its CI stay on one line
    for cells in rows:
        table.add_row(*cells)
    return table


def markdown_table(summary: pd.DataFrame, title: str, baseline: str | None = "random") -> str:
    """The same table as GitHub markdown, for papers and docs pages."""
    headers, rows = table_cells(summary, baseline)
    esc = lambda text: text.replace("\n", " ").replace("|", "\\|")  # noqa: E731
    lines = [f"**{title}**", "", "| " + " | ".join(esc(h) for h in headers) + " |",
             "|" + "|".join("---" if h in ("strategy", "verdict") else "---:" for h in headers) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in cells) + " |" for cells in rows]
    return "\n".join(lines + [""] + [f"_{line}_\n" for line in caption(baseline, summary).splitlines()])
