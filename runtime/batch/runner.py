"""Running batches: each line through the same pipeline as the live endpoint, at low priority.

The runner knows no HTTP. Whoever starts it hands it a `LineExecutor`, which turns one
line's body into the endpoint's response (the server validates it with the endpoint's own
request model and runs it at "batch" priority, so the engine gives every interactive
request a slot first). `concurrency` lines run at once over all batches, the oldest batch
first: each batch has `concurrency` workers, and a worker holds one of `concurrency` turns
(a FIFO semaphore, waited for in the order the batches' files were checked: the order
they were created, unless an older file is still being checked) for as long as its batch
has lines to hand out. So a newer batch's lines start as soon as the older one's last lines
are running, not after they end, and the slots those last lines leave are not idle. A
line's answer is committed as it comes (store.py); cancelling, expiry and shutdown cancel
the lines in flight, whose answers were never committed: a cancelled or expired
batch reports them as not done, a restart runs them again. The store is opened when the
batch API is first used, or at start when it already exists: a server that never runs a
batch writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hearth.runtime.batch.lines import (
    MAX_REPORTED_ERRORS,
    LineError,
    batch_model,
    check_lines,
    error_line,
    response_line,
    usage_of,
)
from hearth.runtime.batch.store import (
    BatchRecord,
    BatchStore,
    PendingLine,
    new_id,
    now,
)
from hearth.runtime.errors import EngineNotReady, HearthError, InvalidRequest, Overloaded

log = logging.getLogger(__name__)

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")
COMPLETION_WINDOWS = {"24h": 24 * 3600}
FINISHED = ("completed", "failed", "expired", "cancelled")
# How long a line waits before trying again when the server is full or a model loads.
RETRY_SECONDS = 0.5


class BatchNotCancellable(HearthError):
    code = "batch_not_cancellable"


@dataclass(frozen=True)
class LineResponse:
    status_code: int
    body: dict


class LineExecutor(Protocol):
    async def execute(self, endpoint: str, body: dict) -> LineResponse:
        """The endpoint's answer to this body, an error response included. Raises
        Overloaded or EngineNotReady when the line should wait and be tried again."""
        ...


class BatchRunner:
    def __init__(self, path: Path, executor: LineExecutor, concurrency: int) -> None:
        self._path = path
        self._executor = executor
        self._concurrency = max(1, concurrency)
        self._store: BatchStore | None = None
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._turns = asyncio.Semaphore(self._concurrency)  # lines in flight, all batches
        self._batches: dict[str, asyncio.Task[None]] = {}  # each active batch's processing
        self._running: dict[str, asyncio.Task[None]] = {}  # the batches whose lines run

    @property
    def store(self) -> BatchStore:
        if self._store is None:
            self._store = BatchStore(self._path)
        return self._store

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Take up the batches a previous run left unfinished, and any created from now on."""
        if self._path.exists():
            self._wake.set()
        self._loop_task = asyncio.create_task(self._loop(), name="hearth-batches")

    async def close(self) -> None:
        for task in [self._loop_task, *self._batches.values()]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._store is not None:
            self._store.close()
            self._store = None

    # ---- what the API asks ---------------------------------------------------------------

    def create(
        self,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: dict[str, str] | None,
    ) -> BatchRecord:
        if endpoint not in ENDPOINTS:
            raise InvalidRequest(
                f"Invalid endpoint '{endpoint}': one of {', '.join(ENDPOINTS)}.", param="endpoint"
            )
        if completion_window not in COMPLETION_WINDOWS:
            raise InvalidRequest(
                f"Invalid completion_window '{completion_window}': only '24h' is supported.",
                param="completion_window",
            )
        stored = self.store.file(input_file_id, "input_file_id")
        if stored.purpose != "batch":
            raise InvalidRequest(
                f"File {input_file_id} has purpose '{stored.purpose}'; a batch's input file "
                "must be uploaded with purpose 'batch'.",
                param="input_file_id",
            )
        created = now()
        record = BatchRecord(
            id=new_id("batch_"),
            endpoint=endpoint,
            input_file_id=input_file_id,
            completion_window=completion_window,
            created_at=created,
            expires_at=created + COMPLETION_WINDOWS[completion_window],
            metadata=metadata,
        )
        self.store.add_batch(record)
        self._wake.set()
        return record

    def cancel(self, batch_id: str) -> BatchRecord:
        record = self.store.batch(batch_id)
        if record.status in FINISHED:
            raise BatchNotCancellable(f"Cannot cancel a batch with status '{record.status}'.")
        if record.status != "cancelling":
            record.status, record.cancelling_at = "cancelling", now()
            self.store.save(record)
        if batch_id in self._running:
            self._running[batch_id].cancel()  # the runner finishes it once its lines have ended
        else:
            record.status, record.cancelled_at = "cancelled", now()
            self.store.finish(record)
        return record

    # ---- the work ------------------------------------------------------------------------

    async def _loop(self) -> None:
        """Start the processing of every active batch not yet started, oldest first."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            for record in self.store.active_batches():
                if record.id not in self._batches:
                    task = asyncio.create_task(self._guarded(record.id), name=record.id)
                    self._batches[record.id] = task

    async def _guarded(self, batch_id: str) -> None:
        try:
            await self._process(batch_id)
        except Exception:  # one broken batch must not stop the others
            log.exception("batch %s failed", batch_id)
            self._fail(batch_id, [LineError("server_error", "The batch failed.", 1)])
        finally:
            del self._batches[batch_id]

    async def _process(self, batch_id: str) -> None:
        record = self.store.batch(batch_id)
        if record.status == "validating":
            await self._validate(record)
        record = self.store.batch(batch_id)
        if record.status == "in_progress":
            await self._run_lines(record)
        record = self.store.batch(batch_id)  # a cancel may have come meanwhile
        if record.status in ("in_progress", "finalizing"):
            record.status, record.finalizing_at = "completed", now()
            record.completed_at = now()
            self.store.finish(record)
        elif record.status == "cancelling":
            record.status, record.cancelled_at = "cancelled", now()
            self.store.finish(record)

    async def _validate(self, record: BatchRecord) -> None:
        try:
            content = await asyncio.to_thread(self.store.content, record.input_file_id)
        except HearthError:
            self._fail(record.id, [LineError("file_not_found", "The input file is gone.", 1)])
            return
        checked = await asyncio.to_thread(check_lines, content, record.endpoint)
        record = self.store.batch(record.id)
        if record.status != "validating":
            return  # cancelled meanwhile
        if not checked.runnable:
            self._fail(record.id, checked.errors)
            return
        record.model = batch_model(checked.lines)
        self.store.start(record, checked.lines)

    def _fail(self, batch_id: str, errors: list[LineError]) -> None:
        record = self.store.batch(batch_id)
        record.status, record.failed_at = "failed", now()
        record.errors = [error.as_dict() for error in errors[:MAX_REPORTED_ERRORS]]
        self.store.save(record)

    async def _run_lines(self, record: BatchRecord) -> None:
        lines = iter(self.store.pending(record.id))
        # A task, not a bare gather: a cancelled gather reports CancelledError as its
        # exception instead of being cancelled().
        work = asyncio.create_task(self._workers(record, lines))
        self._running[record.id] = work
        try:
            done, _ = await asyncio.wait({work}, timeout=max(0.0, record.expires_at - time.time()))
        finally:
            del self._running[record.id]
            if not work.done():
                work.cancel()
                await asyncio.wait({work})  # the lines in flight end uncommitted
        if work.done() and not work.cancelled() and work.exception() is not None:
            raise work.exception()  # type: ignore[misc]
        if not done:
            self._expire(record.id)

    async def _workers(self, record: BatchRecord, lines: Iterator[PendingLine]) -> None:
        await asyncio.gather(*(self._worker(record, lines) for _ in range(self._concurrency)))

    async def _worker(self, record: BatchRecord, lines: Iterator[PendingLine]) -> None:
        async with self._turns:
            await self._answer_lines(record, lines)

    async def _answer_lines(self, record: BatchRecord, lines: Iterator[PendingLine]) -> None:
        for line in lines:
            response = await self._answer(record.endpoint, line)
            state = "done" if response.status_code == 200 else "failed"
            result = response_line(line.custom_id, response.status_code, response.body)
            usage = usage_of(response.body) if state == "done" else None
            self.store.answer(record.id, line.index, state, result, usage)

    async def _answer(self, endpoint: str, line: PendingLine) -> LineResponse:
        while True:
            try:
                return await self._executor.execute(endpoint, line.body)
            except (Overloaded, EngineNotReady):
                await asyncio.sleep(RETRY_SECONDS)

    def _expire(self, batch_id: str) -> None:
        record = self.store.batch(batch_id)
        expired = LineError(
            "batch_expired",
            "This request could not be executed before the completion window expired.",
            1,
        )
        leftover = {
            line.index: error_line(line.custom_id, expired) for line in self.store.pending(batch_id)
        }
        record.status, record.expired_at = "expired", now()
        self.store.finish(record, leftover)
