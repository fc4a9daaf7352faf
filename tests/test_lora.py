"""LoRA through peft: only the adapters train, a fresh adapter changes nothing, checkpoints resume exactly."""
import pandas as pd
import pytest
import torch
from peft import PeftModel

from acqkit import models
from acqkit.config import preset
from acqkit.models.lora import add_lora, has_adapters, parameter_counts
from acqkit.round.loop import run
from acqkit.plugins import collect, make_manager, registry
from acqkit.round.score import score
from acqkit.round.session import Session
from acqkit.round.train import Example, TrainConfig, batch_loss, train, trainable_last
from kill_helpers import StopAfterRound

BATCH = [Example([5, 6, 7], [20, 21, 22], [30, 31], -20.0, -15.0, 1.0),
         Example([8, 9], [40, 41], [50, 51, 52, 53], -12.0, -25.0, 0.0)]
PROMPTS, RESPONSES = [[5, 17, 42, 8], [9, 3], [100, 200, 7]], [[11, 12, 13], [14, 15, 16, 17, 18], [20]]


def lora_copy(tiny, rank=4):
    model = type(tiny[0])(tiny[0].config)
    model.load_state_dict(tiny[0].state_dict())
    return add_lora(model.eval(), rank)


def test_a_fresh_adapter_computes_exactly_what_the_base_does(tiny):
    model, tok = tiny
    lora = lora_copy(tiny)
    assert has_adapters(lora) and not has_adapters(model)
    trainable, total = parameter_counts(lora)
    assert 0 < trainable < total / 10
    base = score(model, PROMPTS, RESPONSES, tok.pad_token_id)[0]
    assert (score(lora, PROMPTS, RESPONSES, tok.pad_token_id)[0] == base).all()  # lora_B starts at zero


def test_only_adapters_get_gradients(tiny):
    lora = lora_copy(tiny)
    trainable_last(lora, None)
    batch_loss(lora, BATCH, 0.1, tiny[1].pad_token_id).backward()
    with_grad = {n for n, p in lora.named_parameters() if p.grad is not None}
    adapters = {n for n, _ in lora.named_parameters() if "lora_" in n}
    assert with_grad == adapters
    trainable_last(lora, 1)  # with train_layers: the adapters of the last block only
    assert {n for n, p in lora.named_parameters() if p.requires_grad} == {n for n in adapters if ".layers.1." in n}


def test_training_changes_only_adapters_and_lowers_the_loss(tiny):
    lora = lora_copy(tiny)
    pad = tiny[1].pad_token_id
    before = {k: v.clone() for k, v in lora.state_dict().items()}
    with torch.no_grad():
        loss0 = batch_loss(lora, BATCH, 0.1, pad).item()
    train(lora, BATCH, TrainConfig(lr=1e-2, batch_size=2, epochs=3, warmup=0.0), pad)
    with torch.no_grad():
        loss1 = batch_loss(lora, BATCH, 0.1, pad).item()
    assert loss1 < loss0 - 1e-3
    changed = {k for k, v in lora.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k for k in changed)
    assert any("lora_B" in k for k in changed)


def test_a_lora_run_checkpoints_the_adapter_and_resumes_exactly(tmp_path):
    cfg = preset("smoke", strategy="smallest-margin", rounds=2, budget=8, seed_labels=4, eval_prompts=8,
                 lora_rank=4, lr=1e-2)
    session = Session.open(cfg, registry())
    run(cfg, session, out=tmp_path / "full")
    ckpt = tmp_path / "full" / "checkpoint"
    assert sorted(p.name for p in ckpt.iterdir()) == ["ACQKIT_ROUND", "adapter_config.json",
                                                      "adapter_model.safetensors"]
    # The base never moved; the adapter did, and peft itself loads it onto the base as the same policy.
    state = session.policy.state_dict()
    for name, value in session.reference.state_dict().items():
        live = name.replace(".weight", ".base_layer.weight")  # where peft moved an adapted layer's weight
        assert torch.equal(state.get(live, state.get(name)), value), name
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in state.items())
    peft_model = PeftModel.from_pretrained(models.load_model("tiny"), str(ckpt)).eval()
    pad = session.tokenizer.pad_token_id
    assert (score(peft_model, PROMPTS, RESPONSES, pad)[0] == score(session.policy, PROMPTS, RESPONSES, pad)[0]).all()

    crashing = collect(make_manager(extra_plugins=[StopAfterRound(1)]))
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out=tmp_path / "resumed", registry=crashing)
    assert len(pd.read_csv(tmp_path / "resumed" / "results.csv")) == 2  # rounds 0 and 1
    run(cfg, out=tmp_path / "resumed", resume=True)
    for name in ("results.csv", "labels.jsonl", "examples.jsonl"):
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name
