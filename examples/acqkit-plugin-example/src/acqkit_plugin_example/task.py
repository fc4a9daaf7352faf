"""``keywords``: describe a film topic using three given words; gold reward = share of them used.

Why: a task small enough to ship in the package (prompts.jsonl, 24 train and
16 eval prompts) with a gold oracle anyone can check by eye.
"""
import json
import re
from importlib import resources

import numpy as np

from acqkit import Prompt, Task


def load(split: str) -> list[dict]:
    text = resources.files(__package__).joinpath("prompts.jsonl").read_text("utf-8")
    return [row for row in map(json.loads, filter(str.strip, text.splitlines())) if row["split"] == split]


class KeywordTask(Task):
    def __init__(self, tau: float = 0.1):
        self.tau = float(tau)
        self.keywords = {row["id"]: row["keywords"] for split in ("train", "eval") for row in load(split)}

    def train_prompts(self) -> list[Prompt]:
        return [Prompt(row["id"], tuple(row["messages"])) for row in load("train")]

    def eval_prompts(self) -> list[Prompt]:
        return [Prompt(row["id"], tuple(row["messages"])) for row in load("eval")]

    def gold_reward(self, prompts: list[Prompt], responses: list[str]) -> np.ndarray:
        def used(prompt: Prompt, response: str) -> float:
            words = set(re.findall(r"[a-z]+", response.lower()))
            wanted = self.keywords[prompt.id]
            return sum(w in words for w in wanted) / len(wanted)

        return np.array([used(p, r) for p, r in zip(prompts, responses)], dtype=float)
