"""The ``file`` task: your own prompts from a JSONL, CSV or Parquet file, judged by a named oracle.

``--task file:my.jsonl`` is short for ``--task 'file(path=my.jsonl)'``. Options:
``prompt`` (text column; default ``prompt``, else a chat ``messages`` list),
``id`` (default ``id`` when present, else a hash of the prompt), ``split``
(a train/eval column; default ``split`` when present, else the
``eval_fraction`` of prompts with the smallest id hash is held out),
``oracle`` (default ``vader``, the only built-in one) and ``tau``.
Every other column of a row reaches the oracle as ``Prompt.extras`` (a
``reference`` answer, say), and an oracle that declares ``token_counts`` gets
the responses' token counts too.
The file is read and checked when the task is built, before any model loads.
"""
from __future__ import annotations

import numpy as np

from acqkit import Prompt, Task, build, hookimpl, oracle_rewards
from acqkit.plugins import UnknownComponent
from acqkit.round.task import Columns, PromptError, read_prompts

DEFAULT_ORACLE = "vader"


class FileTask(Task):
    token_counts = True  # passed on to an oracle that declares it

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
        try:
            self.oracle = build("oracle", str(oracle))
        except UnknownComponent as exc:
            raise UnknownComponent(f"{exc}. Name the gold oracle in the task spec: "
                                   f"--task 'file(path={self.path}, oracle=NAME)'") from None

    def train_prompts(self) -> list[Prompt]:
        return list(self.prompts.train)

    def eval_prompts(self) -> list[Prompt]:
        return list(self.prompts.eval)

    def gold_reward(self, prompts, responses, n_tokens=None) -> np.ndarray:
        return oracle_rewards(self.oracle, prompts, responses, n_tokens)

    def locate(self, prompt_id: str) -> str | None:
        """Where a prompt was read (``my.jsonl, line 3``), for errors found later (prompt too long)."""
        return self.prompts.origin.get(prompt_id)


def _number(value, name: str, path: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PromptError(f"task file(path={path}): option {name} must be a number, got {value!r}") from None


@hookimpl
def acqkit_register_tasks(register):
    register("file", FileTask)
