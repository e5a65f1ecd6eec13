"""Liveness and readiness: 503 until the default model has loaded, then each model's state
(and the slots, queue and cache of each one that is resident), which replica answered, and
its capacity (server/replica.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from hearth.server.replica import capacity
from hearth.server.state import server_state

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    state = server_state(request)
    if state.load_error:
        return JSONResponse({"status": "error", "error": state.load_error}, status_code=503)
    if not state.ready:
        return JSONResponse({"status": "loading"}, status_code=503)
    report = state.registry.health()
    # The default model's figures stay at the top level, where monitors of a one-model
    # server (and its tests) read them.
    engine = state.registry.engine_of(state.registry.default_id)
    top = engine.load() if engine is not None else {}
    replica = {
        "replica": state.settings.replica_name(),
        "capacity": capacity(state.settings, state.registry),
    }
    return JSONResponse({"status": "ok", **top, **replica, **report})
