"""The prompt cache on disk, on the real engine and model: a prompt read before a restart
is restored after it, and a damaged, cut or foreign file is never loaded."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import llama_cpp
import pytest

from hearth.engine import prompt_file
from hearth.engine.base import Finished, GenerationRequest, Prompt, SamplingParams, TextDelta
from hearth.engine.llama import LlamaEngine
from hearth.runtime.settings import PROMPT_CACHE_DIR, ModelSettings, bundled_model_path

GREEDY = SamplingParams(temperature=0)


def long_prompt(topic: str) -> str:
    """About 290 tokens: past the cache's threshold, quick to read on two cores."""
    lines = [f"Log of the {topic} survey, entry {i}: {i * 37 % 101} birds seen." for i in range(15)]
    return "\n".join(lines) + "\nSummary:"


async def complete(engine: LlamaEngine, text: str) -> tuple[str, Finished]:
    request = GenerationRequest(Prompt(text), max_tokens=6, sampling=GREEDY)
    parts, finished = [], None
    async for event in engine.submit(request):
        if isinstance(event, TextDelta):
            parts.append(event.text)
        else:
            finished = event
    assert finished is not None
    return "".join(parts), finished


def run_engine(
    library: Path,
    scenario: Callable[[LlamaEngine], Awaitable[Any]],
    **options: Any,
) -> Any:
    """Start an engine whose data directory is `library`, run `scenario`, close the engine
    (which writes what its writer holds), and return the scenario's result."""
    settings = ModelSettings.load(
        {"parallel": 1, "n_ctx": 1024, "threads": 2, "library_dir": str(library)}
    )
    engine_options = settings.engine_options(bundled_model_path(), "smollm2")
    engine = LlamaEngine(dataclasses.replace(engine_options, **options))

    async def main() -> Any:
        await engine.start()
        try:
            return await scenario(engine)
        finally:
            await engine.close()

    return asyncio.run(main())


def cache_files(library: Path) -> list[Path]:
    return sorted((library / PROMPT_CACHE_DIR).glob(f"*/*{prompt_file.SUFFIX}"))


@dataclasses.dataclass(frozen=True)
class Seed:
    """A data directory holding the state of PROMPT read once, and the cold reply."""

    library: Path
    text: str
    finished: Finished


PROMPT = long_prompt("heron")


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    library = tmp_path_factory.mktemp("seed")
    text, finished = run_engine(library, lambda engine: complete(engine, PROMPT))
    assert finished.cached_tokens == 0
    assert len(cache_files(library)) == 1
    return Seed(library, text, finished)


@pytest.fixture
def library(seed: Seed, tmp_path: Path) -> Path:
    """A copy of the seed's data directory, for a test to restart on (or damage)."""
    copy = tmp_path / "data"
    shutil.copytree(seed.library, copy)
    return copy


def test_a_prompt_read_before_a_restart_is_restored_from_disk(seed, library):
    async def scenario(engine: LlamaEngine) -> tuple[str, Finished, dict]:
        text, finished = await complete(engine, PROMPT)
        return text, finished, engine.load()

    (stored,) = cache_files(library)
    inode = stored.stat().st_ino
    text, finished, load = run_engine(library, scenario)
    assert text == seed.text
    assert finished.cached_tokens == finished.prompt_tokens - 1
    assert load["disk_cache_hits"] == 1
    assert load["disk_cache_restored_tokens"] == finished.cached_tokens
    assert load["engine"]["cached_prompt_tokens"] == finished.cached_tokens
    # Nothing changed: the same tokens are not written again (a write makes a new inode).
    assert [path.stat().st_ino for path in cache_files(library)] == [inode]


def test_with_the_disk_cache_off_nothing_is_written(seed, tmp_path):
    text, finished = run_engine(tmp_path, lambda e: complete(e, PROMPT), cache_disk_bytes=0)
    assert (text, finished.cached_tokens) == (seed.text, 0)
    assert not (tmp_path / PROMPT_CACHE_DIR).exists()


def flip_payload_byte(path: Path) -> None:
    head = prompt_file.read_head(path, read_key(path))
    data = bytearray(path.read_bytes())
    data[head.payload_offset + head.payload_bytes // 2] ^= 0x10
    path.write_bytes(data)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def read_key(path: Path) -> dict:
    import json

    raw = path.read_bytes()
    length = int.from_bytes(raw[12:16], "little")
    return json.loads(raw[prompt_file.PREAMBLE.size : prompt_file.PREAMBLE.size + length])["key"]


@pytest.mark.parametrize("damage", [flip_payload_byte, truncate], ids=["flipped", "truncated"])
def test_a_damaged_file_is_deleted_and_the_prompt_read_again(seed, library, damage):
    (stored,) = cache_files(library)
    damage(stored)

    async def scenario(engine: LlamaEngine) -> tuple[str, Finished, dict]:
        text, finished = await complete(engine, PROMPT)
        return text, finished, engine.load()

    text, finished, load = run_engine(library, scenario)
    assert text == seed.text
    assert finished.cached_tokens == 0
    assert load["disk_cache_hits"] == 0
    assert load["disk_cache_removed_corrupt"] == 1
    # The damaged file is gone; the one written in its place reads whole.
    (written,) = cache_files(library)
    key = read_key(written)
    assert prompt_file.read_payload(written, key, prompt_file.read_head(written, key))


@pytest.mark.parametrize(
    "change",
    [
        {"n_ctx_seq": 2048},
        {"llama_cpp": "0.0.1"},
        {"context": "flash attention on"},
    ],
    ids=["n_ctx", "build", "settings"],
)
def test_a_file_of_another_model_or_setting_is_left_alone_and_not_loaded(seed, library, change):
    (stored,) = cache_files(library)
    key = read_key(stored)
    head = prompt_file.read_head(stored, key)
    payload = prompt_file.read_payload(stored, key, head)
    foreign = stored.with_name("foreign" + prompt_file.SUFFIX)
    prompt_file.write(foreign, {**key, **change}, head.tokens, payload)
    stored.unlink()

    async def scenario(engine: LlamaEngine) -> tuple[str, Finished, dict]:
        text, finished = await complete(engine, PROMPT)
        return text, finished, engine.load()

    text, finished, load = run_engine(library, scenario)
    assert (text, finished.cached_tokens, load["disk_cache_hits"]) == (seed.text, 0, 0)
    assert foreign.exists() and load["disk_cache_removed_corrupt"] == 0


def test_a_state_llama_cpp_refuses_is_dropped_and_the_prompt_read(seed, library, monkeypatch):
    # llama_state_seq_set_data answers 0 when it does not take a state.
    monkeypatch.setattr(llama_cpp, "llama_state_seq_set_data", lambda *args: 0)

    async def scenario(engine: LlamaEngine) -> tuple[str, Finished, dict]:
        text, finished = await complete(engine, PROMPT)
        return text, finished, engine.load()

    text, finished, load = run_engine(library, scenario)
    assert (text, finished.cached_tokens, load["disk_cache_hits"]) == (seed.text, 0, 0)


def test_the_size_bound_holds_and_the_least_recently_used_prompt_goes(seed, tmp_path):
    """One slot and no host-memory cache: every other prompt comes back from disk."""
    size = cache_files(seed.library)[0].stat().st_size
    bound = size * 5 // 2  # room for two prompts of this length, not three
    first, second, third = (long_prompt(topic) for topic in ("crane", "stork", "ibis"))

    async def scenario(engine: LlamaEngine) -> tuple[list[int], set[tuple[int, ...]]]:
        cached = []
        for text in (first, second, first, third):
            cached.append((await complete(engine, text))[1].cached_tokens)
        return cached, {tuple(engine.tokenize(Prompt(text))[:40]) for text in (first, third)}

    cached, wanted = run_engine(tmp_path, scenario, cache_disk_bytes=bound, cache_ram_bytes=0)
    assert max(cached[0], cached[1], cached[3]) < 10  # a few tokens of "Log of the"
    assert cached[2] > 250  # the first prompt, back from disk after the second took the slot
    files = cache_files(tmp_path)
    assert sum(path.stat().st_size for path in files) <= bound
    key = read_key(files[0])
    kept = {tuple(prompt_file.tokens_of(prompt_file.read_head(p, key).tokens)[:40]) for p in files}
    assert kept == wanted  # the second prompt, least recently used, was evicted
