"""The ``wandb`` tracker: one Weights & Biases run per (strategy, seed), grouped by comparison.

``--track 'wandb(project=acqkit, entity=TEAM, mode=offline)'``. Each run gets
the resolved config, every number of its results row per round (step =
round; pick ``labels_spent`` as a chart's x-axis in the W&B UI), and the
comparison's plots go to one more run named ``comparison`` in the same group.
An online run needs a login (``wandb login`` or ``WANDB_API_KEY``): checked
before anything loads, without touching the network.
"""
from __future__ import annotations

import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from acqkit import hookimpl
from acqkit.errors import TrackerError
from acqkit.track import Tracker, need, writable_dir

MODES = ("online", "offline", "disabled")


class WandbTracker(Tracker):
    def __init__(self, out=".", project: str = "acqkit", entity: str | None = None, mode: str | None = None,
                 dir: str | None = None, group: str | None = None, tags=None):
        self.project, self.entity = str(project), None if entity is None else str(entity)
        self.mode = None if mode is None else str(mode)
        if self.mode is not None and self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.dir = Path(dir or os.environ.get("WANDB_DIR") or out).expanduser()  # wandb writes DIR/wandb/
        self.group = None if group is None else str(group)
        self.tags = [str(t) for t in (tags if isinstance(tags, list) else [tags] if tags else [])]
        self.run = None

    def effective_mode(self) -> str:
        mode = self.mode or os.environ.get("WANDB_MODE") or "online"
        return "offline" if mode == "dryrun" else mode

    def check(self) -> None:
        need("wandb", "wandb")
        if self.effective_mode() == "online" and not logged_in():
            raise TrackerError("tracker 'wandb': not logged in to W&B (no WANDB_API_KEY, no key in ~/.netrc): run "
                               "`wandb login`, or track offline with 'wandb(mode=offline)' and `wandb sync` later")
        writable_dir(self.dir, "wandb")

    def start(self, name, group, config, run_id):
        import wandb

        self.dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=self.project, entity=self.entity, group=self.group or group, name=name,
                              id=run_id, resume="allow", config=config, dir=str(self.dir), mode=self.mode,
                              job_type="comparison" if name == "comparison" else "run", tags=self.tags or None,
                              settings=wandb.Settings(console="off", silent=True))

    def log(self, metrics, step):
        self.run.log(dict(metrics), step=step)

    def images(self, images, step):
        import wandb

        self.run.log({f"plots/{tag}": wandb.Image(str(path)) for tag, path in images.items()}, step=step)

    def finish(self, ok=True):
        run, self.run = self.run, None
        if run is not None:
            run.finish(exit_code=0 if ok else 1)


def logged_in() -> bool:
    """An API key in the environment or in the netrc file for W&B's host (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        return bool(path.exists() and netrc.netrc(str(path)).authenticators(host))
    except (netrc.NetrcParseError, OSError):
        return False


@hookimpl
def acqkit_register_trackers(register):
    register("wandb", WandbTracker)
