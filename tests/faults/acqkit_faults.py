"""A test-only acqkit plugin: a counting gold oracle, and SIGKILL at a chosen point.

tests/test_kill_resume.py installs it for its subprocesses the way any
third-party plugin is installed (a dist-info with an ``acqkit`` entry point on
the path), so acqkit loads it through the public plugin API. The fault
injection lives here, in test code: acqkit itself has no kill switch.

Environment:
  ACQKIT_FAULTS_CALLS  file that gets one fsync'd JSON line [ledger, pair key] per pair the oracle is asked
  ACQKIT_KILL_AT       ``stage:n``: SIGKILL this process at the n-th event of ``stage`` (see install())
  ACQKIT_NO_PICKLE     ``1``: any unpickling ends the process with exit code 97
  ACQKIT_FAULTS_SLOW   seconds the oracle takes per call (a slow labeler: widens races between processes)
"""
from __future__ import annotations

import json
import os
import pathlib
import signal
import sys
import time
import traceback

from acqkit import Labeler, hookimpl

STAGE, _, NTH = os.environ.get("ACQKIT_KILL_AT", "").rpartition(":")
COUNTS: dict[str, int] = {}


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def reached(stage: str) -> bool:
    """Count an event of ``stage``; True exactly when it is the one to die at."""
    COUNTS[stage] = COUNTS.get(stage, 0) + 1
    return stage == STAGE and COUNTS[stage] == int(NTH)


class CountingGold(Labeler):
    """The built-in gold oracle, logging every pair it is asked about before it answers."""

    paid = True

    def __init__(self):
        from acqkit.plugins import registry

        self.gold = registry().build("labeler", "gold")

    def label(self, pairs, table, context):
        if reached("label"):
            die()  # killed while the oracle is being called: nothing asked yet
        book = context.extras["ledger"]
        with open(os.environ["ACQKIT_FAULTS_CALLS"], "a", encoding="utf-8") as fh:
            for a, b in pairs[["a", "b"]].itertuples(index=False):
                fh.write(json.dumps([book.ledger.name, book.key(int(a), int(b))]) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        time.sleep(float(os.environ.get("ACQKIT_FAULTS_SLOW") or 0))
        labels = self.gold.label(pairs, table, context)
        if reached("answered"):
            die()  # the oracle has answered; acqkit has not stored the answers yet
        return labels


@hookimpl
def acqkit_register_labelers(register):
    register("counting-gold", CountingGold)


def _on_entry(owner, name: str, stage: str) -> None:
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        if reached(stage):
            die()
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def install() -> None:
    """Patch acqkit's stages in this process so the chosen event kills it."""
    import acqkit.store.ledger
    import acqkit.round.loop
    import acqkit.report.plots
    import acqkit.store.rundir
    import acqkit.round.score
    import acqkit.round.train
    from transformers import GenerationMixin, PreTrainedModel

    _on_entry(GenerationMixin, "generate", "generate")  # a generate() batch: sampling or evaluation
    _on_entry(acqkit.round.score, "response_logps", "score")  # a scoring batch (policy, reference or KL)
    _on_entry(acqkit.round.train, "pair_losses", "train")  # a DPO training micro-batch
    _on_entry(acqkit.report.plots, "write_plots", "plots")  # report writing after the grid

    put_many = acqkit.store.ledger.Ledger.put_many

    def stored(self, recs):  # right after a labeler's answers were committed
        n = put_many(self, recs)
        if reached("stored"):
            die()
        return n

    acqkit.store.ledger.Ledger.put_many = stored

    put = acqkit.store.ledger.RoundLedger.put

    def put_then_die(self, *args, **kwargs):  # one answer stored on arrival (the judge, the human labelers)
        out = put(self, *args, **kwargs)
        if reached("put"):
            die()
        return out

    acqkit.store.ledger.RoundLedger.put = put_then_die

    append = acqkit.round.loop.append_jsonl

    def torn(path, frame):  # half a line reaches the file, then the kill
        if len(frame) and reached("append"):
            line = json.dumps(frame.to_dict(orient="records")[0], default=acqkit.store.rundir._json_default)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(line[: len(line) // 2])
            die()
        return append(path, frame)

    acqkit.round.loop.append_jsonl = torn

    replace = acqkit.store.rundir._replace

    def unrenamed(path, write):  # the temp file is complete, the rename never happens
        if reached("replace:" + path.name):
            write(path.with_name(path.name + ".tmp"))
            die()
        return replace(path, write)

    acqkit.store.rundir._replace = unrenamed

    save = PreTrainedModel.save_pretrained

    def saved(self, *args, **kwargs):  # weights in checkpoint.tmp, no round marker yet
        out = save(self, *args, **kwargs)
        if reached("save"):
            die()
        return out

    PreTrainedModel.save_pretrained = saved

    rename = pathlib.Path.rename

    def swapped(self, target):  # the old checkpoint moved aside, the new one not yet in place
        out = rename(self, target)
        if self.name == "checkpoint" and pathlib.Path(target).name == "checkpoint.old" and reached("swap"):
            die()
        return out

    pathlib.Path.rename = swapped


def refuse_pickle() -> None:
    """A resume must read nothing through pickle: any attempt ends the process, loudly."""
    import pickle

    import torch

    def refuse(*args, **kwargs):
        sys.stderr.write("ACQKIT_FAULTS: unpickling attempted\n" + "".join(traceback.format_stack()))
        sys.stderr.flush()
        os._exit(97)

    class Unpickler:
        def __init__(self, *args, **kwargs):
            refuse()

    pickle.load = pickle.loads = refuse
    pickle.Unpickler = Unpickler
    torch.load = refuse


if STAGE:
    install()
if os.environ.get("ACQKIT_NO_PICKLE") == "1":
    refuse_pickle()
