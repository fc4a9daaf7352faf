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
from acqkit.report.stats import mean_ci, paired_diff, verdict

METRICS = [("win_rate", "gold win rate", "{:.3f}"), ("gold_reward", "gold reward", "{:.3f}"),
           ("kl", "KL to ref", "{:.2f}"), ("length", "length", "{:.1f}"), ("labels_spent", "labels", "{:.0f}"),
           ("label_agreement", "label\nagreement", "{:.2f}")]
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
    the returned config keeps only the fields they share. Seeds pair across directories
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
    return pd.concat(frames, ignore_index=True), common, files


def _value(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, list) else str(v)


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
    ``m`` the frame holds ``m``, ``m_ci``, and ``m_diff``, ``m_diff_ci``, ``m_diff_n`` (pairs by seed).
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
            for col, _, _ in METRICS:
                row[col], row[col + "_ci"] = mean_ci(group[col].tolist())
                d = paired_diff(group.loc[seeds, col].tolist(), ref.loc[seeds, col].tolist()) \
                    if ref is not None else (math.nan, math.nan, 0)
                row[col + "_diff"], row[col + "_diff_ci"], row[col + "_diff_n"] = d
            rows.append(row)
    return pd.DataFrame(rows)


def title(results: pd.DataFrame, config: dict, rounds: str | int) -> str:
    """What was compared and which rounds the table shows; task and budget come from config.toml if present."""
    last = int(results["round"].max())
    scope = {"final": f"final round ({last})", "all": f"rounds 0-{last}"}.get(rounds, f"round {rounds}")
    head = ""
    if {"task", "model"} <= config.keys():
        head = f"{config['task']} on {config['model']}"
        if "budget" in config:
            head += f", budget {config['budget']} + {config.get('seed_labels', 0)} warm-start labels"
        head += ": "
    return f"{head}{scope}, {results['seed'].nunique()} seeds"


def _cell(mean: float, ci: float, fmt: str) -> str:
    if math.isnan(mean):
        return "-"
    return fmt.format(mean) if math.isnan(ci) or ci == 0 else f"{fmt.format(mean)} ± {fmt.format(ci)}"


def diff_cell(mean: float, ci: float, n: int, fmt: str = "{:+.3f}") -> str:
    """``+0.062 ± 0.270 (not significant)``, ``+0.100 ± 0.050``, or ``n/a``."""
    said = verdict(mean, ci, n)
    if said == "n/a":
        return "n/a"
    text = f"{fmt.format(mean)} ± {fmt.format(ci).lstrip('+')}"
    return f"{text} (not significant)" if said == "not significant" else text


def table_cells(summary: pd.DataFrame, baseline: str | None = "random") -> tuple[list[str], list[list[str]]]:
    """Headers and formatted rows shared by the terminal and the markdown table."""
    by_round = summary["round"].nunique() > 1
    headers = ["strategy"] + (["round"] if by_round else []) + ["seeds"] + [h for _, h, _ in METRICS]
    headers.append(f"Δ win rate\nvs {baseline}")
    rows = []
    for _, row in summary.iterrows():
        cells = [str(row["strategy"])] + ([str(row["round"])] if by_round else []) + [str(row["seeds"])]
        cells += [_cell(row[c], row[c + "_ci"], fmt) for c, _, fmt in METRICS]
        cells.append("baseline" if row["strategy"] == baseline else
                     diff_cell(row["win_rate_diff"], row["win_rate_diff_ci"], int(row["win_rate_diff_n"])))
        rows.append(cells)
    return headers, rows


def caption(baseline: str | None) -> str:
    return f"mean ± 95% CI half-width over seeds (t); Δ = paired by seed and round, minus {baseline or 'no baseline'}"


def rich_table(summary: pd.DataFrame, title: str, baseline: str | None = "random") -> Table:
    """One row per strategy (and round, when the summary holds several); the last column is Δ win rate."""
    headers, rows = table_cells(summary, baseline)
    table = Table(title=title, caption=caption(baseline))
    table.add_column(headers[0], style="bold", overflow="fold")  # a long spec wraps, never loses its end
    for header in headers[1:]:
        table.add_column(header, justify="right", no_wrap=True)  # a number and its CI stay on one line
    for cells in rows:
        table.add_row(*cells)
    return table


def markdown_table(summary: pd.DataFrame, title: str, baseline: str | None = "random") -> str:
    """The same table as GitHub markdown, for papers and docs pages."""
    headers, rows = table_cells(summary, baseline)
    esc = lambda text: text.replace("\n", " ").replace("|", "\\|")  # noqa: E731
    lines = [f"**{title}**", "", "| " + " | ".join(esc(h) for h in headers) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in cells) + " |" for cells in rows]
    return "\n".join(lines + ["", f"_{caption(baseline)}_", ""])
