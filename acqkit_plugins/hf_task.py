"""The ``hf`` task: prompts from a Hugging Face dataset, judged by a named oracle.

``--task hf:ORG/NAME`` is short for ``--task 'hf(path=ORG/NAME)'``. The rows go
through the same checks, ids and hash split as a ``file:`` prompt file
(``acqkit.round.task.prompt_set``), so a dataset and the same rows as JSONL
give the same prompts, ids and splits. Only the prompt, id and extras columns
are read from the memory-mapped Arrow table; the other columns (responses,
scores a run never uses) stay on disk.

Offline (``HF_HUB_OFFLINE=1``) a dataset loads from the ``datasets`` cache of an
earlier ``load_dataset``, or else from the hub cache that ``hf download ORG/NAME
--repo-type dataset`` fills.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from acqkit import hookimpl
from acqkit.round.task import Columns, PromptError, PromptSetTask, Record, prompt_set

DEFAULT_ORACLE = "vader"
FORMATS = ("auto", "text", "chat", "hh")
_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]*")
_ROLES = {"Human": "user", "Assistant": "assistant"}


@dataclass(frozen=True)
class Source:
    """Which rows to read: a dataset (hub id or local directory), its config, a split, a row limit."""

    path: str
    config: str | None = None
    limit: int | None = None

    def name(self) -> str:
        return f"hf:{self.path}" + (f" (config {self.config})" if self.config else "")


class HFTask(PromptSetTask):
    def __init__(self, path=None, split: str = "train", prompt: str = "prompt", config: str | None = None,
                 eval_split: str | None = None, id: str | None = None, eval_fraction: float = 0.2,
                 limit: int | None = None, format: str = "auto", extras="scalar", oracle: str = DEFAULT_ORACLE,
                 tau: float = 0.1):
        if path is None:
            raise PromptError("task 'hf' needs a dataset: --task hf:ORG/NAME or --task 'hf(path=ORG/NAME, "
                              "split=train, prompt=COLUMN)'")
        name = lambda v: None if v is None else str(v)  # noqa: E731 (a spec may parse a name as a number)
        source = Source(str(path), name(config))
        self.source = Source(source.path, source.config, _limit(limit, source))
        self.tau = _number(tau, "tau", self.source)
        if format not in FORMATS:
            raise PromptError(f"{self.source.name()}: format must be one of {', '.join(FORMATS)}, got {format!r}")
        self.use_oracle(oracle, f"hf(path={self.source.path}")  # before the dataset: a misspelt oracle costs no load
        splits = {"train": str(split)} if eval_split is None else {"train": str(split), "eval": str(eval_split)}
        self.prompts = read_dataset(self.source, splits, str(prompt), name(id), format, extras,
                                    _number(eval_fraction, "eval_fraction", self.source))


def read_dataset(source: Source, splits: dict[str, str], prompt: str, id: str | None, format: str, extras,
                 eval_fraction: float):
    """Every named split's rows as checked prompts; with one split, ``eval_fraction`` is held out by id hash."""
    records, kinds = [], set()
    for role, split in splits.items():
        table = load_split(source, split)
        kind = _prompt_kind(table, prompt, format, source, split)
        kinds.add(kind)
        id_col = id if id is not None else ("id" if "id" in table.column_names and prompt != "id" else None)
        if id_col is not None and id_col not in table.column_names:
            raise PromptError(f"{source.name()}, split {split!r}: no column {id_col!r} (the id column you named); "
                              f"columns found: {', '.join(table.column_names)}")
        # "split" never rides along: in a prompt file it would be the train/eval column
        ride = _extras_columns(table, extras, {prompt, id_col, "split", "messages"}, source, split)
        rows = table.select(list(dict.fromkeys([prompt] + ([id_col] if id_col else []) + ride))).to_pylist()
        for i, row in enumerate(rows):  # the other fields of a record become Prompt.extras
            where = f"{source.name()}, row {i} of split {split!r}"
            row[prompt] = _convert(row[prompt], kind, where, prompt)
            records.append(Record(where, {**row, "split": role} if len(splits) > 1 else row))
    if len(kinds) > 1:
        raise PromptError(f"{source.name()}: column {prompt!r} holds {' in one split and '.join(sorted(kinds))} in "
                          f"the other; name the format in the task spec: format=text, chat or hh")
    text = kind == "text"  # chat and hh rows now hold message lists
    columns = Columns(prompt=prompt if text else None, messages="messages" if text else prompt, id=id,
                      split="split" if len(splits) > 1 else None)
    return prompt_set(records, columns, eval_fraction, source.name())


def load_split(source: Source, split: str):
    """One split as a memory-mapped Arrow table (``datasets``), cut to ``source.limit`` rows before any is read."""
    try:
        import datasets
    except ImportError:
        raise PromptError(f"{source.name()}: the hf task needs the datasets library: "
                          f"pip install 'acqkit[datasets]'") from None
    try:
        ds = datasets.load_dataset(source.path, source.config, split=split)
    except ConnectionError as exc:  # offline and not in the datasets cache: try the hub cache
        ds = _from_hub_cache(datasets, source, split, exc)
    except Exception as exc:  # datasets raises ValueError, FileNotFoundError, DatasetNotFoundError, ...
        raise _load_error(source, split, exc) from None
    if len(ds) == 0:
        raise PromptError(f"{source.name()}, split {split!r}: the split has no rows")
    if source.limit is not None:
        ds = ds.select(range(min(source.limit, len(ds))))
    return ds.with_format("arrow")[:]  # zero-copy slices of the memory map; rows become Python objects later


def _from_hub_cache(datasets, source: Source, split: str, first: Exception):
    """The files ``hf download`` (or an earlier online load) left in the hub cache, read without the network."""
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(source.path, repo_type="dataset", local_files_only=True)
    except Exception:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or \
            os.environ.get("HF_DATASETS_OFFLINE", "") not in ("", "0")
        state = "the hub is offline (HF_HUB_OFFLINE=1)" if offline else f"the hub cannot be reached ({first})"
        raise PromptError(f"{source.name()}: dataset {source.path!r} is not in the Hugging Face cache and {state}; "
                          f"download it once where the hub is reachable: hf download {source.path} "
                          f"--repo-type dataset") from None
    try:
        return datasets.load_dataset(folder, source.config, split=split)
    except Exception as exc:
        raise _load_error(source, split, exc) from None


def _load_error(source: Source, split: str, exc: Exception) -> PromptError:
    text = str(exc).replace("\n", " ")
    return PromptError(f"{source.name()}: cannot load split {split!r} ({type(exc).__name__}: {text})")


def _prompt_kind(table, prompt: str, format: str, source: Source, split: str) -> str:
    """``text``, ``chat`` or ``hh`` (Anthropic HH-RLHF conversation strings), from the column's Arrow type."""
    import pyarrow as pa

    where = f"{source.name()}, split {split!r}"
    if prompt not in table.column_names:
        raise PromptError(f"{where}: no column {prompt!r}; columns found: {', '.join(table.column_names)}. "
                          f"Name the prompt column in the task spec: --task 'hf(path={source.path}, prompt=COLUMN)'")
    t = table.schema.field(prompt).type
    is_text = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
    is_chat = (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_struct(t.value_type) and \
        {"role", "content"} <= {f.name for f in t.value_type}
    if format == "chat" or (format == "auto" and is_chat):
        if not is_chat:
            raise PromptError(f"{where}, column {prompt!r}: expected chat messages (a list of {{role, content}}), "
                              f"got {t}")
        return "chat"
    if not is_text:
        raise PromptError(f"{where}, column {prompt!r}: expected text (string) or chat messages (a list of "
                          f"{{role, content}}), got {t}")
    if format == "auto":
        first = next((v for v in table.column(prompt).slice(0, 1).to_pylist() if v), "")
        return "hh" if first.lstrip().startswith("Human:") else "text"
    return format


def _convert(value, kind: str, where: str, column: str):
    """The row's prompt: text as it is; a conversation up to and including its last user turn."""
    if kind == "text" or value is None:
        return value
    messages = hh_messages(value, f"{where}, field {column!r}") if kind == "hh" else value
    users = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise PromptError(f"{where}, field {column!r}: no user message in the conversation")
    return messages[: users[-1] + 1]


def hh_messages(text: str, where: str) -> list[dict]:
    """``"\\n\\nHuman: hi\\n\\nAssistant: hello"`` (Anthropic HH-RLHF) as chat messages."""
    parts = _TURN.split(text.lstrip("\n"))
    if parts[0].strip() or len(parts) < 3:
        raise PromptError(f"{where}: expected a conversation of \"\\n\\nHuman: ...\" and \"\\n\\nAssistant: ...\" "
                          f"turns, got {text!r:.60}")
    return [{"role": _ROLES[r], "content": c.strip()} for r, c in zip(parts[1::2], parts[2::2])]


def _extras_columns(table, extras, used: set, source: Source, split: str) -> list[str]:
    """Columns that ride along as ``Prompt.extras``: by default the other scalar ones (text, numbers, flags)."""
    import pyarrow as pa

    if extras is None or extras == "none":
        return []
    if extras == "scalar":
        return [f.name for f in table.schema if f.name not in used and not pa.types.is_nested(f.type)]
    named = [str(c) for c in (extras if isinstance(extras, list) else [extras])]
    missing = [c for c in named if c not in table.column_names]
    if missing:
        raise PromptError(f"{source.name()}, split {split!r}: no column {missing[0]!r} (named in extras); "
                          f"columns found: {', '.join(table.column_names)}")
    return [c for c in named if c not in used]


def _limit(value, source: Source) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PromptError(f"{source.name()}: option limit must be a positive integer, got {value!r}")
    return value


def _number(value, name: str, source: Source) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PromptError(f"{source.name()}: option {name} must be a number, got {value!r}") from None


@hookimpl
def acqkit_register_tasks(register):
    register("hf", HFTask)
