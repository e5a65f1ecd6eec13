"""The asyncio side of one generation: events in from the scheduler thread, out to a client.

The scheduler thread never blocks on a client. It puts each event in an `Outbox`, which
hands what the steps produced to the event loop in a single `call_soon_threadsafe`, and a
consumer that has gone away only sets `cancelled`, which the scheduler reads at its next
step and frees the slot.

Why one hand-off per step rather than one per event: waking the event loop in the middle
of a step lets it take the GIL at the scheduler's next llama.cpp call (ctypes releases it
around every call), so the loop's per-token HTTP work ran between one slot's sampling and
the next while the other llama.cpp threads waited. Flushed at the end of the step, that
work overlaps the next llama_decode, which runs without the GIL.

Why not even every step: each hand-off costs the event loop a wake-up, and each delta a
pass through the endpoint's chunk building and an HTTP write, about 0.3 ms of Python a
streamed token on a 2-core CPU, taken from the cores llama.cpp decodes on. So text is
handed over at most every `interval` (20 ms by default, a stream's updates at 50 a second,
which no reader sees), a stream's held deltas joined into one. A stream's first text and
every end (a Finished, an error) go at once, so the time to the first token and to the
end of a reply are what they were, and a model slower than the interval hands over each
token as it comes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

from hearth.engine.base import Finished, GenerationEvent, TextDelta

Event = GenerationEvent | BaseException


class Outbox:
    """Events the scheduler produced since its last hand-off. Used by the scheduler thread only."""

    def __init__(self, interval: float = 0.0) -> None:
        self._interval = interval
        self._pending: list[tuple[GenerationStream, Event]] = []
        self._handed_at = -math.inf

    def put(self, stream: GenerationStream, event: Event) -> None:
        self._pending.append((stream, event))

    def flush(self, *, now: bool = False) -> None:
        """Hand the pending events over, unless they are text that may wait for the
        interval to pass (`now`: whatever they are)."""
        if not self._pending:
            return
        clock = time.monotonic()
        if not now and clock - self._handed_at < self._interval and not self._urgent():
            return
        self._handed_at = clock
        by_loop: defaultdict[asyncio.AbstractEventLoop, list[tuple[GenerationStream, Event]]]
        by_loop = defaultdict(list)
        # Where each stream's last delivery is, while it is text that a later delta can join.
        open_text: dict[GenerationStream, int] = {}
        for stream, event in self._pending:
            stream.handed_over = True
            deliveries = by_loop[stream.loop]
            at = open_text.get(stream)
            if at is not None and isinstance(event, TextDelta):
                earlier = deliveries[at][1]
                assert isinstance(earlier, TextDelta)
                deliveries[at] = (stream, earlier.followed_by(event))
                continue
            deliveries.append((stream, event))
            if isinstance(event, TextDelta):
                open_text[stream] = len(deliveries) - 1
            else:
                open_text.pop(stream, None)
        self._pending = []
        for loop, deliveries in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, deliveries)
            except RuntimeError:
                # The event loop has closed (the server is shutting down): nobody is listening.
                for stream, _ in deliveries:
                    stream.cancelled = True

    def _urgent(self) -> bool:
        """Whether something pending must go now: an end, or a stream's first text."""
        return any(
            not (isinstance(event, TextDelta) and stream.handed_over)
            for stream, event in self._pending
        )


def _deliver(deliveries: list[tuple[GenerationStream, Event]]) -> None:
    for stream, event in deliveries:
        stream.queue.put_nowait(event)


class GenerationStream:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        outbox: Outbox,
        prompt_tokens: int,
        on_cancel: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self._outbox = outbox
        self._on_cancel = on_cancel
        self.prompt_tokens = prompt_tokens
        self.cancelled = False
        self.end_asked = False  # finish_now() was called: end at the next step, as by length
        self.done = False
        self.handed_over = False  # some of its events have gone to the event loop

    # ---- scheduler thread ---------------------------------------------------------------

    def push(self, event: Event) -> None:
        if isinstance(event, (Finished, BaseException)):
            self.done = True
        self._outbox.put(self, event)

    # ---- event loop ---------------------------------------------------------------------

    def cancel(self) -> None:
        if not self.cancelled and not self.done:
            self.cancelled = True
            self._on_cancel()

    def finish_now(self) -> None:
        """End the generation at the scheduler's next step with a Finished of reason
        "length", its text so far and its true token counts (a drain's cut)."""
        if not self.cancelled and not self.done and not self.end_asked:
            self.end_asked = True
            self._on_cancel()  # wakes the scheduler

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        try:
            while True:
                event = await self.queue.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            # However the consumer stops (disconnect, error, task cancelled), the slot frees.
            self.cancel()
