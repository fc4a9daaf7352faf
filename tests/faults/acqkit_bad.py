"""A test-only acqkit plugin of broken components: each misbehaves in one way acqkit must catch.

tests/test_bad_input.py installs it through the ``acqkit`` entry-point group
(a dist-info on sys.path), so errors name it as they would name any
third-party package.
"""
from __future__ import annotations

import numpy as np

import acqkit
from acqkit import Labeler, Prompt, Refiner, SamplePlan, Strategy, Task, build, hookimpl
from acqkit.strategies import pairs_frame


class GoodPairs(Strategy):
    """The first two responses of each of the first ``budget`` prompts; subclasses spoil them."""

    def select(self, table, budget, rng, beta):
        first = table.groupby("prompt_id", sort=False)["response_id"].agg(list).iloc[:budget]
        return self.spoil(pairs_frame(first.index, [r[0] for r in first], [r[1] for r in first], 0.0), table)

    def spoil(self, pairs, table):
        return pairs


class UnknownIds(GoodPairs):
    def spoil(self, pairs, table):
        return pairs.assign(b=pairs["b"].where(pairs.index > 0, 10_000))


class SelfPair(GoodPairs):
    def spoil(self, pairs, table):
        return pairs.assign(b=pairs["a"])


class AcrossPrompts(GoodPairs):
    def spoil(self, pairs, table):
        return pairs.assign(b=np.roll(pairs["b"].to_numpy(), 1))


class OverBudget(Strategy):
    def plan(self, budget, n_responses, temperature):
        return SamplePlan(budget + 1, n_responses, temperature)

    def select(self, table, budget, rng, beta):
        first = table.groupby("prompt_id", sort=False)["response_id"].agg(list).iloc[: budget + 1]
        return pairs_frame(first.index, [r[0] for r in first], [r[1] for r in first], 0.0)


class Raises(GoodPairs):
    def select(self, table, budget, rng, beta):
        raise RuntimeError("selection exploded")


class PandasRaises(GoodPairs):
    def select(self, table, budget, rng, beta):
        return table.loc[:, "no-such-column"]  # KeyError deep inside pandas: blame points at this line


def broken_factory():
    return {}["missing option"]  # a KeyError while the component is being built


class Oracle(Labeler):
    """Answers ``p`` for every pair, charging 1 each; subclasses answer badly."""

    paid = True
    p = 1.0

    def label(self, pairs, table, context):
        return pairs.assign(p=self.p, source="bad", cost=1)


class NaNOracle(Oracle):
    p = float("nan")


class InfOracle(Oracle):
    p = float("inf")


class OutOfRange(Oracle):
    p = 1.5


class WrongCount(Oracle):
    def label(self, pairs, table, context):
        return super().label(pairs, table, context).iloc[:-1]


class Reordered(Oracle):
    def label(self, pairs, table, context):
        return super().label(pairs, table, context).iloc[::-1]


class Unreachable(Oracle):
    def label(self, pairs, table, context):
        raise ConnectionError("oracle unreachable")


class TrainingTargetsRaise(Refiner):
    def in_training(self, context):
        def targets(batch):
            raise FloatingPointError("targets diverged")
        return targets


class LaterNaN(acqkit.Oracle):  # (Oracle above is a labeler)
    """Finite rewards for the first call (the eval set), NaN after: the labels are what it poisons."""

    def __init__(self):
        self.calls = 0

    def reward(self, prompts, responses):
        self.calls += 1
        return np.full(len(responses), 0.5 if self.calls == 1 else np.nan)


class SmallTask(Task):
    """8 train and 3 eval prompts, gold reward = response length; subclasses spoil it."""

    tau = 1.0

    def __init__(self, oracle: str | None = None):
        self.oracle = build("oracle", oracle) if oracle else None

    def prompt(self, i: int, split: str) -> Prompt:
        return Prompt(f"{split}-{i}", ({"role": "user", "content": f"Say something kind ({split} {i})."},))

    def train_prompts(self):
        return [self.prompt(i, "train") for i in range(8)]

    def eval_prompts(self):
        return [self.prompt(i, "eval") for i in range(3)]

    def gold_reward(self, prompts, responses):
        if self.oracle is not None:
            return self.oracle.reward(prompts, responses)
        return np.array([len(r) / 100 for r in responses], dtype=float)


class InfTask(SmallTask):
    def gold_reward(self, prompts, responses):
        return np.full(len(responses), np.inf)


class PromptTask(SmallTask):
    """Its third train prompt is ``text``."""

    text = ""

    def train_prompts(self):
        prompts = super().train_prompts()
        prompts[2] = Prompt("odd", ({"role": "user", "content": self.text},))
        return prompts


class EmptyPrompt(PromptTask):
    text = ""


class BlankPrompt(PromptTask):
    text = " \n\t "


class LongPrompt(PromptTask):
    text = "kind words " * 2000


@hookimpl
def acqkit_register_oracles(register):
    register("nan-later", LaterNaN)


@hookimpl
def acqkit_register_tasks(register):
    for name, factory in (("small-task", SmallTask), ("inf-task", InfTask), ("empty-prompt-task", EmptyPrompt),
                          ("blank-prompt-task", BlankPrompt), ("long-prompt-task", LongPrompt)):
        register(name, factory)


@hookimpl
def acqkit_register_strategies(register):
    for name, factory in (("bad-unknown-ids", UnknownIds), ("bad-self-pair", SelfPair),
                          ("bad-across-prompts", AcrossPrompts), ("bad-over-budget", OverBudget),
                          ("bad-raises", Raises), ("bad-pandas", PandasRaises), ("bad-factory", broken_factory)):
        register(name, factory)


@hookimpl
def acqkit_register_labelers(register):
    for name, factory in (("nan-oracle", NaNOracle), ("inf-oracle", InfOracle), ("range-oracle", OutOfRange),
                          ("short-oracle", WrongCount), ("reordered-oracle", Reordered),
                          ("unreachable-oracle", Unreachable)):
        register(name, factory)


@hookimpl
def acqkit_register_refiners(register):
    register("raising-refiner", TrainingTargetsRaise)
