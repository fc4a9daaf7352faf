"""acqkit: annotation-efficient preference learning (iterative DPO with acquisition strategies)."""
from .components import (
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
)
from .hookspecs import API_VERSION, hookimpl
from .plugins import build  # a component by kind and spec, from inside another's factory (a task's oracle)

__all__ = [
    "API_VERSION", "LABEL_COLUMNS", "PAIR_COLUMNS", "LabelContext", "Labeler", "Oracle", "Prompt", "RefineContext",
    "Refiner", "SamplePlan", "Sampler", "Strategy", "Task", "build", "hookimpl",
]
__version__ = "0.1.0"
