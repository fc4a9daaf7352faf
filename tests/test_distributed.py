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


FSDP_CONFIG = Path(__file__).parents[1] / "examples" / "accelerate" / "fsdp.yaml"


def launch(out: Path, processes: int, batch_size: int, grad_accum: int = 1, *extra: str, fsdp: bool = False) -> None:
    # `accelerate launch --cpu` (accelerate 1.15) starts a single process whatever --num_processes says;
    # `--multi_gpu` starts torchrun workers, which on a machine without GPUs run DDP over gloo on the CPU.
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    mode = ["--config_file", str(FSDP_CONFIG)] if fsdp else ["--multi_gpu" if processes > 1 else "--cpu"]
    cmd = [accelerate, "launch", *mode, "--num_processes", str(processes), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           str(SCRIPT), str(out), str(batch_size), str(grad_accum), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_processes_train_the_same_weights_as_one_bit_for_bit(tiny, tmp_path):
    """--batch-size is the global batch: 2 processes x 1 micro-batch = 1 process x 2 micro-batches, exactly.

    Batches of 3 out of 8 pairs: steps of 3, 3 and 2 pairs, cut into unequal
    micro-batches (2 + 1), so the per-pair weighting of the loss is exercised.
    LoRA adapters with dropout: dropout draws are seeded per micro-batch, so
    they do not depend on which process runs it. (Full-model DDP is checked end
    to end by the comparison test below.) FSDP2, through
    examples/accelerate/fsdp.yaml forced on the CPU (tests/scripts/ddp_train.py
    says how), trains LoRA and the whole model as one process does. Each launch
    trains every mode it is given, to pay for one process start-up.
    """
    launch(tmp_path / "ddp", 2, 3, 1, "lora")
    launch(tmp_path / "accum", 1, 3, 2, "lora", "full")  # the same micro-batches in one process
    launch(tmp_path / "fsdp", 2, 3, 1, "lora", "full", fsdp=True)
    r0, r1, accum = (load_file(str(tmp_path / d / "lora" / f"rank{r}.safetensors"))
                     for d, r in (("ddp", 0), ("ddp", 1), ("accum", 0)))
    meta = {}
    for name in ("ddp", "accum", "fsdp"):
        with safe_open(str(tmp_path / name / "lora" / "rank0.safetensors"), "pt") as f:
            meta[name] = f.metadata()
    assert meta["ddp"]["world"] == "2" and meta["ddp"]["steps"] == meta["accum"]["steps"] == "6"
    assert meta["ddp"]["loss"] == meta["accum"]["loss"]  # the reported loss too, to the last digit
    adapters = [k for k in r0 if "lora_B" in k]
    assert adapters and any(r0[k].abs().sum() > 0 for k in adapters)  # the adapters trained (they start at 0)
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k  # DDP keeps replicas identical
        assert torch.equal(r0[k], accum[k]), k  # and equals one process on the same micro-batches, bit for bit
    check_fsdp(tmp_path / "fsdp" / "lora", meta["fsdp"], accum)

    full = load_file(str(tmp_path / "accum" / "full" / "rank0.safetensors"))
    initial = tiny[0].state_dict()
    assert any(not torch.equal(full[k], initial[k]) for k in full)  # it trained
    with safe_open(str(tmp_path / "fsdp" / "full" / "rank0.safetensors"), "pt") as f:
        check_fsdp(tmp_path / "fsdp" / "full", f.metadata(), full)


def check_fsdp(out: Path, meta: dict, reference: dict) -> None:
    """FSDP2 trained the same model as one process, up to the order of its sums (reduce-scatter, not all-reduce)."""
    assert meta["kind"] == "FSDP" and meta["fsdp2"] == "True" and meta["steps"] == "6"
    f0, f1 = (load_file(str(out / f"rank{r}.safetensors")) for r in (0, 1))
    for k in reference:
        assert torch.equal(f0[k], f1[k]), k  # every process got the same whole weights back
        assert torch.allclose(f0[k], reference[k], atol=1e-4, rtol=0), (k, (f0[k] - reference[k]).abs().max())


def test_two_process_compare_pays_each_label_once_and_writes_what_one_process_writes(tmp_path):
    """Two processes share sampling, scoring and evaluation; only the main one asks the labeler and writes.

    One process with ``--grad-accum 2`` runs the very micro-batches the two
    processes run with ``--grad-accum 1``, so the comparison's files are the
    same bytes (both with one thread per process: thread counts can pick other
    kernels).
    """
    from kill_helpers import child_env, install_plugin

    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    args = ["compare", "--preset", "smoke", "--strategies", "random,smallest-margin", "--seeds", "1",
            "--labeler", "counting-gold", "--rounds", "2", "--budget", "8", "--seed-labels", "4", "--quiet"]
    env = {**child_env(install_plugin(tmp_path / "plugin")), "OMP_NUM_THREADS": "1"}
    two, one = tmp_path / "two", tmp_path / "one"
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           "-m", "acqkit", *args, "--out", str(two)]
    calls = tmp_path / "calls-two.jsonl"
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                            env={**env, "ACQKIT_FAULTS_CALLS": str(calls)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("gold win rate") == 1  # one table, from the main process
    import pandas as pd

    results = pd.read_csv(two / "results.csv")
    assert results.groupby("strategy")["labels_spent"].agg(list).tolist() == [[4, 8, 12]] * 2
    logged = pd.read_json(two / "runs" / "random" / "seed-0" / "labels.jsonl", lines=True)
    assert len(logged) == 12 and not logged.duplicated(["round", "a", "b"]).any()  # 4 warm start + 8, once each
    asked = calls.read_text().splitlines()
    assert len(asked) == 16  # each strategy's online labels, each asked once (the warm start used the gold labeler)

    single = subprocess.run([sys.executable, "-m", "acqkit", *args, "--grad-accum", "2", "--out", str(one)],
                            capture_output=True, text=True, timeout=900,
                            env={**env, "ACQKIT_FAULTS_CALLS": str(tmp_path / "calls-one.jsonl")})
    assert single.returncode == 0, single.stderr[-3000:]
    assert (one / "results.csv").read_bytes() == (two / "results.csv").read_bytes()
    for strategy in ("random", "smallest-margin"):
        run_one, run_two = (d / "runs" / strategy / "seed-0" for d in (one, two))
        for name in ("results.csv", "labels.jsonl", "examples.jsonl", "pool.jsonl"):
            assert (run_one / name).read_bytes() == (run_two / name).read_bytes(), (strategy, name)


def test_a_unit_that_fails_on_one_process_stops_every_process_with_its_error(tmp_path):
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           str(Path(__file__).parent / "scripts" / "spread_error.py")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0
    assert "rank 1: PromptError: unit 3 is bad" in result.stdout  # the failing process: its own error
    assert "rank 0: AcqkitError: (from process 1) unit 3 is bad" in result.stdout  # the other: the same, named
