"""The ``file`` task: your own prompts from a JSONL, CSV or Parquet file, judged by a named oracle.

``--task file:my.jsonl`` is short for ``--task 'file(path=my.jsonl)'``. Options:
``prompt`` (text column; default ``prompt``, else a chat ``messages`` list),
``id`` (default ``id`` when present, else a hash of the prompt), ``split``
(a train/eval column; default ``split`` when present, else the
``eval_fraction`` of prompts with the smallest id hash is held out),
``oracle`` (default ``vader``; a spec with options nests: ``oracle=reward-model(model=M, index=1)``) and ``tau``.
Every other column of a row reaches the oracle as ``Prompt.extras`` (a
``reference`` answer, say), and an oracle that declares ``token_counts`` gets
the responses' token counts too.
The file is read and checked when the task is built, before any model loads.
"""
from __future__ import annotations

from acqkit import hookimpl
from acqkit.round.task import Columns, PromptError, PromptSetTask, read_prompts

DEFAULT_ORACLE = "vader"


class FileTask(PromptSetTask):
    def __init__(self, path=None, prompt: str | None = None, messages: str = "messages", id: str | None = None,
                 split: str | None = None, eval_fraction: float = 0.2, oracle: str = DEFAULT_ORACLE,
                 tau: float = 0.1):
        if path is None:
            raise PromptError("task 'file' needs a prompt file: --task file:PATH or --task 'file(path=PATH)'")
        self.path = str(path)
        self.tau = _number(tau, "tau", self.path)
        fraction = _number(eval_fraction, "eval_fraction", self.path)
        name = lambda v: None if v is None else str(v)  # noqa: E731 (a spec may parse a column name as a number)
        columns = Columns(prompt=name(prompt), messages=str(messages), id=name(id), split=name(split))
        self.prompts = read_prompts(self.path, columns, fraction)
        self.use_oracle(oracle, f"file(path={self.path}")


def _number(value, name: str, path: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PromptError(f"task file(path={path}): option {name} must be a number, got {value!r}") from None


@hookimpl
def acqkit_register_tasks(register):
    register("file", FileTask)
