"""Stopping a non-streaming generation when its client hangs up.

A streaming response notices a disconnect when it next sends; a plain response sends
nothing until the end, so without a watch a client that gave up would still hold a slot
for the whole reply. The watch waits for the ASGI disconnect message beside the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

T = TypeVar("T")


class ClientGone(Exception):
    """The client hung up before its reply was ready; answered with 499 by the app."""


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()  # closing the generation's iterator frees its slot
    raise ClientGone


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
