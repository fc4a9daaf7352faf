"""acqkit: annotation-efficient preference learning (iterative DPO with acquisition strategies)."""
from .components import (
    LABEL_COLUMNS,
    PAIR_COLUMNS,
    LabelContext,
    Labeler,
    Prompt,
    RefineContext,
    Refiner,
    SamplePlan,
    Strategy,
    Task,
)
from .hookspecs import API_VERSION, hookimpl

__all__ = [
    "API_VERSION", "LABEL_COLUMNS", "PAIR_COLUMNS", "LabelContext", "Labeler", "Prompt", "RefineContext", "Refiner",
    "SamplePlan", "Strategy", "Task", "hookimpl",
]
__version__ = "0.1.0"
