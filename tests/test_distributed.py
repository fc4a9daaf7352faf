"""The same trainer under `accelerate launch --num_processes 2` on the CPU (DDP over gloo)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

pytestmark = pytest.mark.integration  # accelerate launch with two processes

SCRIPT = Path(__file__).parent / "scripts" / "ddp_train.py"


def launch(out: Path, processes: int, batch_size: int) -> None:
    # `accelerate launch --cpu` (accelerate 1.15) starts a single process whatever --num_processes says;
    # `--multi_gpu` starts torchrun workers, which on a machine without GPUs run DDP over gloo on the CPU.
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    mode = "--multi_gpu" if processes > 1 else "--cpu"
    cmd = [accelerate, "launch", mode, "--num_processes", str(processes), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           str(SCRIPT), str(out), str(batch_size)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_processes_agree_with_each_other_and_with_one_process(tiny, tmp_path):
    launch(tmp_path / "ddp", 2, batch_size=2)
    launch(tmp_path / "single", 1, batch_size=4)  # the same global batches in one process
    r0, r1 = (load_file(str(tmp_path / "ddp" / f"rank{r}.safetensors")) for r in (0, 1))
    single = load_file(str(tmp_path / "single" / "rank0.safetensors"))
    with safe_open(str(tmp_path / "ddp" / "rank0.safetensors"), "pt") as f:
        assert f.metadata()["world"] == "2"
    initial = tiny[0].state_dict()
    assert any(not torch.equal(r0[k], initial[k]) for k in r0)  # it trained
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k  # DDP keeps replicas identical
        assert torch.allclose(r0[k], single[k], atol=1e-4), k  # and matches one process on the same data


def test_two_process_compare_pays_each_label_once(tmp_path):
    """Under a launcher every process trains, but only the main one asks the labeler and writes."""
    from kill_helpers import child_env, install_plugin

    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    out, calls = tmp_path / "cmp", tmp_path / "calls.jsonl"
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           "-m", "acqkit", "compare", "--preset", "smoke", "--strategies", "random", "--seeds", "1",
           "--labeler", "counting-gold", "--rounds", "2", "--budget", "8", "--seed-labels", "4",
           "--out", str(out), "--quiet"]
    env = {**child_env(install_plugin(tmp_path / "plugin")), "ACQKIT_FAULTS_CALLS": str(calls)}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("gold win rate") == 1  # one table, from the main process
    import pandas as pd

    results = pd.read_csv(out / "results.csv")
    assert results["labels_spent"].tolist() == [4, 8, 12]
    logged = pd.read_json(out / "runs" / "random" / "seed-0" / "labels.jsonl", lines=True)
    assert len(logged) == 12 and not logged.duplicated(["round", "a", "b"]).any()  # 4 warm start + 8, once each
    asked = calls.read_text().splitlines()
    assert len(asked) == 8  # the online labels, each asked once (the warm start used the gold labeler)
