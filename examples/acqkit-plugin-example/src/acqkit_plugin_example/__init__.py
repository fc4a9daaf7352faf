"""An acqkit plugin from outside acqkit: one strategy, one labeler, one task.

acqkit finds this module through the ``acqkit`` entry point in pyproject.toml
and calls the hooks below; nothing here imports anything but acqkit's public
API (``from acqkit import ...``).
"""
from acqkit import API_VERSION, hookimpl

if tuple(int(x) for x in API_VERSION.split(".")) < (1, 2):  # the building blocks became public in 1.2
    raise ImportError(f"acqkit-plugin-example needs acqkit's plugin API 1.2 or later; this acqkit has {API_VERSION}")

from .labeler import NoisyGold  # noqa: E402 (after the version check)
from .strategy import LengthContrast  # noqa: E402
from .task import KeywordTask  # noqa: E402


@hookimpl
def acqkit_register_strategies(register):
    register("length-contrast", LengthContrast)


@hookimpl
def acqkit_register_labelers(register):
    register("noisy-gold", NoisyGold)


@hookimpl
def acqkit_register_tasks(register):
    register("keywords", KeywordTask)
