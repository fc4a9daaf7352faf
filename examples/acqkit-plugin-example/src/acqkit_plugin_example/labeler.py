"""``noisy-gold``: the task's gold oracle, wrong on purpose a ``flip`` share of the time.

Why: real annotators disagree with each other and with any gold standard; this
labeler asks how a strategy's gain per label holds up when some labels are wrong.
"""
import pandas as pd

from acqkit import LabelContext, Labeler, bradley_terry, gold_rewards, hard_labels


class NoisyGold(Labeler):
    paid = True  # every answer is an oracle call: kept in the label ledger, never bought twice

    def __init__(self, flip: float = 0.2):
        if isinstance(flip, bool) or not isinstance(flip, (int, float)) or not 0 <= flip <= 0.5:
            raise ValueError(f"flip must be a probability in [0, 0.5]; got {flip!r}")
        self.flip = float(flip)

    def label(self, pairs: pd.DataFrame, table: pd.DataFrame, context: LabelContext) -> pd.DataFrame:
        if pairs.empty:
            return pairs.assign(p=[], source=[], cost=[])
        text = table.set_index("response_id")["text"]
        prompt_of = {p.id: p for p in context.extras["prompts"]}
        prompts = [prompt_of[pid] for pid in pairs["prompt_id"]]
        rewards = gold_rewards(context.task, prompts * 2, list(text.loc[pairs["a"]]) + list(text.loc[pairs["b"]]))
        reward_a, reward_b = rewards[: len(pairs)], rewards[len(pairs):]
        # Bradley-Terry on the gold rewards, then a hard 0/1 draw; exact ties stay 0.5.
        p = hard_labels(bradley_terry(reward_a, reward_b, context.task.tau), context.rng, reward_a, reward_b)
        flipped = (context.rng.random(len(pairs)) < self.flip) & (p != 0.5)
        p[flipped] = 1.0 - p[flipped]
        return pairs.assign(p=p, source="noisy-gold", cost=1)
