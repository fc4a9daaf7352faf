"""``reward-model``: any Hugging Face sequence classifier as a gold oracle, or as a paid labeler.

The papers simulate annotators with a reward model (the margin paper's gold
RM, APL's IMDB sentiment classifier); this makes one a gold oracle for any
task (``--task 'sentiment(oracle=reward-model(model=ORG/NAME))'``) and a
labeler (``--labeler 'reward-model(model=ORG/NAME, tau=1)'``).

Options (oracle and labeler):
    model: a hub id (the HF cache is used offline) or a local directory; any
        ``AutoModelForSequenceClassification`` checkpoint.
    index: which logit is the reward (default 0; a 2-class sentiment
        classifier's positive class is usually 1).
    diff: true makes the reward ``logit[index] - logit[other]`` (2 classes only):
        the positive-vs-negative log-odds.
    prompt: true (default) scores the prompt with the response: the model's
        chat template over the prompt's messages plus an assistant message when
        its tokenizer has one, else ``prompt + "\\n\\n" + response`` as text;
        false scores the response alone.
    max_length: tokens kept, from the end (default: the model's limit).
    precision: fp32 (default) | bf16 | auto (bf16 on a GPU that has it).
    batch_size (16), device (default: the process's accelerate device),
    trust_remote_code (false): none of them change a reward.
The labeler adds ``tau`` (Bradley-Terry temperature on the rewards, default 1:
a BT-trained reward model's own probability) and ``hard`` (default true, as
``gold``: a 0/1 label drawn with the run's seeded RNG; false keeps p).

The model's config is read when the component is built (a missing model or a
model that is not a sequence classifier fails in preflight); the weights load
on the first reward, once per process.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from acqkit import Oracle, hookimpl
from acqkit.errors import AcqkitError, ConfigError, ModelError
from acqkit.models import check_hub_model, is_local, resolve
from acqkit.round.batching import length_buckets
from acqkit_plugins.gold import GoldLabeler

NAME = "reward-model"
PRECISIONS = ("fp32", "bf16", "auto")
SEPARATOR = "\n\n"  # between the prompt and the response when the tokenizer has no chat template


@dataclass(frozen=True)
class Settings:
    """What changes a reward (the ledger keys on these) and what does not (batch size, device)."""

    model: str
    index: int = 0
    diff: bool = False
    prompt: bool = True
    max_length: int | None = None
    precision: str = "fp32"

    def answers(self) -> dict:
        return {"model": self.model, "index": self.index, "diff": self.diff, "prompt": self.prompt,
                "max_length": self.max_length, "precision": self.precision}


class RewardModel:
    """A sequence classifier's reward for (prompt, response); shared by the oracle and the labeler."""

    def __init__(self, model=None, index=0, diff=False, prompt=True, max_length=None, precision="fp32",
                 batch_size=16, device=None, trust_remote_code=False):
        if model is None or not str(model).strip():
            raise ConfigError(f"{NAME}: name the reward model: {NAME}(model=ORG/NAME or a local directory)")
        precision = str(precision).lower()
        if precision not in PRECISIONS:
            raise ConfigError(f"{NAME}(model={model}): precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {precision!r}")
        self.settings = Settings(str(model), int(index), _flag(diff), _flag(prompt),
                                 None if max_length is None else int(max_length), _precision(precision))
        self.batch_size, self.device = max(1, int(batch_size)), None if device is None else str(device)
        self.trust_remote_code = _flag(trust_remote_code)
        self.source = _locate(self.settings.model)
        self.config = _read_config(self.settings.model, self.source, self.trust_remote_code)
        _check_logit(self.settings, self.config)

    def rewards(self, prompts, responses) -> np.ndarray:
        model, tok = _load(self.source, self.settings.precision, self.trust_remote_code, self.device)
        ids = [self.encode(tok, p, r) for p, r in zip(prompts, responses)]
        out = np.empty(len(ids), dtype=float)
        for batch in length_buckets([len(x) for x in ids], self.batch_size):  # as the scorer: less padding
            out[batch] = self.forward(model, tok, [ids[i] for i in batch])
        return out

    def encode(self, tok, prompt, response: str) -> list[int]:
        s, limit = self.settings, self.limit(tok)
        if s.prompt and tok.chat_template:
            messages = [dict(m) for m in prompt.messages] + [{"role": "assistant", "content": str(response)}]
            text = tok.apply_chat_template(messages, tokenize=False)
            ids = tok(text, add_special_tokens=False, truncation=limit is not None, max_length=limit)["input_ids"]
        else:
            text = SEPARATOR.join([m["content"] for m in prompt.messages] + [str(response)]) if s.prompt \
                else str(response)
            ids = tok(text, truncation=limit is not None, max_length=limit)["input_ids"]
        return list(ids) or [tok.pad_token_id]  # an empty response with no special tokens: one pad to read

    def limit(self, tok) -> int | None:
        if self.settings.max_length is not None:
            return self.settings.max_length
        bounds = [getattr(self.config, "max_position_embeddings", None), tok.model_max_length]
        bounds = [int(b) for b in bounds if isinstance(b, int) and 0 < b < 1_000_000]
        return min(bounds) if bounds else None

    def forward(self, model, tok, ids: list[list[int]]) -> np.ndarray:
        import torch

        enc = tok.pad({"input_ids": ids}, padding=True, return_tensors="pt")  # right padding: see _load
        with torch.inference_mode():
            logits = model(input_ids=enc["input_ids"].to(model.device),
                           attention_mask=enc["attention_mask"].to(model.device)).logits.float().cpu()
        i = self.settings.index
        reward = logits[:, i] - logits[:, 1 - i] if self.settings.diff else logits[:, i]
        return reward.numpy().astype(float)


class RewardModelOracle(Oracle):
    """The reward model as a task's gold oracle."""

    def __init__(self, **options):
        self.model = RewardModel(**options)

    def reward(self, prompts, responses) -> np.ndarray:
        return self.model.rewards(prompts, responses)


class RewardModelLabeler(GoldLabeler):
    """The gold labeler's Bradley-Terry labels, on this reward model's rewards instead of the task's."""

    source = NAME
    rewards_of = "the reward model"

    def __init__(self, tau: float = 1.0, hard: bool = True, **options):
        super().__init__(hard=_flag(hard))
        self.tau = float(tau)
        if not self.tau >= 0:
            raise ConfigError(f"{NAME}: tau must be >= 0, got {tau!r}")
        self.model = RewardModel(**options)
        self.ledger_identity = (NAME, {**self.model.settings.answers(), "tau": self.tau, "hard": self.hard})

    def rewards(self, context, prompts, responses, n_tokens) -> np.ndarray:
        return self.model.rewards(prompts, [str(r) for r in responses])

    def temperature(self, context) -> float:
        return self.tau


def _flag(value) -> bool:
    if isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise ConfigError(f"{NAME}: expected true or false, got {value!r}")
        return value.lower() == "true"
    return bool(value)


def _precision(precision: str) -> str:
    """``auto`` is bf16 where the device (CUDA when there is one, as ``acqkit.distributed.device``) has it."""
    if precision != "auto":
        return precision
    import torch

    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def _locate(model: str) -> str:
    """The directory or hub id to read, checked now (a cached hub config.json), with the model named."""
    try:
        if is_local(model):
            return resolve(model)
        check_hub_model(model)
        return model
    except AcqkitError as exc:
        reason = str(exc).replace(f"--model {model!r}: ", "", 1)
        raise type(exc)(f"{NAME}(model={model}): the reward model cannot be found: {reason}") from exc


def _read_config(model: str, source: str, trust_remote_code: bool):
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{NAME}(model={model}): cannot read the model's config.json: {exc}") from exc
    archs = list(getattr(config, "architectures", None) or [])
    if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
        raise ConfigError(f"{NAME}(model={model}): not a sequence classifier (architectures: {', '.join(archs)}); "
                          "a reward model is an AutoModelForSequenceClassification checkpoint")
    return config


def _check_logit(s: Settings, config) -> None:
    n = int(getattr(config, "num_labels", 1))
    if not 0 <= s.index < n:
        raise ConfigError(f"{NAME}(model={s.model}): index={s.index} but the model has {n} logit(s)")
    if s.diff and n != 2:
        raise ConfigError(f"{NAME}(model={s.model}): diff=true needs a 2-class model; this one has {n} logit(s)")


@functools.lru_cache(maxsize=4)  # once per process: the oracle and the labeler of a run share it
def _load(source: str, precision: str, trust_remote_code: bool, device: str | None):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from acqkit.distributed import device as process_device

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.pad_token is None:
        raise ModelError(f"{NAME}(model={source}): the tokenizer has neither a pad nor an eos token")
    tok.padding_side = "right"  # absolute positions (BERT-style) start at 0, and causal models never see pads
    tok.truncation_side = "left"  # a long prompt loses its start, never the response
    model = AutoModelForSequenceClassification.from_pretrained(source, dtype=dtype,
                                                               trust_remote_code=trust_remote_code)
    if model.config.pad_token_id is None:  # decoder classifiers read the last non-pad token, and must know pad
        model.config.pad_token_id = tok.pad_token_id
    return model.to(torch.device(device) if device else process_device()).eval(), tok


@hookimpl
def acqkit_register_oracles(register):
    register(NAME, RewardModelOracle)


@hookimpl
def acqkit_register_labelers(register):
    register(NAME, RewardModelLabeler)
