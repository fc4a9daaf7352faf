"""Sampler backends: the built-in ``hf`` is the old generate, an outside one plugs in, bad ones are named."""
import json

import pandas as pd
import pytest
from click.testing import CliRunner
from transformers import AutoModelForCausalLM

from acqkit import Sampler, hookimpl
from acqkit.cli import cli
from acqkit.config import preset
from acqkit.round.loop import run
from acqkit.plugins import UnknownComponent, collect, make_manager, registry
from acqkit.round.sample import GenConfig, SampleRequest, generate, sample

CANNED = ["great film", "awful boring plot", "the music was wonderful", "bad"]


class Canned(Sampler):
    """Deterministic continuations built from the tokenizer, with junk after the stop token to be cut."""

    def __init__(self):
        self.labels = []

    def generate(self, request):
        self.labels.append(request.label)
        tok, eos = request.tokenizer, request.tokenizer.eos_token_id
        assert eos in request.stop_ids
        out = []
        for _ in request.prompt_ids:
            for i in range(request.n):
                text = CANNED[0] if request.gen.temperature == 0 else CANNED[(request.seed + i) % 3]
                ids = tok(text, add_special_tokens=False)["input_ids"]
                out.append(ids + [eos] + ids[:2])
        return out


class CannedPlugin:
    def __init__(self):
        self.sampler = Canned()

    @hookimpl
    def acqkit_register_samplers(self, register):
        register("canned", lambda: self.sampler)


def test_hf_sampler_is_exactly_the_builtin_generate(tiny):
    model, tok = tiny
    prompts = [[5, 17, 42, 8], [9, 3]]
    gen = GenConfig(max_new_tokens=8, temperature=1.0, batch_size=3)
    hf = registry().build("sampler", "hf")
    assert registry().get("sampler", "hf").package == "acqkit"
    assert sample(hf, "hf", model, tok, prompts, 2, gen, seed=3) == generate(model, tok, prompts, 2, gen, 3)


def test_an_outside_sampler_runs_a_whole_run_and_eval(tmp_path, tiny):
    plugin = CannedPlugin()
    reg = collect(make_manager(extra_plugins=[plugin]))
    cfg = preset("smoke", sampler="canned", rounds=2, budget=8, seed_labels=4, eval_prompts=8, ref_cache="exact")
    results = run(cfg, out=tmp_path, registry=reg)
    assert {"eval: greedy", "sampling", "eval: KL samples"} <= set(plugin.sampler.labels)
    # Policy and reference both answer CANNED[0] greedily, so the win rate is exactly 0.5 every round.
    assert (results["win_rate"] == 0.5).all()
    tok = tiny[1]
    texts = {tok.decode(tok(t, add_special_tokens=False)["input_ids"]) for t in CANNED[:3]}
    labels = [json.loads(x) for x in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert labels and all(r["text_a"] in texts and r["text_b"] in texts for r in labels)
    eos = tok.eos_token_id
    for ex in map(json.loads, (tmp_path / "examples.jsonl").read_text().splitlines()):
        for resp in (ex["a"], ex["b"]):
            assert resp[-1] == eos and resp.count(eos) == 1  # cut after the stop token
    timings = pd.read_json(tmp_path / "timings.jsonl", lines=True)
    assert timings["round"].tolist() == [1, 2]
    assert timings["ref_cached"].sum() > 0 and (timings["ref_scored"] > 0).all()  # 3 texts, 4 samples a prompt


def test_unknown_or_broken_samplers_are_clear_errors(tmp_path, tiny):
    reg = collect(make_manager(extra_plugins=[CannedPlugin()]))
    with pytest.raises(UnknownComponent, match="unknown sampler 'nope'; known samplers: canned, hf"):
        run(preset("smoke", sampler="nope"), out=tmp_path / "x", registry=reg)
    assert not (tmp_path / "x").exists()
    result = CliRunner().invoke(cli, ["run", "--preset", "smoke", "--sampler", "nope", "--out", str(tmp_path / "y")])
    assert result.exit_code != 0 and "unknown sampler 'nope'" in result.output and "hf" in result.output

    class Short(Sampler):
        def generate(self, request):
            return [[1, 2]]

    model, tok = tiny
    with pytest.raises(ValueError, match="sampler 'short' returned 1 responses for 1 prompts x 2"):
        sample(Short(), "short", model, tok, [[5, 6]], 2, GenConfig(), seed=0)


def test_a_request_saves_the_policy_for_an_outside_engine(tmp_path, tiny):
    model, tok = tiny
    request = SampleRequest(model, tok, [[5, 6]], 1, GenConfig(), 0, frozenset({tok.eos_token_id}))
    saved = AutoModelForCausalLM.from_pretrained(request.save_policy(tmp_path / "policy")).state_dict()
    assert all((saved[k] == v).all() for k, v in model.state_dict().items())
    assert (tmp_path / "policy" / "tokenizer_config.json").exists()
