"""Does torch.compile lift SmolLM2's bare bf16 forward + backward toward the bf16 matmul peak?

Issue 15 asks for training at 40 % of the bf16 peak; the model's own eager step is
the ceiling (``_peak.model_step``). This times that step eager and under
``torch.compile`` (inductor, static shapes), in one process, after one compiled
warm-up call. Run it on a quiet machine:

    cd benchmarks && python compile_step.py
"""
import time

import torch

import _peak  # benchmarks/_peak.py
from acqkit.models import load_model

peak = _peak.matmul_peak("bf16")
print(f"bf16 matmul peak {peak / 1e9:.0f} GFLOP/s")
model = load_model("smollm2")
eager = _peak.model_step(model, "bf16")
print(f"eager: {eager / 1e9:.0f} GFLOP/s = {eager / peak:.0%}")
start = time.perf_counter()
compiled = torch.compile(model, dynamic=False)
compiled.config = model.config
compiled.get_input_embeddings = model.get_input_embeddings
compiled.get_output_embeddings = model.get_output_embeddings
_peak.model_step(compiled, "bf16")  # compiles
again = _peak.model_step(compiled, "bf16")
print(f"compiled ({time.perf_counter() - start:.0f} s incl. compile): {again / 1e9:.0f} GFLOP/s = {again / peak:.0%}")
