"""`hearth serve`: load a model and serve the OpenAI API (and the chat page) over HTTP."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from hearth.runtime.settings import ServerSettings

if TYPE_CHECKING:
    from hearth.server.state import ServerState

from hearth.flags import add_settings_flags, settings_from_args

log = logging.getLogger("hearth")


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings_flags(parser, ServerSettings)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from hearth.engine.errors import ModelLoadError
    from hearth.engine.model import check_gguf
    from hearth.runtime.local import build_registry
    from hearth.runtime.preflight import StartupCheckFailed, check_before_loading
    from hearth.server.access_log import configure_logging
    from hearth.server.app import create_app
    from hearth.server.drain import Drain, DrainingServer

    settings = settings_from_args(ServerSettings, args)
    log_config = configure_logging(settings.log_format, settings.log_level)
    try:
        # Cheapest first: reading a GGUF takes seconds on a large file.
        check_before_loading(settings)
        registry = build_registry(settings)
        default = registry.spec(registry.default_id)
        if default.path is not None:
            check_gguf(default.path)
    except (FileNotFoundError, ModelLoadError, StartupCheckFailed) as unusable:
        print(f"hearth: {unusable}", file=sys.stderr)
        return 1
    failure: list[str] = []
    server: uvicorn.Server | None = None

    def on_fatal(reason: str) -> None:
        failure.append(reason)
        if server is not None:
            server.should_exit = True

    def on_ready(state: ServerState) -> None:
        print(_banner(settings, state), flush=True)

    drain = Drain(settings.drain_timeout)
    app = create_app(settings, registry, on_ready=on_ready, on_fatal=on_fatal, drain=drain)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=log_config,
        access_log=False,  # Hearth writes its own access line (server/access_log.py)
        timeout_graceful_shutdown=5,
    )
    server = DrainingServer(config, drain)
    server.run()
    if failure:
        print(f"hearth: {failure[0]}", file=sys.stderr)
        return 1
    return 0


def _banner(settings: ServerSettings, state: ServerState) -> str:
    engine = state.registry.engine_of(state.registry.default_id)
    assert engine is not None
    info = engine.info
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{settings.port}"
    gpu = "all" if settings.n_gpu_layers < 0 else str(settings.n_gpu_layers)
    lines = [
        f"Hearth is listening on {url}  (OpenAI API: {url}/v1"
        + (", chat page: " + url + "/)" if settings.web else ")"),
        f"  model    {info.name}  ({info.description}, {info.size_bytes / 2**20:.0f} MiB)",
        f"           {info.path}",
        f"  context  {info.n_ctx} tokens per request, {settings.parallel} slots",
        f"  threads  {settings.threads}    GPU layers  {gpu}",
        f"  models   {', '.join(state.registry.model_ids())}  "
        + f"(at most {state.registry.max_loaded} loaded at once)",
    ]
    if settings.api_key:
        lines.append("  API key  required")
    return "\n".join(lines)
