"""The queue of requests waiting for their model to be resident (the rules: registry.py).

One queue across all models, served in arrival order: a request takes its turn when it is
first in line and its model is ready for it. While anyone waits, nobody overtakes, not
even a request for a model that is resident and busy; that is what keeps a stream of
requests for A from starving a request for B. Engines announce no "my last request ended",
so a waiter also looks again every IDLE_POLL_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from hearth.runtime.errors import Overloaded

IDLE_POLL_SECONDS = 0.05
# What a request refused by the queue is told to wait before trying again.
RETRY_AFTER_SECONDS = 5


@dataclass(eq=False)
class _Waiter:
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    served: bool = False  # its turn came; it stays first until its block ends


class ModelQueue:
    def __init__(self, max_waiting: int, timeout: float) -> None:
        self.max_waiting = max_waiting
        self.timeout = timeout
        self._waiters: list[_Waiter] = []

    @property
    def empty(self) -> bool:
        return not self._waiters

    @property
    def waiting(self) -> int:
        """Requests whose turn has not come."""
        return sum(not waiter.served for waiter in self._waiters)

    def wake(self) -> None:
        """Something changed (a model idle, loaded or unloaded): waiters look again."""
        for waiter in self._waiters:
            waiter.wake.set()

    @contextlib.asynccontextmanager
    async def turn(self, model: str, ready: Callable[[], bool]) -> AsyncIterator[None]:
        """Wait until this request is first in line and `ready()`, then hold the head of the
        queue while the block runs (loading its model). Raises Overloaded when the queue is
        full or the wait passes the timeout; a cancelled wait leaves the queue."""
        if (self._waiters or not ready()) and self.waiting >= self.max_waiting:
            raise Overloaded(
                f"Cannot serve '{model}' now: {self.waiting} requests already wait for their "
                "model (--max-queue). Try again shortly.",
                retry_after=RETRY_AFTER_SECONDS,
            )
        waiter = _Waiter()
        self._waiters.append(waiter)
        try:
            await self._wait(waiter, model, ready)
            yield
        finally:
            self._waiters.remove(waiter)
            self.wake()

    async def _wait(self, waiter: _Waiter, model: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.timeout
        while not (self._waiters[0] is waiter and ready()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise Overloaded(
                    f"The request for '{model}' waited {self.timeout:g} s for its turn while "
                    "the loaded models stayed busy (--load-timeout). Try again shortly.",
                    retry_after=RETRY_AFTER_SECONDS,
                )
            waiter.wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(waiter.wake.wait(), min(IDLE_POLL_SECONDS, left))
        waiter.served = True
