"""The ``reward-model`` oracle and labeler (issue #16): a tiny random sequence classifier, by path and by hub id.

The hub is unreachable here, so a module fixture builds what a download leaves
behind (``models--ORG--NAME/snapshots/<commit>``, as tests/test_hub_model.py
does) and the runs read it with ``HF_HUB_OFFLINE=1``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from acqkit import Prompt, models
from acqkit.components import LabelContext
from acqkit.errors import ConfigError, MissingFileError
from acqkit.plugins import ComponentError, parse_spec, registry
from acqkit.strategies import bradley_terry
from acqkit_plugins import reward_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"
HUB_ID = "acqkit-test/tiny-rm"
PROMPTS = Path(__file__).parent / "data" / "prompts.jsonl"
FLAGS = ["--preset", "smoke", "--strategies", "random", "--seeds", "1", "--rounds", "1", "--budget", "4",
         "--seed-labels", "2", "--eval-prompts", "4", "--kl-samples", "0", "--quiet"]


def build_classifier(out: Path, template: bool = True, num_labels: int = 2) -> Path:
    """A random 2-layer LlamaForSequenceClassification on the tiny model's tokenizer (offline, seeded)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(models.resolve("tiny"))
    if not template:
        tok.chat_template = None
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tok.pad_token_id, num_labels=num_labels)
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config)
    with torch.no_grad():  # a readable spread of rewards (the default head init gives ~0.01)
        model.score.weight.normal_(0, 1.0)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def rm(tmp_path_factory) -> Path:
    return build_classifier(tmp_path_factory.mktemp("rm") / "templated")


@pytest.fixture(scope="module")
def plain_rm(tmp_path_factory) -> Path:
    return build_classifier(tmp_path_factory.mktemp("rm") / "plain", template=False)


@pytest.fixture(scope="module")
def hub(rm, tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("hf-hub")
    repo = cache / ("models--" + HUB_ID.replace("/", "--"))
    shutil.copytree(rm, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


PROMPT_SET = [Prompt("p0", ({"role": "user", "content": "Write a short positive review of the film."},)),
              Prompt("p1", ({"role": "system", "content": "be brief"}, {"role": "user", "content": "a review"}))]
RESPONSES = ["great film, wonderful cast", "awful boring plot", "", "the ending was a glowing delight and the "
             "music superb", "nice"]


def cases():
    return [PROMPT_SET[i % 2] for i in range(len(RESPONSES))], RESPONSES


def direct_logits(path: Path, prompts, responses) -> np.ndarray:
    """What transformers says, one unpadded sequence at a time, with the model's own template."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    out = []
    for p, r in zip(prompts, responses):
        if tok.chat_template:
            text = tok.apply_chat_template([*p.messages, {"role": "assistant", "content": r}], tokenize=False)
            enc = tok(text, add_special_tokens=False, return_tensors="pt")
        else:
            enc = tok("\n\n".join([m["content"] for m in p.messages] + [r]), return_tensors="pt")
        with torch.no_grad():
            out.append(model(**enc).logits[0].numpy())
    return np.array(out)


def test_nested_specs_parse_at_the_top_level_only():
    inner = "reward-model(model=org/rm, index=1, diff=true)"
    assert parse_spec(f"sentiment(oracle={inner}, tau=0.5)") == ("sentiment", {"oracle": inner, "tau": 0.5})
    assert parse_spec(f"file:my.jsonl(oracle={inner})") == ("file", {"path": "my.jsonl", "oracle": inner})
    assert parse_spec(f"file:runs(1)/p.jsonl(oracle={inner}, tau=2)") == (
        "file", {"path": "runs(1)/p.jsonl", "oracle": inner, "tau": 2})
    assert parse_spec(f"hf:org/name(oracle={inner}, split=train)") == (
        "hf", {"path": "org/name", "oracle": inner, "split": "train"})
    assert parse_spec("x(o=y(f=1|2), g=a|b)") == ("x", {"o": "y(f=1|2)", "g": ["a", "b"]})  # | splits at the top
    for bad in ("x(o=y(a=1)", "x(o=y(a=1)))"):
        with pytest.raises(ComponentError, match="unbalanced parentheses"):
            parse_spec(bad)


@pytest.mark.parametrize("which", ["templated", "plain"])
def test_rewards_equal_a_direct_transformers_call(rm, plain_rm, which):
    path = rm if which == "templated" else plain_rm
    prompts, responses = cases()
    want = direct_logits(path, prompts, responses)
    reg = registry()
    for options, expect in (("", want[:, 0]), (", index=1", want[:, 1]), (", index=1, diff=true",
                                                                          want[:, 1] - want[:, 0])):
        oracle = reg.build("oracle", f"reward-model(model={path}, batch_size=2{options})")  # padded, bucketed
        np.testing.assert_allclose(oracle.reward(prompts, responses), expect, rtol=1e-5, atol=1e-5)
    assert np.ptp(want[:, 0]) > 0.1  # the rewards differ, so equality means something


def test_the_chat_template_is_used_when_the_tokenizer_has_one(rm, plain_rm):
    prompts, responses = cases()
    templated = reward_model.RewardModel(model=str(rm)).rewards(prompts, responses)
    plain = reward_model.RewardModel(model=str(plain_rm)).rewards(prompts, responses)  # same weights
    assert not np.allclose(templated, plain)
    alone = reward_model.RewardModel(model=str(rm), prompt=False).rewards(prompts, responses)
    np.testing.assert_allclose(alone[:2], reward_model.RewardModel(model=str(rm), prompt=False).rewards(
        PROMPT_SET[::-1], responses[:2]), rtol=1e-6)  # prompt=false: the prompt does not matter


def test_the_model_loads_lazily_and_once_per_process(rm):
    reward_model._load.cache_clear()
    oracle = registry().build("oracle", f"reward-model(model={rm}, index=1)")
    labeler = registry().build("labeler", f"reward-model(model={rm}, index=1, batch_size=1)")
    assert reward_model._load.cache_info().currsize == 0  # building read only the config
    prompts, responses = cases()
    first = oracle.reward(prompts, responses)
    np.testing.assert_allclose(oracle.reward(prompts, responses), first)
    labeler.model.rewards(prompts, responses)
    assert reward_model._load.cache_info().misses == 1  # the oracle and the labeler share one model


def test_a_nested_oracle_spec_works_inside_the_file_and_sentiment_tasks(rm):
    reg = registry()
    oracle = reg.build("oracle", f"reward-model(model={rm}, index=1, diff=true)")
    for spec in (f"file:{PROMPTS}(oracle=reward-model(model={rm}, index=1, diff=true, batch_size=3), tau=2)",
                 f"sentiment(oracle=reward-model(model={rm}, index=1, diff=true), tau=2)"):
        task = reg.build("task", spec)
        prompts = task.train_prompts()[:4]
        responses = ["good", "bad", "fine film", "dull"]
        assert task.tau == 2
        np.testing.assert_allclose(task.gold_reward(prompts, responses), oracle.reward(prompts, responses),
                                   rtol=1e-6)


def label_inputs():
    prompts, responses = cases()
    table = pd.DataFrame({"response_id": range(len(responses)), "prompt_id": [p.id for p in prompts],
                          "text": responses})
    pairs = pd.DataFrame({"prompt_id": ["p0", "p1", "p0"], "a": [0, 1, 4], "b": [2, 3, 0]})
    context = lambda: LabelContext(task=None, rng=np.random.default_rng(0), round=1,  # noqa: E731
                                   extras={"prompts": PROMPT_SET})
    return prompts, responses, table, pairs, context


def test_as_a_labeler_it_is_bradley_terry_on_the_rewards(rm):
    prompts, responses, table, pairs, context = label_inputs()
    r = reward_model.RewardModel(model=str(rm)).rewards(prompts, responses)
    reg = registry()
    soft = reg.build("labeler", f"reward-model(model={rm}, tau=0.5, hard=false)").label(pairs, table, context())
    np.testing.assert_allclose(soft["p"], bradley_terry(r[pairs["a"]], r[pairs["b"]], 0.5), rtol=1e-6)
    assert set(soft["source"]) == {"reward-model"} and list(soft["cost"]) == [1, 1, 1]
    hard = reg.build("labeler", f"reward-model(model={rm}, tau=0)").label(pairs, table, context())
    np.testing.assert_array_equal(hard["p"], (r[pairs["a"]] > r[pairs["b"]]).astype(float))


def test_the_ledger_identity_keeps_only_what_changes_an_answer(rm):
    ident = lambda spec: registry().build("labeler", spec).ledger_identity  # noqa: E731
    base = ident(f"reward-model(model={rm})")
    assert base == ident(f"reward-model(model={rm}, batch_size=1, device=cpu)")
    assert base[0] == "reward-model" and base[1]["model"] == str(rm)
    for other in ("index=1", "diff=true", "tau=2", "hard=false", "precision=bf16", "prompt=false"):
        assert ident(f"reward-model(model={rm}, {other})") != base, other


def test_bad_reward_models_are_named_before_anything_loads(rm, tmp_path):
    reward_model._load.cache_clear()
    reg = registry()
    missing = tmp_path / "nope"
    with pytest.raises(MissingFileError, match=f"reward-model\\(model={missing}\\): the reward model cannot be "
                                               "found: no model directory with a config.json"):
        reg.build("task", f"sentiment(oracle=reward-model(model={missing}))")
    with pytest.raises(ConfigError, match="not a sequence classifier \\(architectures: LlamaForCausalLM\\)"):
        reg.build("oracle", f"reward-model(model={models.resolve('tiny')})")
    with pytest.raises(ConfigError, match="index=2 but the model has 2 logit"):
        reg.build("labeler", f"reward-model(model={rm}, index=2)")
    with pytest.raises(ConfigError, match="name the reward model"):
        reg.build("oracle", "reward-model")
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16, auto"):
        reg.build("oracle", f"reward-model(model={rm}, precision=fp16)")
    assert reward_model._load.cache_info().currsize == 0


def acqkit(hub: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "acqkit", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.integration
def test_a_comparison_by_hub_id_equals_the_same_model_by_path(hub, rm, tmp_path):
    """Gold and labeler both the reward model (the labeler with other options), by id and by path."""
    runs = {}
    for how, model in (("id", HUB_ID), ("path", rm)):
        out = tmp_path / how
        result = acqkit(hub, "compare", *FLAGS, "--out", out,
                        "--task", f"sentiment(oracle=reward-model(model={model}, index=1))",
                        "--labeler", f"reward-model(model={model}, diff=true, batch_size=3)")
        assert result.returncode == 0, result.stderr
        runs[how] = out
    for name in ("results.csv", "runs/random/seed-0/labels.jsonl"):
        assert (runs["id"] / name).read_bytes() == (runs["path"] / name).read_bytes(), name
    labels = [json.loads(line) for line in (runs["id"] / "runs/random/seed-0/labels.jsonl").read_text().splitlines()]
    assert {r["source"] for r in labels if r["round"] == 1} == {"reward-model"} and len(labels) == 6


@pytest.mark.integration
@pytest.mark.parametrize("where", ["--task", "--labeler"])
def test_a_missing_hub_id_fails_in_preflight_naming_it(hub, tmp_path, where):
    spec = "reward-model(model=no-such-org/no-such-rm)"
    out = tmp_path / "cmp"
    result = acqkit(hub, "compare", *FLAGS, "--out", out, where, f"sentiment(oracle={spec})" if where == "--task"
                    else spec)
    message = " ".join(result.stderr.split())
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert ("reward-model(model=no-such-org/no-such-rm): the reward model cannot be found: not a local model "
            "directory, and its config.json cannot be fetched") in message, message
    assert not out.exists()
