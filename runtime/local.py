"""The runtime over this machine's models: what `hearth serve` and `hearth chat` both stand on."""

from __future__ import annotations

from hearth.engine.llama import LlamaEngine
from hearth.runtime.library import ModelLibrary
from hearth.runtime.pull import pull_for_config
from hearth.runtime.registry import ModelRegistry
from hearth.runtime.settings import ModelSettings


def build_registry(settings: ModelSettings) -> ModelRegistry:
    """The registry over this machine's model library, loading models with llama.cpp."""
    library = ModelLibrary.scan(settings)
    keep_alive = getattr(settings, "keep_alive_seconds", 0.0)
    return ModelRegistry(
        library,
        LlamaEngine,
        max_loaded=getattr(settings, "max_loaded_models", None),
        keep_alive=keep_alive,
        max_queue=getattr(settings, "max_queue", 64),
        load_timeout=getattr(settings, "load_timeout", 300.0),
        puller=lambda spec: pull_for_config(spec, settings),
    )
