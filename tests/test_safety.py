"""Safe by default: safetensors only, no unpickling, no remote code, a labeling page only this machine sees."""
from __future__ import annotations

import json
import pickle
import shutil
import socket
import sys
import threading
import time
import urllib.request

import pytest
import torch

from acqkit import models
from acqkit.config import RunConfig, preset
from acqkit.round.label import label_pairs
from acqkit.round.loop import run
from acqkit.plugins import collect, make_manager
from acqkit.store.rundir import PICKLE_SUFFIXES, load_checkpoint
from acqkit_plugins.human_web import HumanWebLabeler
from kill_helpers import StopAfterRound
from labeling_helpers import PROMPTS, pairs, table

SAFE_SUFFIXES = {".csv", ".toml", ".jsonl", ".sqlite", ".safetensors", ".json", ""}  # "" = ACQKIT_ROUND


def test_a_run_writes_no_pickle_and_resumes_without_unpickling_anything(tmp_path, monkeypatch):
    cfg = preset("smoke", rounds=2, budget=8, seed_labels=4, eval_prompts=4, max_new_tokens=8)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out=tmp_path, registry=collect(make_manager(extra_plugins=[StopAfterRound(1)])))
    assert {p.suffix for p in tmp_path.rglob("*") if p.is_file()} <= SAFE_SUFFIXES
    assert (tmp_path / "checkpoint" / "model.safetensors").exists()

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    resumed = run(cfg, out=tmp_path, resume=True)  # reads results, logs, ledger and checkpoint
    assert resumed["round"].tolist() == [0, 1, 2]
    assert not [p for p in tmp_path.rglob("*") if p.suffix in PICKLE_SUFFIXES]


EVIL = """
import os, pathlib
pathlib.Path(os.environ["ACQKIT_SENTINEL"]).write_text("remote code ran")
from transformers import LlamaConfig, LlamaForCausalLM
class EvilConfig(LlamaConfig):
    model_type = "llama"
class EvilModel(LlamaForCausalLM):
    config_class = EvilConfig
"""


@pytest.fixture
def evil_model(tmp_path, monkeypatch):
    """The tiny model, plus code its config asks to run (it leaves a file behind when it does)."""
    import transformers.dynamic_module_utils as dmu

    path = tmp_path / "evil"
    shutil.copytree(models.resolve("tiny"), path)
    config = json.loads((path / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (path / "config.json").write_text(json.dumps(config))
    (path / "evil.py").write_text(EVIL)
    sentinel = tmp_path / "sentinel"
    monkeypatch.setenv("ACQKIT_SENTINEL", str(sentinel))
    monkeypatch.setattr(dmu, "HF_MODULES_CACHE", str(tmp_path / "hf_modules"))  # keep ~/.cache clean
    monkeypatch.setattr(sys, "path", list(sys.path))
    return path, sentinel


def test_remote_code_runs_only_when_the_user_asks(evil_model, tmp_path):
    path, sentinel = evil_model
    assert RunConfig().trust_remote_code is False
    models.load_tokenizer(str(path))
    models.load_model(str(path))
    run_dir = tmp_path / "run"  # the same model as a checkpoint inside a run directory
    shutil.copytree(path, run_dir / "checkpoint")
    load_checkpoint(run_dir)
    assert not sentinel.exists()
    models.load_model(str(path), trust_remote_code=True)  # the user said so: the code runs
    assert sentinel.read_text() == "remote code ran"


def non_loopback_address() -> str | None:
    """This machine's address on its default route, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent for UDP connect
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


class FakeSession:
    """What ``label_pairs`` reads from a session; the labeling path needs no model."""

    task = policy = reference = tokenizer = None
    train_prompts = PROMPTS


def test_the_labeling_page_listens_on_loopback_only(tmp_path):
    labeler, result = HumanWebLabeler(), {}
    cfg = RunConfig(model="tiny", labeler="human-web", ledger=str(tmp_path / "l.sqlite"))
    thread = threading.Thread(target=lambda: result.update(labels=label_pairs(
        FakeSession(), cfg, labeler, "human-web", pairs((0, 1)), table(), 1, None)), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while labeler.url is None:
        assert time.monotonic() < deadline and thread.is_alive(), "the labeler never served its page"
        time.sleep(0.02)
    url = labeler.url
    port = int(url.split(":")[2].split("/")[0])
    assert url.startswith("http://127.0.0.1:")
    address = non_loopback_address()
    if address is not None:  # reachable from this machine only: another interface is refused
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, port), timeout=5).close()
    base, token = url.split("/?token=")
    body = json.dumps({"index": 0, "key": "a"}).encode()
    request = urllib.request.Request(f"{base}/api/answer?token={token}", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200
    thread.join(10)
    assert result["labels"]["p"].tolist() == [1.0]
