"""bf16 (``precision``) and the two training speed levers: numerics against float32, determinism, bad input.

Tolerances. bf16 keeps 8 significant bits (unit roundoff 2^-8, about 0.4 %).
Only the backbone's matmuls run in it; the residual stream, the LM head, the
log-softmax, the sums and the loss stay float32. The DPO loss depends on the
log-probs only through ``beta * h``, so a log-prob error of ``d`` nats moves the
loss by at most ``beta * 2d``; on the tiny model the per-sequence log-probs move
by about 1e-3 nats (measured), so 1e-3 on the loss and a 2 % relative gradient
error (five bf16 roundoffs; measured 0.4 %) catch a bf16 sum of log-probs
(spacing 1 nat near -150) without flaking. The tiny model's logits are too
small for a bf16 LM head to show in the loss, so a test checks the head's
output carries float32 bits directly. The levers change no
arithmetic but matmul shapes, so float32 agreement to 1e-5 is asked there.
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
import warnings

import pytest
import torch
from click.testing import CliRunner

from acqkit import models
from acqkit.config import RunConfig, load_compare, to_toml
from acqkit.errors import ConfigError
from acqkit.models import precision as precision_mod
from acqkit.round.batching import left_pad
from acqkit.round.score import response_logits, score, summed_logps
from acqkit.round.train import Example, TrainConfig, batch_loss, dpo_loss, pair_length, shard_batches, step_batches

needs_bf16 = pytest.mark.skipif(not models.native_bf16("cpu"), reason="this CPU has no native bf16")


def examples(n: int, seed: int = 0) -> list[Example]:
    g = torch.Generator().manual_seed(seed)

    def ids(lo, hi):
        return torch.randint(5, 500, (int(torch.randint(lo, hi, (1,), generator=g)),), generator=g).tolist()

    return [Example(ids(3, 12), ids(1, 24), ids(1, 24), -30.0 + i % 3, -31.0, [1.0, 0.0, 0.8][i % 3])
            for i in range(n)]


def fresh(tiny, precision: str = "fp32", noise: float = 0.0):
    """A trainable copy of the tiny model (optionally perturbed, so the loss is not ln 2)."""
    model = copy.deepcopy(tiny[0])
    if noise:
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * noise * p.abs().mean())
    for p in model.parameters():
        p.requires_grad_(True)
    models.set_precision(model, precision)
    return model


def loss_and_grad(model, batch, pad, loss_fn=batch_loss):
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model, batch, 0.1, pad)
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@needs_bf16
def test_bf16_loss_and_gradients_stay_close_to_float32(tiny):
    pad = tiny[1].pad_token_id
    batch = examples(8)
    l32, g32 = loss_and_grad(fresh(tiny, "fp32", 0.1), batch, pad)
    l16, g16 = loss_and_grad(fresh(tiny, "bf16", 0.1), batch, pad)
    assert abs(l16 - l32) < 1e-3
    assert (g16 - g32).norm() / g32.norm() < 0.02
    assert l16 != l32  # bf16 really ran (the test would pass trivially otherwise)


@needs_bf16
def test_bf16_identical_weights_give_identical_logps(tiny):
    """Policy and reference share one numerics path, so a margin is exactly 0 while they are equal."""
    pad = tiny[1].pad_token_id
    policy, reference = fresh(tiny, "bf16"), fresh(tiny, "bf16")
    for p in reference.parameters():
        p.requires_grad_(False)  # as the session freezes it: autocast does not cache its casts
    batch = examples(12, seed=3)
    prompts, responses = [e.prompt for e in batch], [e.a for e in batch]
    lp, _ = score(policy, prompts, responses, pad, batch_size=5)
    lr, _ = score(reference, prompts, responses, pad, batch_size=5)
    assert (lp == lr).all()
    l32, _ = score(fresh(tiny, "fp32"), prompts, responses, pad, batch_size=5)
    assert not (lp == l32).all() and abs(lp - l32).max() < 0.05


@needs_bf16
def test_a_frozen_model_stored_in_bf16_scores_and_samples_as_before(tiny):
    """The reference's linear weights in bf16 are the operands autocast cast them to: same bits, half the bytes."""
    from acqkit.round.sample import GenConfig, generate

    pad = tiny[1].pad_token_id
    policy, reference = fresh(tiny, "bf16", 0.1), fresh(tiny, "bf16", 0.1)
    for p in reference.parameters():
        p.requires_grad_(False)
    before = sum(p.numel() * p.element_size() for p in reference.parameters())
    cast = models.store_frozen_in_bf16(reference)
    after = sum(p.numel() * p.element_size() for p in reference.parameters())
    linear = sum(m.weight.numel() for n, m in reference.named_modules()
                 if isinstance(m, torch.nn.Linear) and n != "lm_head")
    assert cast == linear > 0 and after == before - 2 * cast
    assert reference.get_input_embeddings().weight.dtype == torch.float32  # the residual stream starts in fp32
    assert reference.get_output_embeddings().weight.dtype == torch.float32  # the head runs in fp32
    batch = examples(12, seed=3)
    prompts, responses = [e.prompt for e in batch], [e.a for e in batch]
    lp, _ = score(policy, prompts, responses, pad, batch_size=5)
    lr, _ = score(reference, prompts, responses, pad, batch_size=5)
    assert (lp == lr).all()  # an equal policy and reference: every margin exactly 0, as with float32 storage
    gen = GenConfig(max_new_tokens=6, temperature=1.0, top_k=20, batch_size=4)
    assert generate(policy, tiny[1], prompts[:4], 2, gen, seed=5) == generate(reference, tiny[1], prompts[:4], 2,
                                                                              gen, seed=5)


def test_store_frozen_in_bf16_leaves_float32_and_trainable_weights_alone(tiny):
    model = fresh(tiny, "fp32")
    for p in model.parameters():
        p.requires_grad_(False)
    assert models.store_frozen_in_bf16(model) == 0  # fp32: nothing to gain, nothing cast
    trainable = fresh(tiny, "bf16")  # requires grad: autocast caches its casts, and AdamW needs fp32 masters
    assert models.store_frozen_in_bf16(trainable) == 0
    assert {p.dtype for p in trainable.parameters()} == {torch.float32}


@needs_bf16
def test_bf16_keeps_the_lm_head_in_float32(tiny):
    """Logits rounded to bf16 (8 bits) would move each token's log-prob by up to 0.06 nats on a real model."""
    ids, mask, pos, resp = left_pad([[5, 6, 7], [8, 9]], [[10, 11, 12], [13, 14]], tiny[1].pad_token_id)
    with torch.no_grad():
        logits = response_logits(fresh(tiny, "bf16"), ids, mask, pos, resp)[resp]
    assert logits.dtype == torch.float32
    assert (logits != logits.bfloat16().float()).float().mean() > 0.5  # not bf16 values in a float32 tensor


def full_logits_loss(model, batch, beta, pad):
    """DPO loss the way acqkit computed it before the levers: logits at every position, then sliced."""
    n = len(batch)
    ids, mask, pos, resp = left_pad([e.prompt for e in batch] * 2, [e.a for e in batch] + [e.b for e in batch], pad)
    width = resp.shape[1]
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -(width + 1) : -1].float()
    logps, _ = summed_logps(logits, ids, resp)
    ref = torch.tensor([e.ref_a for e in batch] + [e.ref_b for e in batch])
    p = torch.tensor([e.p for e in batch])
    return dpo_loss(logps[:n], logps[n:], ref[:n], ref[n:], p, beta).mean()


def test_head_only_at_response_tokens_gives_the_same_loss_and_gradients(tiny):
    pad = tiny[1].pad_token_id
    batch = examples(8)
    model = fresh(tiny, "fp32", 0.1)
    l_new, g_new = loss_and_grad(model, batch, pad)
    l_old, g_old = loss_and_grad(model, batch, pad, full_logits_loss)
    assert abs(l_new - l_old) < 1e-5
    assert torch.allclose(g_new, g_old, atol=1e-5, rtol=1e-4)


def test_response_logits_are_zero_off_the_response(tiny):
    ids, mask, pos, resp = left_pad([[5, 6, 7], [8, 9]], [[10, 11, 12], [13]], tiny[1].pad_token_id)
    with torch.no_grad():
        logits = response_logits(tiny[0], ids, mask, pos, resp)
    assert logits.shape[:2] == resp.shape
    assert (logits[~resp] == 0).all() and (logits[resp] != 0).any(-1).all()


def test_a_pairs_loss_does_not_depend_on_its_batch_partners(tiny):
    """Length grouping changes who a pair is batched with; its loss must not change beyond float32 rounding."""
    pad = tiny[1].pad_token_id
    batch = examples(8)
    model = fresh(tiny, "fp32", 0.1)
    with torch.no_grad():
        together = batch_loss(model, batch, 0.1, pad).item()
        alone = sum(batch_loss(model, [e], 0.1, pad).item() for e in batch) / len(batch)
    assert abs(together - alone) < 1e-5


def padding(batches) -> float:
    cells = sum(len(b) * max(pair_length(e) for e in b) for b in batches)
    return 1 - sum(pair_length(e) for b in batches for e in b) / cells


def test_length_groups_cover_every_pair_once_per_epoch_and_cut_padding():
    data = examples(100)
    cfg = TrainConfig(batch_size=4, epochs=3, seed=7)
    grouped = step_batches(data, cfg)
    plain = step_batches(data, TrainConfig(batch_size=4, epochs=3, seed=7, group_by_length=False))
    assert len(grouped) == len(plain) == 75
    epochs = [grouped[i * 25 : (i + 1) * 25] for i in range(3)]
    for epoch in epochs:
        assert sorted(id(e) for b in epoch for e in b) == sorted(id(e) for e in data)
    assert padding(grouped) < padding(plain) / 2
    compositions = [{frozenset(map(id, b)) for b in epoch} for epoch in epochs]
    assert compositions[0] != compositions[1] != compositions[2]  # every epoch draws new groups
    widths = [max(pair_length(e) for e in b) for b in epochs[0]]
    assert widths != sorted(widths) and widths != sorted(widths, reverse=True)  # a random order, not short to long
    assert step_batches(data, cfg) == grouped  # same seed, same batches
    assert step_batches(data, TrainConfig(batch_size=4, epochs=3, seed=8)) != grouped


def test_every_process_gets_the_same_steps_and_the_steps_do_not_depend_on_the_process_count():
    data = examples(23)
    cfg = TrainConfig(batch_size=6, epochs=2, seed=1)
    steps = step_batches(data, cfg)
    ranks = [shard_batches(data, cfg, r, 2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(steps)
    assert all(len(micros) == cfg.grad_accum for rank in ranks for micros in rank)
    for s, batch in enumerate(steps):  # the two processes' micro-batches are the step's batch, in order
        assert [e for r in range(2) for micro in ranks[r][s] for e in micro] == batch
        assert abs(len(ranks[0][s][0]) - len(ranks[1][s][0])) <= 1
    one_accumulating = shard_batches(data, TrainConfig(batch_size=6, epochs=2, seed=1, grad_accum=2), 0, 1)
    assert one_accumulating == [[ranks[0][s][0], ranks[1][s][0]] for s in range(len(steps))]
    tiny_tail = shard_batches(data[:1], TrainConfig(batch_size=6, seed=1), 1, 2)
    assert tiny_tail == [[[]]]  # a process with nothing to do in a step still has its (empty) micro-batch


def test_precision_resolves_on_the_hardware(monkeypatch):
    monkeypatch.setattr(precision_mod, "native_bf16", lambda device="cpu": False)
    assert models.resolve_precision("auto") == "fp32"
    assert models.resolve_precision("fp32") == "fp32"
    with pytest.raises(ConfigError, match=r"--precision bf16: this CPU has no native bf16.*--precision fp32"):
        models.resolve_precision("bf16")
    monkeypatch.setattr(precision_mod, "native_bf16", lambda device="cpu": True)
    assert models.resolve_precision("auto") == "bf16" and models.dtype_for("bf16") == torch.bfloat16


def test_bf16_on_a_cpu_without_it_is_a_one_line_error_before_any_model_loads(monkeypatch, tmp_path):
    from acqkit.cli import cli

    monkeypatch.setattr(precision_mod, "native_bf16", lambda device="cpu": False)
    loaded = []
    monkeypatch.setattr(models, "load_model", lambda *a, **k: loaded.append(a))
    result = CliRunner().invoke(cli, ["run", "--preset", "smoke", "--precision", "bf16", "--rounds", "1", "--quiet",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and "no native bf16" in result.output, result.output
    assert "Traceback" not in result.output and not loaded


def test_precision_is_validated_and_the_old_mixed_precision_still_reads(tmp_path):
    with pytest.raises(ConfigError, match="'precision' must be"):
        RunConfig(precision="fp16")
    with pytest.warns(FutureWarning, match="mixed_precision"):
        old = RunConfig(mixed_precision="bf16")
    assert old.precision == "bf16" and old.mixed_precision == "no"
    path = tmp_path / "old.toml"
    path.write_text('model = "tiny"\nmixed_precision = "bf16"\n')
    with pytest.warns(FutureWarning):
        loaded = load_compare(path).base
    assert loaded.precision == "bf16"
    path.write_text(to_toml(loaded))  # saved in the new form: reads back equal, without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_compare(path).base == loaded


@needs_bf16
@pytest.mark.integration
def test_bf16_runs_are_byte_identical_in_fresh_processes(tmp_path):
    args = ["run", "--preset", "smoke", "--precision", "bf16", "--strategy", "smallest-margin", "--rounds", "2",
            "--budget", "8", "--seed-labels", "4", "--max-new-tokens", "8", "--eval-prompts", "4", "--quiet"]
    procs = {}
    for name, hashseed in (("a", "1"), ("b", "2")):
        env = {**os.environ, "PYTHONHASHSEED": hashseed, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        procs[name] = subprocess.Popen([sys.executable, "-m", "acqkit", *args, "--out", str(tmp_path / name)],
                                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for name, proc in procs.items():
        output = proc.communicate(timeout=900)[0]
        assert proc.returncode == 0, f"{name}: {output[-2000:]}"
    for name in ("results.csv", "labels.jsonl", "examples.jsonl", "checkpoint/model.safetensors"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert 'precision = "bf16"' in (tmp_path / "a" / "config.toml").read_text()


@needs_bf16
def test_a_frozen_copy_of_a_lora_policy_in_bf16_scores_as_the_policy(tiny):
    """SPA's previous-round reference of a LoRA policy: base and adapters in bf16, the same log-probs."""
    from acqkit.models.lora import add_lora

    policy = add_lora(fresh(tiny, "bf16"), 4)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.add_(0.05 * torch.randn_like(p))  # adapters that change the output
    frozen = copy.deepcopy(policy).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    assert models.store_frozen_in_bf16(frozen) > 0
    batch = examples(6, seed=4)
    prompts, responses = [e.prompt for e in batch], [e.b for e in batch]
    pad = tiny[1].pad_token_id
    assert (score(policy, prompts, responses, pad, batch_size=4)[0]
            == score(frozen, prompts, responses, pad, batch_size=4)[0]).all()
