"""Gold-oracle evaluation on held-out prompts.

Win rate is the mean Bradley-Terry probability that the policy's response
beats a fixed reference response (the initial policy's greedy one). The
policy's responses are sampled, with the same random streams for every
strategy of a seed (``--eval-samples``, default 1; 0 = greedy, for which 0.5
means "no better than where we started").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from acqkit.components import Task, declared, gold_rewards
from acqkit.distributed import chunks, spread
from acqkit.strategies import bradley_terry
from acqkit.round.sample import GenConfig, generate
from acqkit.round.score import score


@dataclass
class EvalSet:
    """Held-out prompts with their reference responses and gold rewards (computed once)."""

    prompts: list
    prompt_ids: list[list[int]]
    ref_texts: list[str]
    ref_rewards: np.ndarray
    ref_lengths: np.ndarray


def decode(tokenizer, responses: list[list[int]]) -> list[str]:
    return tokenizer.batch_decode(responses, skip_special_tokens=True)


def greedy(model, tokenizer, prompt_ids, max_new_tokens: int, batch_size: int, generate_fn=generate):
    cfg = GenConfig(max_new_tokens=max_new_tokens, temperature=0.0, batch_size=batch_size)
    return generate_fn(model, tokenizer, prompt_ids, 1, cfg, seed=0, label="eval: greedy")


def shared_gold(task, prompts: list, texts: list[str], lengths: list[int], chunk: int) -> np.ndarray:
    """Gold rewards, computed by the processes together in chunks of ``chunk`` prompts (a collective).

    The chunks do not depend on the process count, so neither do the rewards.
    """
    rewards = spread(chunks(len(prompts), chunk), lambda r: gold_rewards(task, [prompts[i] for i in r], [texts[i] for i in r],
                                                   [lengths[i] for i in r]), "eval: gold")
    return np.concatenate(rewards) if rewards else np.zeros(0)


def make_eval_set(model, tokenizer, task, prompts, prompt_ids, max_new_tokens: int, batch_size: int,
                  generate_fn=generate) -> EvalSet:
    responses = greedy(model, tokenizer, prompt_ids, max_new_tokens, batch_size, generate_fn)
    texts = decode(tokenizer, responses)
    rewards = shared_gold(task, prompts, texts, [len(r) for r in responses], batch_size)
    return EvalSet(prompts, prompt_ids, texts, rewards, np.array([len(r) for r in responses], float))


@dataclass(frozen=True)
class WinSamples:
    """The responses the win rate is measured on: ``n`` sampled per prompt (0: one greedy response).

    Sampled at the run's ``temperature`` and ``top_k`` from streams seeded by
    ``seed`` and the prompt ids, so every strategy of a seed is judged on the
    same random numbers (docs/reporting.md has the measurement that chose this).
    """

    n: int = 0
    temperature: float = 1.0
    top_k: int = 50
    seed: int = 0


def win_responses(policy, tokenizer, evalset: EvalSet, max_new_tokens: int, batch_size: int, generate_fn,
                  design: WinSamples) -> tuple[list[list[int]], int]:
    """``(responses, per prompt)``: greedy, or ``design.n`` samples per prompt (prompt-major)."""
    if design.n == 0 or design.temperature == 0:
        return greedy(policy, tokenizer, evalset.prompt_ids, max_new_tokens, batch_size, generate_fn), 1
    gen = GenConfig(max_new_tokens, design.temperature, design.top_k, batch_size)
    return generate_fn(policy, tokenizer, evalset.prompt_ids, design.n, gen, design.seed, label="eval: samples",
                       keys=[p.id for p in evalset.prompts]), design.n


def evaluate(policy, reference, tokenizer, task, evalset: EvalSet, max_new_tokens: int, batch_size: int,
             kl_samples: int, seed: int, score_batch_size: int = 16, generate_fn=generate, score_ref=None,
             win: WinSamples = WinSamples()) -> dict:
    """Metrics of ``policy`` on the eval set: win rate, gold reward, length, KL estimate (:func:`kl_estimate`).

    The win rate, gold reward and length are those of the responses ``win``
    asks for (:func:`win_responses`), each against the initial policy's greedy
    response to the same prompt. ``generate_fn`` (signature of
    :func:`acqkit.round.sample.generate`) is the session's sampler backend;
    ``score_ref(prompts, responses)``, if given, scores under the reference.
    """
    responses, k = win_responses(policy, tokenizer, evalset, max_new_tokens, batch_size, generate_fn, win)
    texts = decode(tokenizer, responses)
    prompts = [p for p in evalset.prompts for _ in range(k)]
    rewards = shared_gold(task, prompts, texts, [len(r) for r in responses], batch_size)
    p = bradley_terry(rewards, np.repeat(evalset.ref_rewards, k), declared(task, Task, "tau"))
    metrics = {
        "win_rate": float(p.mean()),
        "gold_reward": float(rewards.mean()),
        "length": float(np.mean([len(r) for r in responses])),
        "kl": float("nan"),
    }
    if kl_samples > 0:
        metrics["kl"] = kl_estimate(policy, reference, tokenizer, evalset.prompt_ids, max_new_tokens, batch_size,
                                    kl_samples, seed, score_batch_size, generate_fn, score_ref,
                                    keys=[p.id for p in evalset.prompts])
    return metrics


def kl_estimate(policy, reference, tokenizer, prompt_ids, max_new_tokens: int, batch_size: int, kl_samples: int,
                seed: int, score_batch_size: int = 16, generate_fn=generate, score_ref=None, keys=None) -> float:
    """Monte-Carlo KL(policy || reference): the mean of ``logp_policy - logp_ref`` over the policy's own samples.

    Unbiased only for samples of the policy itself, so they are drawn at
    temperature 1 with no top-k (``top_k=0``), whatever the run samples with:
    top-k samples would average the log-ratio over the likely tokens only.
    ``keys`` (the prompt ids) key each sample's randomness. Every stage here is
    a collective of the processes (``acqkit.distributed.spread``).
    """
    cfg = GenConfig(max_new_tokens=max_new_tokens, temperature=1.0, top_k=0, batch_size=batch_size)
    samples = generate_fn(policy, tokenizer, prompt_ids, kl_samples, cfg, seed, label="eval: KL samples", keys=keys)
    prompts = [ids for ids in prompt_ids for _ in range(kl_samples)]
    pad = tokenizer.pad_token_id
    lp, _ = score(policy, prompts, samples, pad, score_batch_size, with_entropy=False, label="eval: KL policy",
                  shared=True)
    if score_ref is None:
        lr, _ = score(reference, prompts, samples, pad, score_batch_size, with_entropy=False, label="eval: KL ref",
                      shared=True)
    else:
        lr = score_ref(prompts, samples)
    return float(np.mean(lp - lr))
