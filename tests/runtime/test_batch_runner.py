"""The batch store and runner without HTTP: line checks, exactly-once answers, resume, cancel.

The executor here is scripted (the runner's contract is a callable); the real one, through
the real model, is tested end to end in tests/e2e/test_batches.py.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from hearth.runtime.batch.lines import check_lines, not_jsonl, usage_of
from hearth.runtime.batch.runner import BatchNotCancellable, BatchRunner, LineResponse
from hearth.runtime.batch.store import BatchStore, TokenUsage
from hearth.runtime.errors import Overloaded

URL = "/v1/chat/completions"


def line(custom_id: str, url: str = URL, **body: object) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def test_each_bad_line_is_named_and_the_good_ones_run():
    content = "\n".join(
        [line("a"), "{oops", line("a"), line("b", url="/v1/embeddings"), "[1]", "", line("c")]
    ).encode()
    checked = check_lines(content, URL)
    assert [(e.code, e.line) for e in checked.errors] == [
        ("invalid_json_line", 2),
        ("duplicate_custom_id", 3),
        ("invalid_url", 4),
        ("invalid_request", 5),
    ]
    assert checked.runnable == 2
    assert [x.custom_id for x in checked.lines if x.result is None] == ["a", "c"]


def test_a_file_that_is_not_jsonl_is_refused_whole():
    assert not_jsonl(b"a,b\n1,2\n") is not None
    assert not_jsonl(b"\xff\xfe") is not None
    assert not_jsonl(b'[{"a": 1}]') is not None
    assert not_jsonl(b"junk\n" + line("a").encode()) is None


class Scripted:
    """Answers each body's `answer`; refuses the first `busy` calls as Overloaded."""

    def __init__(self, busy: int = 0, gate: asyncio.Event | None = None) -> None:
        self.calls: list[dict] = []
        self.busy = busy
        self.gate = gate

    async def execute(self, endpoint: str, body: dict) -> LineResponse:
        if self.busy:
            self.busy -= 1
            raise Overloaded("full", retry_after=1)
        self.calls.append(body)
        if self.gate is not None:
            await self.gate.wait()
        return LineResponse(body.get("status", 200), {"answer": body["n"]})


async def finished(runner: BatchRunner, batch_id: str) -> str:
    for _ in range(500):
        status = runner.store.batch(batch_id).status
        if status in ("completed", "cancelled", "failed", "expired"):
            return status
        await asyncio.sleep(0.01)
    raise AssertionError(runner.store.batch(batch_id))


def submit(runner: BatchRunner, rows: list[str]) -> str:
    stored = runner.store.add_file("in.jsonl", "batch", "\n".join(rows).encode())
    return runner.create(stored.id, URL, "24h", None).id


def output(store: BatchStore, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [json.loads(x) for x in store.content(file_id).decode().splitlines()]


def test_lines_answered_once_in_input_order_and_failures_in_the_error_file(tmp_path: Path):
    async def main() -> None:
        runner = BatchRunner(tmp_path / "b.sqlite3", Scripted(busy=3), concurrency=3)
        runner.start()
        rows = [line(f"l{i}", n=i) for i in range(6)] + [line("bad", n=9, status=404)]
        batch_id = submit(runner, rows)
        assert await finished(runner, batch_id) == "completed"
        record = runner.store.batch(batch_id)
        answers = output(runner.store, record.output_file_id)
        assert [a["custom_id"] for a in answers] == [f"l{i}" for i in range(6)]
        assert [a["response"]["body"]["answer"] for a in answers] == list(range(6))
        errors = output(runner.store, record.error_file_id)
        assert [(e["custom_id"], e["response"]["status_code"]) for e in errors] == [("bad", 404)]
        counts = runner.store.counts(batch_id)
        assert (counts.total, counts.completed, counts.failed) == (7, 6, 1)
        assert not runner.store.answer(batch_id, 0, "done", "{}")  # never written twice
        await runner.close()

    asyncio.run(main())


def test_a_restart_runs_only_the_lines_never_answered(tmp_path: Path):
    path = tmp_path / "b.sqlite3"

    async def first_run() -> str:
        gate = asyncio.Event()
        runner = BatchRunner(path, Scripted(gate=gate), concurrency=2)
        runner.start()
        batch_id = submit(runner, [line(f"l{i}", n=i) for i in range(5)])
        while runner.store.counts(batch_id).total == 0 or len(runner._executor.calls) < 2:
            await asyncio.sleep(0.01)
        await runner.close()  # two lines in flight, none committed
        return batch_id

    async def second_run(batch_id: str) -> None:
        executor = Scripted()
        runner = BatchRunner(path, executor, concurrency=2)
        runner.start()
        assert await finished(runner, batch_id) == "completed"
        assert sorted(call["n"] for call in executor.calls) == list(range(5))
        record = runner.store.batch(batch_id)
        assert [a["custom_id"] for a in output(runner.store, record.output_file_id)] == [
            f"l{i}" for i in range(5)
        ]
        await runner.close()

    batch_id = asyncio.run(first_run())
    asyncio.run(second_run(batch_id))


def test_cancel_keeps_the_answers_and_a_finished_batch_cannot_be_cancelled(tmp_path: Path):
    async def main() -> None:
        gate = asyncio.Event()
        runner = BatchRunner(tmp_path / "b.sqlite3", Scripted(gate=gate), concurrency=1)
        runner.start()
        batch_id = submit(runner, [line(f"l{i}", n=i) for i in range(4)])
        while not runner._executor.calls:
            await asyncio.sleep(0.01)
        assert runner.cancel(batch_id).status == "cancelling"
        assert await finished(runner, batch_id) == "cancelled"
        assert runner.store.batch(batch_id).output_file_id is None  # nothing was answered
        with pytest.raises(BatchNotCancellable):
            runner.cancel(batch_id)
        await runner.close()

    asyncio.run(main())


def test_a_file_with_no_good_line_fails_the_batch_with_its_errors(tmp_path: Path):
    async def main() -> None:
        runner = BatchRunner(tmp_path / "b.sqlite3", Scripted(), concurrency=1)
        runner.start()
        batch_id = submit(runner, ["{oops", line("x", url="/v1/other")])
        assert await finished(runner, batch_id) == "failed"
        errors = runner.store.batch(batch_id).errors
        assert [e["code"] for e in errors] == ["invalid_json_line", "invalid_url"]
        await runner.close()

    asyncio.run(main())


def test_usage_is_read_under_each_endpoints_names():
    chat = {"usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}
    chat["usage"]["prompt_tokens_details"] = {"cached_tokens": 4}
    responses = {"usage": {"input_tokens": 5, "output_tokens": 9, "total_tokens": 14}}
    responses["usage"]["output_tokens_details"] = {"reasoning_tokens": 6}
    embeddings = {"usage": {"prompt_tokens": 4, "total_tokens": 4}}
    assert usage_of(chat) == TokenUsage(input_tokens=7, cached_tokens=4, output_tokens=3)
    assert usage_of(responses) == TokenUsage(input_tokens=5, output_tokens=9, reasoning_tokens=6)
    assert usage_of(embeddings) == TokenUsage(input_tokens=4)
    assert usage_of({"error": {"message": "no usage"}}) == TokenUsage()


def test_a_store_made_before_usage_was_counted_gains_it_and_counts_each_line_once(
    tmp_path: Path,
):
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE lines (batch_id TEXT NOT NULL, idx INTEGER NOT NULL, custom_id TEXT, "
        "body TEXT, state TEXT NOT NULL, result TEXT, PRIMARY KEY (batch_id, idx));"
        "INSERT INTO lines VALUES ('b', 0, 'old', '{}', 'done', '{}');"
        "INSERT INTO lines VALUES ('b', 1, 'new', '{}', 'pending', NULL);"
    )
    old.commit()
    old.close()
    store = BatchStore(path)
    used = TokenUsage(input_tokens=10, cached_tokens=2, output_tokens=5)
    assert store.answer("b", 1, "done", "{}", used)
    assert not store.answer("b", 1, "done", "{}", used)
    assert store.usage("b") == used and store.usage("b").total_tokens == 15
    store.close()


class Gated:
    """Answers each line when the test opens its gate; records the order lines started."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    async def execute(self, endpoint: str, body: dict) -> LineResponse:
        self.started.append(body["name"])
        await self.gate(body["name"]).wait()
        return LineResponse(200, {"answer": body["name"]})


def test_a_newer_batch_starts_while_the_older_ones_last_lines_run_never_before(tmp_path: Path):
    async def main() -> None:
        lines = Gated()
        runner = BatchRunner(tmp_path / "b.sqlite3", lines, concurrency=2)
        runner.start()

        async def started(name: str) -> None:
            for _ in range(1000):
                if name in lines.started:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError(f"{name} never started: {lines.started}")

        older = submit(runner, [line(f"a{i}", name=f"a{i}") for i in range(3)])
        await started("a1")
        newer = submit(runner, [line(f"b{i}", name=f"b{i}") for i in range(2)])
        lines.gate("a0").set()
        await started("a2")  # the older batch's next line takes the turn a0 left
        assert lines.started == ["a0", "a1", "a2"]
        lines.gate("a1").set()
        await started("b0")  # a2 still runs, and the newer batch already has the free turn
        assert lines.started == ["a0", "a1", "a2", "b0"]
        for name in ("a2", "b0", "b1"):
            lines.gate(name).set()
        assert await finished(runner, older) == "completed"
        assert await finished(runner, newer) == "completed"
        assert lines.started == ["a0", "a1", "a2", "b0", "b1"]
        await runner.close()

    asyncio.run(main())
