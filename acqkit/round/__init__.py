"""The round, stage by stage: one module per stage, plus the loop that runs them."""
