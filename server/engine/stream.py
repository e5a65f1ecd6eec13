"""The asyncio side of one generation: events in from the scheduler thread, out to a client.

The scheduler thread never blocks on a client. It hands each event to the event loop with
`call_soon_threadsafe`, and a consumer that has gone away only sets `cancelled`, which the
scheduler reads at its next step and frees the slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from hearth.server.engine.base import Finished, GenerationEvent


class GenerationStream:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, prompt_tokens: int, on_cancel: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[GenerationEvent | BaseException] = asyncio.Queue()
        self._on_cancel = on_cancel
        self.prompt_tokens = prompt_tokens
        self.cancelled = False
        self.done = False

    # ---- scheduler thread ---------------------------------------------------------------

    def push(self, event: GenerationEvent | BaseException) -> None:
        if isinstance(event, (Finished, BaseException)):
            self.done = True
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except RuntimeError:
            # The event loop has closed (the server is shutting down): nobody is listening.
            self.cancelled = True

    # ---- event loop ---------------------------------------------------------------------

    def cancel(self) -> None:
        if not self.cancelled and not self.done:
            self.cancelled = True
            self._on_cancel()

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        try:
            while True:
                event = await self._queue.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            # However the consumer stops (disconnect, error, task cancelled), the slot frees.
            self.cancel()
