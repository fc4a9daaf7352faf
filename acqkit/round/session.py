"""What every run of a comparison shares: models, task, eval set, first-round samples.

A comparison opens one Session; each run resets the policy to the initial
weights instead of reloading, and the first round's samples and scores (same
seed, same initial policy, same plan) are computed once for all strategies.
"""
from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from transformers.utils import logging as hf_logging

from acqkit import distributed, models
from acqkit.round.evaluate import EvalSet, make_eval_set
from acqkit.errors import ConfigError, PromptError
from acqkit.memory import keep_freed_memory
from acqkit.plugins import Registry
from acqkit.round.task import check_lengths, check_prompt, context_length
from acqkit.round.refcache import RefScorer
from acqkit.round.sample import encode_prompts, generate, sample
from acqkit.round.seeds import stage_seed  # noqa: F401  (re-exported: the loop and benchmarks read it here)

# Fields a session fixes when it opens; a run on that session must agree (Session.check).
SESSION_FIELDS = ("sampler", "lora_rank", "lora_alpha", "lora_dropout", "lora_targets", "ref_cache", "precision")
log = logging.getLogger("acqkit")


@dataclass
class Session:
    model_spec: str
    tokenizer: object
    policy: torch.nn.Module
    reference: torch.nn.Module
    initial_state: dict
    task: object
    evalset: EvalSet
    train_prompts: list
    prompt_ids: dict  # prompt id -> token ids (chat template applied)
    cache: dict = field(default_factory=dict)
    workdir: Path | None = None  # where shared stages (the warm start) keep their label ledger
    generate: Callable = generate  # the sampler backend, with acqkit.round.sample.generate's signature
    refs: RefScorer | None = None  # reference log-probs: counted, cached with ref_cache = "exact"
    settings: dict = field(default_factory=dict)  # SESSION_FIELDS as opened

    @classmethod
    def open(cls, cfg, registry: Registry) -> "Session":
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        torch.manual_seed(0)
        sampler = registry.build("sampler", cfg.sampler)  # an unknown name fails before any load
        generate_fn = functools.partial(sample, sampler, cfg.sampler, model_spec=cfg.model)
        if cfg.lora_rank:
            from acqkit.models.lora import require_peft

            require_peft()
        task = registry.build("task", cfg.task)  # a task that raises is named
        who = registry.describe("task", cfg.task)
        train, held_out = task_prompts(task, who, cfg.eval_prompts)  # checked before any model loads
        keep_freed_memory()  # before the models: freed buffers are reused, not page-faulted afresh (no numbers change)
        device = distributed.device()  # cuda:<local rank> under a GPU launcher; the CPU otherwise
        precision = models.resolve_precision(cfg.precision, device)  # bf16 without hardware support fails here
        if precision != cfg.precision and distributed.is_main():
            log.info("acqkit: precision = %s runs in %s on %s", cfg.precision, precision, device)
        tokenizer = models.load_tokenizer(cfg.model, cfg.trust_remote_code)
        reference = models.load_model(cfg.model, trust_remote_code=cfg.trust_remote_code, precision=precision)
        for p in reference.parameters():
            p.requires_grad_(False)
        models.store_frozen_in_bf16(reference)  # bf16 only: same log-probs, half the memory
        policy = models.load_model(cfg.model, trust_remote_code=cfg.trust_remote_code, precision=precision)
        if cfg.lora_rank:
            from acqkit.models.lora import add_lora

            add_lora(policy, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
        reference.to(device), policy.to(device)
        initial = {k: v.detach().clone() for k, v in policy.state_dict().items()}  # reset without reloading
        ids = dict(zip([p.id for p in train], encode_prompts(tokenizer, train)))
        eval_ids = encode_prompts(tokenizer, held_out)
        check_lengths(train + held_out, list(ids.values()) + eval_ids, context_length(reference, tokenizer),
                      cfg.max_new_tokens, lambda pid: _locate(task, pid) or who)  # before any generation
        evalset = make_eval_set(reference, tokenizer, task, held_out, eval_ids, cfg.max_new_tokens, cfg.gen_batch_size,
                                generate_fn)
        return cls(cfg.model, tokenizer, policy, reference, initial, task, evalset, train, ids,
                   generate=generate_fn, refs=RefScorer(reference, tokenizer.pad_token_id, cfg.ref_cache),
                   settings={f: getattr(cfg, f) for f in SESSION_FIELDS})

    def check(self, cfg) -> None:
        """A run must use the sampler, LoRA and cache settings its session was opened with."""
        diff = [f"{f}={getattr(cfg, f)!r} (session: {self.settings[f]!r})" for f in self.settings
                if getattr(cfg, f) != self.settings[f]]
        if diff:
            raise ConfigError(f"this run's {', '.join(diff)}: these are fixed when a session opens; "
                             "open a session with the run's config")

    def reset_policy(self, state: dict | None = None) -> None:
        """Load ``state`` (default: the initial weights) into the policy.

        An adapter-only LoRA checkpoint (:class:`acqkit.models.lora.AdapterState`) is
        completed with the initial weights: the base never trains.
        """
        state = self.initial_state if state is None else state
        if hasattr(state, "complete"):
            state = state.complete(self.initial_state)
        self.policy.load_state_dict(state)
        self.policy.eval()

    def frozen_copy(self) -> torch.nn.Module:
        """A frozen copy of the policy as it is now (SPA's previous-round reference)."""
        import copy

        model = copy.deepcopy(self.policy).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        models.store_frozen_in_bf16(model)
        return model

    @contextlib.contextmanager
    def reference_parked(self, needed: bool = False):
        """Training needs no reference (its log-probs are in the table): on a GPU it waits in host memory.

        Moves the frozen reference to the CPU for the block and back after, so
        the policy, its gradients and AdamW state have the device to
        themselves. A no-op when the reference already lives on the CPU, or when
        ``needed`` (a refiner that reads the reference in training).
        """
        home = next(self.reference.parameters()).device
        if needed or home.type == "cpu":
            yield
            return
        self.reference.to("cpu")
        try:
            yield
        finally:
            self.reference.to(home)

    def snapshot(self) -> dict:
        return {k: v.detach().clone() for k, v in self.policy.state_dict().items()}

    def draw_prompts(self, seed: int, round: int, n: int) -> list:
        """The first ``n`` of a seeded permutation of the train prompts (capped at the pool)."""
        rng = np.random.default_rng(stage_seed(seed, round, "prompts"))
        order = rng.permutation(len(self.train_prompts))[: min(n, len(self.train_prompts))]
        return [self.train_prompts[i] for i in order]

    def initial_metrics(self) -> dict:
        """The initial policy *is* the reference: win rate 0.5 and KL 0 by definition."""
        ev = self.evalset
        return {"win_rate": 0.5, "gold_reward": float(ev.ref_rewards.mean()),
                "length": float(ev.ref_lengths.mean()), "kl": 0.0}


def task_prompts(task, who: str, eval_prompts: int) -> tuple[list, list]:
    """The task's train prompts and its first ``eval_prompts`` eval prompts, checked.

    Every task gets the checks a prompt file gets, so an empty prompt is not
    sampled and paid for; fewer eval prompts than asked is said, not hidden.
    """
    train, evals = list(task.train_prompts()), list(task.eval_prompts())
    _check_prompts(train, "train", who), _check_prompts(evals, "eval", who)
    if len(evals) < eval_prompts and distributed.is_main():
        log.warning("acqkit: eval_prompts = %d, but %s has %d eval prompts: evaluating on all %d",
                    eval_prompts, who, len(evals), len(evals))
    return train, evals[:eval_prompts]


def _check_prompts(prompts, split: str, who: str) -> None:
    if not prompts:
        raise PromptError(f"{who} has no {split} prompts")
    seen = set()
    for i, p in enumerate(prompts):
        check_prompt(p, f"{who}, {split} prompt {i}")
        if p.id in seen:
            raise PromptError(f"{who}: duplicate prompt id {p.id!r} in its {split} prompts")
        seen.add(p.id)


def _locate(task, prompt_id: str) -> str | None:
    """Where a task read a prompt (``my.jsonl, line 3``), if it can say."""
    locate = getattr(task, "locate", None)
    return locate(prompt_id) if locate else None


def table_from(prompts, prompt_ids, responses, n, tokenizer, logp_policy, logp_ref, entropy) -> pd.DataFrame:
    """Assemble the ResponseTable (columns documented in acqkit.components)."""
    pids = [p.id for p in prompts for _ in range(n)]
    return pd.DataFrame({
        "prompt_id": pids,
        "response_id": np.arange(len(responses), dtype=np.int64),
        "text": tokenizer.batch_decode(responses, skip_special_tokens=True),
        "n_tokens": [len(r) for r in responses],
        "logp_policy": logp_policy,
        "logp_ref": logp_ref,
        "entropy": entropy,
        "prompt_ids": [prompt_ids[pid] for pid in pids],
        "response_ids": responses,
    })
