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

Optional attributes and hooks (everything the loop asks of a component beyond
its one required method) have their default on the interface class, and the
loop reads them only through :func:`declared`, so a duck-typed component that
leaves one out gets exactly the default a subclass would inherit.
"""
from __future__ import annotations

import types
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

PAIR_COLUMNS = ["prompt_id", "a", "b", "score"]
LABEL_COLUMNS = PAIR_COLUMNS + ["p", "source", "cost"]


@dataclass(frozen=True)
class SamplePlan:
    """How many prompts and responses a strategy needs to spend ``budget`` labels.

    ``top_k`` None samples with the run's ``top_k``; 0 samples the untruncated
    policy, which an estimate of the policy's own distribution needs (APL's
    predictive entropy plans ``temperature=1.0, top_k=0``).
    """

    n_prompts: int
    n_responses: int
    temperature: float
    top_k: int | None = None


class Extras(Mapping):
    """A read-only mapping that, unlike ``MappingProxyType``, pickles and copies with its prompt."""

    __slots__ = ("_data",)

    def __init__(self, data=()):
        self._data = dict(data)

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(self._data)


@dataclass(frozen=True)
class Prompt:
    """A task prompt. ``extras``: what else the task knows about it (a ``file:`` task's other
    columns, e.g. a ``reference`` answer), read-only, for oracles that need more than the text."""

    id: str
    messages: tuple  # chat messages: ({"role": "user", "content": ...}, ...)
    extras: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "extras", Extras(self.extras))

    @property
    def text(self) -> str:
        return self.messages[-1]["content"]


START = ("current", "warm-start")


@dataclass(frozen=True)
class TrainingSet:
    """What a round trains on (``examples``) and the policy it starts from (``start``).

    ``start="current"`` keeps training the policy that sampled the round;
    ``"warm-start"`` restarts from the round-0 policy (APL retrains on everything).
    """

    examples: list  # acqkit.round.train.Example: prompt, a, b (token ids), ref_a, ref_b, p
    start: str = "current"

    def __post_init__(self):
        if self.start not in START:
            raise ValueError(f"TrainingSet start must be one of {', '.join(START)}; got {self.start!r}")


class Strategy(ABC):
    """Pick the pairs worth a label.

    ``plan`` says what to sample; ``select`` returns at most ``budget`` pairs
    (any number when the labeler is free). ``training_set`` says what the round
    trains on; by default ``training`` decides: ``"continue"`` (keep training the
    last policy on the round's labels) or ``"reinit"`` (restart from the round-0
    policy on all labels so far). A strategy that is a whole recipe (SELFEE) may
    name its own ``labeler`` and ``refiner`` specs and ``train_reference``:
    ``"initial"`` (the frozen reference model) or ``"previous"`` (the policy as
    the round began). ``checkpointed`` names attributes holding a state dict
    (name -> tensor) or None that the loop saves with each round's checkpoint
    (``NAME.safetensors``) and sets back on a resume.
    """

    training = "continue"
    labeler: str | None = None
    refiner: str | None = None
    train_reference = "initial"
    checkpointed: tuple = ()

    def plan(self, budget: int, n_responses: int, temperature: float) -> SamplePlan:
        return SamplePlan(budget, n_responses, temperature)

    @abstractmethod
    def select(self, table: pd.DataFrame, budget: int, rng: np.random.Generator, beta: float) -> pd.DataFrame:
        ...

    def training_set(self, new: list, history: list) -> TrainingSet:
        """The round's training set from its ``new`` examples and ``history`` (earlier online rounds')."""
        if declared(self, Strategy, "training") == "reinit":
            return TrainingSet(history + new, start="warm-start")
        return TrainingSet(new)


class Labeler(ABC):
    """Return a preference for each pair. ``context`` is a :class:`LabelContext`.

    ``paid`` (default True): answers cost money, so they go through the label
    ledger and the budget caps the pairs; False for self-labels.
    ``ledger_identity`` (default None: the spec's name and options): the
    ``(name, options)`` the ledger files answers under.
    ``needs_previous_policy`` (default False): True puts the policy before the
    one that sampled the round in ``context.extras["previous"]``.
    ``checkpointed``: as on :class:`Strategy`.
    ``preflight()`` (default: nothing): called once before any model loads, to
    check cheaply what would otherwise fail later (a server is up, a key is
    accepted); raise an :class:`acqkit.errors.AcqkitError` naming the cause.
    """

    paid = True
    ledger_identity: tuple | None = None
    needs_previous_policy = False
    checkpointed: tuple = ()

    def preflight(self) -> None:
        """Check what can be checked before any model loads (API 1.3); the default checks nothing."""

    @abstractmethod
    def label(self, pairs: pd.DataFrame, table: pd.DataFrame, context: "LabelContext") -> pd.DataFrame:
        ...


class Refiner:
    """Correct or soften labels: before training (``refine``) and/or during it (``in_training``)."""

    #: set True when ``in_training`` needs the training reference model's logits
    needs_reference_model = False
    checkpointed: tuple = ()

    def refine(self, labels: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
        return labels

    def in_training(self, context: "RefineContext"):
        """A function ``TrainBatch -> p`` applied at every training step, or None."""
        return None


class Task(ABC):
    """Prompts plus a gold oracle.

    ``gold_reward(prompts, responses)`` returns one float per response;
    preferences follow Bradley-Terry on these rewards with temperature ``tau``.
    A task that sets ``token_counts = True`` is also given ``n_tokens`` (one int
    per response, the response's length in tokens) to pass on to its oracle.
    """

    tau: float = 0.1
    token_counts = False

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
    An oracle that sets ``token_counts = True`` is called with ``n_tokens=``
    (one int per response) as well; the others keep the two-argument call.
    """

    token_counts = False

    @abstractmethod
    def reward(self, prompts: list[Prompt], responses: list[str]) -> np.ndarray:
        ...


class Sampler(ABC):
    """Generate responses; the stage an outside engine (vLLM, a cluster) can take over.

    ``generate(request)`` gets a :class:`acqkit.round.sample.SampleRequest`: the
    current policy and tokenizer (``request.save_policy(dir)`` writes them as
    safetensors for an engine in another process; ``request.model_spec`` is the
    ``--model`` they started from), ``prompt_ids`` (chat-templated token ids),
    ``n`` responses per prompt, ``gen`` (``max_new_tokens``, ``temperature``,
    0 = greedy, ``top_k``, ``batch_size``), a ``seed`` and the ``stop_ids``.

    It returns ``len(prompt_ids) * n`` lists of new token ids, prompt-major
    (``p0r0, p0r1, ..., p1r0, ...``), without the prompt. acqkit then cuts each
    after its first stop token (kept, as it ended the response) and at
    ``max_new_tokens``; a response with no stop token counts as truncated. The
    same seed must give the same responses, so runs can be resumed and compared;
    ``request.keys`` names each prompt (its id): drawing response ``j`` to prompt
    ``i`` from ``acqkit.round.seeds.row_seed(request.seed, keys[i], j)``, as the
    built-in ``hf`` does, makes a response independent of batching.

    ``chunked`` (default True): acqkit calls ``generate`` once per chunk of
    ``gen.batch_size`` sequences, and under several processes each process
    takes its share of the chunks. False: one call with every prompt of the
    stage, on the main process only (its answer is sent to the others): the
    choice for an outside engine that batches and parallelises by itself.
    """

    chunked: bool = True

    @abstractmethod
    def generate(self, request) -> list[list[int]]:
        ...


@dataclass
class RefineContext:
    """What an in-training refiner may use: the round, beta and the training reference.

    ``log(record)`` keeps a dict per event (a pair it smoothed, say, by ``TrainBatch.index``);
    the loop writes them, with the round, to the run directory's ``refiner.jsonl``.
    """

    round: int
    beta: float
    reference: Any  # the frozen training reference model (None unless the refiner asked for it)
    log: Any = None  # callable(dict) -> None, or None outside a run


@dataclass
class LabelContext:
    """What a labeler may need besides the pairs."""

    task: Task
    rng: np.random.Generator
    round: int
    extras: dict[str, Any]


# The optional attributes and hooks of each interface: read them with ``declared``.
OPTIONAL = {
    Strategy: ("plan", "training", "labeler", "refiner", "train_reference", "training_set", "checkpointed"),
    Labeler: ("paid", "ledger_identity", "needs_previous_policy", "checkpointed", "preflight"),
    Refiner: ("needs_reference_model", "refine", "in_training", "checkpointed"),
    Task: ("tau", "token_counts"),
    Oracle: ("token_counts",),
    Sampler: ("chunked",),
}
_MISSING = object()


def declared(component, interface: type, name: str):
    """``component.name``, or ``interface``'s default when the component leaves it out.

    Subclassing is optional (duck typing), so this is the one place acqkit
    reads an optional attribute: a default method comes bound to the component.
    """
    if name not in OPTIONAL.get(interface, ()):
        raise KeyError(f"{interface.__name__} declares no optional {name!r}")  # a typo in acqkit, not a plugin
    value = getattr(component, name, _MISSING)
    if value is not _MISSING:
        return value
    default = interface.__dict__[name]
    return types.MethodType(default, component) if callable(default) else default


def gold_rewards(task, prompts: list, responses: list, n_tokens=None) -> np.ndarray:
    """``task.gold_reward``, given the token counts when the task declares ``token_counts``."""
    if n_tokens is not None and declared(task, Task, "token_counts"):
        return np.asarray(task.gold_reward(prompts, responses, n_tokens=[int(n) for n in n_tokens]), float)
    return np.asarray(task.gold_reward(prompts, responses), float)


def oracle_rewards(oracle, prompts: list, responses: list, n_tokens=None) -> np.ndarray:
    """``oracle.reward``, given the token counts when the oracle declares ``token_counts``."""
    if declared(oracle, Oracle, "token_counts"):
        counts = None if n_tokens is None else [int(n) for n in n_tokens]
        return np.asarray(oracle.reward(prompts, responses, n_tokens=counts), float)
    return np.asarray(oracle.reward(prompts, responses), float)
