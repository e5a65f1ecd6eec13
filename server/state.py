"""What routes reach through `request.app.state`: set by create_app, never module globals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from hearth.server.catalog import ModelCatalog
from hearth.server.engine.base import Engine, SamplingParams
from hearth.server.errors import EngineNotReady
from hearth.server.settings import ServerSettings


@dataclass
class ServerState:
    settings: ServerSettings
    engine: Engine
    catalog: ModelCatalog | None = None  # built once the model has loaded
    load_error: str | None = None

    @property
    def ready(self) -> bool:
        return self.catalog is not None and self.engine.ready

    @property
    def defaults(self) -> SamplingParams:
        return self.settings.sampling_defaults()


@dataclass(frozen=True)
class Ready:
    """The services a generation route needs, available once the model is loaded."""

    engine: Engine
    catalog: ModelCatalog
    defaults: SamplingParams


def server_state(request: Request) -> ServerState:
    return request.app.state.hearth


def ready(request: Request) -> Ready:
    state = server_state(request)
    if not state.ready:
        raise EngineNotReady("The model is still loading. Try again shortly.")
    assert state.catalog is not None
    return Ready(state.engine, state.catalog, state.defaults)


ReadyServices = Annotated[Ready, Depends(ready)]
