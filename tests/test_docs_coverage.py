"""Every hook and every built-in component has a documentation entry (datasette's trick: cheap, and docs stay true).

The convention, so an entry is easy to add and hard to fake:
- a hook is documented when docs/plugins.md shows its call with the spec's own
  argument names, in backticks: `acqkit_round_end(run, round, metrics)`; a
  hook that grows an argument fails here until its docs say so;
- a built-in component is documented when its name, in backticks, is in a
  heading or in the first cell of a table row of its kind's page (DOCS).
"""
import inspect
import re
from pathlib import Path

import pytest

from acqkit import hookspecs
from acqkit.plugins import KINDS, registry

ROOT = Path(__file__).resolve().parents[1]
DOCS = {"strategy": "strategies.md", "labeler": "labelers.md", "refiner": "labelers.md", "task": "tasks.md",
        "oracle": "tasks.md", "sampler": "plugins.md", "tracker": "reporting.md"}
HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("acqkit_")]


def entries(page: str) -> set[str]:
    """Backticked names in the headings and in the first cell of the table rows of docs/PAGE."""
    found = set()
    for line in (ROOT / "docs" / page).read_text().splitlines():
        if line.startswith("#"):
            found |= set(re.findall(r"`([^`]+)`", line))
        elif line.startswith("|"):
            found |= set(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return found


def builtins() -> list[tuple[str, str]]:
    reg = registry()
    return [(kind, name) for kind in KINDS for name in reg.names(kind)
            if reg.get(kind, name).package == "acqkit"]


def test_the_convention_sees_what_it_should():
    assert len(HOOKS) >= 7 and len(builtins()) >= 25
    assert "gold" in entries("labelers.md") and "alias" not in entries("strategies.md")


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_arguments(hook):
    args = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert f"`{hook}({args})`" in (ROOT / "docs" / "plugins.md").read_text(), \
        f"docs/plugins.md: add `{hook}({args})` (the hooks table)"


@pytest.mark.parametrize("kind, name", builtins())
def test_every_builtin_component_is_documented(kind, name):
    assert name in entries(DOCS[kind]), \
        f"docs/{DOCS[kind]}: add `{name}` to a heading or a table's first column ({kind})"
