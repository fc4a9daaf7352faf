"""Statistics, tables and plots of a comparison; `acqkit report` re-renders what `compare` printed."""
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from rich.console import Console

from acqkit.cli import cli
from acqkit.report.plots import write_plots
from acqkit.report.summary import diff_cell, load_results, markdown_table, rich_table, summarize
from acqkit.report.stats import mean_ci, paired_diff, verdict

T2 = 4.303  # two-sided 95% Student-t critical value, 2 degrees of freedom (3 seeds)

# Round-1 gold win rates per seed 0, 1, 2. "steady" beats random by 0.12, 0.10, 0.11: its own interval
# overlaps random's, but paired by seed the gain is clear. "noisy" wins on one seed and loses on two.
WIN = {"random": [0.50, 0.60, 0.70], "steady": [0.62, 0.70, 0.81], "noisy": [0.70, 0.50, 0.65]}


def hand_table() -> pd.DataFrame:
    rows = []
    for seed in range(3):
        for strategy, wins in WIN.items():
            rows.append(dict(strategy=strategy, seed=seed, round=0, labels_round=2, labels_spent=2, win_rate=0.5,
                             gold_reward=0.0, length=16.0, kl=1.0, label_agreement=math.nan))
            rows.append(dict(strategy=strategy, seed=seed, round=1, labels_round=4, labels_spent=6,
                             win_rate=wins[seed], gold_reward=2 * wins[seed] - 1, length=10.0 + seed,
                             kl=2.0 + seed, label_agreement=0.75))
    rows.append(dict(strategy="lonely", seed=0, round=1, labels_round=4, labels_spent=6, win_rate=0.9,
                     gold_reward=0.8, length=12.0, kl=3.0, label_agreement=1.0))  # one seed: no interval
    return pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # pairing must not depend on row order


def row(summary: pd.DataFrame, strategy: str, rnd: int = 1) -> pd.Series:
    return summary[(summary["strategy"] == strategy) & (summary["round"] == rnd)].iloc[0]


def test_mean_and_t_interval_by_hand():
    # random: mean 0.6, sample sd 0.1, half-width t * sd / sqrt(3)
    mean, ci = mean_ci(WIN["random"])
    assert mean == pytest.approx(0.6) and ci == pytest.approx(T2 * 0.1 / math.sqrt(3))
    assert math.isnan(mean_ci([0.4])[1]) and math.isnan(mean_ci([])[0])
    assert mean_ci([0.2, math.nan, 0.4])[0] == pytest.approx(0.3)  # a missing value is skipped


def test_paired_difference_significant_and_not():
    # steady - random = 0.12, 0.10, 0.11: mean 0.11, sd 0.01
    mean, ci, n = paired_diff(WIN["steady"], WIN["random"])
    assert (mean, ci, n) == pytest.approx((0.11, T2 * 0.01 / math.sqrt(3), 3))
    assert verdict(mean, ci, n) == "significant"  # [0.085, 0.135] excludes 0
    # noisy - random = 0.20, -0.10, -0.05: mean 1/60, sd sqrt(0.0516667 / 2)
    mean, ci, n = paired_diff(WIN["noisy"], WIN["random"])
    sd = math.sqrt(((0.2 - 1 / 60) ** 2 + (-0.1 - 1 / 60) ** 2 + (-0.05 - 1 / 60) ** 2) / 2)
    assert (mean, ci) == pytest.approx((1 / 60, T2 * sd / math.sqrt(3)))
    assert verdict(mean, ci, n) == "not significant"  # [-0.38, 0.42] covers 0
    assert verdict(*paired_diff([0.9], [0.5])) == "n/a"
    assert paired_diff([0.9, math.nan, 0.7], [0.5, 0.6, math.nan])[2] == 1  # only pairs with both values


def test_summary_per_strategy_and_round():
    summary = summarize(hand_table(), rounds="all")
    assert summary["strategy"].tolist()[:2] == ["random", "random"]  # the baseline comes first
    assert len(summary) == 3 * 2 + 1
    steady = row(summary, "steady")
    assert steady["seeds"] == 3
    assert steady["win_rate"] == pytest.approx(0.71)
    assert steady["win_rate_ci"] == pytest.approx(T2 * math.sqrt(((0.62 - .71) ** 2 + (0.7 - .71) ** 2
                                                                   + (0.81 - .71) ** 2) / 2) / math.sqrt(3))
    assert steady["win_rate_diff"] == pytest.approx(0.11) and steady["win_rate_diff_n"] == 3
    # gold reward is 2 * win - 1, so its difference is exactly twice the win-rate difference
    assert steady["gold_reward_diff"] == pytest.approx(0.22)
    assert steady["gold_reward_diff_ci"] == pytest.approx(2 * steady["win_rate_diff_ci"])
    assert row(summary, "steady", 0)["win_rate_diff"] == 0 and math.isnan(row(summary, "steady", 0)["label_agreement"])
    lonely = row(summary, "lonely")
    assert lonely["seeds"] == 1 and lonely["win_rate_diff_n"] == 1 and math.isnan(lonely["win_rate_ci"])
    final = summarize(hand_table())
    assert set(final["round"]) == {1} and len(final) == 4


def test_table_words(tmp_path):
    summary = summarize(hand_table())
    assert diff_cell(0.11, T2 * 0.01 / math.sqrt(3), 3) == "+0.110 ± 0.025"
    noisy = row(summary, "noisy")
    assert diff_cell(noisy["win_rate_diff"], noisy["win_rate_diff_ci"], noisy["win_rate_diff_n"]) == "+0.017 ± 0.399"
    assert diff_cell(0.4, math.nan, 1) == "+0.400" and diff_cell(math.nan, math.nan, 0) == "n/a"
    # noisy's interval covers 0: the verdict says how large a difference 3 seeds could have found
    assert noisy["verdict"] == f"no difference larger than {noisy['win_rate_diff_mde']:.3f}"
    assert row(summary, "steady")["verdict"] == "better" and row(summary, "lonely")["verdict"] == "n/a: one seed, no test"
    text = render(rich_table(summary, "hand", "random"))
    assert "+0.110 ± 0.025" in text and "no difference" in text and "baseline" in text and "n/a" in text
    assert "0.710 ± 0.237" in text  # steady's own mean and interval
    assert "Holm correction over the 2 comparisons with random" in text  # lonely has no test: not counted
    absent = render(rich_table(summarize(hand_table(), baseline="greedy"), "hand", "greedy"))
    assert absent.count("n/a") == 8 and "baseline" not in absent  # no Δ and no verdict for 4 strategies


def test_markdown_table_has_the_same_cells(tmp_path):
    summary = summarize(hand_table(), rounds="all")
    md = markdown_table(summary, "hand", "random").splitlines()
    assert md[0] == "**hand**" and md[3].startswith("|---|---:|")
    body = [line.strip("| ").split(" | ") for line in md[4:] if line.startswith("| ")]
    assert len(body) == len(summary) and all(len(cells) == len(body[0]) for cells in body)
    assert any(c[:4] == ["steady", "1", "3", "0.710 ± 0.237"] for c in body)
    assert any(c[-2].startswith("no difference larger than") for c in body)


def test_duplicate_rows_are_refused():
    table = hand_table()
    with pytest.raises(ValueError, match="more than one row"):
        summarize(pd.concat([table, table.head(1)]))


def test_plots_are_valid_pngs(tmp_path):
    table = hand_table()
    table.loc[table["strategy"] == "noisy", "kl"] = math.nan  # kl_samples = 0: an empty curve, no crash
    paths = write_plots(table, tmp_path)
    assert [p.name for p in paths] == ["winrate_vs_labels.png", "rounds.png"]
    for path in paths:
        with Image.open(path) as img:
            img.verify()
            assert img.format == "PNG" and img.size[0] > 300
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_report_input_names_the_file(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(cli, ["report", str(tmp_path)])
    assert missing.exit_code != 0 and str(tmp_path / "results.csv") in missing.output
    hand_table().drop(columns=["kl", "win_rate"]).to_csv(tmp_path / "results.csv", index=False)
    bad = runner.invoke(cli, ["report", str(tmp_path)])
    assert bad.exit_code != 0 and "results.csv lacks required column(s): win_rate, kl" in bad.output
    assert "Traceback" not in bad.output


def test_results_file_of_either_kind(tmp_path):
    hand_table().to_parquet(tmp_path / "results.parquet", index=False)
    frame, path = load_results(tmp_path)
    assert path.name == "results.parquet" and len(frame) == 19


def test_several_run_directories_make_one_table_tagged_by_what_differs(tmp_path):
    """Two comparisons that differ only in schedule: one table, strategies tagged, seeds paired across them."""
    table = hand_table()
    for schedule, shift in (("constant", 0.0), ("decrease", 0.05)):
        d = tmp_path / schedule
        d.mkdir()
        table.assign(win_rate=table["win_rate"] + shift).to_csv(d / "results.csv", index=False)
        (d / "config.toml").write_text(f'strategies = ["random"]\n[base]\ntask = "t"\nmodel = "m"\n'
                                       f'budget = 8\nschedule = "{schedule}"\n')
    args = ["report", str(tmp_path / "constant"), str(tmp_path / "decrease"), "--markdown",
            "--strategies", "steady [schedule=decrease],steady [schedule=constant]",
            "--baseline", "steady [schedule=constant]"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    lines = [line for line in out.output.splitlines() if line.startswith("| steady")]
    assert [line.split(" | ")[0] for line in lines] == ["| steady [schedule=constant]", "| steady [schedule=decrease]"]
    # paired by seed: exactly the shift, on every seed, so there is no variance to test
    assert lines[1].endswith("| +0.050 ± 0.000 | same difference on every seed (SD 0, no test) | - |")
    assert "t on m, budget 8" in out.output and "plots: none" in out.output
    drawn = CliRunner().invoke(cli, [*args, "--plots", str(tmp_path / "plots")])
    assert drawn.exit_code == 0 and (tmp_path / "plots" / "winrate_vs_labels.png").exists()
    unknown = CliRunner().invoke(cli, [*args[:4], "--strategies", "steady"])
    assert unknown.exit_code == 1 and "--strategies: no results for 'steady'" in unknown.output
    assert "'steady [schedule=decrease]'" in unknown.output


def test_a_title_over_directories_shows_each_differing_warm_start(tmp_path):
    """Directories that differ in seed_labels: the title lists each count, never a made-up 0."""
    for n in (12, 48):
        (tmp_path / str(n)).mkdir()
        hand_table().to_csv(tmp_path / str(n) / "results.csv", index=False)
        (tmp_path / str(n) / "config.toml").write_text(
            f'[base]\ntask = "t"\nmodel = "m"\nbudget = 8\nseed_labels = {n}\n')
    out = CliRunner().invoke(cli, ["report", str(tmp_path / "12"), str(tmp_path / "48"), "--markdown"])
    assert out.exit_code == 0, out.output
    assert "**t on m, budget 8 + 12/48 warm-start labels: final round (1), 3 seeds**" in out.output
    assert "| steady [seed_labels=48] |" in out.output


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "run"
    args = ["--seeds", "2", "--rounds", "1", "--budget", "4", "--seed-labels", "2",
            "--eval-prompts", "4", "--max-new-tokens", "8"]  # tiny, so the whole module takes seconds
    result = CliRunner().invoke(cli, ["compare", "--preset", "smoke", *args, "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_report_reprints_compares_table(compared):
    out, printed = compared
    again = CliRunner().invoke(cli, ["report", str(out)])
    assert again.exit_code == 0, again.output
    table = again.output.split("plots:")[0]
    assert "Δ win rate" in table and "smallest-margin" in table and "final round (1), 2 seeds" in table
    assert table in printed  # the same characters compare printed
    every = CliRunner().invoke(cli, ["report", str(out), "--rounds", "all", "--baseline", "smallest-margin"])
    assert every.exit_code == 0 and "rounds 0-1" in every.output and "vs smallest-margin" in every.output


def test_compare_writes_parquet_and_plots(compared):
    out, _ = compared
    csv, parquet = pd.read_csv(out / "results.csv"), pd.read_parquet(out / "results.parquet")
    pd.testing.assert_frame_equal(csv, parquet, check_dtype=False)
    assert len(csv) == 2 * 2 * 2  # strategies x seeds x (round 0 + round 1)
    for name in ("winrate_vs_labels.png", "rounds.png"):
        with Image.open(out / name) as img:
            assert img.format == "PNG"


def render(table) -> str:
    console = Console(record=True, width=200)
    console.print(table)
    return console.export_text()


SCHEDULES = ["--strategies", "always-smallest [schedule=decrease],always-smallest [schedule=constant],"
                            "always-smallest [schedule=increase]", "--baseline", "always-smallest [schedule=constant]"]


PRECISION = ["--strategies", "random [precision=fp32],random [precision=bf16],smallest-margin [precision=fp32],"
             "smallest-margin [precision=bf16]", "--baseline", "random [precision=fp32]"]


SEED_SIZES = ["--strategies", "selfee [seed_labels=12],selfee [seed_labels=48],selfee [seed_labels=192]",
              "--baseline", "selfee [seed_labels=12]"]


EQUAL_SPEND = ["--strategies", "always-random [seed_labels=12],selfee [seed_labels=48]",
               "--baseline", "always-random [seed_labels=12]"]


@pytest.mark.parametrize("names, args, page", [
    (["one-round"], [], "results.md"),
    (["one-round-bf16"], [], "results.md"),
    (["one-round", "one-round-bf16"], PRECISION, "results.md"),
    (["three-rounds"], ["--rounds", "all", "--baseline", "always-random"], "results.md"),
    (["three-rounds", "decrease", "increase"], SCHEDULES, "results.md"),
    (["three-rounds", "decrease", "increase"], ["--rounds", "all", *SCHEDULES], "results.md"),
    (["selfee-seeds-48"], ["--rounds", "all", "--baseline", "always-random"], "results.md"),
    (["selfee-seeds-192"], ["--rounds", "all", "--baseline", "always-random"], "results.md"),
    (["three-rounds", "selfee-seeds-48", "selfee-seeds-192"], ["--rounds", "all", *SEED_SIZES], "results.md"),
    (["three-rounds", "selfee-seeds-48"], EQUAL_SPEND, "results.md"),
    (["judge-smollm2"], [], "labelers.md"),
])
def test_the_results_page_shows_what_report_prints(tmp_path, names, args, page):
    """The docs' result tables are exactly `acqkit report --markdown` of the committed results."""
    docs = Path(__file__).parent.parent / "docs"
    for name in names:  # report redraws the plots: keep the tree clean
        shutil.copytree(docs / "results" / name, tmp_path / name)
    out = CliRunner().invoke(cli, ["report", *(str(tmp_path / name) for name in names), "--markdown", *args])
    assert out.exit_code == 0, out.output
    table = out.output.split("\nplots:")[0].strip()
    for name in names:
        table = table.replace(str(tmp_path / name), f"docs/results/{name}")
    assert table in (docs / page).read_text(encoding="utf-8")
