"""Prompts from JSONL, CSV or Parquet files, with errors that name the file, line and field.

Everything is checked when the file is read, which happens when the task is
built: before a model is loaded and before anything is written to a run
directory, so a bad file costs seconds, not a half-written comparison.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from acqkit.components import Prompt, Task
from acqkit.errors import MissingFileError, PromptError  # noqa: F401 (re-exported)

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
SPLITS = ("train", "eval")




@dataclass(frozen=True)
class Columns:
    """Column names. ``None`` means: use ``id`` / ``split`` when the file has them, else derive."""

    prompt: str | None = None  # None: "prompt", else a chat "messages" list
    messages: str = "messages"
    id: str | None = None
    split: str | None = None


@dataclass(frozen=True)
class Record:
    where: str  # "my.jsonl, line 3" or "my.parquet, row 3"
    fields: dict


@dataclass
class PromptSet:
    train: list[Prompt]
    eval: list[Prompt]
    origin: dict[str, str] = field(default_factory=dict)  # prompt id -> where it was read


def read_prompts(path, columns: Columns = Columns(), eval_fraction: float = 0.2) -> PromptSet:
    """Read, validate and split a prompt file (the format follows the extension)."""
    path = Path(path)
    return prompt_set(read_records(path), columns, eval_fraction, str(path))


def prompt_set(records: list[Record], columns: Columns = Columns(), eval_fraction: float = 0.2,
               path: str = "") -> PromptSet:
    """Validate and split records (a file's lines, a dataset's rows); ``path`` names their source in errors."""
    if not 0 < eval_fraction < 1:
        raise PromptError(f"{path}: eval_fraction must be between 0 and 1 (exclusive), got {eval_fraction}")
    id_col = _optional_column(records[0], columns.id, "id")
    split_col = _optional_column(records[0], columns.split, "split")
    prompts, splits, origin = [], [], {}
    for rec in records:
        messages = _messages(rec, columns)
        pid = _field_id(rec, id_col) if id_col else "p" + _digest(json.dumps(messages, sort_keys=True))[:12]
        if pid in origin:
            what = f"prompt id {pid!r} (field {id_col!r})" if id_col else \
                "prompt text (with no id column, a prompt's id is a hash of its text)"
            raise PromptError(f"{path}: duplicate {what} at {_line(origin[pid])} and {_line(rec.where)}")
        origin[pid] = rec.where
        used = (columns.prompt or "prompt", columns.messages, id_col, split_col)  # the rest: Prompt.extras
        prompts.append(Prompt(pid, messages, {k: v for k, v in rec.fields.items() if k not in used}))
        splits.append(_field_split(rec, split_col) if split_col else None)
    if not split_col:
        splits = _held_out(prompts, eval_fraction, path)
    out = PromptSet([p for p, s in zip(prompts, splits) if s == "train"],
                    [p for p, s in zip(prompts, splits) if s == "eval"], origin)
    for name, chosen in (("train", out.train), ("eval", out.eval)):
        if not chosen:
            raise PromptError(f"{path}: no {name} prompts: every value of column {split_col!r} is "
                              f"{'eval' if name == 'train' else 'train'}; mark some rows {name!r}, or drop the "
                              f"column to hold out eval_fraction={eval_fraction} of the prompts")
    return out


def read_records(path: Path) -> list[Record]:
    """Every non-blank row of the file as a dict, with where it came from."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise PromptError(f"{path}: unknown prompt file type {path.suffix or '(no extension)'!r}; "
                          f"expected one of {', '.join(FORMATS)}")
    if not path.exists():
        raise MissingFileError(f"{path}: no such prompt file")
    if not path.is_file():
        raise PromptError(f"{path}: not a file")
    records = _parquet(path) if fmt == "parquet" else _text_records(path, fmt)
    if not records:
        raise PromptError(f"{path}: the file is empty; expected one prompt per "
                          f"{'row after the header' if fmt in ('csv', 'tsv') else 'line' if fmt == 'jsonl' else 'row'}")
    return records


def _text_records(path: Path, fmt: str) -> list[Record]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise PromptError(f"{path}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at column {col}); "
                          f"save the file as UTF-8") from None
    return _jsonl(path, text) if fmt == "jsonl" else _csv(path, text, "\t" if fmt == "tsv" else ",")


def _jsonl(path: Path, text: str) -> list[Record]:
    out = []
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines(): JSON strings may hold U+2028
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:  # some messages end in "at": "Unterminated string starting at"
            at = f"{exc.msg} column" if exc.msg.endswith(" at") else f"{exc.msg} at column"
            raise PromptError(f"{path}, line {n}: not valid JSON ({at} {exc.colno})") from None
        if not isinstance(obj, dict):
            raise PromptError(f"{path}, line {n}: expected a JSON object such as "
                              f"{{\"prompt\": \"...\"}}, got {type(obj).__name__}")
        out.append(Record(f"{path}, line {n}", obj))
    return out


def _csv(path: Path, text: str, delimiter: str) -> list[Record]:
    # strict: a stray or unclosed quote is an error, not a prompt that swallows the rest of the file
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header, header_line, out, start = None, 0, [], 1
    try:
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header, header_line = [c.strip() for c in row], start
                dupes = sorted({c for c in header if header.count(c) > 1})
                if dupes:
                    raise PromptError(f"{path}, line {start}: the header repeats column(s) {', '.join(dupes)}")
                continue
            if len(row) != len(header):
                raise PromptError(f"{path}, line {start}: {len(row)} fields, but the header (line {header_line}) "
                                  f"has {len(header)}: {', '.join(header)}")
            out.append(Record(f"{path}, line {start}", dict(zip(header, row))))
    except csv.Error as exc:
        raise PromptError(f"{path}, line {start}: cannot read as CSV ({exc})") from None
    return out


def _parquet(path: Path) -> list[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise PromptError(f"{path}: reading Parquet needs pyarrow: pip install 'acqkit[parquet]'") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a file it cannot read
        raise PromptError(f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})") from None
    return [Record(f"{path}, row {i}", r) for i, r in enumerate(rows, 1)]


def _optional_column(first: Record, explicit: str | None, default: str) -> str | None:
    """An explicit column must exist; the default one is used only when the file has it."""
    if explicit is None:
        return default if default in first.fields else None
    if explicit not in first.fields:
        raise PromptError(f"{first.where}: no field {explicit!r} (the {default} column you named); "
                          f"fields found: {_names(first)}")
    return explicit


def _messages(rec: Record, columns: Columns) -> tuple:
    name = columns.prompt or "prompt"
    if name != columns.messages and (name in rec.fields or columns.prompt is not None):  # messages=prompt: chat
        return ({"role": "user", "content": _text(rec, name)},)
    if columns.messages in rec.fields:
        return _chat(rec, columns.messages)
    raise PromptError(f"{rec.where}: no field 'prompt' (or a chat {columns.messages!r} list); fields found: "
                      f"{_names(rec)}. Name the prompt column in the task spec, e.g. file(path=..., prompt=text)")


def _text(rec: Record, name: str) -> str:
    if name not in rec.fields:
        raise PromptError(f"{rec.where}: no field {name!r}; fields found: {_names(rec)}")
    value = rec.fields[name]
    if value is not None and not isinstance(value, str):
        raise PromptError(f"{rec.where}, field {name!r}: expected text, got {_kind(value)}")
    if not (value or "").strip():
        raise PromptError(f"{rec.where}, field {name!r}: empty prompt text")
    return value


def _chat(rec: Record, name: str) -> tuple:
    value = rec.fields[name]
    if not isinstance(value, (list, tuple)) or not value:
        raise PromptError(f"{rec.where}, field {name!r}: expected a non-empty list of "
                          f"{{\"role\": ..., \"content\": ...}} messages, got {_kind(value)}")
    out = []
    for i, m in enumerate(value):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise PromptError(f"{rec.where}, field {name!r}, message {i}: expected "
                              f"{{\"role\": str, \"content\": str}}, got {m!r:.80}")
        out.append({"role": m["role"], "content": m["content"]})
    if not out[-1]["content"].strip():
        raise PromptError(f"{rec.where}, field {name!r}: empty prompt text in the last message")
    return tuple(out)


def _field_id(rec: Record, name: str) -> str:
    if name not in rec.fields:
        raise PromptError(f"{rec.where}: no field {name!r} (earlier rows have ids); fields found: {_names(rec)}")
    value = rec.fields[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PromptError(f"{rec.where}, field {name!r}: expected a string or integer id, got {_kind(value)}")
    if not str(value).strip():
        raise PromptError(f"{rec.where}, field {name!r}: empty prompt id")
    return str(value).strip()


def _field_split(rec: Record, name: str) -> str:
    value = rec.fields.get(name)
    if not isinstance(value, str) or value.strip().lower() not in SPLITS:
        raise PromptError(f"{rec.where}, field {name!r}: expected 'train' or 'eval', got {value!r}")
    return value.strip().lower()


def _held_out(prompts: list[Prompt], fraction: float, path: Path) -> list[str]:
    """The ``fraction`` of prompts with the smallest hash of their id go to eval: stable under reordering."""
    if len(prompts) < 2:
        raise PromptError(f"{path}: {len(prompts)} prompt; need at least 2 (one to train on, one to evaluate)")
    n_eval = min(len(prompts) - 1, max(1, round(fraction * len(prompts))))
    held = set(sorted(range(len(prompts)), key=lambda i: _digest(prompts[i].id))[:n_eval])
    return ["eval" if i in held else "train" for i in range(len(prompts))]


def check_prompt(prompt, where: str) -> None:
    """Any task's prompt, held to what a prompt file's rows are: an id and non-empty chat messages."""
    pid, messages = getattr(prompt, "id", None), getattr(prompt, "messages", None)
    if not isinstance(pid, str) or not pid.strip():
        raise PromptError(f"{where}: expected an acqkit.Prompt with a non-empty string id, got {prompt!r:.80}")
    if not isinstance(messages, (list, tuple)) or not messages:
        raise PromptError(f"{where} ({pid!r}): expected a non-empty list of {{\"role\": ..., \"content\": ...}} "
                          f"messages, got {_kind(messages)}")
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise PromptError(f"{where} ({pid!r}), message {i}: expected {{\"role\": str, \"content\": str}}, "
                              f"got {m!r:.80}")
    if not messages[-1]["content"].strip():
        raise PromptError(f"{where} ({pid!r}): empty prompt text")


def check_lengths(prompts, token_ids, context: int | None, max_new_tokens: int, locate=None) -> None:
    """Every prompt plus ``max_new_tokens`` must fit in the model's context."""
    if not context:
        return
    limit = context - max_new_tokens
    for p, ids in zip(prompts, token_ids):
        if len(ids) > limit:
            where = f"{locate(p.id)}: " if locate and locate(p.id) else ""
            raise PromptError(
                f"{where}prompt {p.id!r} is {len(ids)} tokens with the chat template, over the limit of {limit}: "
                f"the model's context is {context} tokens and max_new_tokens={max_new_tokens} must fit after it")


def context_length(model, tokenizer) -> int | None:
    """The model's context in tokens, if its config or tokenizer says (tokenizers often say 1e30: unknown)."""
    n = getattr(model.config, "max_position_embeddings", None)
    if n:
        return int(n)
    n = getattr(tokenizer, "model_max_length", None)
    return int(n) if n and n < 10**7 else None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _line(where: str) -> str:
    return where.rsplit(", ", 1)[-1]


def _names(rec: Record) -> str:
    return ", ".join(map(str, rec.fields)) or "(none)"


def _kind(value) -> str:
    return "nothing (empty)" if value is None else f"{type(value).__name__} {value!r:.40}"


class PromptSetTask(Task):
    """A task whose prompts are a checked :class:`PromptSet` and whose gold reward is an oracle by name.

    The ``file`` and ``hf`` tasks are this plus a reader; ``spec`` is how the
    task is written on the command line, for the hint when the oracle is unknown.
    """

    token_counts = True  # passed on to an oracle that declares it
    prompts: PromptSet

    def use_oracle(self, oracle, spec: str) -> None:
        from acqkit import build
        from acqkit.errors import UnknownComponent

        try:
            self.oracle = build("oracle", str(oracle))
        except UnknownComponent as exc:
            raise UnknownComponent(f"{exc}. Name the gold oracle in the task spec: "
                                   f"--task '{spec}, oracle=NAME)'") from None

    def train_prompts(self) -> list[Prompt]:
        return list(self.prompts.train)

    def eval_prompts(self) -> list[Prompt]:
        return list(self.prompts.eval)

    def gold_reward(self, prompts, responses, n_tokens=None):
        from acqkit.components import oracle_rewards

        return oracle_rewards(self.oracle, prompts, responses, n_tokens)

    def locate(self, prompt_id: str) -> str | None:
        """Where a prompt was read (``my.jsonl, line 3``; ``hf:ORG/NAME, row 3 of split 'train'``)."""
        return self.prompts.origin.get(prompt_id)
