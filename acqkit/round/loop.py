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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from acqkit.round import budget as budgets
from acqkit.components import Labeler, RefineContext, Refiner, SamplePlan, Strategy, TrainingSet, declared
from acqkit.errors import ComponentError, PluginOutputError, RunDirError
from acqkit.config import RunConfig, to_toml
from acqkit.distributed import gather
from acqkit.round.evaluate import WinSamples, evaluate
from acqkit.plugins import Registry, registry as default_registry
from acqkit.guard import guarded_build
from acqkit.preflight import check_config, check_resume
from acqkit.store.rundir import (append_jsonl, checkpoint_round, keep_rounds, load_checkpoint, load_extra_state, read_jsonl,
                     recover_checkpoint, save_checkpoint, write_csv, write_text)
from acqkit.round.sample import GenConfig
from acqkit.round.score import score
from acqkit.round.session import Session, stage_seed, table_from
from acqkit.strategies import pairs_frame
from acqkit.round.train import Example, TrainConfig, train
from acqkit.round.label import label_pairs, log_labels, logged
from acqkit.round.previous import PreviousPolicy
from acqkit.round.select import check_pairs

NOT_YET = object()  # Run.start_state before it is known
RESERVED_STATES = ("model", "adapter_model")  # the policy's own safetensors files in a checkpoint
RESULT_COLUMNS = ["strategy", "seed", "round", "labels_round", "labels_spent", "pairs_trained",
                  "win_rate", "gold_reward", "length", "kl", "label_agreement", "train_loss",
                  "cost_usd_round", "cost_usd_spent", "label_consistency"]
# Columns added after the first release: an older results.csv is resumed with these values.
LATER_COLUMNS = {"cost_usd_round": 0.0, "cost_usd_spent": 0.0, "label_consistency": float("nan")}


def sample_and_score(session: Session, cfg: RunConfig, plan: SamplePlan, round: int,
                     seed: int | None = None) -> pd.DataFrame:
    seed = cfg.seed if seed is None else seed
    prompts = session.draw_prompts(seed, round, plan.n_prompts)
    prompt_ids = [session.prompt_ids[p.id] for p in prompts]
    top_k = cfg.top_k if getattr(plan, "top_k", None) is None else plan.top_k  # 0: untruncated
    gen = GenConfig(cfg.max_new_tokens, plan.temperature, top_k, cfg.gen_batch_size)
    responses = session.generate(session.policy, session.tokenizer, prompt_ids, plan.n_responses, gen,
                                 stage_seed(seed, round, "sample"),  # the sampler backend (--sampler)
                                 keys=[p.id for p in prompts])  # a response's randomness: its prompt's id
    flat_prompts = [ids for ids in prompt_ids for _ in range(plan.n_responses)]
    pad = session.tokenizer.pad_token_id
    lp, ent = score(session.policy, flat_prompts, responses, pad, cfg.score_batch_size, label="scoring: policy",
                    shared=True)
    lr = session.refs(flat_prompts, responses, cfg.score_batch_size, "scoring: reference")  # counted; cached if asked
    return table_from(prompts, session.prompt_ids, responses, plan.n_responses, session.tokenizer, lp, lr, ent)


def examples_from(labels: pd.DataFrame, table: pd.DataFrame, reference: str = "initial") -> list[Example]:
    """Training pairs; reference log-probs come from the table (no reference forward pass).

    ``reference="previous"`` trains against the policy that sampled the round
    (SPA), whose log-probs the table already holds in ``logp_policy``.
    """
    rows = table.set_index("response_id")
    col = {"initial": "logp_ref", "previous": "logp_policy"}[reference]
    out = []
    for a, b, p in labels[["a", "b", "p"]].itertuples(index=False):
        ra, rb = rows.loc[a], rows.loc[b]
        out.append(Example(list(ra.prompt_ids), list(ra.response_ids), list(rb.response_ids),
                           float(ra[col]), float(rb[col]), float(p)))
    return out


def train_config(cfg: RunConfig, round: int, epochs: int | None = None) -> TrainConfig:
    return TrainConfig(beta=cfg.beta, lr=cfg.lr, epochs=epochs or cfg.epochs, batch_size=cfg.batch_size,
                       grad_accum=cfg.grad_accum, seed=stage_seed(cfg.seed, round, "train"),
                       train_layers=cfg.train_layers, group_by_length=cfg.group_by_length)


def evaluate_policy(session: Session, cfg: RunConfig, round: int) -> dict:
    win = WinSamples(cfg.eval_samples, cfg.temperature, cfg.top_k, stage_seed(cfg.seed, round, "eval-samples"))
    return evaluate(session.policy, session.reference, session.tokenizer, session.task, session.evalset,
                    cfg.max_new_tokens, cfg.gen_batch_size, cfg.kl_samples,
                    stage_seed(cfg.seed, round, "eval"), cfg.score_batch_size, session.generate,
                    lambda p, r: session.refs(p, r, cfg.score_batch_size, "eval: KL ref"), win)


# Session cache keys are derived from the config, not copied from it by hand: a key holds every
# RunConfig field except these, which provably do not shape the cached result, so a field added
# later is in the key by default. Round 0 uses its own seed (warm_start_seed, or the run's seed
# when that is None) and seed_labels (already resolved from the budget); epochs only when
# seed_epochs = 0 falls back to it. Round 1's table comes from the warm-start policy (its whole
# key) sampled as the strategy's plan says (prompts, responses, temperature, top-k; the plan
# stands for strategy, budget, schedule, n_responses and the run temperature).
NOT_IN_WARM_START = frozenset({"strategy", "labeler", "refiner", "rounds", "budget", "schedule", "n_responses",
                               "checkpoint", "seed", "warm_start_seed", "budget_usd", "track"})
NOT_IN_ROUND_ONE = frozenset({"strategy", "labeler", "refiner", "rounds", "budget", "schedule", "n_responses",
                              "temperature", "epochs", "checkpoint", "budget_usd", "track"})


def config_items(cfg: RunConfig, ignored) -> tuple:
    return tuple((k, v) for k, v in asdict(cfg).items() if k not in ignored)


def warm_start_key(cfg: RunConfig) -> tuple:
    """Two configs with the same key get the same warm start (round 0) in one session."""
    ws_seed = cfg.seed if cfg.warm_start_seed is None else cfg.warm_start_seed
    ignored = NOT_IN_WARM_START | ({"epochs"} if cfg.seed_epochs else set())
    return ("warm-start", ws_seed, config_items(cfg, ignored))


def warm_start(session: Session, cfg: RunConfig, reg: Registry, run_dir) -> dict:
    """Round 0: DPO on ``seed_labels`` gold-labelled random pairs.

    Shared by every strategy, and by every seed unless ``warm_start_seed`` is
    None: it plays the fixed offline-DPO checkpoint the papers start from.
    """
    if cfg.seed_labels == 0:  # the initial policy: greedy, it wins 0.5 by definition; its samples are evaluated
        metrics = session.initial_metrics()
        if cfg.eval_samples and cfg.temperature > 0:
            key = ("initial-eval", cfg.seed, warm_start_key(cfg))  # the run's seed: its eval streams
            if key not in session.cache:
                session.reset_policy()
                session.cache[key] = {**evaluate_policy(session, replace(cfg, kl_samples=0), 0), "kl": 0.0}
            metrics = session.cache[key]
        return {"state": None, "labels": 0, "pairs": 0, "loss": float("nan"), "metrics": metrics}
    ws_cfg = replace(cfg, seed=cfg.seed if cfg.warm_start_seed is None else cfg.warm_start_seed)
    key = warm_start_key(cfg)
    if key not in session.cache:
        session.reset_policy()
        table = sample_and_score(session, ws_cfg, SamplePlan(cfg.seed_labels, 2, cfg.temperature), 0)
        first_two = table.groupby("prompt_id", sort=False)["response_id"].agg(list)
        pairs = pairs_frame(first_two.index, [r[0] for r in first_two], [r[1] for r in first_two], 0.0)
        labels = label_pairs(session, ws_cfg, guarded_build(reg, "labeler", cfg.seed_labeler), cfg.seed_labeler,
                             pairs, table, 0, None, ledger_dir=session.workdir)
        with session.reference_parked():
            stats = train(session.policy, examples_from(labels, table), train_config(ws_cfg, 0, cfg.seed_epochs),
                          session.tokenizer.pad_token_id)
        session.cache[key] = {"state": session.snapshot(), "labels": int(labels["cost"].sum()),
                              "usd": money(labels),
                              "pairs": len(labels), "loss": stats["loss"], "table": table, "label_rows": labels,
                              "metrics": evaluate_policy(session, ws_cfg, 0)}
    ws = session.cache[key]
    if run_dir and ws["pairs"]:
        append_jsonl(run_dir / "labels.jsonl", logged(session, ws["label_rows"], ws["table"], 0))
    return ws


def round_table(session: Session, cfg: RunConfig, plan: SamplePlan, round: int) -> pd.DataFrame:
    """Round 1 starts from the shared warm-start policy: its table is computed once per warm start and plan."""
    if round != 1:
        return sample_and_score(session, cfg, plan, round)
    key = ("round1", warm_start_key(cfg), plan, config_items(cfg, NOT_IN_ROUND_ONE))
    if key not in session.cache:
        session.cache[key] = sample_and_score(session, cfg, plan, round)
    return session.cache[key].copy()


@dataclass
class Run:
    """One strategy and seed in flight: its components and what it has spent so far."""

    cfg: RunConfig
    reg: Registry
    session: Session
    run_dir: Path | None
    strategy: object
    labeler: object
    labeler_spec: str
    refiner: object
    start_state: object = NOT_YET  # the round-0 policy; a resumed run computes it only if a round starts there
    spent: int = 0
    usd_spent: float = 0.0  # money paid so far (a labeler that reports cost_usd, like the judge)
    history: list = field(default_factory=list)  # every online round's examples so far
    previous: PreviousPolicy = field(init=False)  # the label stage's previous iterate, if the labeler wants it

    def __post_init__(self):
        self.previous = PreviousPolicy(bool(declared(self.labeler, Labeler, "needs_previous_policy")))

    def start_policy(self):
        """The warm-start weights (None: the initial ones); a resume trains them again on first use."""
        if self.start_state is NOT_YET:
            self.start_state = warm_start(self.session, self.cfg, self.reg, None)["state"]
        return self.start_state

    def checkpointed(self) -> list[tuple[object, str]]:
        """``(owner, attribute)`` of every state dict the components declare for the checkpoint."""
        parts = [(self.strategy, Strategy), (self.labeler, Labeler), (self.refiner, Refiner)]
        out = [(c, n) for c, kind in parts for n in declared(c, kind, "checkpointed")]
        out += [(self.previous, n) for n in self.previous.checkpointed]
        names = [n for _, n in out]
        bad = sorted({n for n in names if names.count(n) > 1 or not n.isidentifier() or n in RESERVED_STATES})
        if bad:
            raise ComponentError(f"strategy {self.cfg.strategy!r}: checkpointed state name(s) {bad} are declared twice, "
                             f"are not identifiers or are the policy's own files ({', '.join(RESERVED_STATES)})")
        return out

    def save_states(self) -> dict | None:
        states = {n: getattr(c, n) for c, n in self.checkpointed() if getattr(c, n) is not None}
        return states or None

    def restore_states(self) -> None:
        """Set back what :meth:`save_states` saved; a state that was None then stays at its default."""
        for owner, name in self.checkpointed():
            if (self.run_dir / "checkpoint" / f"{name}.safetensors").exists():
                setattr(owner, name, load_extra_state(self.run_dir, name))


def play_round(r: Run, rnd: int, budget: int) -> dict:
    """sample -> score -> acquire -> label -> refine -> train -> evaluate; returns the results row."""
    cfg, session = r.cfg, r.session
    t0, refs0 = time.perf_counter(), session.refs.counts()
    paid = declared(r.labeler, Labeler, "paid")
    train_reference = declared(r.strategy, Strategy, "train_reference")
    plan = declared(r.strategy, Strategy, "plan")(budget, cfg.n_responses, cfg.temperature)
    table = round_table(session, cfg, plan, rnd)
    rng = np.random.default_rng(stage_seed(cfg.seed, rnd, "select"))
    pairs = check_pairs(r.strategy.select(table, budget, rng, cfg.beta), table, budget if paid else None,
                        cfg.strategy)
    if r.run_dir:  # the pool the pairs were chosen from, for diagnostics (acqkit/report/diagnostics.py)
        append_jsonl(r.run_dir / "pool.jsonl", pool_rewards(table, cfg.beta, rnd))
    usd_left = None if cfg.budget_usd is None else cfg.budget_usd - r.usd_spent
    labels = label_pairs(session, cfg, r.labeler, r.labeler_spec, pairs, table, rnd, r.run_dir,
                         previous=r.previous.advance(session),  # the labeler's declared extra model, if any
                         usd_left=usd_left)
    label_agreement = log_labels(session, labels, table, rnd, r.run_dir)
    r.spent += int(labels["cost"].sum())
    usd_round = money(labels)
    r.usd_spent += usd_round
    new = examples_from(declared(r.refiner, Refiner, "refine")(labels, table), table, train_reference)
    if r.run_dir:
        append_jsonl(r.run_dir / "examples.jsonl", pd.DataFrame([{**asdict(e), "round": rnd} for e in new]))
    chosen = declared(r.strategy, Strategy, "training_set")(list(new), list(r.history))  # a recipe's own set
    if not isinstance(chosen, TrainingSet):
        raise PluginOutputError(f"strategy {cfg.strategy!r}: training_set returned {type(chosen).__name__}, "
                                "expected an acqkit.TrainingSet")
    r.history += new
    if chosen.start == "warm-start":
        session.reset_policy(r.start_policy())  # APL: restart from round 0, train on everything so far
    examples = list(chosen.examples)
    reference = None
    if declared(r.refiner, Refiner, "needs_reference_model"):
        reference = session.reference if train_reference == "initial" else session.frozen_copy()
    refiner_log: list[dict] = []
    context = RefineContext(round=rnd, beta=cfg.beta, reference=reference, log=refiner_log.append)
    targets = declared(r.refiner, Refiner, "in_training")(context)
    with session.reference_parked(needed=reference is session.reference):  # off the GPU unless the refiner reads it
        stats = train(session.policy, examples, train_config(cfg, rnd), session.tokenizer.pad_token_id,
                      targets=targets)
    refiner_log = gather(refiner_log)  # each process saw its own micro-batches
    if r.run_dir and refiner_log:  # what the refiner changed in training (e.g. which pairs it smoothed)
        append_jsonl(r.run_dir / "refiner.jsonl", pd.DataFrame(refiner_log).assign(round=rnd))
    del reference
    row = dict(strategy=cfg.strategy, seed=cfg.seed, round=rnd, labels_round=int(labels["cost"].sum()),
               labels_spent=r.spent, pairs_trained=len(examples), train_loss=stats["loss"],
               label_agreement=label_agreement, cost_usd_round=usd_round,
               cost_usd_spent=r.usd_spent, label_consistency=consistency(labels), **evaluate_policy(session, cfg, rnd))
    if r.run_dir:  # wall time lives apart from results.csv, which must be identical run to run
        refs = {k: v - refs0[k] for k, v in session.refs.counts().items()}  # reference forwards vs cache hits
        append_jsonl(r.run_dir / "timings.jsonl", pd.DataFrame([{"round": rnd, "seconds": time.perf_counter() - t0,
                                                                 **refs}]))
    return row


def pool_rewards(table: pd.DataFrame, beta: float, rnd: int) -> pd.DataFrame:
    """One row per sampled response: its implicit reward ``beta * (logp_policy - logp_ref)`` in this round."""
    reward = beta * (table["logp_policy"].to_numpy(float) - table["logp_ref"].to_numpy(float))
    return pd.DataFrame({"round": rnd, "prompt_id": table["prompt_id"].to_numpy(),
                         "response_id": table["response_id"].to_numpy(), "reward": reward})


def money(labels: pd.DataFrame) -> float:
    """USD paid in a label stage: the labels' cost_usd plus what was billed for pairs then skipped."""
    usd = float(labels["cost_usd"].sum()) if "cost_usd" in labels.columns else 0.0
    return usd + float(labels.attrs.get("unlabeled_usd", 0.0))


def consistency(labels: pd.DataFrame) -> float:
    """Share of the round's labels whose two orders agreed (NaN when no label was asked in both orders)."""
    if "consistency" not in labels.columns or labels["consistency"].isna().all():
        return float("nan")
    return float(labels["consistency"].mean())


def finished_rounds(run_dir: Path, cfg: RunConfig) -> tuple[pd.DataFrame, int]:
    """Rows a resumed run can keep, and the last round whose policy is on disk.

    results.csv is written before the checkpoint, so the checkpoint's round is
    the one to trust; later rows (if a kill fell between the two) are redone.
    """
    results = run_dir / "results.csv"
    if not results.exists():
        return pd.DataFrame(columns=RESULT_COLUMNS), 0
    try:
        rows = pd.read_csv(results)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{results}: cannot read the results to resume from ({exc})") from exc
    rows = rows.assign(**{c: v for c, v in LATER_COLUMNS.items() if c not in rows.columns})
    missing = [c for c in RESULT_COLUMNS if c not in rows.columns]
    if missing or rows.empty:
        raise RunDirError(f"{results}: not an acqkit results file (missing column(s) {missing}, {len(rows)} rows); "
                         "move it aside to start this run over")
    recover_checkpoint(run_dir)  # a kill in the middle of a checkpoint swap
    last = (checkpoint_round(run_dir / "checkpoint") or 0) if cfg.checkpoint else 0
    if int(rows["round"].max()) == cfg.rounds and (last == cfg.rounds or not cfg.checkpoint):
        last = cfg.rounds  # finished: nothing to redo, whatever the checkpoint setting
    return rows[rows["round"] <= last], last


def run(cfg: RunConfig, session: Session | None = None, out: str | Path | None = None,
        registry: Registry | None = None, resume: bool = False) -> pd.DataFrame:
    """Run one strategy for ``cfg.rounds`` rounds; one results row per round (round 0 = warm start).

    With ``resume=True`` and a run directory, finished rounds are read back and
    the run continues from the last checkpoint; every stage reseeds from
    (seed, round, stage), so the result equals an uninterrupted run.
    """
    reg = registry or default_registry()
    if session is None:  # a comparison checked its whole grid already
        check_config(cfg, reg)
    strategy = guarded_build(reg, "strategy", cfg.strategy)
    labeler_spec = declared(strategy, Strategy, "labeler") or cfg.labeler  # a recipe may bring its own
    run_dir = Path(out) if out else None
    kept, last = (finished_rounds(run_dir, cfg) if resume and run_dir else (None, 0))
    if last == cfg.rounds and kept is not None and len(kept):
        return kept[RESULT_COLUMNS].reset_index(drop=True)
    if resume and run_dir:
        check_resume(run_dir)
    state = load_checkpoint(run_dir, cfg.trust_remote_code) if last else None  # a bad one stops us here
    if session is None:
        session = Session.open(cfg, reg)
        session.workdir = run_dir  # the warm start's labels go to this run's ledger
    session.check(cfg)
    r = Run(cfg, reg, session, run_dir, strategy, guarded_build(reg, "labeler", labeler_spec), labeler_spec,
            guarded_build(reg, "refiner", declared(strategy, Strategy, "refiner") or cfg.refiner))
    if run_dir:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.toml", to_toml(cfg))
        for log in ("labels.jsonl", "examples.jsonl", "timings.jsonl", "pool.jsonl", "refiner.jsonl"):
            keep_rounds(run_dir / log, last if last else -1)
    if not last:  # a resumed run has its rows and policy on disk (and redoes round 0 only if a round starts there)
        ws = warm_start(session, cfg, reg, run_dir)
        r.start_state = ws["state"]
        rows = [dict(strategy=cfg.strategy, seed=cfg.seed, round=0, labels_round=ws["labels"],
                     labels_spent=ws["labels"], pairs_trained=ws["pairs"], label_agreement=float("nan"),
                     train_loss=ws["loss"], cost_usd_round=ws.get("usd", 0.0), cost_usd_spent=ws.get("usd", 0.0),
                     label_consistency=float("nan"), **ws["metrics"])]
        r.spent = ws["labels"]
        r.usd_spent = ws.get("usd", 0.0)
        session.reset_policy(ws["state"])
        reg.pm.hook.acqkit_round_end(run=asdict(cfg), round=0, metrics=rows[0])  # trackers see round 0 too (1.3)
    else:
        rows = kept.to_dict(orient="records")
        r.spent = int(rows[-1]["labels_spent"])
        r.usd_spent = float(rows[-1]["cost_usd_spent"])
        r.history = [Example(**{k: v for k, v in rec.items() if k != "round"})
                     for rec in read_jsonl(run_dir / "examples.jsonl") if rec.get("round", 0) <= last]
        session.reset_policy(state)
        r.restore_states()
    per_round = budgets.per_round(cfg.budget, cfg.schedule, cfg.rounds)
    for rnd in range(last + 1, cfg.rounds + 1):
        row = play_round(r, rnd, per_round[rnd - 1])
        rows.append(row)
        if run_dir:
            write_csv(pd.DataFrame(rows)[RESULT_COLUMNS], run_dir / "results.csv")
            if cfg.checkpoint:
                save_checkpoint(session.policy, run_dir, rnd, r.save_states())
        reg.pm.hook.acqkit_round_end(run=asdict(cfg), round=rnd, metrics=row)
    return pd.DataFrame(rows)[RESULT_COLUMNS]
