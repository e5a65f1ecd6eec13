"""The model registry's loading rules, on scripted engines (the real ones: tests/e2e)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from hearth.engine.base import GenerationRequest, Prompt
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
        generation = await generating(registry, "a")
        b = asyncio.create_task(use(registry, "b", []))
        await waiting(registry, 1, b)
        assert engines["a"].started and engines["a"].closes == 0
        await finish(generation)
        await b  # a finished: now it may go

    run(scenario())
    assert engines["a"].closes == 1 and engines["b"].started


async def generating(registry, model: str):
    """A generation of `model` submitted and left unread, so that the model stays busy."""
    async with registry.acquire(model) as handle:
        return handle.engine.submit(GenerationRequest(Prompt("hi")))


async def finish(generation) -> None:
    async for _ in generation:
        pass


async def use(registry, model: str, order: list[str]) -> None:
    async with registry.acquire(model):
        order.append(model)


async def waiting(registry, count: int, *tasks: asyncio.Task) -> None:
    """Until `count` requests wait for their model; a task that already ended raises its error."""
    deadline = time.monotonic() + 30
    while True:
        await asyncio.sleep(0.01)
        for task in tasks:
            if task.done():
                task.result()
        if registry.health()["model_queue"] == count:
            return
        assert time.monotonic() < deadline, registry.health()


def test_a_request_for_a_model_that_is_not_resident_waits_for_a_busy_one_instead_of_503():
    """With every resident model busy, a request for another model got 503 at once."""
    engines = {"a": CountingEngine(), "b": CountingEngine()}
    registry = scripted_registry(engines, max_loaded=1, keep_alive=0)
    order: list[str] = []

    async def scenario() -> None:
        generation = await generating(registry, "a")
        b = asyncio.create_task(use(registry, "b", order))
        await waiting(registry, 1, b)
        assert order == []  # b waits while a generates
        await finish(generation)
        await b

    run(scenario())
    assert order == ["b"] and engines["a"].closes == 1


def test_requests_waiting_for_a_swap_go_in_arrival_order_across_models():
    """Requests waiting for a model swap were not served in the order they arrived."""
    engines = {name: CountingEngine() for name in "abc"}
    registry = scripted_registry(engines, max_loaded=1, keep_alive=0)
    order: list[str] = []

    async def scenario() -> None:
        generation = await generating(registry, "a")
        tasks = []
        for model in ("b", "c", "a"):  # a is resident, yet it arrived last
            tasks.append(asyncio.create_task(use(registry, model, order)))
            await waiting(registry, len(tasks), *tasks)
        await finish(generation)
        await asyncio.gather(*tasks)

    run(scenario())
    assert order == ["b", "c", "a"]
    assert [engines[name].starts for name in "abc"] == [2, 1, 1]


def test_a_stream_of_requests_for_the_resident_model_does_not_starve_another():
    """Requests for the busy resident model kept it busy while a request for another waited."""
    engines = {"a": CountingEngine(), "b": CountingEngine()}
    registry = scripted_registry(engines, max_loaded=1, keep_alive=0)
    order: list[str] = []

    async def scenario() -> None:
        generation = await generating(registry, "a")
        b = asyncio.create_task(use(registry, "b", order))
        await waiting(registry, 1, b)
        more_a = []
        for count in range(2, 5):  # a keeps being asked for while b waits
            more_a.append(asyncio.create_task(use(registry, "a", order)))
            await waiting(registry, count, b, *more_a)
        assert order == []  # none of them jumped ahead of b onto the busy a
        await finish(generation)
        await asyncio.gather(b, *more_a)

    run(scenario())
    assert order == ["b", "a", "a", "a"]
    assert engines["a"].starts == 2 and engines["b"].starts == 1


def test_a_full_wait_queue_is_refused_with_retry_after():
    """Requests waiting for a model swap were not bounded by --max-queue."""
    engines = {name: CountingEngine() for name in "abc"}
    registry = scripted_registry(engines, max_loaded=1, keep_alive=0, max_queue=2)
    order: list[str] = []

    async def scenario() -> None:
        generation = await generating(registry, "a")
        queued = [asyncio.create_task(use(registry, model, order)) for model in "bc"]
        await waiting(registry, 2, *queued)
        with pytest.raises(Overloaded, match="--max-queue") as full:
            await use(registry, "a", order)  # even for the resident model: it waits behind b
        assert full.value.retry_after >= 1
        assert registry.health()["model_queue"] == 2
        await finish(generation)
        await asyncio.gather(*queued)

    run(scenario())
    assert order == ["b", "c"]


def test_a_request_waiting_past_the_load_timeout_gets_503_with_retry_after():
    """A request for a model that is not resident was refused at once instead of waiting up to
    --load-timeout for the busy model."""
    engines = {"a": CountingEngine(), "b": CountingEngine()}
    registry = scripted_registry(engines, max_loaded=1, keep_alive=0, load_timeout=0.5)
    order: list[str] = []

    async def scenario() -> None:
        generation = await generating(registry, "a")
        b = asyncio.create_task(use(registry, "b", order))
        await waiting(registry, 1, b)  # it queues first...
        with pytest.raises(Overloaded, match="--load-timeout") as late:
            await b  # ...and gives up when a is still busy after the load timeout
        assert late.value.retry_after >= 1
        assert registry.health()["model_queue"] == 0
        await finish(generation)
        await use(registry, "b", order)  # once a is idle, b loads

    run(scenario())
    assert order == ["b"] and engines["b"].starts == 1


def test_a_cancelled_waiter_leaves_the_queue():
    """A request given up while it waited for its model kept its place in the queue."""
    engines = {"a": CountingEngine(), "b": CountingEngine()}
    registry = scripted_registry(engines, max_loaded=1, keep_alive=0)
    order: list[str] = []

    async def scenario() -> None:
        generation = await generating(registry, "a")
        b = asyncio.create_task(use(registry, "b", order))
        await waiting(registry, 1, b)
        b.cancel()  # what a client that hangs up does to its request
        with contextlib.suppress(asyncio.CancelledError):
            await b
        assert registry.health()["model_queue"] == 0
        await use(registry, "a", order)  # nothing waits: the busy resident model takes it
        await finish(generation)

    run(scenario())
    assert order == ["a"]
    assert engines["b"].starts == 0 and engines["a"].closes == 0


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
    specs = [
        ModelSpec("gone", "pulled", gone, settings, pulled_as="o/m:Q4_K_M"),
        ModelSpec("here", "test", tmp_path / "here.gguf", settings),
    ]
    engines = {"gone": CountingEngine(), "here": CountingEngine()}
    registry = ModelRegistry(
        ModelLibrary(specs), lambda opts: engines[opts.name], max_loaded=2, keep_alive=0
    )
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


def test_a_request_cancelled_while_its_model_loads_leaves_the_model_loaded():
    """A request cancelled mid-load cut the load short and left its model 'loading' for good,
    so the next request started a second engine."""
    engines = {"a": CountingEngine(), "b": CountingEngine()}
    registry = scripted_registry(engines, max_loaded=2, keep_alive=0)

    async def scenario() -> None:
        b = asyncio.create_task(use(registry, "b", []))
        deadline = time.monotonic() + 30
        while registry.health()["models"]["b"]["state"] != "loading":
            assert time.monotonic() < deadline and not b.done()
            await asyncio.sleep(0.001)
        b.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await b
        while registry.health()["models"]["b"]["state"] != "loaded":
            assert time.monotonic() < deadline, registry.health()
            await asyncio.sleep(0.01)
        async with registry.acquire("b") as handle:
            assert handle.model == "b"

    run(scenario())
    assert engines["b"].starts == 1


def test_aliases_and_their_patterns_name_a_model_and_its_own_ids_win(tmp_path: Path):
    """Anthropic clients send claude-* names: an alias pattern routes them to a local model."""
    settings = ModelSettings.load({})
    specs = [
        ModelSpec("a", "test", tmp_path / "a.gguf", settings, aliases=("*",)),
        ModelSpec("b", "test", tmp_path / "b.gguf", settings, aliases=("claude-*", "gpt-4o")),
    ]
    engines = {"a": CountingEngine(), "b": CountingEngine()}
    registry = ModelRegistry(
        ModelLibrary(specs), lambda opts: engines[opts.name], max_loaded=2, keep_alive=0
    )

    async def served(name: str) -> tuple[str, str]:
        async with registry.acquire(name) as handle:
            return handle.id, handle.model

    async def scenario() -> None:
        # a's catch-all pattern comes first, yet b's own id is b's.
        assert await served("b") == ("b", "b")
        # the first model whose aliases take the name, in library order: a's "*".
        assert await served("claude-sonnet-4-5") == ("claude-sonnet-4-5", "a")
        assert await served("b:chat-with-bob") == ("b:chat-with-bob", "b")

    run(scenario())

    specs[0] = ModelSpec("a", "test", tmp_path / "a.gguf", settings)
    registry = ModelRegistry(
        ModelLibrary(specs), lambda opts: engines[opts.name], max_loaded=2, keep_alive=0
    )

    async def without_catch_all() -> None:
        assert await served("claude-sonnet-4-5") == ("claude-sonnet-4-5", "b")
        assert await served("claude-haiku-4-5:chat-with-bob") == (
            "claude-haiku-4-5:chat-with-bob",
            "b",
        )
        assert await served("gpt-4o") == ("gpt-4o", "b")
        for name in ("gpt-4o-mini", "claude", "xclaude-3"):
            with pytest.raises(ModelNotFound):
                await served(name)

    run(without_catch_all())


def test_aliases_come_from_the_command_line_and_the_config(tmp_path: Path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    settings = ModelSettings.load(
        {
            "model": str(model),
            "aliases": "claude-*, gpt-4o",
            "models_dir": tmp_path / "none",
            "models": [{"id": "other", "path": str(model), "aliases": ["claude-3-*"]}],
        }
    )
    specs = {spec.id: spec for spec in ModelLibrary.scan(settings).specs}
    assert specs["m"].aliases == ("claude-*", "gpt-4o")
    assert specs["other"].aliases == ("claude-3-*",)
    assert specs["m"].answers_to("claude-opus-4-1") and not specs["m"].answers_to("gpt-4")
