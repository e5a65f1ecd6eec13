"""Graceful drain on SIGTERM/SIGINT: finish what runs, refuse what comes, then exit 0.

uvicorn on its own stops at once, and sse-starlette ends every stream as soon as uvicorn
wants to exit, so clients saw bodies cut mid-chunk with no finish_reason. Here the first
signal only starts a drain: new requests get 503 with Retry-After (/health says
"draining", so a load balancer moves on), running requests go on up to --drain-timeout,
and streams still running then are told to finish now: each ends as its API ends a reply
cut short (a finish_reason, a terminal event) and says why, rather than a torn connection
(see streaming.py). Only then is uvicorn told to exit. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Protocol

import uvicorn
from fastapi.responses import JSONResponse
from sse_starlette.sse import AppStatus
from starlette.types import ASGIApp, Receive, Scope, Send

from hearth.runtime.errors import Draining
from hearth.server.errors import error_response

log = logging.getLogger(__name__)


class Finishable(Protocol):
    def finish_now(self) -> None: ...


class Drain:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.draining = False
        self.expired = False  # the timeout passed: running streams were told to finish
        self.in_flight = 0
        # Streams that end early when the timeout passes; weak, so a finished one goes.
        self._streams: weakref.WeakSet[Finishable] = weakref.WeakSet()
        self._idle = asyncio.Event()
        self._idle.set()

    def watch(self, stream: Finishable) -> None:
        self._streams.add(stream)
        if self.expired:
            stream.finish_now()

    def enter(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def run(self) -> None:
        """Refuse new requests, wait for the running ones up to the timeout, then cut."""
        self.draining = True
        log.info("draining: %d requests running, up to %.0f s", self.in_flight, self.timeout)
        started = time.monotonic()
        try:
            await asyncio.wait_for(self._idle.wait(), self.timeout)
        except TimeoutError:
            log.warning("drain timeout: ending %d requests", self.in_flight)
            self.expired = True
            for stream in list(self._streams):
                stream.finish_now()
            # Each ends at the engine's next step; give them a moment to write their end.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 5)
        log.info("drained in %.1f s", time.monotonic() - started)


class DrainGuard:
    """Counts requests in flight and answers 503 to new ones once the drain began."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            if scope["path"] == "/health":
                response = JSONResponse({"status": "draining"}, status_code=503)
            else:
                draining = Draining("The server is shutting down.", retry_after=5)
                response = error_response(draining, scope["path"])
            await response(scope, receive, send)
            return
        self.drain.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.leave()


class DrainingServer(uvicorn.Server):
    """uvicorn whose first exit signal drains before exiting, and whose second exits now."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain
        self._draining: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # sse-starlette would end every stream at the first signal; this class decides when.
        AppStatus.disable_automatic_graceful_drain()

    def handle_exit(self, sig: int, frame: object) -> None:
        # Unlike uvicorn's own handler the signal is not recorded: uvicorn would raise it
        # again after shutting down, and the process would die by it instead of exiting 0.
        if self._loop is not None:
            self.force_exit = True
            self.should_exit = True
            return
        # A signal handler runs between bytecodes; the loop is told through its self-pipe.
        self._loop = asyncio.get_running_loop()
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._draining = asyncio.get_running_loop().create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        await self.drain.run()
        AppStatus.should_exit = True
        self.should_exit = True
