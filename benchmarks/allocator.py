"""Training steps with glibc's default malloc against freed memory kept for reuse (acqkit/memory.py).

Each setting runs in a fresh process (malloc settings are per process): three
calls of ``train()`` on 24 SmolLM2 pairs of random tokens (3 steps of 8 pairs),
and prints the seconds of each call and a SHA-256 of the trained weights, which
must match between the settings: the allocator moves memory, never a number.

    python benchmarks/allocator.py [--precision fp32,bf16] [--model smollm2]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = r"""
import hashlib, sys, time, torch
from acqkit import models
from acqkit.memory import keep_freed_memory
from acqkit.round.train import Example, TrainConfig, train
model_spec, precision, keep = sys.argv[1], sys.argv[2], sys.argv[3] == "kept"
if keep:
    assert keep_freed_memory(), "glibc malloc settings could not be applied here"
model = models.load_model(model_spec, precision=precision)
for p in model.parameters():
    p.requires_grad_(True)
g = torch.Generator().manual_seed(0)
def ids(n):
    return torch.randint(5, model.config.vocab_size, (n,), generator=g).tolist()
pairs = [Example(ids(30), ids(32), ids(30), -40.0, -41.0, 1.0) for _ in range(24)]
cfg = TrainConfig(lr=3e-5, batch_size=8, epochs=1, warmup=0.1)
times = []
for _ in range(3):
    start = time.perf_counter()
    train(model, pairs, cfg, 2)
    times.append(time.perf_counter() - start)
h = hashlib.sha256()
for v in model.state_dict().values():
    h.update(v.detach().float().numpy().tobytes())
print(" ".join(f"{t:.2f}" for t in times), h.hexdigest()[:16])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="fp32,bf16")
    parser.add_argument("--model", default="smollm2")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "ACQKIT_MALLOC"}
    print(f"{'precision':9}  {'malloc':16}  seconds per train() call  weights sha256")
    for precision in args.precision.split(","):
        digests = set()
        for setting in ("default", "kept"):
            out = subprocess.run([sys.executable, "-c", CHILD, args.model, precision, setting], env=env,
                                 capture_output=True, text=True, check=True).stdout.split()
            digests.add(out[-1])
            label = "glibc default" if setting == "default" else "freed memory kept"
            print(f"{precision:9}  {label:16}  {' '.join(out[:-1]):24}  {out[-1]}")
        print(f"{'':9}  same weights: {len(digests) == 1}")


if __name__ == "__main__":
    main()
