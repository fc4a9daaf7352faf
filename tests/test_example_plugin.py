"""Outside plugin packages install, show up, run and uninstall: the example package and docs/plugins.md's quick start.

They are pip-installed into a throwaway venv layered on the test venv rather
than into the test venv itself, so a benchmark or another test started from
.venv meanwhile never sees a half-installed plugin, and a second run starts clean.
"""
import ast
import csv
import json
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import acqkit
from acqkit import LabelContext

pytestmark = pytest.mark.integration  # pip installs packages into the venv

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "acqkit-plugin-example"
PACKAGE = "acqkit-plugin-example"
COMPONENTS = {("length-contrast", "strategy"), ("noisy-gold", "labeler"), ("keywords", "task")}
QUICK_START = "likely-vs-unlikely"  # the strategy package whose files docs/plugins.md spells out


def quick_start_files(dest: Path) -> Path:
    """Write the files of the docs' quick start (code blocks opening with ``# likely-vs-unlikely/FILE``)."""
    text = (ROOT / "docs" / "plugins.md").read_text()
    blocks = re.findall(r"```\w*\n(# " + QUICK_START + r"/(\S+)\n.*?)```", text, re.S)
    assert {name for _, name in blocks} == {"pyproject.toml", "likely_vs_unlikely.py"}
    for body, name in blocks:
        (dest / QUICK_START).mkdir(parents=True, exist_ok=True)
        (dest / QUICK_START / name).write_text(body)
    return dest / QUICK_START


def run(cmd, **kw):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kw)
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def plugin_rows(python) -> dict:
    """``acqkit plugins`` as {(name, kind): (package, plugin)}, parsed from the printed table."""
    out = run([python, "-m", "acqkit", "plugins"])
    assert f"plugin API {acqkit.API_VERSION}" in out
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 4:
            rows[(cells[0], cells[1])] = (cells[2], cells[3])
    return rows


@pytest.fixture
def venv(tmp_path):
    """A venv without pip whose site-packages also reads the test venv's (acqkit, torch, pip...)."""
    root = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", root])
    python = root / "bin" / "python"
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).strip()
    base = sysconfig.get_path("purelib")
    # An `import` line in a .pth runs at start-up; addsitedir also runs the base's .pth files (the editable acqkit).
    Path(site, "_acqkit_test_base.pth").write_text(f"import site; site.addsitedir({base!r})\n")
    return python


def installed(python) -> set[str]:
    """Distribution names the venv sees (no acqkit import: a second faster than ``acqkit plugins``)."""
    code = "import importlib.metadata as m; print('\\n'.join(d.metadata['Name'] for d in m.distributions()))"
    return set(run([python, "-c", code]).split())


def test_example_and_quick_start_install_list_run_and_uninstall(venv, tmp_path):
    assert not {PACKAGE, "acqkit-" + QUICK_START} & installed(venv)
    source = tmp_path / "src"  # build from a copy: setuptools leaves build/ and *.egg-info beside the sources
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = [venv, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    try:
        run(pip + [source])
        run(pip + ["-e", quick_start_files(tmp_path / "docs")])  # `pip install -e ./likely-vs-unlikely`, as the docs say
        assert {PACKAGE, "acqkit-" + QUICK_START} <= installed(venv)  # so the checks before and after can see them
        rows = plugin_rows(venv)
        for key in COMPONENTS:
            assert rows.get(key) == (PACKAGE, "example"), (key, rows.get(key))
        assert rows.get((QUICK_START, "strategy")) == ("acqkit-" + QUICK_START, QUICK_START)
        assert rows[("random", "strategy")][0] == "acqkit"

        out = tmp_path / "compare"
        run([venv, "-m", "acqkit", "compare", "--preset", "smoke", "--task", "keywords",
             "--strategies", f"length-contrast,{QUICK_START},random", "--labeler", "noisy-gold", "--seeds", "1",
             "--out", out, "--quiet"])
        with open(out / "results.csv", newline="") as f:
            results = list(csv.DictReader(f))
        by_run = {}
        for row in results:
            by_run.setdefault(row["strategy"], []).append(row)
        assert set(by_run) == {"length-contrast", QUICK_START, "random"}
        for strategy, rows_ in by_run.items():
            # smoke: 16 warm-start labels, then 32 over 2 rounds; the task has 24 train prompts, enough for 16.
            assert [(r["round"], r["labels_spent"]) for r in rows_] == [("0", "16"), ("1", "32"), ("2", "48")]
            assert all(0.0 <= float(r["win_rate"]) <= 1.0 for r in rows_)

        # The example labeler answered the online rounds (the warm start is gold for every strategy),
        # and the example strategy chose them: its score is the token-length gap, never negative.
        run_dir = out / "runs" / "length-contrast" / "seed-0"
        labels = [json.loads(line) for line in (run_dir / "labels.jsonl").read_text().splitlines()]
        online = [r for r in labels if r["round"] > 0]
        assert len(online) == 32 and {r["source"] for r in online} == {"noisy-gold"}
        assert {r["source"] for r in labels if r["round"] == 0} == {"gold"}
        examples = [json.loads(line) for line in (run_dir / "examples.jsonl").read_text().splitlines()]
        gaps = sorted(len(e["a"]) - len(e["b"]) for e in examples if e["round"] > 0)
        assert gaps == sorted(int(r["score"]) for r in online) and min(gaps) >= 0
    finally:
        run([venv, "-m", "pip", "uninstall", "-q", "-y", PACKAGE, "acqkit-" + QUICK_START])
    assert not {PACKAGE, "acqkit-" + QUICK_START} & installed(venv)


def test_example_imports_only_acqkits_public_api():
    """A plugin written against anything but ``from acqkit import <exported name>`` may break on any release."""
    for path in (EXAMPLE / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "acqkit" for a in node.names), (path, ast.unparse(node))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "acqkit":
                assert node.module == "acqkit", (path, ast.unparse(node))
                assert {a.name for a in node.names} <= set(acqkit.__all__), (path, ast.unparse(node))


@pytest.fixture
def example(monkeypatch):
    """The example's modules imported from its source tree (no entry point, so the registry is untouched)."""
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    import acqkit_plugin_example

    yield acqkit_plugin_example
    for name in [m for m in sys.modules if m.startswith("acqkit_plugin_example")]:
        del sys.modules[name]


def test_length_contrast_pairs_longest_with_shortest_and_ranks_by_gap(example, rng):
    lengths = {"p0": [5, 9, 2, 7], "p1": [4, 4, 4, 4], "p2": [1, 30, 3, 3]}
    table = pd.DataFrame([{"prompt_id": p, "response_id": 4 * i + j, "n_tokens": n}
                          for i, (p, ns) in enumerate(lengths.items()) for j, n in enumerate(ns)])
    pairs = example.LengthContrast().select(table, budget=2, rng=rng, beta=0.1)
    assert list(pairs.columns) == acqkit.PAIR_COLUMNS
    # p2 (gap 29) before p0 (gap 7); p1 (gap 0) does not make the budget of 2.
    assert pairs[["prompt_id", "a", "b", "score"]].values.tolist() == [["p2", 9, 8, 29.0], ["p0", 1, 2, 7.0]]
    everything = example.LengthContrast().select(table, budget=10, rng=rng, beta=0.1)
    assert everything["prompt_id"].tolist() == ["p2", "p0", "p1"] and (everything["a"] != everything["b"]).all()


def test_noisy_gold_flips_the_share_it_is_told_to(example):
    task = example.KeywordTask(tau=0.01)  # a keyword gap of 1 gives p = sigmoid(100): exactly 1.0
    prompt = task.train_prompts()[0]  # keywords: music, score, melody
    n = 400
    table = pd.DataFrame({"prompt_id": [prompt.id] * 2 * n, "response_id": range(2 * n),
                          "text": ["the music, the score, the melody"] * n + ["nothing to see"] * n})
    pairs = pd.DataFrame({"prompt_id": [prompt.id] * n, "a": range(n), "b": range(n, 2 * n), "score": 0.0})

    def labels(flip):
        ctx = LabelContext(task=task, rng=np.random.default_rng(0), round=1, extras={"prompts": [prompt]})
        return example.NoisyGold(flip=flip).label(pairs, table, ctx)

    clean = labels(0.0)
    assert list(clean.columns) == acqkit.LABEL_COLUMNS and (clean["p"] == 1.0).all() and (clean["cost"] == 1).all()
    wrong = (labels(0.25)["p"] == 0.0).mean()
    assert 0.18 < wrong < 0.32  # 400 draws at 0.25: sd 0.022, so this is a 3-sd band
    with pytest.raises(ValueError, match="flip"):
        example.NoisyGold(flip=0.9)
