"""The previous iterate, for a labeler that declares ``needs_previous_policy`` (SELFEE's ``judge=previous``).

The label stage keeps it, not the loop: each round it hands the labeler the
policy before the one that sampled the round (round 1: the frozen initial
model) and remembers the sampling policy for the next round. Its one state
dict is ``checkpointed`` the way any component's is, as ``previous.safetensors``,
so a resumed run judges with the same weights.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PreviousPolicy:
    wanted: bool  # the labeler's declared needs_previous_policy
    previous: dict | None = None  # the policy that sampled the last round; None before round 1

    @property
    def checkpointed(self) -> tuple:
        return ("previous",) if self.wanted else ()

    def advance(self, session):
        """This round's previous iterate (frozen; None when not wanted); remembers the sampling policy."""
        if not self.wanted:
            return None
        sampler = session.snapshot()
        if self.previous is None:
            model = session.reference
        else:
            model = session.frozen_copy()
            model.load_state_dict(self.previous)
        self.previous = sampler
        return model
