"""The ``tensorboard`` tracker: event files, one subdirectory per (strategy, seed) under the comparison.

``--track 'tensorboard(dir=PATH)'`` (default ``OUT/tensorboard``) writes
``DIR/GROUP/STRATEGY-seed-N/``; ``tensorboard --logdir DIR`` shows them. Each
number of the results row is a scalar at step = round, and again under
``vs_labels/`` at step = labels spent (TensorBoard has no other x-axis); the
config is a text summary, the comparison's plots are images of a
``comparison`` run.
"""
from __future__ import annotations

from pathlib import Path

from acqkit import hookimpl
from acqkit.track import Tracker, need, writable_dir


class TensorBoardTracker(Tracker):
    def __init__(self, out=".", dir: str | None = None):
        self.dir = Path(dir).expanduser() if dir else Path(out) / "tensorboard"
        self.writer = None

    def check(self) -> None:
        need("tensorboard", "tensorboard")
        writable_dir(self.dir, "tensorboard")

    def start(self, name, group, config, run_id):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.dir / group / name))
        text = "\n".join(f"{k} = {v!r}" for k, v in config.items())
        self.writer.add_text("config", "    " + text.replace("\n", "\n    "), 0)  # markdown code block

    def log(self, metrics, step):
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        if "labels_spent" in metrics:
            spent = int(metrics["labels_spent"])
            for key, value in metrics.items():
                if key not in ("labels_spent", "round"):
                    self.writer.add_scalar(f"vs_labels/{key}", value, spent)
        self.writer.flush()  # a row is on disk as soon as it is in results.csv

    def images(self, images, step):
        from matplotlib.image import imread

        for tag, path in images.items():
            self.writer.add_image(f"plots/{tag}", imread(str(path))[..., :3], step, dataformats="HWC")
        self.writer.flush()

    def finish(self, ok=True):
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()


@hookimpl
def acqkit_register_trackers(register):
    register("tensorboard", TensorBoardTracker)
