"""Sample responses from a policy with batched ``generate`` (left padding, one random stream per response).

Every response draws from its own stream, seeded by (stage seed, prompt id,
response index) (:class:`KeyedSampling`), so a sample does not depend on what
ran before it, on the batch size or on how many processes share the stage.
:func:`sample` cuts the prompts into chunks of ``batch_size`` sequences and
spreads the chunks over the processes (``acqkit.distributed.spread``).
Generation runs at the model's precision (``acqkit.models.precision``: bf16
autocast or float32).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from acqkit.components import Sampler, declared
from acqkit.distributed import chunks, from_main, spread
from acqkit.errors import PluginOutputError
from acqkit.models.precision import autocast
from acqkit.progress import track
from acqkit.round.seeds import row_seed


@dataclass(frozen=True)
class GenConfig:
    max_new_tokens: int = 32
    temperature: float = 1.0  # 0 means greedy
    top_k: int = 50  # 0 means untruncated: samples of the policy itself (what the KL estimate needs)
    batch_size: int = 64


def encode_prompts(tokenizer, prompts) -> list[list[int]]:
    """Chat-template each prompt's messages and tokenize (no extra special tokens)."""
    out = []
    for p in prompts:
        text = tokenizer.apply_chat_template(list(p.messages), add_generation_prompt=True, tokenize=False)
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return out


def eos_ids(model, tokenizer) -> set[int]:
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, (list, tuple)) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def cut_at_eos(tokens: list[int], stop: set[int]) -> list[int]:
    """Keep tokens up to and including the first stop token (it is part of the response)."""
    for i, t in enumerate(tokens):
        if t in stop:
            return tokens[: i + 1]
    return tokens


class KeyedSampling(LogitsProcessor):
    """Sample each row from its own random stream: temperature, top-k, then the Gumbel-max trick.

    Adding Gumbel noise ``-log(-log(u))`` to the (tempered, truncated) logits
    and taking the argmax draws exactly from their softmax; the noise of row
    ``i`` comes from a generator seeded with ``seeds[i]``, one draw per step.
    So a response depends on its own seed (``acqkit.round.seeds.row_seed``:
    the stage, the prompt id and the response index), not on the batch, chunk
    or process it was drawn in. ``generate`` then decodes greedily.
    """

    def __init__(self, seeds: list[int], temperature: float, top_k: int, device):
        self.temperature, self.top_k = temperature, top_k
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]

    def __call__(self, input_ids, scores):
        scores = scores.float() / self.temperature
        if self.top_k and self.top_k < scores.shape[-1]:
            kth = torch.topk(scores, self.top_k, dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, -float("inf"))
        u = torch.stack([torch.rand(scores.shape[-1], generator=g, device=scores.device) for g in self.generators])
        return scores - torch.log(-torch.log(u.clamp_min(torch.finfo(u.dtype).tiny)))


@torch.inference_mode()
def generate(model, tokenizer, prompt_ids: list[list[int]], n: int, cfg: GenConfig, seed: int,
             label: str = "sampling", keys=None) -> list[list[int]]:
    """``n`` responses per prompt, returned prompt-major: ``[p0r0, p0r1, ..., p1r0, ...]``.

    ``keys`` names each prompt (its id; default its position): response ``j``
    to prompt ``i`` is drawn from ``row_seed(seed, keys[i], j)``, whatever it is
    batched with. Temperature 0 decodes greedily.
    """
    keys = list(range(len(prompt_ids))) if keys is None else list(keys)
    flat = [ids for ids in prompt_ids for _ in range(n)]
    seeds = [row_seed(seed, key, j) for key in keys for j in range(n)]
    stop = eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id
    device = next(model.parameters()).device
    starts = list(range(0, len(flat), cfg.batch_size))
    responses: list[list[int]] = []
    for start in track(starts, label, total=len(starts)):
        chunk = flat[start : start + cfg.batch_size]
        width = max(len(c) for c in chunk)
        ids = torch.tensor([[pad] * (width - len(c)) + c for c in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in chunk], device=device)
        processors = LogitsProcessorList()
        if cfg.temperature > 0:  # top_k 0: untruncated, samples of the policy itself (what the KL estimate needs)
            processors.append(KeyedSampling(seeds[start : start + cfg.batch_size], cfg.temperature, cfg.top_k,
                                            device))
        with autocast(model):  # the model's precision; one context per call, so bf16 weight copies are reused
            out = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=cfg.max_new_tokens, do_sample=False,
                # the sampling is KeyedSampling's; None keeps a model's generation_config from adding warpers
                temperature=None, top_k=None, top_p=None, logits_processor=processors, pad_token_id=pad,
            )
        for row in out[:, width:].tolist():
            responses.append(cut_at_eos(row, stop))
    return responses


@dataclass(frozen=True)
class SampleRequest:
    """What a sampler backend gets (interface: :class:`acqkit.components.Sampler`)."""

    model: Any  # the current policy, a transformers causal LM in this process
    tokenizer: Any
    prompt_ids: list[list[int]]
    n: int
    gen: GenConfig
    seed: int
    stop_ids: frozenset[int]
    label: str = "sampling"
    model_spec: str = ""  # the --model the session loaded
    keys: tuple = ()  # one per prompt, its id: response j to prompt i draws from row_seed(seed, keys[i], j)

    def save_policy(self, directory) -> Path:
        """Write the current policy and tokenizer for an engine in another process.

        Safetensors; a LoRA policy writes its adapter in peft's format, whose
        ``base_model_name_or_path`` names the base weights.
        """
        from acqkit.models.lora import has_adapters, save_adapters

        directory = Path(directory)
        if has_adapters(self.model):
            save_adapters(self.model, directory)
        else:
            self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)
        return directory


def sample(sampler, name: str, model, tokenizer, prompt_ids: list[list[int]], n: int, cfg: GenConfig, seed: int,
           label: str = "sampling", model_spec: str = "", keys=None) -> list[list[int]]:
    """Ask ``sampler`` for ``n`` responses per prompt; check the shape, cut at the stop token and length.

    A collective: every process calls it with the same arguments and gets every
    response. A ``chunked`` sampler (the default) is called once per chunk of
    ``cfg.batch_size`` sequences (whole prompts), each process drawing its share
    of the chunks, so the responses do not depend on the process count; one that
    is not is called once, by the main process. ``keys`` name the prompts
    (default: their positions). Both cuts are no-ops on the built-in ``hf``
    sampler's output, which already ends there.
    """
    keys = tuple(range(len(prompt_ids))) if keys is None else tuple(keys)
    stop = eos_ids(model, tokenizer)

    def ask(part: range) -> list[list[int]]:
        request = SampleRequest(model, tokenizer, [prompt_ids[i] for i in part], n, cfg, seed, frozenset(stop),
                                label, model_spec, tuple(keys[i] for i in part))
        out = sampler.generate(request)
        want = len(part) * n
        if not isinstance(out, (list, tuple)) or len(out) != want:
            got = len(out) if isinstance(out, (list, tuple)) else type(out).__name__
            raise PluginOutputError(f"sampler {name!r} returned {got} responses for {len(part)} prompts x {n}; "
                                    f"expected {want} lists of token ids")
        return [cut_at_eos([int(t) for t in r], stop)[: cfg.max_new_tokens] for r in out]

    if not declared(sampler, Sampler, "chunked"):
        return from_main(lambda: ask(range(len(prompt_ids))))
    per = max(1, cfg.batch_size // n)  # whole prompts per chunk
    return [r for part in spread(chunks(len(prompt_ids), per), ask, label) for r in part]
