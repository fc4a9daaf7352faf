"""The loop asks a paying labeler only about pairs its run directory's ledger does not know."""
import json

from acqkit import hookimpl
from acqkit.config import preset
from acqkit.store.ledger import Ledger
from acqkit.round.loop import run
from acqkit.plugins import collect, make_manager
from acqkit.round.session import Session
from labeling_helpers import CountingLabeler


class CountingPlugin:
    """A third-party plugin, registered through the public plugin API."""

    def __init__(self):
        self.asked = []

    @hookimpl
    def acqkit_register_labelers(self, register):
        register("counting", lambda: CountingLabeler(self.asked))


def test_a_rerun_into_the_same_run_dir_asks_nothing_twice(tmp_path):
    plugin = CountingPlugin()
    reg = collect(make_manager(extra_plugins=[plugin]))
    cfg = preset("smoke", strategy="random", labeler="counting", rounds=1, budget=4, seed_labels=0,
                 eval_prompts=4, kl_samples=0, max_new_tokens=8)
    session = Session.open(cfg, reg)  # shared only to keep the test fast; the ledger is on disk
    first = run(cfg, session, out=tmp_path, registry=reg)
    asked = list(plugin.asked)
    assert len(asked) == 4 and first["labels_spent"].tolist() == [0, 4]
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert len(ledger) == 4 and {r.labeler for r in ledger.records()} == {"counting"}

    second = run(cfg, session, out=tmp_path, registry=reg)  # e.g. a rerun after a crash
    assert plugin.asked == asked  # not one question more
    # The run's own ledger paid for these labels in this round: the results say so, identically.
    assert second["labels_spent"].tolist() == [0, 4]
    labels = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert [r["cost"] for r in labels] == [1] * 4 and all(r["source"] == "counting" for r in labels)


def test_labels_from_another_run_cost_nothing(tmp_path):
    plugin = CountingPlugin()
    reg = collect(make_manager(extra_plugins=[plugin]))
    shared = tmp_path / "shared.sqlite"
    cfg = preset("smoke", strategy="random", labeler="counting", rounds=1, budget=4, seed_labels=0,
                 eval_prompts=4, kl_samples=0, max_new_tokens=8, ledger=str(shared))
    session = Session.open(cfg, reg)
    first = run(cfg, session, out=tmp_path / "a", registry=reg)
    second = run(cfg, session, out=tmp_path / "b", registry=reg)  # same pairs, another run, shared ledger
    assert len(plugin.asked) == 4
    assert first["labels_spent"].tolist() == [0, 4] and second["labels_spent"].tolist() == [0, 0]
