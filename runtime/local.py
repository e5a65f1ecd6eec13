"""The runtime over this machine's models: what `hearth serve` and `hearth chat` both stand on."""

from __future__ import annotations

from hearth.engine.base import Engine, EngineOptions
from hearth.engine.isolated import IsolatedEngine
from hearth.engine.llama import LlamaEngine
from hearth.runtime.library import ModelLibrary
from hearth.runtime.pull import pull_for_config
from hearth.runtime.registry import ModelRegistry
from hearth.runtime.settings import ModelSettings, ServerSettings


def build_registry(settings: ModelSettings) -> ModelRegistry:
    """The registry over this machine's model library, loading models with llama.cpp."""
    if isinstance(settings, ServerSettings):
        serving: dict = {
            "max_loaded": settings.max_loaded_models,
            "keep_alive": settings.keep_alive_seconds,
            "max_queue": settings.max_queue,
            "load_timeout": settings.load_timeout,
        }
    else:
        serving = {"keep_alive": 0.0}  # hearth chat: its one model stays loaded
    return ModelRegistry(
        ModelLibrary.scan(settings),
        engine_for,
        puller=lambda spec: pull_for_config(spec, settings),
        **serving,
    )


def engine_for(options: EngineOptions) -> Engine:
    """llama.cpp in this process; a model on RPC workers in a process of its own, since
    ggml's RPC client aborts its process when a worker goes away (engine/isolated.py)."""
    return IsolatedEngine(options) if options.rpc else LlamaEngine(options)
