"""What routes reach through `request.app.state`: set by create_app, never module globals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from hearth.runtime.batch.runner import BatchRunner
from hearth.runtime.errors import EngineNotReady
from hearth.runtime.registry import ModelRegistry
from hearth.runtime.settings import ServerSettings
from hearth.server.drain import Drain
from hearth.server.openai.responses.store import ResponseStore


@dataclass
class ServerState:
    settings: ServerSettings
    registry: ModelRegistry
    load_error: str | None = None  # the default model failed to load at start-up
    responses: ResponseStore = field(default_factory=ResponseStore)  # previous_response_id
    drain: Drain | None = None  # the server's drain on SIGTERM; None in tests that have none
    batches: BatchRunner | None = None  # the Batch API's store and runner

    def batch_runner(self) -> BatchRunner:
        assert self.batches is not None, "create_app sets the batch runner"
        return self.batches

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
