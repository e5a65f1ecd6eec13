"""The runtime over this machine's models: what `hearth serve` and `hearth chat` both stand on."""

from __future__ import annotations

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
        LlamaEngine,
        puller=lambda spec: pull_for_config(spec, settings),
        **serving,
    )
