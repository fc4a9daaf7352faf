"""One strategy, one seed: the iterative DPO loop, round by round.

Round 0 is the shared warm start (DPO on a few gold-labelled random pairs, as
both the margin and the SPA papers start from an offline-DPO policy: with the
policy equal to the reference every implicit-reward margin is zero). Each
round then runs sample -> score -> acquire -> label -> refine -> train ->
evaluate. Every stage reseeds from (seed, round, stage), so a run's numbers
never depend on what else ran in the process before it.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from . import budget as budgets
from .components import LabelContext, SamplePlan
from .config import RunConfig, to_toml
from .evaluate import evaluate
from .plugins import Registry, registry as default_registry
from .rundir import append_jsonl, write_csv
from .sampler import GenConfig, generate
from .scorer import score
from .session import Session, stage_seed, table_from
from .table import pairs_frame
from .trainer import Example, TrainConfig, train
from .validate import check_labels, check_pairs

RESULT_COLUMNS = ["strategy", "seed", "round", "labels_round", "labels_spent", "pairs_trained",
                  "win_rate", "gold_reward", "length", "kl", "train_loss", "seconds"]


def sample_and_score(session: Session, cfg: RunConfig, plan: SamplePlan, round: int) -> pd.DataFrame:
    prompts = session.draw_prompts(cfg.seed, round, plan.n_prompts)
    prompt_ids = [session.prompt_ids[p.id] for p in prompts]
    gen = GenConfig(cfg.max_new_tokens, plan.temperature, cfg.top_k, cfg.gen_batch_size)
    responses = generate(session.policy, session.tokenizer, prompt_ids, plan.n_responses, gen,
                         stage_seed(cfg.seed, round, "sample"))
    flat_prompts = [ids for ids in prompt_ids for _ in range(plan.n_responses)]
    pad = session.tokenizer.pad_token_id
    lp, ent = score(session.policy, flat_prompts, responses, pad, cfg.score_batch_size, label="scoring: policy")
    lr, _ = score(session.reference, flat_prompts, responses, pad, cfg.score_batch_size,
                  with_entropy=False, label="scoring: reference")
    return table_from(prompts, session.prompt_ids, responses, plan.n_responses, session.tokenizer, lp, lr, ent)


def label_pairs(session: Session, cfg: RunConfig, labeler, name: str, pairs, table, round: int, run_dir):
    """Ask the labeler, check its answer, and persist every label before it is used."""
    ctx = LabelContext(task=session.task, rng=np.random.default_rng(stage_seed(cfg.seed, round, "label")),
                       round=round, extras={"prompts": session.train_prompts, "policy": session.policy,
                                            "reference": session.reference, "tokenizer": session.tokenizer})
    labels = check_labels(labeler.label(pairs, table, ctx), pairs, name)
    if run_dir:
        texts = table.set_index("response_id")["text"]
        append_jsonl(run_dir / "labels.jsonl", labels.assign(
            round=round, text_a=list(texts.loc[labels["a"]]), text_b=list(texts.loc[labels["b"]])))
    return labels


def examples_from(labels: pd.DataFrame, table: pd.DataFrame) -> list[Example]:
    rows = table.set_index("response_id")
    out = []
    for a, b, p in labels[["a", "b", "p"]].itertuples(index=False):
        ra, rb = rows.loc[a], rows.loc[b]
        out.append(Example(list(ra.prompt_ids), list(ra.response_ids), list(rb.response_ids),
                           float(ra.logp_ref), float(rb.logp_ref), float(p)))
    return out


def train_config(cfg: RunConfig, round: int, epochs: int | None = None) -> TrainConfig:
    return TrainConfig(beta=cfg.beta, lr=cfg.lr, epochs=epochs or cfg.epochs, batch_size=cfg.batch_size,
                       grad_accum=cfg.grad_accum, seed=stage_seed(cfg.seed, round, "train"))


def evaluate_policy(session: Session, cfg: RunConfig, round: int) -> dict:
    return evaluate(session.policy, session.reference, session.tokenizer, session.task, session.evalset,
                    cfg.max_new_tokens, cfg.gen_batch_size, cfg.kl_samples,
                    stage_seed(cfg.seed, round, "eval"), cfg.score_batch_size)


def warm_start(session: Session, cfg: RunConfig, reg: Registry, run_dir) -> dict:
    """Round 0: DPO on ``seed_labels`` random pairs, shared by every strategy of a seed."""
    if cfg.seed_labels == 0:
        return {"state": None, "labels": 0, "pairs": 0, "loss": float("nan"), "metrics": session.initial_metrics()}
    key = ("warm-start", cfg.seed, cfg.seed_labels, cfg.seed_epochs, cfg.seed_labeler, cfg.lr, cfg.beta,
           cfg.batch_size, cfg.grad_accum, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.kl_samples)
    if key not in session.cache:
        session.reset_policy()
        table = sample_and_score(session, cfg, SamplePlan(cfg.seed_labels, 2, cfg.temperature), 0)
        first_two = table.groupby("prompt_id", sort=False)["response_id"].agg(list)
        pairs = pairs_frame(first_two.index, [r[0] for r in first_two], [r[1] for r in first_two], 0.0)
        labels = label_pairs(session, cfg, reg.build("labeler", cfg.seed_labeler), cfg.seed_labeler,
                             pairs, table, 0, None)
        stats = train(session.policy, examples_from(labels, table), train_config(cfg, 0, cfg.seed_epochs),
                      session.tokenizer.pad_token_id)
        session.cache[key] = {"state": session.snapshot(), "labels": int(labels["cost"].sum()),
                              "pairs": len(labels), "loss": stats["loss"], "table": table, "label_rows": labels,
                              "metrics": evaluate_policy(session, cfg, 0)}
    ws = session.cache[key]
    if run_dir and ws["pairs"]:
        texts = ws["table"].set_index("response_id")["text"]
        lab = ws["label_rows"]
        append_jsonl(run_dir / "labels.jsonl", lab.assign(round=0, text_a=list(texts.loc[lab["a"]]),
                                                          text_b=list(texts.loc[lab["b"]])))
    return ws


def round_table(session: Session, cfg: RunConfig, plan: SamplePlan, round: int) -> pd.DataFrame:
    """Round 1 starts from the shared warm-start policy: its table is computed once per seed and plan."""
    if round != 1:
        return sample_and_score(session, cfg, plan, round)
    key = ("round1", cfg.seed, cfg.seed_labels, plan, cfg.max_new_tokens, cfg.top_k)
    if key not in session.cache:
        session.cache[key] = sample_and_score(session, cfg, plan, round)
    return session.cache[key].copy()


def run(cfg: RunConfig, session: Session | None = None, out: str | Path | None = None,
        registry: Registry | None = None) -> pd.DataFrame:
    """Run one strategy for ``cfg.rounds`` rounds; one results row per round (round 0 = warm start)."""
    reg = registry or default_registry()
    strategy = reg.build("strategy", cfg.strategy)
    labeler = reg.build("labeler", cfg.labeler)
    refiner = reg.build("refiner", cfg.refiner)
    session = session or Session.open(cfg, reg)
    run_dir = Path(out) if out else None
    if run_dir:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.toml").write_text(to_toml(cfg))
        (run_dir / "labels.jsonl").unlink(missing_ok=True)
    per_round = budgets.per_round(cfg.budget, cfg.schedule, cfg.rounds)

    ws = warm_start(session, cfg, reg, run_dir)
    session.reset_policy(ws["state"])
    start_state = ws["state"]
    spent = ws["labels"]
    rows = [dict(strategy=cfg.strategy, seed=cfg.seed, round=0, labels_round=spent, labels_spent=spent,
                 pairs_trained=ws["pairs"], train_loss=ws["loss"], seconds=0.0, **ws["metrics"])]
    history: list[Example] = []
    for rnd in range(1, cfg.rounds + 1):
        t0 = time.perf_counter()
        budget = per_round[rnd - 1]
        plan = strategy.plan(budget, cfg.n_responses, cfg.temperature)
        table = round_table(session, cfg, plan, rnd)
        rng = np.random.default_rng(stage_seed(cfg.seed, rnd, "select"))
        pairs = check_pairs(strategy.select(table, budget, rng, cfg.beta), table, budget, cfg.strategy)
        labels = label_pairs(session, cfg, labeler, cfg.labeler, pairs, table, rnd, run_dir)
        spent += int(labels["cost"].sum())
        examples = examples_from(refiner.refine(labels, table), table)
        if getattr(strategy, "training", "continue") == "reinit":
            session.reset_policy(start_state)  # APL: restart, train on everything acquired so far
            history += examples
            examples = list(history)
        stats = train(session.policy, examples, train_config(cfg, rnd), session.tokenizer.pad_token_id)
        row = dict(strategy=cfg.strategy, seed=cfg.seed, round=rnd, labels_round=int(labels["cost"].sum()),
                   labels_spent=spent, pairs_trained=len(examples), train_loss=stats["loss"],
                   seconds=time.perf_counter() - t0, **evaluate_policy(session, cfg, rnd))
        rows.append(row)
        reg.pm.hook.acqkit_round_end(run=asdict(cfg), round=rnd, metrics=row)
        if run_dir:
            write_csv(pd.DataFrame(rows)[RESULT_COLUMNS], run_dir / "results.csv")
    return pd.DataFrame(rows)[RESULT_COLUMNS]
