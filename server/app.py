"""The FastAPI application, built around whatever engine it is given.

`create_app(settings, registry)` is the only way an app comes to be: no module globals, so
a test can build one around a registry of scripted engines and the CLI around llama.cpp.
The default model loads in the background after the server starts listening: /health
answers 503 meanwhile, and a failure to load it is reported through `on_fatal` so the CLI
can exit non-zero. Other models load when first asked for (see runtime/registry.py).
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from hearth import __version__
from hearth.runtime.batch.runner import BatchRunner
from hearth.runtime.registry import ModelRegistry
from hearth.runtime.settings import ServerSettings
from hearth.server.access_log import AccessLog
from hearth.server.anthropic import router as anthropic
from hearth.server.drain import Drain, DrainGuard
from hearth.server.errors import install_error_handlers
from hearth.server.health import router as health
from hearth.server.metrics import install_metrics
from hearth.server.openai.batches import router as batches
from hearth.server.openai.batches.serving import EndpointLines
from hearth.server.openai.chat import router as chat
from hearth.server.openai.completions import router as completions
from hearth.server.openai.embeddings import router as embeddings
from hearth.server.openai.files import router as files
from hearth.server.openai.models import router as models
from hearth.server.openai.responses import router as responses
from hearth.server.openapi import API_ERROR_RESPONSES, HEALTH_RESPONSES, install_openapi
from hearth.server.origins import install_origin_guards
from hearth.server.replica import ReplicaHeader
from hearth.server.security import BodyLimit, require_api_key
from hearth.server.state import ServerState
from hearth.server.tokenize import router as tokenize

log = logging.getLogger("hearth")

# The API's endpoints, one module each; a new endpoint is a new module added here.
API_ROUTES = (models, chat, completions, responses, embeddings, tokenize, anthropic, files, batches)
# Batch files and state, in the data directory (opened when the Batch API is first used).
BATCH_DB = "batches.sqlite3"
# An upload's multipart framing around the file itself.
MULTIPART_ROOM = 64 * 1024

NO_TELEMETRY = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}


def create_app(
    settings: ServerSettings,
    registry: ModelRegistry,
    *,
    on_ready: Callable[[ServerState], None] | None = None,
    on_fatal: Callable[[str], None] | None = None,
    drain: Drain | None = None,
) -> FastAPI:
    state = ServerState(settings=settings, registry=registry, drain=drain)
    # One line more than the slots: while a line's answer is built and committed and the
    # next one is rendered and tokenized, the line waiting in the engine's queue takes the
    # slot that ended, so a batch alone never leaves one idle (the engine admits waiting
    # interactive requests before it, so it delays nobody).
    state.batches = BatchRunner(
        settings.library_dir / BATCH_DB, EndpointLines(state), concurrency=settings.parallel + 1
    )

    async def load() -> None:
        try:
            await registry.start()
        except Exception as error:  # noqa: BLE001 - any load failure ends start-up
            state.load_error = f"{type(error).__name__}: {error}" if not str(error) else str(error)
            if on_fatal is None:
                log.error("cannot start: %s", state.load_error)
            else:
                on_fatal(state.load_error)
            return
        state.batch_runner().start()  # unfinished batches go on where they stopped
        if on_ready is not None:
            on_ready(state)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(load())
        try:
            yield
        finally:
            loading.cancel()
            await state.batch_runner().close()  # lines in flight stay pending, for a restart
            await registry.close()

    app = FastAPI(
        title="Hearth",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load scripts from a CDN (see openapi.py)
        redoc_url=None,
        # Private by default: FastAPI's OpenTelemetry hooks stay off, whatever the
        # environment says.
        telemetry=NO_TELEMETRY,
    )
    app.state.hearth = state
    install_error_handlers(app)
    observe_generation = install_metrics(app)
    app.include_router(health.router, responses=HEALTH_RESPONSES)
    api = [Depends(require_api_key)]
    for module in API_ROUTES:
        app.include_router(module.router, dependencies=api, responses=API_ERROR_RESPONSES)
    install_openapi(app)
    web = _web_root()
    if settings.web and web is not None:
        app.mount("/", StaticFiles(directory=web, html=True), name="web")
    uploads = {"/v1/files": settings.max_file_bytes + MULTIPART_ROOM}
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, path_limits=uploads)
    install_origin_guards(app, settings)
    if drain is not None:
        app.add_middleware(DrainGuard, drain=drain)
    app.add_middleware(ReplicaHeader, replica=settings.replica_name())
    # Outermost, so every answer (a refused Host or body, a 503 while draining included)
    # has an id and a line.
    app.add_middleware(AccessLog, observers=[observe_generation])
    return app


def _web_root() -> Path | None:
    # Starlette takes content types from the platform's mimetypes table, which on some
    # systems (Windows registries) maps .js to text/plain; browsers then refuse the modules.
    mimetypes.add_type("text/javascript", ".js")
    root = Path(str(resources.files("hearth.server") / "web"))
    return root if (root / "index.html").is_file() else None
