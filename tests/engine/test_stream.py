"""The hand-off of a generation's events from the scheduler thread to the event loop.

The Outbox holds text back for the stream interval and joins what it held, but never holds
a stream's first text or any end. The clock is the module's own `time.monotonic`, stepped by
hand here, so nothing depends on how fast the machine is. Streamed replies through the real
server, with the interval and without it, are in tests/e2e/test_stream_interval.py.
"""

from __future__ import annotations

import asyncio
import functools

import pytest

from hearth.engine import stream as stream_module
from hearth.engine.base import Finished, TextDelta, TokenLogprob
from hearth.engine.errors import GenerationFailed
from hearth.engine.stream import GenerationStream, Outbox


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(stream_module.time, "monotonic", clock)
    return clock


def on_a_loop(test):
    """Run an async test on an event loop of its own (the streams need a running loop)."""

    @functools.wraps(test)
    def run(clock: Clock) -> None:
        asyncio.run(test(clock))

    return run


def delta(text: str) -> TextDelta:
    return TextDelta(text, (TokenLogprob(text.encode(), -1.0),))


def received(stream: GenerationStream) -> list:
    events = []
    while not stream.queue.empty():
        events.append(stream.queue.get_nowait())
    return events


async def handed(outbox: Outbox, *, now: bool = False) -> None:
    """Flush, and let the event loop run what the flush scheduled."""
    outbox.flush(now=now)
    await asyncio.sleep(0)


def new_stream(outbox: Outbox) -> GenerationStream:
    return GenerationStream(asyncio.get_running_loop(), outbox, 3, lambda: None)


async def started(outbox: Outbox) -> GenerationStream:
    """A stream whose first text has gone out (and been read)."""
    stream = new_stream(outbox)
    stream.push(delta("a"))
    await handed(outbox)
    assert received(stream) == [delta("a")]
    return stream


@on_a_loop
async def test_text_within_the_interval_waits_and_goes_out_joined(clock: Clock) -> None:
    outbox = Outbox(interval=0.02)
    stream = new_stream(outbox)
    stream.push(delta("Once"))
    await handed(outbox)
    assert received(stream) == [delta("Once")]  # a stream's first text never waits

    for text in (" upon", " a"):
        clock.now += 0.008
        stream.push(delta(text))
        await handed(outbox)
        assert received(stream) == []

    clock.now += 0.008  # 24 ms since the last hand-off
    stream.push(delta(" time"))
    await handed(outbox)
    [joined] = received(stream)
    assert joined.text == " upon a time"
    assert [entry.piece for entry in joined.logprobs] == [b" upon", b" a", b" time"]


@on_a_loop
async def test_an_end_goes_at_once_with_the_text_held_before_it(clock: Clock) -> None:
    outbox = Outbox(interval=0.02)
    stream = await started(outbox)
    stream.push(delta("b"))
    await handed(outbox)
    clock.now += 0.001
    stream.push(delta("c"))
    end = Finished("stop", 3, 3)
    stream.push(end)
    await handed(outbox)
    assert received(stream) == [TextDelta("bc", delta("b").logprobs + delta("c").logprobs), end]


@on_a_loop
async def test_an_error_goes_at_once(clock: Clock) -> None:
    outbox = Outbox(interval=60)
    stream = await started(outbox)
    stream.push(delta("b"))
    failure = GenerationFailed("llama.cpp failed")
    stream.push(failure)
    await handed(outbox)
    assert received(stream) == [delta("b"), failure]


@on_a_loop
async def test_each_stream_keeps_its_own_text_in_order(clock: Clock) -> None:
    outbox = Outbox(interval=0.02)
    first, second = new_stream(outbox), new_stream(outbox)
    first.push(delta("1"))
    second.push(delta("A"))
    await handed(outbox)
    assert received(first) == [delta("1")] and received(second) == [delta("A")]
    for one, other in (("2", "B"), ("3", "C"), ("4", "D")):
        first.push(delta(one))
        second.push(delta(other))
        await handed(outbox)
    # A stream that starts while the others' text waits goes out at once, with theirs.
    third = new_stream(outbox)
    third.push(delta("x"))
    await handed(outbox)
    assert [event.text for event in received(first)] == ["234"]
    assert [event.text for event in received(second)] == ["BCD"]
    assert received(third) == [delta("x")]


@on_a_loop
async def test_flushing_now_hands_over_whatever_waits(clock: Clock) -> None:
    outbox = Outbox(interval=60)
    stream = await started(outbox)
    stream.push(delta("b"))
    await handed(outbox)
    assert received(stream) == []
    await handed(outbox, now=True)
    assert received(stream) == [delta("b")]


@on_a_loop
async def test_no_interval_hands_over_every_delta_as_it_comes(clock: Clock) -> None:
    outbox = Outbox(interval=0)
    stream = new_stream(outbox)
    for text in ("a", "b", "c"):
        stream.push(delta(text))
        await handed(outbox)
        assert received(stream) == [delta(text)]
