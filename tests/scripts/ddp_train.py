"""Worker for tests/test_distributed.py: train the tiny model under accelerate, save the weights.

Usage: accelerate launch --multi_gpu --num_processes 2 ddp_train.py OUT_DIR BATCH_SIZE GRAD_ACCUM MODE... (CPU: DDP over gloo)
       accelerate launch --config_file examples/accelerate/fsdp.yaml ddp_train.py ... (FSDP2, forced on the CPU)

MODE is ``lora`` (adapters with dropout) or ``full`` (the whole model); several
modes train one after the other in the same launch (one process start-up for
all), each from the same seed, into OUT_DIR/MODE/rank<r>.safetensors.
"""
import os
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


def make_accelerator() -> Accelerator:
    """acqkit's accelerator; under an FSDP config, switched to FSDP by force (a test harness, not acqkit).

    accelerate 1.15 turns ACCELERATE_USE_FSDP into FSDP only when it sees a GPU;
    on a CPU it silently stays DDP. To run acqkit's FSDP path over gloo here,
    the state is set as accelerate sets it on a GPU machine (private state: the
    two shared dicts, or the next Accelerator copies the old type back).
    """
    acc = Accelerator(cpu=True)
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() != "true":
        return acc
    from accelerate import FullyShardedDataParallelPlugin
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    acc.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    acc.state.fsdp_plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* variables accelerate launch set
    return acc


def main(out: Path, batch_size: int, grad_accum: int, lora: bool) -> None:
    torch.manual_seed(0)
    model = models.load_model("tiny")
    if lora:  # adapters with dropout: its randomness must not depend on the process either
        from acqkit.models.lora import add_lora

        add_lora(model, 4, dropout=0.1)
    tok = models.load_tokenizer("tiny")
    accelerator = make_accelerator()
    cfg = TrainConfig(lr=1e-2, epochs=2, batch_size=batch_size, grad_accum=grad_accum, warmup=0.0, seed=3)
    stats = train(model, examples(), cfg, tok.pad_token_id, accelerator=accelerator)
    assert not any("FSDP" in type(m).__name__ for m in model.modules())  # a plain module again, whole weights
    state = {k: v.contiguous() for k, v in model.state_dict().items() if "lm_head" not in k}
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / f"rank{accelerator.process_index}.safetensors"),
              metadata={"world": str(accelerator.num_processes), "steps": str(stats["steps"]),
                        "loss": repr(stats["loss"]), "kind": accelerator.distributed_type.value,
                        "fsdp2": str(accelerator.is_fsdp2)})


if __name__ == "__main__":
    for mode in sys.argv[4:]:
        assert mode in ("lora", "full"), mode
        main(Path(sys.argv[1]) / mode, int(sys.argv[2]), int(sys.argv[3]), mode == "lora")
