"""What routes reach through `request.app.state`: set by create_app, never module globals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from hearth.server.errors import EngineNotReady
from hearth.server.registry import ModelRegistry
from hearth.server.responses.store import ResponseStore
from hearth.server.settings import ServerSettings


@dataclass
class ServerState:
    settings: ServerSettings
    registry: ModelRegistry
    load_error: str | None = None  # the default model failed to load at start-up
    responses: ResponseStore = field(default_factory=ResponseStore)  # previous_response_id

    @property
    def ready(self) -> bool:
        return self.registry.started


def server_state(request: Request) -> ServerState:
    return request.app.state.hearth


def ready_registry(request: Request) -> ModelRegistry:
    state = server_state(request)
    if not state.ready:
        raise EngineNotReady("The model is still loading. Try again shortly.")
    return state.registry


Registry = Annotated[ModelRegistry, Depends(ready_registry)]
