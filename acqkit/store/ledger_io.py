"""Move labels between a ledger and the JSONL layouts of TRL's DPO datasets.

Two layouts, one record per line:

* plain: ``{"prompt": str, "chosen": str, "rejected": str}``
* conversational: ``{"prompt": [messages], "chosen": [{"role": "assistant", "content": str}],
  "rejected": [{"role": "assistant", "content": str}]}``

A soft label (``p`` neither 0 nor 1) is exported with ``"p_chosen"``, the
probability that ``chosen`` is preferred (always > 0.5 after orientation);
ties (``p = 0.5``) say nothing about which is chosen and are skipped. Import
reads both layouts (one file may mix them) and ``p_chosen`` when present.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from acqkit.errors import LedgerError
from acqkit.store.ledger import Ledger, Record, canonical_config, pair_key, prompt_text
from acqkit.plugins import parse_spec

FORMATS = ("plain", "conversational")
SOFT_FIELD = "p_chosen"


@dataclass(frozen=True)
class Counts:
    written: int
    skipped: int  # export: ties; import: pairs the ledger already had


def to_trl(rec: Record, fmt: str) -> dict | None:
    """One ledger record as a TRL DPO row (None for a tie)."""
    if rec.p == 0.5:
        return None
    a_wins = rec.p > 0.5
    chosen, rejected = (rec.text_a, rec.text_b) if a_wins else (rec.text_b, rec.text_a)
    p_chosen = rec.p if a_wins else 1.0 - rec.p
    if fmt == "plain":
        row = {"prompt": rec.prompt, "chosen": chosen, "rejected": rejected}
    elif fmt == "conversational":
        row = {"prompt": list(rec.messages), "chosen": [{"role": "assistant", "content": chosen}],
               "rejected": [{"role": "assistant", "content": rejected}]}
    else:
        raise LedgerError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if p_chosen != 1.0:
        row[SOFT_FIELD] = p_chosen
    return row


def export_jsonl(ledger: Ledger, out: str | Path, fmt: str = "plain") -> Counts:
    """Write every non-tie label; the file appears whole or not at all."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    written = ties = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in ledger.records():
            row = to_trl(rec, fmt)
            if row is None:
                ties += 1
                continue
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    return Counts(written, ties)


def from_trl(row: dict, where: str) -> tuple[list, str, str, float]:
    """``(messages, chosen, rejected, p_chosen)`` from a TRL DPO row, with errors naming ``where``."""
    missing = [k for k in ("prompt", "chosen", "rejected") if k not in row]
    if missing:
        raise LedgerError(f"{where}: missing field(s) {missing}; expected prompt, chosen and rejected "
                         "(TRL's DPO layout with an explicit prompt)")
    prompt = row["prompt"]
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list) and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in prompt):
        messages = [{"role": m["role"], "content": m["content"]} for m in prompt]
    else:
        raise LedgerError(f"{where}: prompt must be a string or a list of {{role, content}} messages")
    texts = [_response(row[k], k, where) for k in ("chosen", "rejected")]
    p = row.get(SOFT_FIELD, 1.0)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise LedgerError(f"{where}: {SOFT_FIELD} must be a number in [0, 1], got {p!r}")
    return messages, texts[0], texts[1], float(p)


def _response(value, field: str, where: str) -> str:
    if isinstance(value, str):
        return value
    if (isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict)
            and value[0].get("role") == "assistant" and isinstance(value[0].get("content"), str)):
        return value[0]["content"]
    raise LedgerError(f"{where}: {field} must be a string or a list with one assistant message")


def import_jsonl(src: str | Path, ledger: Ledger, labeler: str) -> Counts:
    """Add every row of ``src`` as a label by ``labeler`` (a spec: name or name(options)).

    Labels already in the ledger win, in either order; imported labels cost 0
    when reused, as they were paid for elsewhere.
    """
    name, options = parse_spec(labeler)
    config = canonical_config(options)
    src = Path(src)
    written = known = 0
    with open(src, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{src}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LedgerError(f"{where}: not JSON ({exc})") from exc
            if not isinstance(row, dict):
                raise LedgerError(f"{where}: expected a JSON object")
            messages, chosen, rejected, p = from_trl(row, where)
            prompt = prompt_text(messages)
            rec = Record(key=pair_key(name, config, prompt, chosen, rejected), labeler=name, config=config,
                         prompt=prompt, messages=messages, text_a=chosen, text_b=rejected, p=p,
                         source="import", cost=0)
            if ledger.put(rec):
                written += 1
            else:
                known += 1
    return Counts(written, known)
