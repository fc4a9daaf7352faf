"""The component interfaces plugins implement.

Subclassing is optional: acqkit only calls the methods and reads the
attributes documented here, so any object with the same shape works.

Tables (pandas DataFrames):

ResponseTable, one row per sampled response (built by the scorer):
    prompt_id (str), response_id (int, unique in the round), text (str),
    n_tokens (int), logp_policy (float, summed over response tokens),
    logp_ref (float), entropy (float, mean per-token policy entropy),
    prompt_ids (list[int]), response_ids (list[int]).
Pairs table (returned by ``Strategy.select``):
    prompt_id, a, b (response_ids of the same prompt, a != b), score (float).
Labels table (returned by ``Labeler.label``): the pairs columns plus
    p (float in [0, 1], probability that a is preferred), source (str),
    cost (int, paid oracle calls for this label; 0 for self-labels).
Refiners may add ``alpha`` (label-smoothing weight) or rewrite ``p``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

PAIR_COLUMNS = ["prompt_id", "a", "b", "score"]
LABEL_COLUMNS = PAIR_COLUMNS + ["p", "source", "cost"]


@dataclass(frozen=True)
class SamplePlan:
    """How many prompts and responses a strategy needs to spend ``budget`` labels."""

    n_prompts: int
    n_responses: int
    temperature: float


@dataclass(frozen=True)
class Prompt:
    id: str
    messages: tuple  # chat messages: ({"role": "user", "content": ...}, ...)

    @property
    def text(self) -> str:
        return self.messages[-1]["content"]


class Strategy(ABC):
    """Pick the pairs worth a label.

    ``plan`` says what to sample; ``select`` returns at most ``budget`` pairs
    (any number when the labeler is free). ``training`` is ``"continue"`` (keep
    training the last policy) or ``"reinit"`` (restart from the round-0 policy on
    all labels so far). A strategy that is a whole recipe (SELFEE) may name its
    own ``labeler`` and ``refiner`` specs and ``train_reference``: ``"initial"``
    (the frozen reference model) or ``"previous"`` (the policy as the round began).
    """

    training = "continue"
    labeler: str | None = None
    refiner: str | None = None
    train_reference = "initial"

    def plan(self, budget: int, n_responses: int, temperature: float) -> SamplePlan:
        return SamplePlan(budget, n_responses, temperature)

    @abstractmethod
    def select(self, table: pd.DataFrame, budget: int, rng: np.random.Generator, beta: float) -> pd.DataFrame:
        ...


class Labeler(ABC):
    """Return a preference for each pair. ``context`` is a :class:`LabelContext`."""

    @abstractmethod
    def label(self, pairs: pd.DataFrame, table: pd.DataFrame, context: "LabelContext") -> pd.DataFrame:
        ...


class Refiner:
    """Correct or soften labels: before training (``refine``) and/or during it (``in_training``)."""

    #: set True when ``in_training`` needs the training reference model's logits
    needs_reference_model = False

    def refine(self, labels: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
        return labels

    def in_training(self, context: "RefineContext"):
        """A function ``TrainBatch -> p`` applied at every training step, or None."""
        return None


class Task(ABC):
    """Prompts plus a gold oracle.

    ``gold_reward(prompts, responses)`` returns one float per response;
    preferences follow Bradley-Terry on these rewards with temperature ``tau``.
    """

    tau: float = 0.1

    @abstractmethod
    def train_prompts(self) -> list[Prompt]:
        ...

    @abstractmethod
    def eval_prompts(self) -> list[Prompt]:
        ...

    @abstractmethod
    def gold_reward(self, prompts: list[Prompt], responses: list[str]) -> np.ndarray:
        ...


class Oracle(ABC):
    """A gold oracle by name (``vader``): one reward per response, so any task can reuse it.

    Preferences follow Bradley-Terry on these rewards with the task's ``tau``.
    """

    @abstractmethod
    def reward(self, prompts: list[Prompt], responses: list[str]) -> np.ndarray:
        ...


class Sampler(ABC):
    """Generate responses; the stage an outside engine (vLLM, a cluster) can take over.

    ``generate(request)`` gets a :class:`acqkit.sampler.SampleRequest`: the
    current policy and tokenizer (``request.save_policy(dir)`` writes them as
    safetensors for an engine in another process; ``request.model_spec`` is the
    ``--model`` they started from), ``prompt_ids`` (chat-templated token ids),
    ``n`` responses per prompt, ``gen`` (``max_new_tokens``, ``temperature``,
    0 = greedy, ``top_k``, ``batch_size``), a ``seed`` and the ``stop_ids``.

    It returns ``len(prompt_ids) * n`` lists of new token ids, prompt-major
    (``p0r0, p0r1, ..., p1r0, ...``), without the prompt. acqkit then cuts each
    after its first stop token (kept, as it ended the response) and at
    ``max_new_tokens``; a response with no stop token counts as truncated. The
    same seed must give the same responses, so runs can be resumed and compared.
    """

    @abstractmethod
    def generate(self, request) -> list[list[int]]:
        ...


@dataclass
class RefineContext:
    """What an in-training refiner may use: the round, beta and the training reference."""

    round: int
    beta: float
    reference: Any  # the frozen training reference model (None unless the refiner asked for it)


@dataclass
class LabelContext:
    """What a labeler may need besides the pairs."""

    task: Task
    rng: np.random.Generator
    round: int
    extras: dict[str, Any]
