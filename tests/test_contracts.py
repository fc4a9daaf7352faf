"""What the loop asks of components is declared on the interfaces: recipes, duck types, prompt extras, token counts."""
import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch

import acqkit
from acqkit import Labeler, Oracle, Prompt, Refiner, Strategy, Task, TrainingSet, declared, hookimpl
from acqkit.components import OPTIONAL, gold_rewards
from acqkit.config import preset
from acqkit.plugins import collect, make_manager
from acqkit.round.loop import run
from kill_helpers import StopAfterRound


class Replay(Strategy):
    """A recipe the loop has never heard of: train on this round's pairs plus the last round's, and count rounds.

    ``seen`` is a state dict it declares ``checkpointed``, so a resumed run continues the count.
    """

    checkpointed = ("seen",)

    def __init__(self):
        self.seen = None
        self.calls = []

    def select(self, table, budget, rng, beta):
        pairs = table.groupby("prompt_id", sort=False)["response_id"].agg(list)
        return acqkit.pairs_frame(pairs.index, [r[0] for r in pairs], [r[1] for r in pairs], 0.0).head(budget)

    def training_set(self, new, history):
        rounds = 1 if self.seen is None else int(self.seen["rounds"]) + 1
        self.seen = {"rounds": torch.tensor(rounds)}
        self.calls.append((rounds, len(new), len(history)))
        last = history[-len(new):] if history else []
        return TrainingSet(last + new)


class Plugins:
    def __init__(self):
        self.made = []
        self.oracle_calls = []

    @hookimpl
    def acqkit_register_strategies(self, register):
        def replay():
            self.made.append(Replay())
            return self.made[-1]
        register("replay", replay)
        register("duck", DuckStrategy)

    @hookimpl
    def acqkit_register_labelers(self, register):
        register("duck-gold", DuckLabeler)

    @hookimpl
    def acqkit_register_refiners(self, register):
        register("duck-refiner", DuckRefiner)

    @hookimpl
    def acqkit_register_oracles(self, register):
        calls = self.oracle_calls
        register("counts", lambda: CountingOracle(calls))
        register("plain", PlainOracle)


def registry_with(*extra):
    plugins = Plugins()
    return collect(make_manager(extra_plugins=[plugins, *extra])), plugins


def test_a_recipe_of_its_own_builds_its_training_set_and_checkpoints_its_state(tmp_path):
    reg, plugins = registry_with()
    cfg = preset("smoke", strategy="replay", rounds=3, budget=12, seed_labels=4)
    full = run(cfg, out=tmp_path / "full", registry=reg)
    assert full["pairs_trained"].tolist() == [4, 4, 8, 8]  # round 1: its 4; later: 4 new + the last round's 4
    assert plugins.made[-1].calls == [(1, 4, 0), (2, 4, 4), (3, 4, 8)]
    examples = [json.loads(x) for x in (tmp_path / "full" / "examples.jsonl").read_text().splitlines()]
    assert len(examples) == 12  # examples.jsonl keeps the new pairs of each round, not the training sets

    crashing, plugins = registry_with(StopAfterRound(2))
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out=tmp_path / "resumed", registry=crashing)
    assert (tmp_path / "resumed" / "checkpoint" / "seen.safetensors").exists()
    resumed, plugins = registry_with()
    run(cfg, out=tmp_path / "resumed", registry=resumed, resume=True)
    assert plugins.made[-1].calls == [(3, 4, 8)]  # the count came back from the checkpoint
    for name in ("results.csv", "labels.jsonl", "examples.jsonl"):
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name


class DuckStrategy:
    """No base class: no plan, training, labeler, refiner, train_reference, training_set or checkpointed."""

    greedy = False  # True: two pairs per prompt, over the budget, which paid = True (the default) must refuse

    def select(self, table, budget, rng, beta):
        pairs = table.groupby("prompt_id", sort=False)["response_id"].agg(list)
        frame = acqkit.pairs_frame(pairs.index, [r[0] for r in pairs], [r[1] for r in pairs], 0.0)
        if self.greedy:
            more = acqkit.pairs_frame(pairs.index, [r[0] for r in pairs], [r[2] for r in pairs], 0.0)
            return pd.concat([frame, more], ignore_index=True)
        return frame.head(budget)


class DuckLabeler:
    """No base class, no ``paid``, ``ledger_identity`` or ``needs_previous_policy``: a paid labeler by default."""

    def label(self, pairs, table, context):
        assert context.extras["previous"] is None
        return pairs.assign(p=1.0, source="duck", cost=1)


class DuckRefiner:
    """No methods at all: ``refine`` keeps the labels, ``in_training`` changes nothing."""


def test_declared_defaults_are_the_interface_defaults_for_any_object():
    for interface, names in OPTIONAL.items():
        for name in names:
            value = declared(object(), interface, name)
            default = interface.__dict__[name]
            if callable(default):
                assert value.__func__ is default
            else:
                assert value == default
    assert declared(Replay(), Strategy, "checkpointed") == ("seen",)
    with pytest.raises(KeyError, match="no optional 'pad'"):
        declared(object(), Strategy, "pad")


def test_duck_typed_components_get_the_declared_defaults_in_a_run(tmp_path):
    reg, _ = registry_with()
    cfg = preset("smoke", strategy="duck", labeler="duck-gold", refiner="duck-refiner", rounds=2, budget=8,
                 seed_labels=4)
    results = run(cfg, out=tmp_path, registry=reg)
    assert results["labels_spent"].tolist() == [4, 8, 12]  # paid: every duck label costs and is counted
    assert results["pairs_trained"].tolist() == [4, 4, 4]  # training "continue": the round's pairs only
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:  # paid: kept in the ledger, filed under the spec
        names = {row[0] for row in db.execute("SELECT labeler FROM labels")}
    assert "duck-gold" in names
    DuckStrategy.greedy = True
    try:
        with pytest.raises(Exception, match="budget"):
            run(cfg, out=tmp_path / "greedy", registry=reg)
    finally:
        DuckStrategy.greedy = False


class CountingOracle(Oracle):
    token_counts = True

    def __init__(self, calls):
        self.calls = calls

    def reward(self, prompts, responses, n_tokens=None):
        self.calls.append(([dict(p.extras) for p in prompts], list(responses), n_tokens))
        return np.array([float(p.extras.get("reference", "") in r) for p, r in zip(prompts, responses)])


class PlainOracle(Oracle):
    """A 1.1 oracle: two arguments, no token counts."""

    def reward(self, prompts, responses):
        return np.array([float(len(r)) for r in responses])


def prompt_file(tmp_path):
    path = tmp_path / "ref.jsonl"
    rows = [{"id": f"q{i}", "prompt": f"Say the word number {i}.", "reference": f"word{i}", "level": i,
             "split": "eval" if i >= 8 else "train"} for i in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prompt_extras_and_token_counts_reach_the_oracle_of_a_file_task(tmp_path):
    reg, plugins = registry_with()
    task = reg.build("task", f"file:{prompt_file(tmp_path)}(oracle=counts)")
    prompts = task.train_prompts()[:2]
    assert dict(prompts[0].extras) == {"reference": "word0", "level": 0}  # id, prompt and split are not extras
    with pytest.raises(TypeError):
        prompts[0].extras["reference"] = "changed"  # read-only
    rewards = gold_rewards(task, prompts, ["it is word0", "no"], [3, 1])
    assert rewards.tolist() == [1.0, 0.0]
    assert plugins.oracle_calls[-1] == ([{"reference": "word0", "level": 0}, {"reference": "word1", "level": 1}],
                                        ["it is word0", "no"], [3, 1])
    plain = reg.build("task", f"file:{prompt_file(tmp_path)}(oracle=plain)")  # an oracle without counts still works
    assert gold_rewards(plain, prompts, ["abc", "de"], [3, 1]).tolist() == [3.0, 2.0]


def test_a_token_count_oracle_gets_the_table_counts_in_a_run(tmp_path):
    reg, plugins = registry_with()
    cfg = preset("smoke", strategy="smallest-margin", task=f"file:{prompt_file(tmp_path)}(oracle=counts)",
                 rounds=1, budget=4, seed_labels=4, eval_prompts=2)
    run(cfg, out=tmp_path / "run", registry=reg)
    assert plugins.oracle_calls and all(counts is not None for _, _, counts in plugins.oracle_calls)
    assert all("reference" in extras for call in plugins.oracle_calls for extras in call[0])
    asked = {}
    for _, texts, counts in plugins.oracle_calls:
        for text, n in zip(texts, counts):
            asked.setdefault(text, set()).add(n)
    labels = [json.loads(x) for x in (tmp_path / "run" / "labels.jsonl").read_text().splitlines()]
    examples = [json.loads(x) for x in (tmp_path / "run" / "examples.jsonl").read_text().splitlines()]
    online = [row for row in labels if row["round"] == 1]
    assert len(online) == len(examples) == 4
    for row, ex in zip(online, examples):  # the oracle saw each response's own token count
        assert len(ex["a"]) in asked[row["text_a"]] and len(ex["b"]) in asked[row["text_b"]]


class Judge(Labeler):
    """An outside labeler that asks for the previous iterate (API 1.1), as SELFEE's judge=previous does."""

    paid = False
    needs_previous_policy = True

    def __init__(self, seen):
        self.seen = seen

    def label(self, pairs, table, context):
        self.seen.append(context.extras["previous"])
        return pairs.assign(p=1.0, source="judge", cost=0)


class JudgePlugin:
    def __init__(self):
        self.seen = []

    @hookimpl
    def acqkit_register_labelers(self, register):
        register("previous-judge", lambda: Judge(self.seen))


def test_a_labeler_that_needs_the_previous_policy_gets_it_and_the_checkpoint_keeps_it(tmp_path):
    judge = JudgePlugin()
    reg, _ = registry_with(judge)
    cfg = preset("smoke", strategy="smallest-margin", labeler="previous-judge", rounds=2, budget=8, seed_labels=4)
    run(cfg, out=tmp_path, registry=reg)
    first, second = judge.seen
    assert first is not None and second is not None and first is not second  # round 1: the initial model
    assert not any(p.requires_grad for p in second.parameters())
    assert (tmp_path / "checkpoint" / "previous.safetensors").exists()


def test_interfaces_keep_their_one_required_method():
    for interface, required in ((Strategy, "select"), (Labeler, "label"), (Task, "gold_reward"),
                                (Oracle, "reward")):
        assert required in interface.__abstractmethods__
    assert Refiner().refine("labels", None) == "labels" and Refiner().in_training(None) is None
    with pytest.raises(ValueError, match="start must be one of"):
        TrainingSet([], start="scratch")
    assert Prompt("x", ()).extras == {} and Prompt("x", ()) == Prompt("x", ())


def test_the_strategy_building_blocks_are_public_api():
    import acqkit.strategies

    assert set(acqkit.strategies.__all__) <= set(acqkit.__all__)
    assert all(getattr(acqkit, name) is getattr(acqkit.strategies, name) for name in acqkit.strategies.__all__)
    assert tuple(map(int, acqkit.API_VERSION.split("."))) >= (1, 2)  # the building blocks came in 1.2
