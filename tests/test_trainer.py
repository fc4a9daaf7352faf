"""The DPO loss against hand computation, and that training lowers it."""
import math

import torch

from acqkit.round.train import Example, TrainConfig, batch_loss, dpo_loss, lr_factor, train


TWO_PAIRS = (Example([5, 6, 7], [20, 21, 22], [30, 31], -20.0, -15.0, 1.0),
             Example([8, 9], [40, 41], [50, 51, 52, 53], -12.0, -25.0, 0.0))


def fresh(tiny):
    """A trainable copy of the shared tiny model, and its tokenizer."""
    model, tok = tiny
    copy = type(model)(model.config)
    copy.load_state_dict(model.state_dict())
    return copy, tok


def test_loss_with_p_one_is_standard_dpo():
    # h = (-10 - -12) - (-11 - -10) = 2 - (-1) = 3; beta = 0.1 -> -log sigmoid(0.3)
    loss = dpo_loss(torch.tensor([-10.0]), torch.tensor([-11.0]), torch.tensor([-12.0]), torch.tensor([-10.0]),
                    torch.tensor([1.0]), beta=0.1)
    expected = -math.log(1 / (1 + math.exp(-0.3)))
    assert abs(loss.item() - expected) < 1e-6


def test_soft_target_mixes_both_directions():
    h_beta = 0.1 * 3
    p = 0.9
    loss = dpo_loss(torch.tensor([-10.0]), torch.tensor([-11.0]), torch.tensor([-12.0]), torch.tensor([-10.0]),
                    torch.tensor([p]), beta=0.1)
    expected = -(p * math.log(1 / (1 + math.exp(-h_beta))) + (1 - p) * math.log(1 / (1 + math.exp(h_beta))))
    assert abs(loss.item() - expected) < 1e-6


def test_p_zero_equals_swapped_pair():
    a, b, ra, rb = (torch.tensor([x]) for x in (-3.0, -5.0, -4.0, -4.5))
    swapped = dpo_loss(b, a, rb, ra, torch.tensor([1.0]), 0.2)
    assert torch.allclose(dpo_loss(a, b, ra, rb, torch.tensor([0.0]), 0.2), swapped)


def test_learning_rate_schedule_warms_up_then_decays():
    factors = [lr_factor(s, 10, 0.2) for s in range(10)]
    assert factors[0] == 0.5 and factors[1] == 1.0
    assert all(x >= y for x, y in zip(factors[1:], factors[2:]))


def test_a_training_step_lowers_the_loss_on_its_batch(tiny):
    model, tok = fresh(tiny)
    batch = list(TWO_PAIRS)
    with torch.no_grad():
        before = batch_loss(model, batch, 0.1, tok.pad_token_id).item()
    train(model, batch, TrainConfig(lr=1e-2, batch_size=2, epochs=1, warmup=0.0), tok.pad_token_id)
    with torch.no_grad():
        after = batch_loss(model, batch, 0.1, tok.pad_token_id).item()
    assert after < before - 1e-3


def test_train_only_the_last_block(tiny):
    model, tok = fresh(tiny)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = [Example([5, 6, 7], [20, 21, 22], [30, 31], -20.0, -15.0, 1.0)]
    train(model, batch, TrainConfig(lr=1e-2, batch_size=1, warmup=0.0, train_layers=1), tok.pad_token_id)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(("model.layers.1.", "model.norm.")) for k in changed), changed


def test_a_bf16_training_step_lowers_the_loss_and_keeps_float32_weights(tiny):
    from acqkit import models

    if not models.native_bf16("cpu"):
        import pytest

        pytest.skip("this CPU has no native bf16")
    model, tok = fresh(tiny)
    models.set_precision(model, "bf16")
    batch = list(TWO_PAIRS)
    with torch.no_grad():
        before = batch_loss(model, batch, 0.1, tok.pad_token_id).item()
    train(model, batch, TrainConfig(lr=1e-2, batch_size=2, epochs=1, warmup=0.0), tok.pad_token_id)
    with torch.no_grad():
        after = batch_loss(model, batch, 0.1, tok.pad_token_id)
    assert after.item() < before - 1e-3
    assert after.dtype == torch.float32 and all(p.dtype == torch.float32 for p in model.parameters())


def test_an_fsdp_config_on_a_cpu_trains_unsharded_and_says_so(tiny, monkeypatch, caplog):
    """accelerate 1.15 runs FSDP only on GPUs: acqkit says it trains with something else, once, not silently."""
    import logging

    from acqkit.round import train as train_mod

    train_mod.fsdp_not_here.cache_clear()
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    model, tok = fresh(tiny)
    with caplog.at_level(logging.WARNING, logger="acqkit"):
        for _ in range(2):
            train(model, list(TWO_PAIRS), TrainConfig(batch_size=2), tok.pad_token_id)
    said = [r.getMessage() for r in caplog.records if "FSDP" in r.getMessage()]
    assert len(said) == 1 and "runs FSDP only on GPUs" in said[0] and "cpu" in said[0]


def test_the_multi_tensor_adamw_trains_to_the_same_bits_as_the_per_tensor_loop(tiny, monkeypatch):
    """acqkit asks for foreach=True (faster on a CPU) only because it changes no result: checked, not assumed."""
    import acqkit.round.train as train_mod

    cfg = TrainConfig(lr=1e-2, batch_size=2, epochs=2, warmup=0.0)
    fast, tok = fresh(tiny)
    train(fast, list(TWO_PAIRS), cfg, tok.pad_token_id)

    class PerTensor(torch.optim.AdamW):
        def __init__(self, params, **kw):
            super().__init__(params, **{**kw, "foreach": False})

    monkeypatch.setattr(train_mod.torch.optim, "AdamW", PerTensor)
    slow, _ = fresh(tiny)
    train(slow, list(TWO_PAIRS), cfg, tok.pad_token_id)
    changed = [k for k, v in fast.state_dict().items() if not torch.equal(v, slow.state_dict()[k])]
    assert not changed
    assert not torch.equal(fast.state_dict()["model.norm.weight"], tiny[0].state_dict()["model.norm.weight"])
