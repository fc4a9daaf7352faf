"""The ``hf`` task (issue #17): prompts from a Hugging Face dataset, checked and split like a prompt file.

Most tests load a dataset from a local directory of Parquet files (``hf(path=DIR)``
takes the same code path after the download). The integration tests build
what ``hf download ORG/NAME --repo-type dataset`` leaves behind, a hub cache
(``datasets--ORG--NAME/snapshots/<commit>/data/*.parquet`` and ``refs/main``),
and load it by id with ``HF_HUB_OFFLINE=1`` and ``HF_DATASETS_OFFLINE=1``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from acqkit.errors import PromptError
from acqkit.plugins import UnknownComponent, parse_spec, registry
from acqkit.round.task import Columns, read_prompts

datasets = pytest.importorskip("datasets")

PROMPTS = Path(__file__).parent / "data" / "prompts.jsonl"  # 24 prompts, no id or split column
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FLAGS = ["--preset", "smoke", "--rounds", "1", "--budget", "4", "--seed-labels", "2", "--eval-prompts", "4",
         "--seeds", "1", "--quiet"]
HH = ("\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a happy story."
      "\n\nAssistant: Once upon a time...")


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """``datasets`` writes its Arrow copy of each dataset here, not in the user's home."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))


def write_dataset(folder: Path, splits: dict[str, list[dict]]) -> Path:
    """Parquet files named the way the hub names them (``data/train-00000-of-00001.parquet``)."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        pq.write_table(pa.Table.from_pylist(rows), folder / "data" / f"{split}-00000-of-00001.parquet")
    return folder


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def build(spec: str):
    return registry().build("task", spec)


def ids_and_messages(prompts) -> list[tuple]:
    return [(p.id, p.messages) for p in prompts]


def test_the_spec_forms_and_a_task_and_a_sampler_both_named_hf():
    assert parse_spec("hf:ORG/NAME") == ("hf", {"path": "ORG/NAME"})
    assert parse_spec("hf:org/name(split=train_prefs, eval_split=test_prefs)") == (
        "hf", {"path": "org/name", "split": "train_prefs", "eval_split": "test_prefs"})
    assert parse_spec("hf(path=org/name, split=train, prompt=text)") == (
        "hf", {"path": "org/name", "split": "train", "prompt": "text"})
    # separate kinds, separate registries: what the user types is the same name for both
    assert registry().get("task", "hf").plugin == "hf-task" and registry().get("sampler", "hf").plugin == "hf"
    with pytest.raises(PromptError, match=r"task 'hf' needs a dataset: --task hf:ORG/NAME"):
        build("hf")


def test_a_dataset_gives_the_prompts_ids_and_split_of_the_same_rows_as_a_file(tmp_path):
    folder = write_dataset(tmp_path / "ds", {"train": rows_of(PROMPTS)})
    from_hf, from_file = build(f"hf:{folder}"), build(f"file:{PROMPTS}")
    assert ids_and_messages(from_hf.train_prompts()) == ids_and_messages(from_file.train_prompts())
    assert ids_and_messages(from_hf.eval_prompts()) == ids_and_messages(from_file.eval_prompts())
    assert (len(from_hf.train_prompts()), len(from_hf.eval_prompts())) == (19, 5)
    first = from_hf.train_prompts()[0]
    row = [r["prompt"] for r in rows_of(PROMPTS)].index(first.text)
    assert from_hf.locate(first.id) == f"hf:{folder}, row {row} of split 'train'"
    # a row limit reads the first rows only; the hash split then holds out a fifth of them
    limited = build(f"hf:{folder}(limit=10, eval_fraction=0.3)")
    assert len(limited.train_prompts()) + len(limited.eval_prompts()) == 10 and len(limited.eval_prompts()) == 3
    texts = {p.text for p in limited.train_prompts() + limited.eval_prompts()}
    assert texts == {r["prompt"] for r in rows_of(PROMPTS)[:10]}
    with pytest.raises(UnknownComponent, match=rf"unknown oracle 'nope'.*--task 'hf\(path={folder}, oracle=NAME\)'"):
        build(f"hf:{folder}(oracle=nope)")


def test_a_named_eval_split_and_an_id_column_match_a_file_with_a_split_column(tmp_path):
    rows = [{"uid": f"q{i}", "text": r["prompt"], "score": float(i), "tags": ["nested", "stays on disk"]}
            for i, r in enumerate(rows_of(PROMPTS))]
    folder = write_dataset(tmp_path / "ds", {"train": rows[:18], "test": rows[18:]})
    task = build(f"hf:{folder}(split=train, eval_split=test, prompt=text, id=uid)")
    file = tmp_path / "same.jsonl"
    file.write_text("".join(json.dumps({**r, "split": "train" if i < 18 else "eval"}) + "\n"
                            for i, r in enumerate(rows)))
    same = read_prompts(file, Columns(prompt="text", id="uid"))
    assert ids_and_messages(task.train_prompts()) == ids_and_messages(same.train)
    assert ids_and_messages(task.eval_prompts()) == ids_and_messages(same.eval)
    assert [p.id for p in task.eval_prompts()] == [f"q{i}" for i in range(18, 24)]
    # the other scalar columns ride along as extras; extras=none reads none of them
    assert dict(task.eval_prompts()[0].extras) == {"score": 18.0}
    assert dict(build(f"hf:{folder}(prompt=text, id=uid, extras=none)").train_prompts()[0].extras) == {}
    assert dict(build(f"hf:{folder}(prompt=text, extras=uid|score)").train_prompts()[0].extras).keys() == {
        "uid", "score"}
    with pytest.raises(PromptError, match=r", split 'train': no column 'grade' \(named in extras\); columns found: "):
        build(f"hf:{folder}(prompt=text, extras=grade)")
    assert task.locate("q20") == f"hf:{folder}, row 2 of split 'test'"


def test_a_chat_messages_column_is_the_conversation_up_to_its_last_user_turn(tmp_path):
    def chat(i, answer=True):
        turns = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
                 {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": f"Write happy note {i}."}]
        return turns + [{"role": "assistant", "content": f"Note {i}: ..."}] * answer

    rows = [{"messages": chat(i, answer=i % 2 == 0), "prompt": [{"role": "user", "content": f"Say {i}."}]}
            for i in range(6)]
    folder = write_dataset(tmp_path / "ds", {"train": rows})
    task = build(f"hf:{folder}(prompt=messages)")
    got = sorted(p.messages[-1]["content"] for p in task.train_prompts() + task.eval_prompts())
    assert got == [f"Write happy note {i}." for i in range(6)]  # the answers are cut off
    assert all(list(p.messages) == chat(int(p.text[-2]), answer=False) for p in task.train_prompts())
    # a column named "prompt" may hold chat lists too (TRL's conversational format)
    conversational = build(f"hf:{folder}")
    assert sorted(p.text for p in conversational.train_prompts() + conversational.eval_prompts()) == [
        f"Say {i}." for i in range(6)]
    rows[4]["messages"] = [{"role": "assistant", "content": "Only me."}]
    folder = write_dataset(tmp_path / "bad", {"train": rows})
    with pytest.raises(PromptError, match=rf"^hf:{folder}, row 4 of split 'train', field 'messages': no user message"):
        build(f"hf:{folder}(prompt=messages)")


def test_hh_rlhf_conversation_strings_become_chat_messages(tmp_path):
    rows = [{"chosen": HH.replace("happy story", f"happy story number {i}"), "rejected": "x"} for i in range(5)]
    folder = write_dataset(tmp_path / "ds", {"train": rows})
    task = build(f"hf:{folder}(prompt=chosen, extras=none)")
    prompt = next(p for p in task.train_prompts() + task.eval_prompts() if p.text.endswith("number 2."))
    assert prompt.messages == ({"role": "user", "content": "Hi there"},
                               {"role": "assistant", "content": "Hello! How can I help?"},
                               {"role": "user", "content": "Tell me a happy story number 2."})
    rows[3]["chosen"] = "Tell me a story, no turns"
    folder = write_dataset(tmp_path / "bad", {"train": rows})
    with pytest.raises(PromptError, match=rf"hf:{folder}, row 3 of split 'train', field 'chosen': expected a "
                                          r"conversation of \"\\n\\nHuman: ...\""):
        build(f"hf:{folder}(prompt=chosen)")


@pytest.mark.parametrize("rows, spec, message", [
    ([{"text": "a"}, {"text": "b"}], "", r", split 'train': no column 'prompt'; columns found: text\. Name the "
                                         r"prompt column in the task spec: --task 'hf\(path=.*, prompt=COLUMN\)'"),
    ([{"prompt": 1}, {"prompt": 2}], "", r", split 'train', column 'prompt': expected text \(string\) or chat "
                                         r"messages \(a list of \{role, content\}\), got int64"),
    ([{"prompt": "a"}, {"prompt": " "}], "", r", row 1 of split 'train', field 'prompt': empty prompt text"),
    ([{"prompt": "a"}, {"prompt": None}], "", r", row 1 of split 'train', field 'prompt': empty prompt text"),
    ([{"prompt": "a"}, {"prompt": "b"}, {"prompt": "a"}], "",
     r": duplicate prompt text \(with no id column, a prompt's id is a hash of its text\) at row 0 of split "
     r"'train' and row 2 of split 'train'"),
    ([{"id": 1, "prompt": "a"}, {"id": 1, "prompt": "b"}], "",
     r": duplicate prompt id '1' \(field 'id'\) at row 0 of split 'train' and row 1 of split 'train'"),
    ([{"prompt": "a"}, {"prompt": "b"}], "(split=test)", r": cannot load split 'test' \(ValueError: Unknown split"),
    ([{"prompt": "a"}, {"prompt": "b"}], "(id=uid)", r", split 'train': no column 'uid' \(the id column you named\)"),
    ([{"prompt": "a"}, {"prompt": "b"}], "(limit=0)", r": option limit must be a positive integer, got 0"),
    ([{"prompt": "a"}, {"prompt": "b"}], "(format=chat)",
     r", split 'train', column 'prompt': expected chat messages \(a list of \{role, content\}\), got string"),
])
def test_bad_rows_and_columns_name_the_dataset_split_and_row(tmp_path, rows, spec, message):
    folder = write_dataset(tmp_path / "ds", {"train": rows})
    with pytest.raises(PromptError, match=rf"^hf:{folder}{message}"):
        build(f"hf:{folder}{spec}")


def test_a_file_may_name_a_prompt_column_of_chat_messages(tmp_path):
    """``messages=prompt`` means chat; before, a column called ``prompt`` was always read as text."""
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"note {i}"}]}) + "\n"
                            for i in range(4)))
    task = build(f"file:{path}(messages=prompt)")
    assert sorted(p.text for p in task.train_prompts() + task.eval_prompts()) == [f"note {i}" for i in range(4)]


# --- by hub id, offline, in fresh processes ------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    """A hub cache holding acqkit-test/prompts: the rows of tests/data/prompts.jsonl as one Parquet file."""
    cache = tmp_path_factory.mktemp("hf-hub")
    repo = cache / "datasets--acqkit-test--prompts"
    write_dataset(repo / "snapshots" / COMMIT, {"train": rows_of(PROMPTS)})
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


def acqkit(hub: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_CACHE": str(hub),
           "HF_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("HF_DATASETS_CACHE", None)
    return subprocess.run([sys.executable, "-m", "acqkit", *args], env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.integration
def test_a_dataset_by_id_from_the_offline_hub_cache_equals_the_same_prompts_as_a_file(hub, tmp_path):
    by_id = acqkit(hub, tmp_path / "home", "compare", *FLAGS, "--task", "hf:acqkit-test/prompts",
                   "--out", str(tmp_path / "hf"))
    assert by_id.returncode == 0, by_id.stderr
    by_file = acqkit(hub, tmp_path / "home", "compare", *FLAGS, "--task", f"file:{PROMPTS}",
                     "--out", str(tmp_path / "file"))
    assert by_file.returncode == 0, by_file.stderr
    assert 'task = "hf:acqkit-test/prompts"' in (tmp_path / "hf" / "config.toml").read_text()
    labels = sorted((tmp_path / "hf").glob("runs/*/seed-0/labels.jsonl"))
    assert len(labels) == 2 and all(f.stat().st_size > 0 for f in labels)
    for path in [Path("results.csv")] + [f.relative_to(tmp_path / "hf") for f in labels]:
        assert (tmp_path / "hf" / path).read_bytes() == (tmp_path / "file" / path).read_bytes(), path


@pytest.mark.integration
def test_a_dataset_id_not_in_the_offline_cache_is_named_before_anything_is_written(hub, tmp_path):
    out = tmp_path / "cmp"
    result = acqkit(hub, tmp_path / "home", "compare", *FLAGS, "--task", "hf:acqkit-test/missing", "--out", str(out))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert ("hf:acqkit-test/missing: dataset 'acqkit-test/missing' is not in the Hugging Face cache and the hub is "
            "offline (HF_HUB_OFFLINE=1); download it once where the hub is reachable: hf download "
            "acqkit-test/missing --repo-type dataset") in " ".join(result.stderr.split()), result.stderr
    assert not out.exists()
