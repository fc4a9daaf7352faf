"""An acqkit plugin from outside acqkit: one strategy, one labeler, one task.

acqkit finds this module through the ``acqkit`` entry point in pyproject.toml
and calls the hooks below; nothing here imports anything but acqkit's public
API (``from acqkit import ...``).
"""
from acqkit import hookimpl

from .labeler import NoisyGold
from .strategy import LengthContrast
from .task import KeywordTask


@hookimpl
def acqkit_register_strategies(register):
    register("length-contrast", LengthContrast)


@hookimpl
def acqkit_register_labelers(register):
    register("noisy-gold", NoisyGold)


@hookimpl
def acqkit_register_tasks(register):
    register("keywords", KeywordTask)
