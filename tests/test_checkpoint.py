"""Each finished round leaves the policy as a safetensors checkpoint that loads back exactly."""
import torch
from transformers import AutoModelForCausalLM

from acqkit.config import preset
from acqkit.round.loop import run
from acqkit.plugins import registry
from acqkit.round.session import Session


def test_checkpoint_round_trips(tmp_path):
    cfg = preset("smoke", rounds=2, budget=8, seed_labels=4)
    session = Session.open(cfg, registry())
    run(cfg, session, out=tmp_path)
    ckpt = tmp_path / "checkpoint"
    assert (ckpt / "ACQKIT_ROUND").read_text() == "2"
    assert list(ckpt.glob("*.safetensors")) and not list(ckpt.glob("*.bin"))
    assert not (tmp_path / "checkpoint.tmp").exists()
    loaded = AutoModelForCausalLM.from_pretrained(ckpt).state_dict()
    for name, value in session.policy.state_dict().items():
        assert torch.equal(loaded[name], value), name
    assert any(not torch.equal(loaded[k], v) for k, v in session.initial_state.items())
