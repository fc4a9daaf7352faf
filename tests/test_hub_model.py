"""``--model ORG/NAME`` goes through the real Hugging Face loading path.

The hub is unreachable here, so the test builds what a download leaves behind:
a hub cache (``models--ORG--NAME/snapshots/<commit>``) holding the tiny model,
read with ``HF_HUB_OFFLINE=1`` exactly as a cluster node without internet reads
a model downloaded earlier.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from acqkit import models

pytestmark = pytest.mark.integration  # acqkit in subprocesses

COMMIT = "0123456789abcdef0123456789abcdef01234567"
FLAGS = ["--preset", "smoke", "--rounds", "1", "--budget", "4", "--seed-labels", "2", "--eval-prompts", "4",
         "--quiet"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("hf-hub")
    repo = cache / "models--acqkit-test--tiny-llama"
    shutil.copytree(models.resolve("tiny"), repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


def acqkit(hub: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "acqkit", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def test_a_hub_id_loads_from_the_hf_cache_and_equals_the_same_weights_by_path(hub, tmp_path):
    by_id = acqkit(hub, "run", *FLAGS, "--model", "acqkit-test/tiny-llama", "--out", str(tmp_path / "id"))
    assert by_id.returncode == 0, by_id.stderr
    by_path = acqkit(hub, "run", *FLAGS, "--model", models.resolve("tiny"), "--out", str(tmp_path / "path"))
    assert by_path.returncode == 0, by_path.stderr
    assert 'model = "acqkit-test/tiny-llama"' in (tmp_path / "id" / "config.toml").read_text()
    for name in ("results.csv", "labels.jsonl"):
        assert (tmp_path / "id" / name).read_bytes() == (tmp_path / "path" / name).read_bytes(), name


@pytest.mark.parametrize("model, message", [
    ("no-such-org/no-such-model", "--model 'no-such-org/no-such-model': not a local model directory, and its "
                                  "config.json cannot be fetched from the Hugging Face hub or found in the HF cache"),
    ("bad id with spaces", "--model 'bad id with spaces': not a local model directory, nor a valid Hugging Face "
                           "model id"),
])
def test_a_hub_id_that_cannot_load_fails_before_anything_is_written(hub, tmp_path, model, message):
    out = tmp_path / "cmp"
    result = acqkit(hub, "compare", *FLAGS, "--model", model, "--out", str(out))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr
    assert not out.exists()
