"""Experiment trackers (``--track wandb,tensorboard``): each run's config, rows and plots, mirrored.

acqkit's own files stay the record. A tracker gets a copy of each results row
once the row is final, so a tracker that breaks mid-run (a full disk, a network
error) is switched off with a one-line warning and the run goes on: its
``results.csv``, ledger and checkpoints are complete, and ``acqkit report``
redraws everything from them. What can be checked up front (the package is
installed, a login exists, the directory can be written) is checked by
:func:`check_trackers` before any model loads, so a typo costs a second and not
a run.

Trackers see the run through the plugin hooks (API 1.3): ``acqkit_run_start``,
``acqkit_round_end``, ``acqkit_run_end`` and ``acqkit_compare_end``, called
through ``pm.hook`` by the orchestration (:func:`tracked_run`, :func:`end_comparison`),
never by the stages. :class:`Tracking` is the plugin that forwards them to the
trackers named in ``--track``; any other plugin may implement the same hooks.
"""
from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import asdict
from pathlib import Path

from acqkit.distributed import is_main
from acqkit.errors import TrackerError, UnknownComponent
from acqkit.hookspecs import hookimpl
from acqkit.plugins import Registry, split_specs

STATE_FILE = "track.json"  # the comparison's tracker group, so --resume continues the same tracker runs
log = logging.getLogger("acqkit.track")


class Tracker(ABC):
    """The interface of a tracker component (``acqkit_register_trackers``, API 1.3).

    The factory gets ``out`` (the comparison or run directory) and the spec's
    options. One tracker object serves every run of a comparison in turn:
    ``start`` ... ``log`` ... ``finish``, then the next run.
    """

    def check(self) -> None:
        """Raise :class:`acqkit.errors.TrackerError` if the tracker cannot run; write nothing."""

    @abstractmethod
    def start(self, name: str, group: str, config: dict, run_id: str) -> None:
        """Open one tracker run: ``name`` (``random-seed-0``) in ``group`` (the comparison).

        ``run_id`` is stable across ``--resume``, so a resumed run can continue its tracker run.
        """
        ...

    @abstractmethod
    def log(self, metrics: dict, step: int) -> None:
        """One results row's numbers at ``step`` (the round)."""
        ...

    @abstractmethod
    def images(self, images: dict, step: int) -> None:
        """PNG files by tag (``{"rounds": Path(...)}``)."""
        ...

    @abstractmethod
    def finish(self, ok: bool = True) -> None:
        """Close the open run, if any (``ok=False``: the run stopped with an error)."""
        ...


def check_trackers(reg: Registry, spec: str, out) -> list[tuple[str, object]]:
    """Build every tracker ``spec`` names and check it can run; nothing is written yet."""
    trackers = []
    for one in split_specs(spec or ""):
        try:
            tracker = reg.build("tracker", one, out=Path(out))
        except UnknownComponent as exc:
            raise UnknownComponent(f"config field 'track': {exc}") from exc
        tracker.check()
        trackers.append((one, tracker))
    return trackers


def run_name(run: dict) -> str:
    """``random-seed-0``: a tracker run's name, safe as a directory name."""
    strategy = re.sub(r"[^A-Za-z0-9_.=-]+", "_", str(run["strategy"])).strip("_") or "run"
    return f"{strategy}-seed-{run['seed']}"


def run_id(group: str, name: str) -> str:
    """A tracker run id (letters, digits, - and _), the same for the same run on resume."""
    digest = hashlib.sha1(f"{group}/{name}".encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9_-]+", "-", f"{group}-{name}")[:48].strip("-") + "-" + digest


def numbers(row: dict) -> dict:
    """The numeric cells of a results row (strategy and seed are in the config)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, bool) or key in ("strategy", "seed"):
            continue
        with contextlib.suppress(TypeError, ValueError):
            out[key] = float(value)
    return out


class Tracking:
    """The trackers of one comparison, as a plugin: the run hooks forward to every tracker still working."""

    def __init__(self, trackers: list[tuple[str, object]], out: Path, resume: bool = False):
        self.live, self.out, self.resume, self._group = list(trackers), Path(out), resume, None

    @property
    def group(self) -> str:
        """Made on the first run's start, so a comparison that stops before it (a bad prompt) leaves no file."""
        if self._group is None:
            self._group = group_of(self.out, self.resume)
        return self._group

    def _each(self, what: str, call) -> None:
        for spec, tracker in list(self.live):
            try:
                call(tracker)
            except Exception as exc:  # a tracker is a copy: it must never cost the run itself
                self.live.remove((spec, tracker))
                with contextlib.suppress(Exception):
                    tracker.finish(ok=False)
                log.warning("acqkit: tracker %r failed in %s and is switched off for the rest of this comparison: "
                            "%s. The run goes on and its own files stay complete (acqkit report %s)",
                            spec, what, exc, self.out)

    @hookimpl
    def acqkit_run_start(self, run, run_dir):
        name = run_name(run)
        self._each("start", lambda t: t.start(name, self.group, dict(run), run_id(self.group, name)))

    @hookimpl
    def acqkit_round_end(self, run, round, metrics):
        self._each(f"round {round}", lambda t: t.log(numbers(metrics), int(round)))

    @hookimpl
    def acqkit_run_end(self, run, run_dir, results):
        self._each("finish", lambda t: t.finish(ok=True))

    @hookimpl
    def acqkit_compare_end(self, config, out, results, plots):
        step = int(results["round"].max()) if len(results) else 0
        images = {Path(p).stem: Path(p) for p in plots}

        def report(t):
            t.start("comparison", self.group, dict(config), run_id(self.group, "comparison"))
            t.images(images, step)
            t.finish(ok=True)

        self._each("the comparison's plots", report)

    def close(self, ok: bool) -> None:
        """Close whatever is still open (a run that raised leaves its tracker run open)."""
        self._each("finish", lambda t: t.finish(ok=ok))


def group_of(out: Path, resume: bool) -> str:
    """The comparison's tracker group: ``OUT-YYYYmmdd-HHMMSS``, kept in ``out/track.json`` for a resume."""
    state = out / STATE_FILE
    if resume and state.exists():
        with contextlib.suppress(ValueError, KeyError, OSError):
            return str(json.loads(state.read_text(encoding="utf-8"))["group"])
    group = f"{out.resolve().name or 'acqkit'}-{time.strftime('%Y%m%d-%H%M%S')}"
    from acqkit.store.rundir import write_text  # atomic, main process only

    write_text(state, json.dumps({"group": group}) + "\n")
    return group


@contextlib.contextmanager
def tracking(reg: Registry, trackers: list, out, resume: bool = False):
    """Forward the run hooks to ``trackers`` (from :func:`check_trackers`) for the ``with`` block.

    Only the main process tracks. Yields the :class:`Tracking` plugin, or None when nothing tracks.
    """
    if not trackers or not is_main():
        yield None
        return
    out = Path(out)
    plugin = Tracking(trackers, out, resume)
    reg.pm.register(plugin, name=f"acqkit-tracking-{id(plugin)}")
    ok = False
    try:
        yield plugin
        ok = True
    finally:
        reg.pm.unregister(plugin)
        plugin.close(ok)


def tracked_run(reg: Registry, cfg, run_dir, play):
    """``play()`` (one strategy and seed) between the ``acqkit_run_start`` and ``acqkit_run_end`` hooks."""
    config = asdict(cfg)
    reg.pm.hook.acqkit_run_start(run=config, run_dir=run_dir)
    results = play()
    reg.pm.hook.acqkit_run_end(run=config, run_dir=run_dir, results=results)
    return results


def end_comparison(reg: Registry, ccfg, out, results) -> None:
    """``acqkit_compare_end`` with the comparison's plots, drawn only if a plugin listens."""
    if not reg.pm.hook.acqkit_compare_end.get_hookimpls():
        return
    from acqkit.report.plots import write_plots

    plots = write_plots(results, out) if is_main() else []  # the same files `acqkit report` draws
    config = {"strategies": list(ccfg.strategies), "seeds": list(ccfg.seeds), **asdict(ccfg.base)}
    reg.pm.hook.acqkit_compare_end(config=config, out=Path(out), results=results, plots=plots)


def writable_dir(path: Path, who: str) -> Path:
    """Check that ``path`` is, or can become, a writable directory (nothing is created)."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise TrackerError(f"tracker {who!r}: {path} is a file, not a directory; give {who}(dir=...) another path")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise TrackerError(f"tracker {who!r}: cannot make {path}: {parent} is a file; give {who}(dir=...) "
                           "another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TrackerError(f"tracker {who!r}: cannot write {path} ({parent} is not writable); give "
                           f"{who}(dir=...) a writable path")
    return path


def need(module: str, who: str) -> None:
    """Import ``module`` or say which package to install."""
    try:
        __import__(module)
    except ImportError as exc:
        raise TrackerError(f"tracker {who!r} needs the {module} package, which is not installed ({exc}): "
                           f"pip install 'acqkit[track]' (or pip install {module}), or drop {who} from "
                           "--track") from None
