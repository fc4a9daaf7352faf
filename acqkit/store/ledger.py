"""The label ledger: every paid label on disk the moment it arrives, and never bought twice.

A ledger is one SQLite file in WAL mode with ``synchronous=FULL``: each label is
its own committed transaction, so a crash (even SIGKILL or a power cut) loses
at most the label being written. Labels are keyed by a sha256 of the labeler's
identity (name + canonical config), the prompt text and the two response
texts. The two texts are sorted before hashing, so ``(a, b)`` and ``(b, a)``
share one key: the stored row keeps the order it was asked in and ``p`` is
flipped when the pair comes back the other way round.

``ask_once`` is how the loop uses it: look every pair up, ask the labeler only
about the misses (each distinct pair once), store the answers, and return
labels for all pairs with ``cost = 0`` on hits. A ledger shared by several
processes is asked through :meth:`Ledger.exclusive`, an OS lock on
``PATH.lock`` held from the lookup to the commit, so two processes never both
miss, and both pay for, the same pair.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from acqkit.components import Labeler, declared
from acqkit.errors import LedgerError  # noqa: F401 (re-exported)
from acqkit.plugins import parse_spec
from acqkit.store.lock import FileLock

APPLICATION_ID = 0x61716B6C  # "aqkl": marks a SQLite file as an acqkit ledger
SCHEMA_VERSION = 2  # 2 added usd and meta (a version-1 ledger is migrated when opened)
LEDGER_FILE = "ledger.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    key      TEXT PRIMARY KEY,  -- sha256(labeler, config, prompt, sorted response texts)
    labeler  TEXT NOT NULL,
    config   TEXT NOT NULL,     -- canonical JSON of the options that change a label
    prompt   TEXT NOT NULL,     -- the prompt text that went into the key
    messages TEXT NOT NULL,     -- the prompt as JSON chat messages
    text_a   TEXT NOT NULL,
    text_b   TEXT NOT NULL,
    p        REAL NOT NULL CHECK (p >= 0 AND p <= 1),  -- probability that text_a is preferred
    source   TEXT NOT NULL,
    cost     INTEGER NOT NULL,
    round    INTEGER,
    created  REAL NOT NULL,     -- unix time
    usd      REAL NOT NULL DEFAULT 0 CHECK (usd >= 0),  -- money paid for this label (the judge: tokens x price)
    meta     TEXT NOT NULL DEFAULT '{}'                 -- JSON: what a labeler reports beside p (tokens, consistency)
)
"""
# Version 1 -> 2: the two columns the judge labeler needed; old rows read as usd 0 and meta {}.
_MIGRATIONS = {1: ("ALTER TABLE labels ADD COLUMN usd REAL NOT NULL DEFAULT 0 CHECK (usd >= 0)",
                   "ALTER TABLE labels ADD COLUMN meta TEXT NOT NULL DEFAULT '{}'")}
_COLUMNS = ("key", "labeler", "config", "prompt", "messages", "text_a", "text_b", "p", "source", "cost",
            "round", "created", "usd", "meta")
_SELECT = ", ".join(_COLUMNS)


@dataclass(frozen=True)
class Record:
    key: str
    labeler: str
    config: str
    prompt: str
    messages: list
    text_a: str
    text_b: str
    p: float
    source: str
    cost: int
    round: int | None = None
    created: float = 0.0
    usd: float = 0.0
    meta: dict | None = None  # JSON-able; stored as {} when None

    def p_for(self, text_a: str) -> float:
        """``p`` for the pair asked with ``text_a`` first (flipped if stored the other way)."""
        return self.p if text_a == self.text_a else 1.0 - self.p


def canonical_config(options: dict) -> str:
    return json.dumps(options, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def labeler_identity(labeler, spec: str) -> tuple[str, str]:
    """``(name, canonical config)`` of a labeler, the first part of every ledger key.

    A labeler may set ``ledger_identity = (name, options)`` to leave out options
    that do not change its answers (a port, a batch size) or to share labels
    between labelers that give the same answers (the human ones); otherwise the
    name and options of its spec are used.
    """
    ident = declared(labeler, Labeler, "ledger_identity")
    name, options = ident if ident is not None else parse_spec(spec)
    return str(name), canonical_config(dict(options))


def prompt_text(messages) -> str:
    """The prompt as text: the content of a lone user message, else the messages as canonical JSON."""
    messages = list(messages)
    if len(messages) == 1 and messages[0].get("role") == "user":
        return str(messages[0]["content"])
    return json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def pair_key(labeler: str, config: str, prompt: str, text_a: str, text_b: str) -> str:
    first, second = sorted((text_a, text_b))
    payload = json.dumps([labeler, config, prompt, first, second], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def ledger_path(configured: str, run_dir) -> Path | None:
    """The configured ledger, else ``<run_dir>/ledger.sqlite``, else None (in memory)."""
    if configured:
        return Path(configured)
    return Path(run_dir) / LEDGER_FILE if run_dir else None


class Ledger:
    """An append-only store of labels. ``path=None`` keeps it in memory (no durability)."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None
        self.name = str(self.path) if self.path else ":memory:"
        self._lock = threading.Lock()  # the web labeler answers from server threads
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.name, timeout=30, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open label ledger {self.name}: {exc}") from exc
        try:
            self._prepare()
        except LedgerError:
            self._db.close()
            raise
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise LedgerError(f"label ledger {self.name} is corrupted or not an SQLite database ({exc}); "
                              "move it aside (its labels cannot be read) or restore a copy") from exc

    def _prepare(self) -> None:
        db = self._db
        app_id, tables = self._kind()
        if app_id == 0 and not tables:  # new: create it in one write transaction, so it is a ledger or empty
            db.execute("BEGIN IMMEDIATE")  # and another process creating it at the same moment waits
            try:
                app_id, tables = self._kind()  # it may have won the race
                if app_id == 0 and not tables:
                    db.execute(_SCHEMA)
                    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    app_id, tables = APPLICATION_ID, {"labels"}
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        if app_id != APPLICATION_ID:
            raise LedgerError(f"{self.name} is an SQLite database but not an acqkit label ledger")
        if self.path:
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {check}")
        self._migrate()
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise LedgerError(f"label ledger {self.name} has schema version {version}; this acqkit reads "
                              f"version {SCHEMA_VERSION}")

    def _migrate(self) -> None:
        """Bring an older ledger to this version in one write transaction (all steps or none)."""
        db = self._db
        if db.execute("PRAGMA user_version").fetchone()[0] not in _MIGRATIONS:
            return
        db.execute("BEGIN IMMEDIATE")  # another process migrating at the same moment waits, then finds it done
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            while version in _MIGRATIONS:
                for sql in _MIGRATIONS[version]:
                    db.execute(sql)
                version += 1
                db.execute(f"PRAGMA user_version = {version}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _kind(self) -> tuple[int, set]:
        app_id = self._db.execute("PRAGMA application_id").fetchone()[0]
        return app_id, {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    @contextlib.contextmanager
    def exclusive(self, on_wait=None):
        """Hold the inter-process lock ``PATH.lock`` (a no-op in memory): one process asks at a time.

        The lock is an OS ``flock``, dropped when its holder dies; ``on_wait(pid)``
        is called when another process (that PID) holds it and this one waits.
        """
        if self.path is None:
            yield self
            return
        lock = FileLock(self.path.with_name(self.path.name + ".lock"))
        try:
            lock.acquire(wait=True, on_wait=on_wait)
        except OSError as exc:
            raise LedgerError(f"label ledger {self.name}: cannot take its lock file {lock.path} "
                              f"({exc.strerror})") from exc
        try:
            yield self
        finally:
            lock.release()

    def get(self, key: str) -> Record | None:
        with self._lock:
            row = self._query(f"SELECT {_SELECT} FROM labels WHERE key = ?", (key,)).fetchone()
        return _record(row) if row else None

    def put(self, rec: Record) -> bool:
        """Store ``rec`` durably unless its key is known (the first label wins). True if stored."""
        return self.put_many([rec]) == 1

    def put_many(self, recs) -> int:
        """Store ``recs`` in one durable transaction: a kill keeps all of them or none. Returns how many were new.

        All-or-nothing matters on resume: a labeler asked again gets the very
        batch it was asked before, so a seeded labeler gives the same answers.
        """
        rows = [_values(rec) for rec in recs]
        if not rows:
            return 0
        sql = f"INSERT OR IGNORE INTO labels ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        with self._lock:
            before = self._db.total_changes
            self._query("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    self._query(sql, row)
                self._query("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            return self._db.total_changes - before

    def records(self) -> Iterator[Record]:
        with self._lock:
            rows = self._query(f"SELECT {_SELECT} FROM labels ORDER BY created, rowid").fetchall()
        return (_record(r) for r in rows)

    def __len__(self) -> int:
        with self._lock:
            return self._query("SELECT COUNT(*) FROM labels").fetchone()[0]

    def _query(self, sql: str, params=()):
        try:
            return self._db.execute(sql, params)  # autocommit: each INSERT is its own durable transaction
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"label ledger {self.name}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _values(rec: Record) -> tuple:
    if not 0.0 <= rec.p <= 1.0 or not np.isfinite(rec.p):
        raise ValueError(f"a label's p must be in [0, 1], got {rec.p!r}")
    if not np.isfinite(rec.usd) or rec.usd < 0:
        raise ValueError(f"a label's usd must be a finite number >= 0, got {rec.usd!r}")
    return (rec.key, rec.labeler, rec.config, rec.prompt, json.dumps(list(rec.messages), ensure_ascii=False),
            rec.text_a, rec.text_b, float(rec.p), rec.source, int(rec.cost),
            None if rec.round is None else int(rec.round), rec.created or time.time(), float(rec.usd),
            json.dumps(rec.meta or {}, sort_keys=True, ensure_ascii=False, allow_nan=False))


def _record(row) -> Record:
    values = dict(zip(_COLUMNS, row))
    values["messages"] = json.loads(values["messages"])
    values["meta"] = json.loads(values["meta"])
    return Record(**values)


class RoundLedger:
    """The ledger as a labeler sees it during one round: pairs addressed by response ids.

    A labeler finds it in ``context.extras["ledger"]`` and may call ``put`` as
    each answer arrives (the human labelers do), so a crash mid-round keeps
    every answer given so far; labels it only returns are stored by the loop.
    """

    def __init__(self, ledger: Ledger, identity: tuple[str, str], table: pd.DataFrame, prompts, round: int,
                 owned: bool = True):
        self.ledger = ledger
        # A run's own ledger: a label stored for this very round was paid by this run (before a
        # crash), so it still counts as spent; labels from other rounds or imports cost nothing.
        self.owned = owned
        self.labeler, self.config = identity
        rows = table.set_index("response_id")
        self._text = rows["text"]
        self._prompt_of = rows["prompt_id"]
        self._prompts = {p.id: p for p in prompts}
        self.round = round

    def text(self, response_id: int) -> str:
        return str(self._text.loc[response_id])

    def key(self, a: int, b: int) -> str:
        prompt = prompt_text(self._messages(a))
        return pair_key(self.labeler, self.config, prompt, self.text(a), self.text(b))

    def lookup(self, a: int, b: int) -> Record | None:
        return self.ledger.get(self.key(a, b))

    def p(self, a: int, b: int) -> float | None:
        """The stored preference for ``a`` over ``b``, or None if the pair is unknown."""
        rec = self.lookup(a, b)
        return None if rec is None else rec.p_for(self.text(a))

    def put(self, a: int, b: int, p: float, source: str, cost: int = 1, usd: float = 0.0,
            meta: dict | None = None) -> bool:
        """Store the label for ``a`` over ``b`` now (durable on return); False if already known.

        ``usd`` is the money the label cost; ``meta`` (JSON) what the labeler reports beside it.
        """
        return self.ledger.put(self.record(a, b, p, source, cost, usd, meta))

    def record(self, a: int, b: int, p: float, source: str, cost: int = 1, usd: float = 0.0,
               meta: dict | None = None) -> Record:
        messages = list(self._messages(a))
        return Record(key=self.key(a, b), labeler=self.labeler, config=self.config, prompt=prompt_text(messages),
                      messages=messages, text_a=self.text(a), text_b=self.text(b), p=float(p),
                      source=str(source), cost=int(cost), round=self.round, usd=float(usd), meta=meta)

    def _messages(self, response_id: int):
        return self._prompts[self._prompt_of.loc[response_id]].messages
