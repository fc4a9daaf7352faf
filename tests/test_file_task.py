"""Tasks from prompt files (issue #9): the ``file`` task, oracles by name, and a whole smoke comparison."""
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from acqkit import Oracle, hookimpl
from acqkit.cli import cli
from acqkit.config import load_compare
from acqkit.hookspecs import API_VERSION
from acqkit.plugins import ComponentError, UnknownComponent, collect, make_manager, parse_spec, registry
from acqkit.round.task import read_prompts

PROMPTS = Path(__file__).parent / "data" / "prompts.jsonl"  # 24 prompts, no id or split column


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="acqkit")


def test_file_shorthand_and_options_parse():
    assert parse_spec("file:my data/p.jsonl") == ("file", {"path": "my data/p.jsonl"})
    assert parse_spec("file:p.jsonl(oracle=vader, eval_fraction=0.25)") == (
        "file", {"path": "p.jsonl", "oracle": "vader", "eval_fraction": 0.25})
    assert parse_spec("file:runs(1)/p.jsonl") == ("file", {"path": "runs(1)/p.jsonl"})
    assert parse_spec("file(path=p.csv, prompt=text, id=uid)") == (
        "file", {"path": "p.csv", "prompt": "text", "id": "uid"})
    with pytest.raises(ComponentError, match="path is given twice"):
        parse_spec("file:a.jsonl(path=b.jsonl)")


def test_the_sentiment_data_as_a_file_task_equals_the_sentiment_task():
    """The VADER reward moved into the ``vader`` oracle; the sentiment task must not have changed."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    data = resources.files("acqkit_plugins").joinpath("data/sentiment_prompts.jsonl")
    sentiment, from_file = registry().build("task", "sentiment"), registry().build("task", f"file:{data}")
    assert sentiment.train_prompts() == from_file.train_prompts() and len(sentiment.train_prompts()) > 100
    assert sentiment.eval_prompts() == from_file.eval_prompts() and sentiment.tau == from_file.tau == 0.1
    responses = ["What a wonderful, moving film!", "Dull, slow and painful.", "It is a film."]
    prompts = sentiment.train_prompts()[:3]
    direct = [SentimentIntensityAnalyzer().polarity_scores(r)["compound"] for r in responses]
    assert sentiment.gold_reward(prompts, responses).tolist() == direct
    assert from_file.gold_reward(prompts, responses).tolist() == direct
    assert direct[0] > 0.5 > -0.5 > direct[1]


class Length(Oracle):
    def reward(self, prompts, responses):
        return np.array([len(r) for r in responses], dtype=float)


class LengthPlugin:
    @hookimpl
    def acqkit_register_oracles(self, register):
        register("length", Length)


def test_a_task_finds_its_oracle_in_the_registry_that_builds_it():
    reg = collect(make_manager(extra_plugins=[LengthPlugin()]))
    task = reg.build("task", f"file:{PROMPTS}(oracle=length, tau=0.5)")
    assert task.gold_reward(task.train_prompts()[:2], ["ab", "abcd"]).tolist() == [2.0, 4.0] and task.tau == 0.5
    # the installed plugins alone do not have it, and the error says how to choose one
    hint = r"unknown oracle 'length'; known oracles: [^.]*vader\. Name the gold oracle in the task spec: --task 'file\(path="
    with pytest.raises(UnknownComponent, match=hint + r".*prompts.jsonl, oracle=NAME\)'"):
        registry().build("task", f"file:{PROMPTS}(oracle=length)")


def test_the_file_task_needs_a_path():
    with pytest.raises(ValueError, match=r"task 'file' needs a prompt file: --task file:PATH"):
        registry().build("task", "file")


def test_plugins_lists_the_oracles_and_the_api_version():
    assert API_VERSION == "1.4"
    result = invoke("plugins")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert "oracle" in rows["vader"] and "task" in rows["file"]
    assert f"plugin API {API_VERSION}" in result.output


def test_a_toml_config_takes_a_file_task(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'strategies = ["random"]\nseeds = [0]\n[base]\nmodel = "tiny"\n'
                      f'task = "file:{PROMPTS}(eval_fraction=0.25)"\n')
    ccfg = load_compare(config)
    task = registry().build("task", ccfg.base.task)
    assert (len(task.train_prompts()), len(task.eval_prompts())) == (18, 6)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"text": "wrong column"}\n')
    config.write_text(config.read_text().replace(str(PROMPTS), str(bad)))
    result = invoke("compare", "--config", config, "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 1 and f"{bad}, line 2: no field 'prompt'" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_acqkit_run_also_reads_the_file_before_writing(tmp_path):
    bad = tmp_path / "p.csv"
    bad.write_bytes(b"prompt\nok\n\xff\xfe broken\n")
    result = invoke("run", "--preset", "smoke", "--task", f"file:{bad}", "--out", tmp_path / "run")
    assert result.exit_code == 1 and f"{bad}, line 3: not UTF-8 text (byte 0xff at column 1)" in result.output
    assert not (tmp_path / "run").exists()


def test_a_prompt_longer_than_the_model_context_is_named_before_anything_is_written(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"id": f"short-{i}", "prompt": f"Write happy note number {i}.", "split": "train"} for i in range(20)]
    rows.insert(1, {"id": "long", "prompt": "good " * 800, "split": "train"})  # line 2
    rows.append({"id": "held", "prompt": "Write a kind note.", "split": "eval"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = invoke("compare", "--preset", "smoke", "--task", f"file:{path}", "--out", tmp_path / "out", "--quiet")
    # the tiny model's context is 512 positions; smoke responses are 16 tokens
    assert result.exit_code == 1, result.output
    assert f"{path}, line 2: prompt 'long' is " in result.output
    assert ("tokens with the chat template, over the limit of 496: the model's context is 512 tokens "
            "and max_new_tokens=16 must fit after it") in result.output
    assert not (tmp_path / "out").exists()


def test_a_whole_smoke_comparison_on_a_prompt_file(tmp_path):
    """`acqkit compare --preset smoke --task file:PATH`: the user's own prompts, no code."""
    out = tmp_path / "out"
    result = invoke("compare", "--preset", "smoke", "--task", f"file:{PROMPTS}", "--seeds", "1", "--out", out,
                    "--quiet")
    assert result.exit_code == 0, result.output
    assert "smallest-margin" in result.output and "random" in result.output
    results = pd.read_csv(out / "results.csv")
    assert set(results["strategy"]) == {"random", "smallest-margin"} and sorted(set(results["round"])) == [0, 1, 2]
    final = results[results["round"] == 2]
    assert (final["labels_spent"] == 48).all() and final["win_rate"].between(0, 1).all()
    assert np.isfinite(final[["gold_reward", "kl", "train_loss"]].to_numpy()).all()
    assert f'task = "file:{PROMPTS}"' in (out / "config.toml").read_text()
    # labels were bought only for train prompts: the held-out fifth is never trained on
    split = read_prompts(PROMPTS)
    train, held = {p.id for p in split.train}, {p.id for p in split.eval}
    assert (len(train), len(held)) == (19, 5)
    labelled = {json.loads(line)["prompt_id"] for f in out.glob("runs/*/seed-0/labels.jsonl")
                for line in f.read_text().splitlines()}
    assert labelled and labelled <= train and not labelled & held
