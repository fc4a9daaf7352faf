"""Worker for tests/test_distributed.py: train the tiny model under accelerate, save the weights.

Usage: accelerate launch --multi_gpu --num_processes 2 ddp_train.py OUT_DIR BATCH_SIZE (CPU: DDP over gloo)
"""
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import save_file

from acqkit import models
from acqkit.round.train import Example, TrainConfig, train


def examples() -> list[Example]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(8):
        prompt = torch.randint(10, 500, (3 + i % 3,), generator=g).tolist()
        a = torch.randint(10, 500, (2 + i % 4,), generator=g).tolist()
        b = torch.randint(10, 500, (1 + i % 5,), generator=g).tolist()
        out.append(Example(prompt, a, b, -float(len(a)) * 7, -float(len(b)) * 7, float(i % 2)))
    return out


def main(out: Path, batch_size: int) -> None:
    torch.manual_seed(0)
    model = models.load_model("tiny")
    tok = models.load_tokenizer("tiny")
    accelerator = Accelerator(cpu=True)
    cfg = TrainConfig(lr=1e-2, epochs=2, batch_size=batch_size, warmup=0.0, seed=3)
    stats = train(model, examples(), cfg, tok.pad_token_id, accelerator=accelerator)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if "lm_head" not in k}
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / f"rank{accelerator.process_index}.safetensors"),
              metadata={"world": str(accelerator.num_processes), "steps": str(stats["steps"])})


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
