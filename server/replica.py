"""Which replica answered: the X-Hearth-Replica header, and the capacity a balancer reads.

Behind a load balancer several `hearth serve` processes answer under one address. Every
answer (errors, drains and refused Hosts included) names the replica that wrote it, so an
operator following a conversation, or a test, sees where each request went without reading
the balancer's logs. The capacity is what one replica takes at once: its slots, and the
requests that may wait for one; a balancer's per-server connection limit should be the
slots, so the excess waits in the balancer's queue, where any replica can take it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth.runtime.registry import ModelRegistry
from hearth.runtime.settings import ServerSettings

REPLICA_HEADER = "X-Hearth-Replica"


class ReplicaHeader:
    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app = app
        self.header = (REPLICA_HEADER.lower().encode(), replica.encode("latin-1", "replace"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, named)


def capacity(settings: ServerSettings, registry: ModelRegistry) -> dict[str, int]:
    """The default model's slots and queue room, and what is running or waiting now."""
    engine = registry.engine_of(registry.default_id)
    figures = engine.load() if engine is not None else {}
    slots = int(figures.get("slots", registry.spec(registry.default_id).settings.parallel))
    return {
        "slots": slots,
        "max_queue": settings.max_queue,
        "busy": int(figures.get("slots_busy", 0)),
        "waiting": int(figures.get("waiting", 0)),
    }
