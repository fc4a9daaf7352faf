"""The embedded default task: positive movie reviews scored by VADER.

Gold reward is the ``vader`` oracle, compound sentiment in [-1, 1] (the controlled-sentiment
setup of the DPO paper and of APL's IMDB experiment); preferences follow
Bradley-Terry on it with ``tau`` = 0.1 on VADER's [-1, 1] scale (acqkit's choice). Train and held-out prompts
name different films, so evaluation never sees a training film.
"""
from __future__ import annotations

import json
from importlib import resources

import numpy as np

from acqkit import Prompt, Task, build, hookimpl, oracle_rewards


def load_prompts(split: str) -> list[Prompt]:
    text = resources.files("acqkit_plugins").joinpath("data/sentiment_prompts.jsonl").read_text("utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [Prompt(r["id"], tuple(r["messages"])) for r in rows if r["split"] == split]


class SentimentTask(Task):
    token_counts = True  # passed on to an oracle that declares it

    def __init__(self, tau: float = 0.1, oracle: str = "vader"):
        self.tau = float(tau)
        self.oracle = build("oracle", str(oracle))

    def train_prompts(self) -> list[Prompt]:
        return load_prompts("train")

    def eval_prompts(self) -> list[Prompt]:
        return load_prompts("eval")

    def gold_reward(self, prompts, responses, n_tokens=None) -> np.ndarray:
        return oracle_rewards(self.oracle, prompts, responses, n_tokens)


@hookimpl
def acqkit_register_tasks(register):
    register("sentiment", SentimentTask)
