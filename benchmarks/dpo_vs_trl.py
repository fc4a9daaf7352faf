"""acqkit's DPO trainer vs TRL's DPOTrainer: pairs/s on identical tokens, and loss agreement.

Both trainers get the same model, the same pairs (sentiment prompts with
review-like responses of 8..64 tokens; the token ids are the ones TRL's own
tokenization produced, reused verbatim for acqkit's ``Example``s), the same
batch size, beta, peak learning rate and schedule shape (10% linear warm-up, then
cosine; with a one-step warm-up TRL's first step runs at lr 0 and acqkit's at the
peak), sigmoid loss, no label smoothing, grad-norm clipping at 1.0, AdamW without
weight decay, one epoch, at one precision for both (``--precision``: float32, or
TRL's ``bf16=True`` against acqkit's bf16 autocast; the loss tolerance is then
looser, see ``TOL_BF16``). Achieved training FLOP/s (useful FLOPs, ``_peak.py``)
is printed for both against the matmul peak of that dtype, measured at the start.
Both precompute the reference log-probs: TRL with ``precompute_ref_log_probs=True``,
acqkit with ``acqkit.round.score.score`` on the reference model; that pass is timed and
reported separately, so pairs/s is shown with and without it (TRL's tokenization
and Trainer set-up are shown but count for neither).

TRL's ``gradient_checkpointing`` defaults to True; it is turned off here (acqkit
does not checkpoint), so both do the same arithmetic. ``--gradient-checkpointing``
restores TRL's default.

Loss agreement: the policy is a copy of the model with small Gaussian noise added
(``--noise``, relative to each tensor's mean magnitude) so the first loss is not
trivially ln 2; the unperturbed model is the reference. Each trainer's loss on the
first ``--batch-size`` pairs (dataset order), before any update, must agree to 1e-4.

Timing: a warm-up (TRL tokenization + both reference passes + the loss check) is
not timed. Then ``--repeats`` rounds, each training a fresh copy of the perturbed
weights once with each trainer, alternating which goes first. The summary takes
each trainer's best (shortest) repeat: on a shared machine other jobs only ever add
time. Every repeat line shows the 1-minute load average when it ended.
``--breakdown N`` also times one batch's forward+backward (no optimizer) for
acqkit, TRL, and the transformer backbone alone, to show where the difference is.
Run on demand: ``python benchmarks/dpo_vs_trl.py --model tiny`` (needs the ``bench`` extra).
"""
from __future__ import annotations

import argparse
import copy
import gc
import math
import os
import tempfile
import time
import warnings

os.environ.setdefault("TQDM_DISABLE", "1")  # TRL's reference-precompute progress bar

import torch  # noqa: E402

import _peak  # noqa: E402  (benchmarks/_peak.py)
from acqkit.models import load_model, load_tokenizer, resolve_precision, set_precision  # noqa: E402
from acqkit.round.score import score  # noqa: E402
from acqkit.round.train import Example, TrainConfig, batch_loss, shard_batches, train  # noqa: E402
from scoring import length_mix, machine, padding_fraction  # noqa: E402  (benchmarks/scoring.py)

TOL = 1e-4
# bf16 keeps 8 significant bits, and TRL and acqkit round at different places (TRL's logits in bf16,
# acqkit's LM head in float32; different batches for the reference pass). On SmolLM2 a summed bf16
# log-prob moves by a median 0.15 nats and up to 0.7 (benchmarks/precision_numerics.py), so h, which
# combines four of them, moves by a few tenths of a nat; the loss moves by at most beta x |dh| per pair:
# 2e-2 on a loss near 0.9 is "equal loss" in bf16. The float32 loss is printed beside it for scale.
TOL_BF16 = 2e-2


def perturbed(model, noise: float, seed: int):
    """A copy of ``model`` with Gaussian noise of ``noise`` x each tensor's mean |value| added."""
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * noise * p.abs().mean())
    for p in out.parameters():
        p.requires_grad_(True)  # the reference it was copied from is frozen
    return out


def preference_rows(tokenizer, n: int, seed: int) -> list[dict]:
    """``n`` conversational preference rows (TRL's format): one prompt, two responses."""
    mix = length_mix(tokenizer, 2 * n, seed)
    return [{"prompt": list(mix[2 * i][0]),
             "chosen": [{"role": "assistant", "content": mix[2 * i][3]}],
             "rejected": [{"role": "assistant", "content": mix[2 * i + 1][3]}]} for i in range(n)]


def trl_trainer(policy, reference, tokenizer, rows, args, out_dir):
    """A TRL DPOTrainer; its constructor tokenizes and precomputes the reference log-probs."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    class Timed(DPOTrainer):
        precompute_seconds = 0.0

        def _precompute_ref_logps(self, *a, **k):
            start = time.perf_counter()
            try:
                return super()._precompute_ref_logps(*a, **k)
            finally:
                self.precompute_seconds += time.perf_counter() - start

    config = DPOConfig(
        output_dir=out_dir, per_device_train_batch_size=args.batch_size, num_train_epochs=1,
        learning_rate=args.lr, lr_scheduler_type="cosine", warmup_steps=0.1, weight_decay=0.0,
        max_grad_norm=1.0, beta=args.beta, loss_type=["sigmoid"], label_smoothing=0.0,
        precompute_ref_log_probs=True, precompute_ref_batch_size=args.ref_batch_size, max_length=None,
        gradient_checkpointing=args.gradient_checkpointing, bf16=args.precision == "bf16", fp16=False, use_cpu=True,
        report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True,
        dataloader_pin_memory=False, seed=args.seed,
    )
    trainer = Timed(model=policy, ref_model=reference, args=config, train_dataset=Dataset.from_list(rows),
                    processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)  # the end-of-training metrics dict
    return trainer


def trl_first_loss(trainer, n: int) -> float:
    keys = ("prompt_ids", "chosen_ids", "rejected_ids", "ref_chosen_logps", "ref_rejected_logps")
    rows = [{k: trainer.train_dataset[i][k] for k in keys} for i in range(n)]
    with torch.no_grad(), trainer.autocast_smart_context_manager():  # bf16=True: as in its training step
        return trainer.compute_loss(trainer.model, trainer.data_collator(rows)).item()


def acqkit_examples(reference, tokens: list[dict], pad_id: int, batch_size: int) -> list[Example]:
    """Examples on TRL's token ids, reference log-probs from ``acqkit.round.score.score``."""
    prompts = [t["prompt_ids"] for t in tokens]
    ref, _ = score(reference, prompts * 2, [t["chosen_ids"] for t in tokens] + [t["rejected_ids"] for t in tokens],
                   pad_id, batch_size, with_entropy=False)
    n = len(tokens)
    return [Example(t["prompt_ids"], t["chosen_ids"], t["rejected_ids"], float(ref[i]), float(ref[n + i]), 1.0)
            for i, t in enumerate(tokens)]


def step_breakdown(trainer, policy, examples: list[Example], args, pad_id: int) -> None:
    """Forward+backward of one batch (the first): acqkit, TRL, and the shared transformer backbone alone.

    The backbone row runs ``model.model`` on acqkit's padded batch with a dummy
    loss: the arithmetic both trainers must do whatever their LM head does.
    """
    from acqkit.round.batching import left_pad

    batch = examples[: args.batch_size]
    keys = ("prompt_ids", "chosen_ids", "rejected_ids", "ref_chosen_logps", "ref_rejected_logps")
    inputs = trainer.data_collator([{k: trainer.train_dataset[i][k] for k in keys} for i in range(len(batch))])
    ids, mask, pos, resp = left_pad([e.prompt for e in batch] * 2, [e.a for e in batch] + [e.b for e in batch], pad_id)
    policy.train()
    trainer.model.train()

    def ours():
        batch_loss(policy, batch, args.beta, pad_id).backward()

    def trl():
        trainer.compute_loss(trainer.model, inputs).backward()

    def backbone():
        policy.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).last_hidden_state.sum().backward()

    steps = {"acqkit batch_loss": ours, "TRL compute_loss": trl, "backbone alone": backbone}
    seconds = {name: [] for name in steps}
    for _ in range(args.breakdown):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
            policy.zero_grad(set_to_none=True)
            trainer.model.zero_grad(set_to_none=True)
    print(f"\none batch forward+backward, best of {args.breakdown} (no optimizer step); rows x width: "
          f"acqkit {tuple(ids.shape)}, TRL {tuple(inputs['input_ids'].shape)}; "
          f"{int(resp.sum())} response tokens, acqkit's LM head runs at those only (grid {resp.numel()}), TRL on CPU "
          f"{inputs['input_ids'].shape[0] * (inputs['input_ids'].shape[1] - 1)}")
    base = min(seconds["backbone alone"])
    for name, v in seconds.items():
        print(f"  {name:18s} {min(v):7.2f} s  (backbone + {min(v) - base:6.2f} s)")


def train_config(args) -> TrainConfig:
    return TrainConfig(beta=args.beta, lr=args.lr, epochs=1, batch_size=args.batch_size, grad_accum=1,
                       max_grad_norm=1.0, warmup=0.1, seed=args.seed)


def training_padding(examples: list[Example], cfg: TrainConfig) -> tuple[float, float]:
    """Padding in acqkit's training batches: (input positions, computed response-logit positions)."""
    prompts, responses, batches = [], [], []
    for step in shard_batches(examples, cfg, 0, 1):
        for batch in step:  # a step's micro-batches are padded each on its own
            start = len(prompts)
            for e in batch:
                prompts += [e.prompt, e.prompt]
                responses += [e.a, e.b]
            batches.append(list(range(start, len(prompts))))
    return padding_fraction(prompts, responses, batches)


def run_trl(policy, reference, tokenizer, rows, args) -> dict:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        trainer = trl_trainer(policy, reference, tokenizer, rows, args, out)
        built = time.perf_counter()
        stats = trainer.train()
        done = time.perf_counter()
    return {"train": done - built, "ref": trainer.precompute_seconds,
            "setup": built - start - trainer.precompute_seconds, "loss": stats.training_loss}


def run_acqkit(policy, reference, tokens, pad_id, args) -> dict:
    start = time.perf_counter()
    examples = acqkit_examples(reference, tokens, pad_id, 2 * args.ref_batch_size)
    scored = time.perf_counter()
    # TRL's bf16=True left accelerate's process-wide state at mixed_precision="bf16"; acqkit autocasts itself
    # and asks for "no", which accelerate refuses to change in place.
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    stats = train(policy, examples, train_config(args), pad_id)
    done = time.perf_counter()
    return {"train": done - scored, "ref": scored - start, "setup": 0.0, "loss": stats["loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny, smollm2, or a model path")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per optimizer step")
    parser.add_argument("--ref-batch-size", type=int, default=16,
                        help="pairs per reference forward (TRL precompute_ref_batch_size; acqkit scores 2x sequences)")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--noise", type=float, default=0.1, help="policy perturbation, relative to mean |weight|")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gradient-checkpointing", action="store_true", help="TRL's default; off for equal work")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16"),
                        help="both trainers: fp32, or bf16 (TRL bf16=True, acqkit bf16 autocast)")
    parser.add_argument("--breakdown", type=int, default=0, metavar="N",
                        help="also time one batch's forward+backward N times: acqkit, TRL, backbone alone")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from datasets.utils.logging import disable_progress_bar
    from transformers.utils import logging as hf_logging

    disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' gradient_checkpointing rename
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    print(machine("start"))
    args.precision = resolve_precision(args.precision)
    peaks = _peak.peaks()
    print(f"precision {args.precision}; {_peak.describe(peaks)}")
    tol = TOL_BF16 if args.precision == "bf16" else TOL

    tok = load_tokenizer(args.model)
    reference = load_model(args.model, precision=args.precision)
    for p in reference.parameters():
        p.requires_grad_(False)
    start_policy = perturbed(reference, args.noise, args.seed)
    rows = preference_rows(tok, args.pairs, args.seed)
    pad = tok.pad_token_id

    # Warm-up and loss check (not timed): TRL tokenizes; both compute reference log-probs.
    scratch = tempfile.TemporaryDirectory()  # TRL's output_dir: nothing is saved there
    trainer = trl_trainer(copy.deepcopy(start_policy), copy.deepcopy(reference), tok, rows, args, scratch.name)
    keys = ("prompt_ids", "chosen_ids", "rejected_ids")
    tokens = [{k: r[k] for k in keys} for r in trainer.train_dataset]
    trl_ref = torch.tensor([trainer.train_dataset["ref_chosen_logps"], trainer.train_dataset["ref_rejected_logps"]])
    trl_loss = trl_first_loss(trainer, args.batch_size)
    examples = acqkit_examples(reference, tokens, pad, 2 * args.ref_batch_size)
    ours_ref = torch.tensor([[e.ref_a for e in examples], [e.ref_b for e in examples]])
    policy = copy.deepcopy(start_policy)
    with torch.no_grad():
        ours_loss = batch_loss(policy, examples[: args.batch_size], args.beta, pad).item()
        fp32 = copy.deepcopy(policy)
        set_precision(fp32, "fp32")
        fp32_loss = batch_loss(fp32, examples[: args.batch_size], args.beta, pad).item()
        del fp32

    n_tok = sum(len(t["prompt_ids"]) * 2 + len(t["chosen_ids"]) + len(t["rejected_ids"]) for t in tokens)
    print(f"model={args.model}  {args.pairs} pairs ({n_tok / args.pairs:.0f} tokens/pair), batch {args.batch_size}, "
          f"beta {args.beta}, lr {args.lr}, sigmoid loss, ref precompute batch {args.ref_batch_size} pairs, "
          f"TRL gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}")
    seq_pad, logit_pad = training_padding(examples, train_config(args))
    print(f"acqkit's training batches: {seq_pad:.1%} of input positions are padding, {logit_pad:.1%} of the "
          "[rows, longest response] grid are padding or prompt, which its LM head skips (TRL's random batches "
          "pad alike; on CPU its fused LM head projects every position, prompt and padding included: only with "
          "Triton does it skip them)")
    diff = abs(trl_loss - ours_loss)
    tokens_per_epoch = n_tok
    resp_per_epoch = sum(len(t["chosen_ids"]) + len(t["rejected_ids"]) for t in tokens)
    head = _peak.head_params(reference)
    train_flop = 6 * (_peak.matmul_params(reference) - head) * tokens_per_epoch + 6 * head * resp_per_epoch
    print(f"\nfirst-batch loss (perturbed policy, noise {args.noise}; ln 2 = {math.log(2):.6f})")
    print(f"  TRL    {trl_loss:.8f}\n  acqkit {ours_loss:.8f}\n  |diff| {diff:.2e}  "
          f"{'PASS' if diff <= tol else 'FAIL'} (tolerance {tol:g})")
    if args.precision != "fp32":
        print(f"  acqkit at fp32, same batch and reference log-probs, for scale: {fp32_loss:.8f}")
    print(f"  reference log-probs, max |TRL - acqkit| over {2 * args.pairs} responses: "
          f"{(trl_ref - ours_ref).abs().max().item():.2e} nats")
    if args.breakdown:
        step_breakdown(trainer, policy, examples, args, pad)
    del trainer, policy
    gc.collect()
    scratch.cleanup()
    if not args.repeats:
        print(machine("end"))
        return

    runs = {"TRL": [], "acqkit": []}
    for rep in range(args.repeats):
        order = ["TRL", "acqkit"] if rep % 2 == 0 else ["acqkit", "TRL"]
        for name in order:
            policy = copy.deepcopy(start_policy)
            if name == "TRL":
                runs[name].append(run_trl(policy, copy.deepcopy(reference), tok, rows, args))
            else:
                runs[name].append(run_acqkit(policy, reference, tokens, pad, args))
            del policy
            gc.collect()
            r = runs[name][-1]
            print(f"  repeat {rep + 1} {name:6s}: train {r['train']:7.2f} s  ref {r['ref']:6.2f} s  "
                  f"setup {r['setup']:5.2f} s  epoch-mean loss {r['loss']:.5f}  load {os.getloadavg()[0]:.2f}")

    def best(name, key):
        return min(r[key] for r in runs[name])

    print(f"\nbest of {args.repeats} repeats ({args.pairs} pairs, one epoch; epoch-mean loss depends on the "
          "shuffle, which differs between the trainers)")
    print(f"{'trainer':8s} {'train s':>8s} {'ref s':>7s} {'setup s':>8s} {'pairs/s':>8s} {'pairs/s incl. ref':>18s}")
    rate = {}
    for name in runs:
        t, ref, setup = best(name, "train"), best(name, "ref"), best(name, "setup")
        rate[name] = (args.pairs / t, args.pairs / (t + ref))
        print(f"{name:8s} {t:8.2f} {ref:7.2f} {setup:8.2f} {rate[name][0]:8.2f} {rate[name][1]:18.2f}")
    for name in runs:
        print(_peak.flops_line(f"{name} training, useful FLOPs", train_flop, best(name, "train"), peaks,
                               args.precision))
    train_ratio = rate["acqkit"][0] / rate["TRL"][0]
    full_ratio = rate["acqkit"][1] / rate["TRL"][1]
    met = train_ratio >= 2.0 and diff <= tol
    print(f"\nacqkit / TRL pairs/s at {args.precision}: {train_ratio:.2f}x training only, {full_ratio:.2f}x including "
          f"the reference pass (target >= 2x at equal loss: {'MET' if met else 'MISSED'})")
    print(machine("end"))


if __name__ == "__main__":
    main()
