"""The one wrapper every stream of every endpoint goes through.

An endpoint says what its events are (an `EventSource`); this module owns the rest:
server-sent-event framing (sse-starlette, with a ping every 15 s while a model loads or a
prompt is read: a comment line, or the API's own ping event where it has one), client
disconnects (sse-starlette cancels the body task, and closing the source's iterators frees
the engine's slots), errors after the stream began (the status
line has gone, so the error goes out as the API's error event and the stream ends there),
and the drain: when the drain timeout passes, the source's generations are told to finish
now, so each ends the way a reply cut by max_tokens ends in its API, and then the source
adds what its API says about the cut. A stream is never torn mid-event.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from sse_starlette import EventSourceResponse, ServerSentEvent

from hearth.runtime.errors import DrainTimeout
from hearth.server.drain import Drain

log = logging.getLogger(__name__)

SEP = "\n"
SSE_END = (SEP * 2).encode()
PING_SECONDS = 15

# What a stream yields: a JSON payload for sse-starlette to frame as `data:`, a dict with
# `event` and `data` for a named event, or a whole event already framed as bytes.
Chunk = str | bytes | dict[str, str]


class EventSource(Protocol):
    """An endpoint's stream: its events, and what it sends when something ends it early."""

    # Sent after the last event of a stream that ended normally (OpenAI's "[DONE]").
    done: Chunk | None

    def events(self) -> AsyncIterator[Chunk]: ...

    def error_event(self, error: Exception) -> Chunk:
        """The API's error event, for an error after the stream began."""
        ...

    def after_cut(self, error: DrainTimeout) -> Sequence[Chunk]:
        """What follows the last event of a stream the drain ended."""
        ...

    def finish_now(self) -> None:
        """Ask every generation of the stream to end at once, as max_tokens would."""
        ...


def stream_response(
    source: EventSource,
    *,
    drain: Drain | None,
    headers: dict[str, str] | None = None,
    ping: dict[str, str] | None = None,
) -> EventSourceResponse:
    """`ping`: the API's ping event (`event` and `data`); None sends a comment line."""
    return EventSourceResponse(
        _framed(source, drain),
        headers=headers,
        sep=SEP,
        ping=PING_SECONDS,
        ping_message_factory=(lambda: ServerSentEvent(**ping, sep=SEP)) if ping else None,
    )


async def _framed(source: EventSource, drain: Drain | None) -> AsyncIterator[Chunk]:
    if drain is not None:
        drain.watch(source)
    try:
        async for chunk in source.events():
            yield chunk
    except Exception as error:  # noqa: BLE001 - every failure must reach the client
        # (A disconnect cancels this task: CancelledError is no Exception and passes by.)
        log.warning("stream ended by an error: %s", error)
        yield source.error_event(error)
        return
    if drain is not None and drain.expired:
        for chunk in source.after_cut(
            DrainTimeout("The server is shutting down and ended this stream.")
        ):
            yield chunk
        return
    if source.done is not None:
        yield source.done
