"""Prompt files (issue #8): every bad file fails with file, line and field, before a run directory exists."""
import json
import re

import pandas as pd
import pytest
from click.testing import CliRunner

from acqkit.cli import cli
from acqkit.round.task import Columns, PromptError, check_lengths, read_prompts

GOOD = [{"prompt": f"Write a short happy note about day {i}."} for i in range(10)]


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def write(tmp_path, name, data):
    path = tmp_path / name
    if isinstance(data, pd.DataFrame):
        data.to_parquet(path, index=False)
    else:
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# (file name, content, task options, what the error must say); {path} is the file.
CASES = {
    "malformed JSONL line": ("p.jsonl", jsonl(GOOD[:2]) + b'{"prompt": "unfinished\n', "",
                             r"{path}, line 3: not valid JSON \(Unterminated string starting at column 12\)"),
    "JSONL line not an object": ("p.jsonl", jsonl(GOOD[:1]) + b'["a list"]\n', "",
                                 r"{path}, line 2: expected a JSON object .*got list"),
    "empty file": ("p.jsonl", b"", "", r"{path}: the file is empty; expected one prompt per line"),
    "blank lines only": ("p.jsonl", b"\n  \n\n", "", r"{path}: the file is empty"),
    "CSV with a header only": ("p.csv", "prompt\n", "", r"{path}: the file is empty; expected one prompt per row"),
    "non-UTF-8 bytes": ("p.jsonl", jsonl(GOOD[:3]) + '{"prompt": "café"}\n'.encode("latin-1"), "",
                        r"{path}, line 4: not UTF-8 text \(byte 0xe9 at column 16\)"),
    "no prompt column": ("p.csv", "uid,body\n1,hello\n", "",
                         r"{path}, line 2: no field 'prompt' \(or a chat 'messages' list\); fields found: uid, body"),
    "named prompt column missing": ("p.jsonl", jsonl(GOOD[:2]), "prompt=text",
                                    r"{path}, line 1: no field 'text'; fields found: prompt"),
    "named id column missing": ("p.jsonl", jsonl(GOOD[:2]), "id=uid",
                                r"{path}, line 1: no field 'uid' \(the id column you named\); fields found: prompt"),
    "id column missing on a later line": ("p.jsonl", jsonl([{"id": "a", "prompt": "x"}, {"prompt": "y"}]), "",
                                          r"{path}, line 2: no field 'id' \(earlier rows have ids\)"),
    "prompt is not text": ("p.jsonl", jsonl([{"prompt": 42}]), "",
                           r"{path}, line 1, field 'prompt': expected text, got int 42"),
    "empty prompt text": ("p.csv", "id,prompt\na,hello\nb,   \n", "",
                          r"{path}, line 3, field 'prompt': empty prompt text"),
    "empty prompt in Parquet": ("p.parquet", pd.DataFrame({"prompt": ["hi", None]}), "",
                                r"{path}, row 2, field 'prompt': empty prompt text"),
    "duplicate ids": ("p.jsonl", jsonl([{"id": "x", "prompt": "a"}, {"id": "y", "prompt": "b"},
                                        {"id": "x", "prompt": "c"}]), "",
                      r"{path}: duplicate prompt id 'x' \(field 'id'\) at line 1 and line 3"),
    "duplicate text without ids": ("p.jsonl", jsonl([{"prompt": "same"}, {"prompt": "other"}, {"prompt": "same"}]),
                                   "", r"{path}: duplicate prompt text .*hash of its text\) at line 1 and line 3"),
    "bad split value": ("p.jsonl", jsonl([{"prompt": "a", "split": "train"}, {"prompt": "b", "split": "test"}]), "",
                        r"{path}, line 2, field 'split': expected 'train' or 'eval', got 'test'"),
    "no eval prompts": ("p.jsonl", jsonl([{**r, "split": "train"} for r in GOOD[:3]]), "",
                        r"{path}: no eval prompts: every value of column 'split' is train"),
    "one prompt only": ("p.jsonl", jsonl(GOOD[:1]), "", r"{path}: 1 prompt; need at least 2"),
    "unreadable Parquet": ("p.parquet", b"PAR1 this is not parquet", "",
                           r"{path}: cannot read as Parquet \(ArrowInvalid: .*\)"),
    "ragged CSV row": ("p.csv", "id,prompt\na,hi\nb,hi,there\n", "",
                       r"{path}, line 3: 3 fields, but the header \(line 1\) has 2: id, prompt"),
    "unclosed CSV quote": ("p.csv", 'id,prompt\na,hi\nb,"open quote\nc,more\n', "",
                           r"{path}, line 3: cannot read as CSV \(unexpected end of data\)"),
    "unknown file type": ("p.txt", "hello\n", "", r"{path}: unknown prompt file type '.txt'; expected one of .jsonl"),
    "bad eval_fraction": ("p.jsonl", jsonl(GOOD), "eval_fraction=1.5",
                          r"{path}: eval_fraction must be between 0 and 1"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_bad_prompt_file_fails_before_anything_is_written(tmp_path, case):
    name, content, options, message = CASES[case]
    path = write(tmp_path, name, content)
    spec = f"file:{path}" + (f"({options})" if options else "")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["compare", "--preset", "smoke", "--task", spec, "--out", str(out), "--quiet"],
                                prog_name="acqkit")
    assert result.exit_code == 1, result.output
    assert re.search(message.format(path=re.escape(str(path))), result.output), result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl: no such prompt file"):
        read_prompts(tmp_path / "nope.jsonl")


def test_jsonl_csv_and_parquet_give_the_same_prompts(tmp_path):
    frame = pd.DataFrame({"uid": [f"u{i}" for i in range(6)], "text": [f"Say something kind, {i}." for i in range(6)],
                          "part": ["train", "train", "eval", "train", "eval", "train"]})
    cols = Columns(prompt="text", id="uid", split="part")
    sets = [read_prompts(write(tmp_path, "p.jsonl", jsonl(frame.to_dict("records"))), cols),
            read_prompts(write(tmp_path, "p.csv", frame.to_csv(index=False)), cols),
            read_prompts(write(tmp_path, "p.parquet", frame), cols)]
    for s in sets:
        assert [p.id for p in s.train] == ["u0", "u1", "u3", "u5"] and [p.id for p in s.eval] == ["u2", "u4"]
        assert s.train[0].messages == ({"role": "user", "content": "Say something kind, 0."},)
    assert sets[1].origin["u2"].endswith("p.csv, line 4") and sets[2].origin["u2"].endswith("p.parquet, row 3")


def test_ids_and_split_without_columns_are_stable_under_reordering(tmp_path):
    rows = [{"prompt": f"Tell me about colour number {i}."} for i in range(20)]
    a = read_prompts(write(tmp_path, "a.jsonl", jsonl(rows)), eval_fraction=0.25)
    b = read_prompts(write(tmp_path, "b.jsonl", jsonl(rows[::-1])), eval_fraction=0.25)
    assert len(a.eval) == 5 and len(a.train) == 15
    assert {p.id for p in a.eval} == {p.id for p in b.eval}
    assert {p.id for p in a.train} == {p.id for p in b.train}
    assert all(p.id.startswith("p") and len(p.id) == 13 for p in a.train)
    assert [p.text for p in a.train] == [r["prompt"] for r in rows if any(r["prompt"] == p.text for p in a.train)]


def test_chat_messages_are_read_when_there_is_no_prompt_column(tmp_path):
    rows = [{"id": i, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Q{i}"}]}
            for i in range(4)]
    s = read_prompts(write(tmp_path, "chat.jsonl", jsonl(rows)))
    prompt = {p.id: p for p in s.train + s.eval}["2"]
    assert prompt.messages[0]["role"] == "system" and prompt.text == "Q2"


def test_the_length_limit_is_the_context_minus_the_response():
    from acqkit import Prompt

    prompts = [Prompt("fits", ()), Prompt("long", ())]
    check_lengths(prompts, [[0] * 496, [0] * 10], context=512, max_new_tokens=16)
    with pytest.raises(PromptError, match=r"where.jsonl, line 9: prompt 'long' is 497 tokens .* limit of 496: "
                                          r"the model's context is 512 tokens and max_new_tokens=16"):
        check_lengths(prompts, [[0] * 10, [0] * 497], 512, 16, locate=lambda pid: "where.jsonl, line 9")
