"""The model registry's loading rules, on scripted engines (the real ones: tests/e2e)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hearth.runtime.errors import ModelFileMissing, ModelLoadFailed, ModelNotFound, Overloaded
from hearth.runtime.library import ModelLibrary, ModelSpec
from hearth.runtime.registry import ModelRegistry
from hearth.runtime.settings import ModelSettings

from .scripted_engine import ScriptedEngine, scripted_registry


class CountingEngine(ScriptedEngine):
    """Counts its starts and closes; a start takes a moment, as a real load does."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.starts = 0
        self.closes = 0
        self.fail = fail

    async def start(self) -> None:
        self.starts += 1
        await asyncio.sleep(0.05)
        if self.fail:
            raise OSError("the file is unreadable")
        await super().start()

    async def close(self) -> None:
        self.closes += 1
        await super().close()


def run(coroutine):
    return asyncio.run(coroutine)


def test_requests_during_a_load_share_that_one_load():
    engines = {"a": CountingEngine(), "b": CountingEngine()}
    registry = scripted_registry(engines, max_loaded=2, keep_alive=0)

    async def use(model: str) -> str:
        async with registry.acquire(model) as handle:
            return handle.model

    async def scenario() -> list[str]:
        return await asyncio.gather(*(use("b") for _ in range(5)), use("b:chat-with-bob"))

    assert run(scenario()) == ["b"] * 6
    assert engines["b"].starts == 1 and engines["a"].starts == 0


def test_least_recently_used_idle_model_makes_room():
    engines = {name: CountingEngine() for name in "abc"}
    registry = scripted_registry(engines, max_loaded=2, keep_alive=0)

    async def scenario() -> None:
        for model in ("a", "b", "a", "c"):  # c evicts b, the one used least recently
            async with registry.acquire(model):
                pass

    run(scenario())
    assert [engines[n].started for n in "abc"] == [True, False, True]
    assert engines["b"].closes == 1


def test_a_model_with_requests_in_flight_is_never_unloaded():
    engines = {"a": CountingEngine(), "b": CountingEngine()}
    registry = scripted_registry(engines, max_loaded=1, keep_alive=0)

    async def scenario() -> None:
        async with registry.acquire("a") as handle:
            from hearth.engine.base import GenerationRequest, Prompt

            generation = handle.engine.submit(GenerationRequest(Prompt("hi")))
        assert handle.engine.active == 1
        with pytest.raises(Overloaded):
            async with registry.acquire("b"):
                pass
        assert engines["a"].started
        async for _ in generation:
            pass
        async with registry.acquire("b"):  # a finished: now it may go
            pass

    run(scenario())
    assert engines["a"].closes == 1 and engines["b"].started


def test_keep_alive_unloads_an_idle_model():
    engines = {"a": CountingEngine()}
    registry = scripted_registry(engines, max_loaded=1, keep_alive=0.2)

    async def scenario() -> None:
        await registry.start()
        assert registry.health()["models"]["a"]["state"] == "loaded"
        await asyncio.sleep(0.6)
        assert registry.health()["models"]["a"]["state"] == "unloaded"
        async with registry.acquire("a"):  # and loads again when asked
            pass
        await registry.close()

    run(scenario())
    assert engines["a"].starts == 2


def test_a_model_that_fails_to_load_does_not_stop_the_others():
    engines = {"good": CountingEngine(), "broken": CountingEngine(fail=True)}
    registry = scripted_registry(engines, max_loaded=2, keep_alive=0)

    async def scenario() -> None:
        with pytest.raises(ModelLoadFailed, match="unreadable"):
            async with registry.acquire("broken"):
                pass
        assert registry.health()["models"]["broken"]["state"] == "failed"
        async with registry.acquire("good") as handle:
            assert handle.model == "good"
        with pytest.raises(ModelLoadFailed):  # tried again, not remembered forever
            async with registry.acquire("broken"):
                pass

    run(scenario())
    assert engines["broken"].starts == 2


def test_unknown_ids_and_formats_are_not_found():
    registry = scripted_registry({"a": CountingEngine()}, keep_alive=0)

    async def scenario() -> None:
        for model in ("nope", "a:no-such-prompt", "nope:chat-with-bob", ":template"):
            with pytest.raises(ModelNotFound):
                async with registry.acquire(model):
                    pass

    run(scenario())


def test_a_pulled_model_whose_file_is_gone_is_missing_until_pulled_again(tmp_path: Path):
    """A pulled model whose file was deleted stopped the server at start; now the next model is
    the default and the missing one answers with the command that fetches it again."""
    settings = ModelSettings.load({})
    gone = tmp_path / "gone.gguf"
    specs = [ModelSpec("gone", "pulled", gone, settings, pulled_as="o/m:Q4_K_M"),
             ModelSpec("here", "test", tmp_path / "here.gguf", settings)]
    engines = {"gone": CountingEngine(), "here": CountingEngine()}
    registry = ModelRegistry(ModelLibrary(specs), lambda opts: engines[opts.name],
                             max_loaded=2, keep_alive=0)
    assert registry.default_id == "here"

    async def scenario() -> None:
        with pytest.raises(ModelFileMissing, match="`hearth pull o/m:Q4_K_M`"):
            async with registry.acquire("gone"):
                pass
        assert registry.health()["models"]["gone"]["state"] == "missing"
        gone.write_bytes(b"GGUF")  # pulled again while the server runs
        async with registry.acquire("gone") as handle:
            assert handle.model == "gone"

    run(scenario())
    assert engines["gone"].starts == 1
