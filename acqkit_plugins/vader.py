"""The VADER gold oracle: compound sentiment in [-1, 1], higher is more positive.

The sentiment task's reward, registered by name so any prompt set (a
``file:PATH`` task) can use it; a lexicon model, so it needs no download.
"""
from __future__ import annotations

import numpy as np

from acqkit import Oracle, hookimpl


class VaderOracle(Oracle):
    def __init__(self):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._vader = SentimentIntensityAnalyzer()

    def reward(self, prompts, responses) -> np.ndarray:
        return np.array([self._vader.polarity_scores(r)["compound"] for r in responses], dtype=float)


@hookimpl
def acqkit_register_oracles(register):
    register("vader", VaderOracle)
