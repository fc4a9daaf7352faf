"""acqkit: annotation-efficient preference learning (iterative DPO with acquisition strategies)."""
from acqkit.components import (
    LABEL_COLUMNS,
    PAIR_COLUMNS,
    LabelContext,
    Labeler,
    Oracle,
    Prompt,
    RefineContext,
    Refiner,
    SamplePlan,
    Sampler,
    Strategy,
    Task,
    TrainingSet,
    declared,
    gold_rewards,
    oracle_rewards,
)
from acqkit.hookspecs import API_VERSION, hookimpl
from acqkit.plugins import build  # a component by kind and spec, from inside another's factory (a task's oracle)
from acqkit.strategies import (  # the strategy building blocks the built-ins use (API 1.2)
    INSTANCE,
    ORDER,
    TRAINING,
    Candidates,
    all_pairs,
    bradley_terry,
    check_choice,
    check_count,
    grouped,
    hard_labels,
    implicit_reward,
    layout,
    one_pair_per_prompt,
    pairs_frame,
    predictive_entropy,
    top,
)

__all__ = [
    "API_VERSION", "LABEL_COLUMNS", "PAIR_COLUMNS", "LabelContext", "Labeler", "Oracle", "Prompt", "RefineContext",
    "Refiner", "SamplePlan", "Sampler", "Strategy", "Task", "TrainingSet", "build", "declared", "gold_rewards",
    "hookimpl", "oracle_rewards",
    # acqkit.strategies.__all__
    "INSTANCE", "ORDER", "TRAINING", "Candidates", "all_pairs", "bradley_terry", "check_choice", "check_count",
    "grouped", "hard_labels", "implicit_reward", "layout", "one_pair_per_prompt", "pairs_frame",
    "predictive_entropy", "top",
]
__version__ = "0.1.0"
