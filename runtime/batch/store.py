"""Files, batches and their lines, kept in SQLite (standard library, WAL) in the data directory.

The lines table is the truth about a batch: a line is `pending` until its answer is
committed, in one transaction, as `done` (for the output file) or `failed` (for the error
file). Nothing else records progress, so a restart after a SIGTERM or a crash finds every
line whose answer was not committed still pending and runs it again, and the output and
error files are assembled from the committed rows (each line at most once, in input
order) in the same transaction that finishes the batch.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hearth.runtime.errors import InvalidRequest, NotFound

BatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]
# What the runner still has to work on, in the order it takes them up.
ACTIVE: tuple[BatchStatus, ...] = ("validating", "in_progress", "finalizing", "cancelling")
LineState = Literal["pending", "done", "failed"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    content BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lines (
    batch_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    custom_id TEXT,
    body TEXT,
    state TEXT NOT NULL,
    result TEXT,
    input_tokens INTEGER,
    cached_tokens INTEGER,
    output_tokens INTEGER,
    reasoning_tokens INTEGER,
    PRIMARY KEY (batch_id, idx)
);
CREATE INDEX IF NOT EXISTS lines_by_state ON lines (batch_id, state);
"""
# A line's token counts, for the batch's usage. Stores made before they were counted get
# the columns added (empty, so their lines count as 0).
USAGE_COLUMNS = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


@dataclass(frozen=True)
class StoredFile:
    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int


@dataclass
class BatchRecord:
    """A batch as OpenAI describes it, less request_counts (counted from its lines)."""

    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    created_at: int
    expires_at: int
    status: BatchStatus = "validating"
    metadata: dict[str, str] | None = None
    model: str | None = None  # the model its lines name (the first line's, if they differ)
    errors: list[dict[str, object]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> BatchRecord:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class RequestCounts:
    total: int
    completed: int
    failed: int


@dataclass(frozen=True)
class TokenUsage:
    """Tokens one line used, or a batch's lines together (OpenAI's Batch `usage`)."""

    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class PendingLine:
    index: int
    custom_id: str
    body: dict


@dataclass(frozen=True)
class NewLine:
    """An input line, checked: its request, or the error it goes to the error file with."""

    custom_id: str | None
    body: dict | None = None
    result: str | None = None  # the error file's line, for a line that cannot run


class BatchStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the event loop and worker threads, one user at a time.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL loses nothing to a process crash, only to a power cut.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            known = {row[1] for row in self._db.execute("PRAGMA table_info(lines)")}
            for column in USAGE_COLUMNS:
                if column not in known:
                    self._db.execute(f"ALTER TABLE lines ADD COLUMN {column} INTEGER")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ---- files --------------------------------------------------------------------------

    def add_file(self, filename: str, purpose: str, content: bytes) -> StoredFile:
        with self._transaction() as db:
            return _insert_file(db, filename, purpose, content)

    def file(self, file_id: str, param: str = "file_id") -> StoredFile:
        rows = self._query(
            "SELECT id, filename, purpose, bytes, created_at FROM files WHERE id = ?", (file_id,)
        )
        if not rows:
            raise NotFound(f"No such File object: {file_id}", param=param)
        return StoredFile(*rows[0])

    def content(self, file_id: str) -> bytes:
        rows = self._query("SELECT content FROM files WHERE id = ?", (file_id,))
        if not rows:
            raise NotFound(f"No such File object: {file_id}", param="file_id")
        return bytes(rows[0][0])

    def files(
        self, *, purpose: str | None, after: str | None, limit: int, ascending: bool
    ) -> tuple[list[StoredFile], bool]:
        """A page of files, newest first unless `ascending`, and whether more follow."""
        where, args = ["1 = 1"], []
        if purpose:
            where.append("purpose = ?")
            args.append(purpose)
        if after:
            where.append(f"seq {'>' if ascending else '<'} ?")
            args.append(self._seq("files", after, "after"))
        rows = self._query(
            "SELECT id, filename, purpose, bytes, created_at FROM files WHERE "
            + " AND ".join(where)
            + f" ORDER BY seq {'ASC' if ascending else 'DESC'} LIMIT ?",
            (*args, limit + 1),
        )
        return [StoredFile(*row) for row in rows[:limit]], len(rows) > limit

    def delete_file(self, file_id: str) -> None:
        self.file(file_id)
        with self._transaction() as db:
            db.execute("DELETE FROM files WHERE id = ?", (file_id,))

    def _seq(self, table: str, object_id: str, param: str) -> int:
        rows = self._query(f"SELECT seq FROM {table} WHERE id = ?", (object_id,))
        if not rows:
            raise InvalidRequest(f"No object with id '{object_id}' to list after.", param=param)
        return rows[0][0]

    # ---- batches ------------------------------------------------------------------------

    def add_batch(self, record: BatchRecord) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO batches (id, record) VALUES (?, ?)", (record.id, record.to_json())
            )

    def batch(self, batch_id: str) -> BatchRecord:
        rows = self._query("SELECT record FROM batches WHERE id = ?", (batch_id,))
        if not rows:
            raise NotFound(f"No batch found with id '{batch_id}'.", param="batch_id")
        return BatchRecord.from_json(rows[0][0])

    def batches(self, *, after: str | None, limit: int) -> tuple[list[BatchRecord], bool]:
        """A page of batches, newest first, and whether more follow."""
        args: list[object] = []
        where = ""
        if after:
            where = "WHERE seq < ?"
            args.append(self._seq("batches", after, "after"))
        rows = self._query(
            f"SELECT record FROM batches {where} ORDER BY seq DESC LIMIT ?", (*args, limit + 1)
        )
        return [BatchRecord.from_json(row[0]) for row in rows[:limit]], len(rows) > limit

    def active_batches(self) -> list[BatchRecord]:
        """Batches with work left, oldest first."""
        rows = self._query("SELECT record FROM batches ORDER BY seq ASC")
        records = [BatchRecord.from_json(row[0]) for row in rows]
        return [record for record in records if record.status in ACTIVE]

    def save(self, record: BatchRecord) -> None:
        with self._transaction() as db:
            _save(db, record)

    def counts(self, batch_id: str) -> RequestCounts:
        rows = dict(
            self._query(
                "SELECT state, COUNT(*) FROM lines WHERE batch_id = ? GROUP BY state", (batch_id,)
            )
        )
        return RequestCounts(
            total=sum(rows.values()), completed=rows.get("done", 0), failed=rows.get("failed", 0)
        )

    def usage(self, batch_id: str) -> TokenUsage:
        sums = ", ".join(f"COALESCE(SUM({column}), 0)" for column in USAGE_COLUMNS)
        rows = self._query(f"SELECT {sums} FROM lines WHERE batch_id = ?", (batch_id,))
        return TokenUsage(*rows[0])

    # ---- lines --------------------------------------------------------------------------

    def start(self, record: BatchRecord, lines: Sequence[NewLine]) -> None:
        """Record a validated batch's lines and mark it in progress, in one transaction."""
        with self._transaction() as db:
            db.execute("DELETE FROM lines WHERE batch_id = ?", (record.id,))
            db.executemany(
                "INSERT INTO lines (batch_id, idx, custom_id, body, state, result) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        record.id,
                        index,
                        line.custom_id,
                        json.dumps(line.body) if line.body is not None else None,
                        "pending" if line.result is None else "failed",
                        line.result,
                    )
                    for index, line in enumerate(lines)
                ],
            )
            record.status, record.in_progress_at = "in_progress", now()
            _save(db, record)

    def pending(self, batch_id: str) -> list[PendingLine]:
        rows = self._query(
            "SELECT idx, custom_id, body FROM lines WHERE batch_id = ? AND state = 'pending' "
            "ORDER BY idx",
            (batch_id,),
        )
        return [PendingLine(index, custom_id, json.loads(body)) for index, custom_id, body in rows]

    def answer(
        self,
        batch_id: str,
        index: int,
        state: LineState,
        result: str,
        usage: TokenUsage | None = None,
    ) -> bool:
        """Commit one line's answer and the tokens it used; False if it already had one
        (it is never written, nor counted, twice)."""
        counted = usage or TokenUsage()
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE lines SET state = ?, result = ?, input_tokens = ?, cached_tokens = ?, "
                "output_tokens = ?, reasoning_tokens = ? "
                "WHERE batch_id = ? AND idx = ? AND state = 'pending'",
                (
                    state,
                    result,
                    *(getattr(counted, column) for column in USAGE_COLUMNS),
                    batch_id,
                    index,
                ),
            ).rowcount
        return changed == 1

    def finish(self, record: BatchRecord, leftover: dict[int, str] | None = None) -> None:
        """End a batch: the pending lines take `leftover` answers (an expired batch's), the
        output and error files are assembled from the committed lines, and the record is
        saved, all in one transaction."""
        with self._transaction() as db:
            for index, result in (leftover or {}).items():
                db.execute(
                    "UPDATE lines SET state = 'failed', result = ? "
                    "WHERE batch_id = ? AND idx = ? AND state = 'pending'",
                    (result, record.id, index),
                )
            for state, attribute, suffix in (
                ("done", "output_file_id", "output"),
                ("failed", "error_file_id", "error"),
            ):
                rows = db.execute(
                    "SELECT result FROM lines WHERE batch_id = ? AND state = ? ORDER BY idx",
                    (record.id, state),
                ).fetchall()
                if rows and getattr(record, attribute) is None:
                    content = "".join(row[0] + "\n" for row in rows).encode()
                    stored = _insert_file(
                        db, f"{record.id}_{suffix}.jsonl", "batch_output", content
                    )
                    setattr(record, attribute, stored.id)
            _save(db, record)


def _insert_file(db: sqlite3.Connection, filename: str, purpose: str, content: bytes) -> StoredFile:
    stored = StoredFile(new_id("file-"), filename, purpose, len(content), now())
    db.execute(
        "INSERT INTO files (id, filename, purpose, bytes, created_at, content) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (stored.id, filename, purpose, stored.bytes, stored.created_at, content),
    )
    return stored


def _save(db: sqlite3.Connection, record: BatchRecord) -> None:
    db.execute("UPDATE batches SET record = ? WHERE id = ?", (record.to_json(), record.id))
