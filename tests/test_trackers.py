"""Experiment trackers (--track): W&B offline and TensorBoard, read back from the files they wrote.

One smoke comparison (tiny model, 2 strategies x 1 seed, 2 rounds) feeds both
trackers; W&B's ``.wandb`` run file is read with its protobuf records (the
installed wandb ships no Python reader of its own), TensorBoard's event files
with TensorBoard's ``EventAccumulator``. The errors a user can fix are checked
before anything is written, including a tracker whose package is missing (a
real blocked import in a subprocess).
"""
import json
import logging
import os
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from acqkit import hookimpl
from acqkit.compare import compare
from acqkit.config import CompareConfig, from_preset
from acqkit.errors import TrackerError, UnknownComponent
from acqkit.plugins import collect, make_manager, registry
from acqkit.track import STATE_FILE, check_trackers, tracking

pytest.importorskip("wandb")
pytest.importorskip("tensorboard")

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("random", "smallest-margin")
NUMBERS = ["round", "labels_round", "labels_spent", "pairs_trained", "win_rate", "gold_reward", "length", "kl",
           "train_loss"]


def smoke(track: str) -> CompareConfig:
    base = from_preset("smoke", {"eval_prompts": 8, "track": track, "checkpoint": False})
    return CompareConfig(base=base, strategies=STRATEGIES, seeds=(0,))


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One comparison tracked by both W&B (offline, in tmp) and TensorBoard (its default directory)."""
    tmp = tmp_path_factory.mktemp("tracked")
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp / "wb"), "WANDB_SILENT": "true"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        results = compare(smoke("wandb(project=acqkit-test),tensorboard"), tmp / "out")
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return tmp, results


def wandb_records(path: Path):
    """The protobuf records of a ``.wandb`` file: a 7-byte header, then LevelDB-log blocks of 32 KiB."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, i, chunk = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B"
    while i + 7 <= len(data):
        if 32768 - i % 32768 < 7:  # a block's tail too short for a header is padding
            i += 32768 - i % 32768
            continue
        _, n, kind = struct.unpack("<IHB", data[i:i + 7])
        chunk, i = chunk + data[i + 7:i + 7 + n], i + 7 + n
        if kind in (1, 4):  # FULL or LAST: a whole record
            rec = pb.Record()
            rec.ParseFromString(chunk)
            chunk = b""
            yield rec


def wandb_run(path: Path) -> dict:
    """One offline run file: its name, group, config and history rows by step."""
    run = {"history": {}}
    for rec in wandb_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run.update(name=rec.run.display_name, group=rec.run.run_group, project=rec.run.project,
                       config={u.key: json.loads(u.value_json) for u in rec.run.config.update})
        elif kind == "history":
            row = run["history"].setdefault(rec.history.step.num, {})
            for u in rec.history.item:  # an image is nested: ("plots/rounds", "_type") -> "image-file"
                *parents, last = [u.key] if u.key else list(u.nested_key)
                place = row
                for key in parents:
                    place = place.setdefault(key, {})
                place[last] = json.loads(u.value_json)
    return run


def wandb_runs(wandb_dir: Path) -> dict:
    """Each offline run under ``wandb_dir``, by name."""
    runs = [wandb_run(path) for path in sorted(wandb_dir.glob("wandb/offline-run-*/run-*.wandb"))]
    return {run["name"]: run for run in runs}


def test_wandb_has_one_run_per_strategy_and_seed_with_config_and_every_round(tracked):
    tmp, results = tracked
    runs = wandb_runs(tmp / "wb")
    assert set(runs) == {"random-seed-0", "smallest-margin-seed-0", "comparison"}
    group = json.loads((tmp / "out" / STATE_FILE).read_text())["group"]
    assert {r["group"] for r in runs.values()} == {group} and group.startswith("out-")
    assert {r["project"] for r in runs.values()} == {"acqkit-test"}
    for strategy in STRATEGIES:
        run = runs[f"{strategy}-seed-0"]
        assert run["config"]["strategy"] == strategy and run["config"]["seed"] == 0
        assert run["config"]["model"] == "tiny" and run["config"]["budget"] == 32  # the resolved config
        rows = results[results["strategy"] == strategy].set_index("round", drop=False)
        assert sorted(run["history"]) == [0, 1, 2]  # step = round, the warm start included
        for rnd, logged in run["history"].items():
            for col in NUMBERS:
                assert logged[col] == pytest.approx(float(rows.loc[rnd, col]), rel=1e-6), (strategy, rnd, col)
    plots = runs["comparison"]["history"][2]
    assert {"plots/winrate_vs_labels", "plots/rounds"} <= set(plots)
    assert plots["plots/rounds"]["_type"] == "image-file"
    assert runs["comparison"]["config"]["strategies"] == list(STRATEGIES)


def test_tensorboard_has_a_directory_per_run_with_scalars_and_the_plots(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tmp, results = tracked
    group = json.loads((tmp / "out" / STATE_FILE).read_text())["group"]
    root = tmp / "out" / "tensorboard" / group
    assert sorted(p.name for p in root.iterdir()) == ["comparison", "random-seed-0", "smallest-margin-seed-0"]
    for strategy in STRATEGIES:
        acc = EventAccumulator(str(root / f"{strategy}-seed-0"))
        acc.Reload()
        rows = results[results["strategy"] == strategy]
        for col in ("win_rate", "gold_reward", "labels_spent", "train_loss"):
            events = acc.Scalars(col)
            assert [e.step for e in events] == list(rows["round"])
            assert [e.value for e in events] == pytest.approx(list(rows[col].astype(float)), rel=1e-5)
        by_labels = acc.Scalars("vs_labels/win_rate")
        assert [e.step for e in by_labels] == list(rows["labels_spent"])  # labels spent as the x axis
        assert "config/text_summary" in acc.Tags()["tensors"]
    acc = EventAccumulator(str(root / "comparison"), size_guidance={"images": 0})
    acc.Reload()
    assert set(acc.Tags()["images"]) == {"plots/winrate_vs_labels", "plots/rounds"}
    image = acc.Images("plots/rounds")[-1]
    assert image.width > 100 and image.encoded_image_string[:4] == b"\x89PNG"


def test_the_trackers_do_not_change_the_results(tracked, tmp_path):
    _, results = tracked
    plain = compare(smoke(""), tmp_path / "plain")
    pd.testing.assert_frame_equal(plain, results)
    assert not (tmp_path / "plain" / STATE_FILE).exists()


def test_trackers_are_listed_as_a_plugin_kind():
    reg = registry()
    assert {"wandb", "tensorboard"} <= set(reg.names("tracker"))
    assert reg.get("tracker", "wandb").package == "acqkit"


def test_an_unknown_tracker_is_named_before_anything_is_written(tmp_path):
    with pytest.raises(UnknownComponent, match=r"config field 'track'.*unknown tracker 'mlflw'.*tensorboard"):
        compare(smoke("tensorboard,mlflw"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_bad_directory_is_a_clear_error_before_anything_is_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(TrackerError, match=r"tracker 'tensorboard'.*a-file is a file"):
        compare(smoke(f"tensorboard(dir={blocker / 'tb'})"), tmp_path / "out")
    with pytest.raises(TrackerError, match=r"tracker 'wandb'.*a-file is a file, not a directory"):
        compare(smoke(f"wandb(mode=offline, dir={blocker})"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_wandb_online_without_a_login_is_refused_up_front(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    with pytest.raises(TrackerError, match=r"tracker 'wandb': not logged in.*wandb login.*mode=offline"):
        check_trackers(registry(), "wandb(mode=online)", tmp_path / "out")
    (tmp_path / "no-netrc").write_text("machine api.wandb.ai login user password " + "k" * 40 + "\n")
    check_trackers(registry(), "wandb(mode=online)", tmp_path / "out")  # a key is enough: no network here


@pytest.mark.integration
@pytest.mark.parametrize("package, tracker", [("wandb", "wandb(mode=offline)"), ("tensorboard", "tensorboard")])
def test_a_tracker_whose_package_is_missing_is_one_line_before_the_run(tmp_path, package, tracker):
    """The package blocked for real (``sys.modules[name] = None`` makes its import fail), through the CLI."""
    script = (f"import sys; sys.modules[{package!r}] = None\n"
              "from acqkit.cli import main\n"
              "sys.argv = ['acqkit'] + sys.argv[1:]\n"
              "main()\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", script, "compare", "--preset", "smoke", "--seeds", "1",
                           "--strategies", "random", "--out", str(out), "--track", tracker, "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1, proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and f"tracker '{package}' needs the {package} package" in error[0]
    assert "pip install 'acqkit[track]'" in error[0] and "Traceback" not in proc.stderr
    assert not out.exists()


class FailingTracker:
    """A real tracker plugin whose disk fills up in round 1."""

    def __init__(self, out):
        self.steps = []

    def check(self):
        pass

    def start(self, name, group, config, run_id):
        pass

    def log(self, metrics, step):
        if step == 1:
            raise OSError(28, "No space left on device")
        self.steps.append(step)

    def images(self, images, step):
        pass

    def finish(self, ok=True):
        pass


class FailingPlugin:
    @hookimpl
    def acqkit_register_trackers(self, register):
        register("failing", FailingTracker)


def test_a_tracker_failing_mid_run_is_switched_off_and_the_run_keeps_its_files(tmp_path, caplog):
    reg = collect(make_manager(extra_plugins=[FailingPlugin()]))
    ccfg = replace(smoke("failing,tensorboard"), strategies=("random",))
    with caplog.at_level(logging.WARNING, logger="acqkit.track"):
        compare(ccfg, tmp_path / "out", registry=reg)
    assert list(pd.read_csv(tmp_path / "out" / "results.csv")["round"]) == [0, 1, 2]  # every round, on disk
    warnings = [r.getMessage() for r in caplog.records if r.name == "acqkit.track"]
    assert len(warnings) == 1 and "tracker 'failing' failed in round 1" in warnings[0]
    assert "No space left on device" in warnings[0] and "acqkit report" in warnings[0]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    group = json.loads((tmp_path / "out" / STATE_FILE).read_text())["group"]
    acc = EventAccumulator(str(tmp_path / "out" / "tensorboard" / group / "random-seed-0"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("win_rate")] == [0, 1, 2]  # the other tracker kept going


def test_only_the_main_process_tracks(tmp_path, monkeypatch):
    reg = registry()
    trackers = check_trackers(reg, "tensorboard", tmp_path)
    monkeypatch.setenv("RANK", "1")
    with tracking(reg, trackers, tmp_path) as plugin:
        assert plugin is None and not reg.pm.hook.acqkit_run_start.get_hookimpls()
    monkeypatch.setenv("RANK", "0")
    with tracking(reg, trackers, tmp_path) as plugin:
        assert plugin is not None and reg.pm.is_registered(plugin)
    assert not reg.pm.is_registered(plugin)


def test_the_gpu_recipe_parses_as_written(tmp_path):
    """docs/recipe-gpu.md cannot be run here (no GPU, no hub): its commands and config file must parse."""
    import shlex

    from acqkit.cli import compare as compare_cmd
    from acqkit.cli.options import compare_config
    from acqkit.config import RunConfig, load_compare
    from acqkit.plugins import parse_spec, split_specs

    blocks = (ROOT / "docs" / "recipe-gpu.md").read_text().split("```")[1::2]
    commands = [b for b in blocks if b.lstrip().startswith("acqkit compare")]
    (tmp_path / "uf.toml").write_text(next(b for b in blocks if b.startswith("toml\n"))[5:])
    assert len(commands) == 2
    reg = registry()
    grids = []
    for text in commands:
        ctx = compare_cmd.make_context("compare", shlex.split(text.replace("\\\n", " "))[2:])
        p = ctx.params
        grids.append(compare_config(ctx, p["preset"], p["strategies"], p["seeds"], p["config_file"],
                                    {f: p[f] for f in RunConfig.__dataclass_fields__ if f in p}))
    grids.append(load_compare(tmp_path / "uf.toml"))
    for ccfg in grids:
        name, options = parse_spec(ccfg.base.task)
        assert name == "hf" and options["path"] == "HuggingFaceH4/ultrafeedback_binarized"
        assert set(options) <= {"path", "split", "prompt", "eval_split", "extras", "limit", "oracle"}
        for kind, spec in (("labeler", ccfg.base.labeler), ("oracle", options.get("oracle", "vader"))):
            assert parse_spec(spec)[0] in reg.names(kind), spec
        for spec in split_specs(ccfg.base.track):
            reg.build("tracker", spec, out=tmp_path)  # options the tracker takes
    assert grids[1] == grids[2]  # the config file is the same comparison as the command


class StopAfterRound:
    """Stops the comparison right after a round's checkpoint and tracker log (a crash between rounds)."""

    def __init__(self, at: int):
        self.at = at

    @hookimpl(trylast=True)  # after the trackers have logged the round
    def acqkit_round_end(self, run, round, metrics):
        if round == self.at:
            raise RuntimeError(f"stopped after round {round}")


def test_wandb_resume_continues_the_same_run_and_logs_every_round_once(tmp_path, monkeypatch):
    """A comparison stopped after round 1 and resumed: one W&B run id, its group kept, rounds 0-2 each logged once."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    ccfg = replace(smoke("wandb(project=acqkit-test)"), strategies=("random",))
    ccfg = replace(ccfg, base=replace(ccfg.base, checkpoint=True))
    out = tmp_path / "out"
    with pytest.raises(Exception, match="stopped after round 1"):
        compare(ccfg, out, registry=collect(make_manager(extra_plugins=[StopAfterRound(1)])))
    group = json.loads((out / STATE_FILE).read_text())["group"]
    first = sorted((tmp_path / "wb").glob("wandb/offline-run-*"))
    results = compare(ccfg, out, resume=True)
    assert json.loads((out / STATE_FILE).read_text())["group"] == group  # the resumed runs join the same group
    files = sorted((tmp_path / "wb").glob("wandb/offline-run-*/run-*.wandb"))
    parts = [(path, wandb_run(path)) for path in files]
    mine = [(path, run) for path, run in parts if run["name"] == "random-seed-0"]
    assert len(first) == 1 and len(mine) == 2  # the stopped run and its continuation (+ the comparison's plots)
    assert len({path.name for path, _ in mine}) == 1  # same run id (run-ID.wandb): `wandb sync` appends to one run
    steps: dict[int, dict] = {}
    for _, run in mine:
        assert run["group"] == group
        for step, row in run["history"].items():
            assert step not in steps, f"round {step} logged twice"
            steps[step] = row
    assert sorted(steps) == [0, 1, 2]
    for rnd, logged in steps.items():
        assert logged["win_rate"] == pytest.approx(float(results.loc[results["round"] == rnd, "win_rate"].iloc[0]))
