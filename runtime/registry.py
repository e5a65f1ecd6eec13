"""The model registry: every endpoint, `/health` and `hearth chat` reach a model through it.

`acquire(model_id)` resolves an id to a `ModelHandle` (the model's engine, started on
demand, its chat format and what it can do). An id is a library model (`smollm2`), or
`ID:NAME` for one of its chat formats (`smollm2:chat-with-bob`, `smollm2:template`).

Loading rules, and why:
- One load at a time, across all models. Requests for a model that is loading wait for
  that load instead of starting another: two loads of one model would double its memory.
- At most `max_loaded` models are resident. To load another, the least recently used
  *idle* model is unloaded; a model with requests in flight (or being prepared) is never
  unloaded under them. When every resident model is busy the request waits until one is
  idle, as Ollama's do, rather than failing.
- Waiting requests form one queue, in arrival order across models. While any request
  waits, new ones queue behind it even for a resident model: otherwise a steady stream of
  requests for a busy model A keeps it busy and a request for B waits forever. The queue
  holds at most `max_queue` requests (beyond it, 503 with Retry-After), and a request that
  waits `load_timeout` seconds gives up with 503 and Retry-After. A cancelled request (its
  client hung up) leaves the queue.
- A model idle for `keep_alive` seconds is unloaded (0 keeps models loaded).
- A model that fails to load answers that failure for its own requests; the next request
  tries again (the file may have been fixed), and every other model keeps serving.
- A pulled model whose file is gone is "missing": a warning at start, a 404 naming the
  command that fetches it again for its requests (checked at each load, so a pull while the
  server runs brings it back), and the next model is the default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import psutil

from hearth.engine.base import Engine, EngineOptions, ModelInfo, SamplingParams
from hearth.engine.errors import WorkerUnreachable as EngineWorkerUnreachable
from hearth.prompts import TEMPLATE, ModelChatTemplate, bundled_prompts, load_chat_format
from hearth.prompts.base import ChatFormat, ModelTemplate
from hearth.runtime.errors import (
    HearthError,
    ModelFileMissing,
    ModelLoadFailed,
    ModelNotFound,
    Overloaded,
    from_engine,
)
from hearth.runtime.library import GGUFFacts, ModelLibrary, ModelSpec, gguf_facts
from hearth.runtime.model_queue import ModelQueue
from hearth.runtime.reasoning import ReasoningStyle, detect_reasoning
from hearth.runtime.settings import ModelSettings

log = logging.getLogger(__name__)

EngineFactory = Callable[[EngineOptions], Engine]
Puller = Callable[[ModelSpec], str]  # fetches a config model's `hf` repo; returns its path

State = Literal["unloaded", "loading", "loaded", "failed", "missing"]

# Resident models by default: as many as the free memory holds, never more than this.
MAX_LOADED_BY_DEFAULT = 3
# Of the memory free at start-up, the share resident models may take by default.
MEMORY_SHARE = 0.8


@dataclass(frozen=True)
class ModelListing:
    """One id the registry serves, as a model list shows it."""

    id: str
    prompt: str | None  # the chat format the id applies
    context_length: int
    state: State

    @property
    def loaded(self) -> bool:
        return self.state == "loaded"


@dataclass(frozen=True)
class ModelHandle:
    """A model ready to take requests, seen through one of its ids."""

    id: str  # the id the client asked for
    model: str  # the library model behind it
    engine: Engine
    chat_format: ChatFormat
    sampling: SamplingParams
    # How the model marks its reasoning in this chat format (None: replies are content).
    reasoning: ReasoningStyle | None = None


@dataclass
class _Entry:
    spec: ModelSpec
    engine: Engine | None = None
    formats: dict[str, ChatFormat] = field(default_factory=dict)  # by id
    styles: dict[str, ReasoningStyle | None] = field(default_factory=dict)  # by id
    state: State = "unloaded"
    error: str | None = None
    last_used: float = 0.0
    pins: int = 0  # requests between acquire and submit
    load_seconds: float | None = None
    _facts: tuple[Path, GGUFFacts | None] | None = None

    def facts(self) -> GGUFFacts | None:
        """The GGUF header's facts, read once per file (None when it cannot be read)."""
        path = self.spec.path
        if path is None:
            return None
        if self._facts is None or self._facts[0] != path:
            try:
                found: GGUFFacts | None = gguf_facts(path)
            except (OSError, ValueError):
                found = None
            self._facts = (path, found)
        return self._facts[1]

    @property
    def busy(self) -> bool:
        return self.pins > 0 or (self.engine is not None and self.engine.active > 0)


class ModelRegistry:
    def __init__(
        self,
        library: ModelLibrary,
        engine_factory: EngineFactory,
        *,
        max_loaded: int | None = None,
        keep_alive: float = 300.0,
        max_queue: int = 64,
        load_timeout: float = 300.0,
        puller: Puller | None = None,
    ) -> None:
        self._entries = {spec.id: _Entry(spec) for spec in library.specs}
        self.started = False
        self._default = library.default.id
        self._factory = engine_factory
        self._puller = puller
        self.max_loaded = max_loaded or default_max_loaded(library.specs)
        self.keep_alive = keep_alive
        self._queue = ModelQueue(max_queue, load_timeout)
        self._load_lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None
        for entry in self._entries.values():
            if entry.spec.missing:
                self._mark_missing(entry)
                instead = (
                    f"; serving {self._default} as the default model instead"
                    if entry.spec is library.specs[0]
                    else ""
                )
                log.warning(
                    "model %s: its file %s is gone; `%s` fetches it again%s",
                    entry.spec.id,
                    entry.spec.path,
                    entry.spec.fetch_command,
                    instead,
                )

    @staticmethod
    def _mark_missing(entry: _Entry) -> ModelFileMissing:
        spec = entry.spec
        assert spec.fetch_command is not None
        error = ModelFileMissing(spec.id, str(spec.path), spec.fetch_command)
        entry.state, entry.error = "missing", error.message
        return error

    # ---- ids ----------------------------------------------------------------------------

    @property
    def default_id(self) -> str:
        return self._default

    def spec(self, model_id: str) -> ModelSpec:
        return self._split(model_id)[0].spec

    def model_ids(self) -> list[str]:
        return list(self._entries)

    def _split(self, model_id: str) -> tuple[_Entry, str | None]:
        """The model a name means, and the chat format it picks (`ID:NAME`). Models' own
        ids are tried before anyone's aliases, so a catch-all pattern never shadows an id."""
        base, _, variant = model_id.rpartition(":")
        for named in (self._entries.get, self._aliased):
            entry = named(model_id)
            if entry is not None:
                return entry, None
            entry = named(base) if base and variant else None
            if entry is not None and variant in self._variants(entry):
                return entry, variant
        raise ModelNotFound(model_id, self.ids())

    def _aliased(self, name: str) -> _Entry | None:
        """The first model, in library order, whose aliases take the name."""
        return next((e for e in self._entries.values() if e.spec.answers_to(name)), None)

    def _variants(self, entry: _Entry) -> list[str]:
        names = sorted(bundled_prompts())
        if self._has_template(entry):
            names.insert(0, TEMPLATE)
        return names

    @staticmethod
    def _has_template(entry: _Entry) -> bool:
        if entry.engine is not None and entry.engine.ready:
            return entry.engine.info.chat_template is not None
        facts = entry.facts()
        return facts is not None and facts.has_chat_template

    def ids(self) -> list[str]:
        out = []
        for entry in self._entries.values():
            out.append(entry.spec.id)
            out += [f"{entry.spec.id}:{name}" for name in self._variants(entry)]
        return out

    def listings(self) -> list[ModelListing]:
        cards = []
        for entry in self._entries.values():
            context = self._context_length(entry)
            for model_id in [entry.spec.id] + [
                f"{entry.spec.id}:{name}" for name in self._variants(entry)
            ]:
                fmt = entry.formats.get(model_id)
                prompt = fmt.name if fmt else _variant_prompt(model_id, entry)
                cards.append(
                    ModelListing(
                        id=model_id, prompt=prompt, context_length=context, state=entry.state
                    )
                )
        return cards

    @staticmethod
    def _context_length(entry: _Entry) -> int:
        if entry.engine is not None and entry.engine.ready:
            return entry.engine.info.n_ctx
        return entry.spec.settings.n_ctx

    # ---- using a model ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def acquire(self, model_id: str) -> AsyncIterator[ModelHandle]:
        """The model behind `model_id`, loaded, and kept loaded while the block runs.

        Submit the request inside the block: from then on the engine's own count of active
        requests keeps the model resident. Cancel the task to give up a place in the queue.
        """
        entry, variant = self._split(model_id)
        if entry.state == "loaded" and entry.engine is not None and entry.engine.failure:
            await self._drop_stopped(entry)
        await self._take_turn(entry)
        try:
            entry.last_used = time.monotonic()
            yield self._handle(entry, model_id, variant)
        finally:
            entry.pins -= 1
            entry.last_used = time.monotonic()
            self._queue.wake()

    async def _take_turn(self, entry: _Entry) -> None:
        """Return with `entry` pinned and loaded, after the requests queued before this one."""
        if self._queue.empty and entry.state == "loaded":
            entry.pins += 1
            return
        async with self._queue.turn(entry.spec.id, lambda: self._has_room(entry)):
            entry.pins += 1
            try:
                if entry.state != "loaded":
                    await self._shielded_load(entry)
            except BaseException:
                entry.pins -= 1
                raise

    async def _drop_stopped(self, entry: _Entry) -> None:
        """An engine that stopped on its own (its RPC worker went away) is let go; the
        request then loads the model again, which fails fast while the worker is away."""
        async with self._load_lock:
            if entry.engine is not None and entry.engine.failure:
                log.warning("model %s stopped (%s); loading it again", entry.spec.id,
                            entry.engine.failure)  # fmt: skip
                await self._unload(entry)

    def _has_room(self, entry: _Entry) -> bool:
        """`entry` is resident, or loading it now unloads at most idle models."""
        if entry.state == "loaded":
            return True
        others = [e for e in self._entries.values() if e.engine is not None and e is not entry]
        return sum(e.busy for e in others) < self.max_loaded

    async def _shielded_load(self, entry: _Entry) -> None:
        # A request cancelled mid-load (its client left) must not cut the load short: a
        # half-started engine would stay "loading" for good. The load finishes on its own.
        load = asyncio.ensure_future(self._ensure_loaded(entry))
        load.add_done_callback(_retrieve)
        await asyncio.shield(load)

    def _handle(self, entry: _Entry, model_id: str, variant: str | None) -> ModelHandle:
        assert entry.engine is not None
        # Keyed by the model's own id, not the name sent: an alias pattern takes any number.
        key = f"{entry.spec.id}:{variant}" if variant else entry.spec.id
        fmt = entry.formats.get(key)
        if fmt is None:
            fmt = entry.formats[key] = self._chat_format(entry, variant)
        if key not in entry.styles:
            entry.styles[key] = _reasoning_style(fmt, entry.spec.settings)
        return ModelHandle(
            id=model_id,
            model=entry.spec.id,
            engine=entry.engine,
            chat_format=fmt,
            sampling=entry.spec.settings.sampling_defaults(),
            reasoning=entry.styles[key],
        )

    @staticmethod
    def _chat_format(entry: _Entry, variant: str | None) -> ChatFormat:
        assert entry.engine is not None
        settings = entry.spec.settings
        template = _model_template(entry.engine.info, settings)
        if variant == TEMPLATE:
            return load_chat_format(TEMPLATE, model_template=template)
        return load_chat_format(
            variant or settings.prompt,
            model_template=template,
            user_name=settings.user_name,
            ai_name=settings.ai_name,
        )

    async def _ensure_loaded(self, entry: _Entry) -> None:
        async with self._load_lock:
            if entry.state == "loaded":
                return  # another request loaded it while this one waited
            if entry.spec.missing:
                raise self._mark_missing(entry)
            await self._make_room(entry)
            await self._load(entry)

    async def _make_room(self, wanted: _Entry) -> None:
        resident = [e for e in self._entries.values() if e.engine is not None and e is not wanted]
        while len(resident) >= self.max_loaded:
            idle = [e for e in resident if not e.busy]
            if not idle:
                raise Overloaded(
                    f"Cannot load '{wanted.spec.id}': all {len(resident)} loaded models are "
                    "busy (--max-loaded-models). Try again shortly.",
                    retry_after=5,
                )
            victim = min(idle, key=lambda e: e.last_used)
            log.info("unloading %s to make room for %s", victim.spec.id, wanted.spec.id)
            await self._unload(victim)
            resident.remove(victim)

    async def _load(self, entry: _Entry) -> None:
        entry.state, entry.error = "loading", None
        started = time.monotonic()
        engine: Engine | None = None
        try:
            spec = await self._located(entry)
            assert spec.path is not None
            options = spec.settings.engine_options(spec.path, spec.id, spec.lora, spec.lora_scale)
            engine = entry.engine = self._factory(options)
            await engine.start()
            # The default format is made now, so a broken prompt file fails the load.
            entry.formats[spec.id] = self._chat_format(entry, None)
        except Exception as failure:  # noqa: BLE001 - any failure is this model's, not the server's
            if engine is not None:
                await engine.close()
            entry.state, entry.engine = "failed", None
            entry.formats.clear()
            entry.styles.clear()
            entry.error = _one_line(failure)
            log.error("cannot load %s: %s", entry.spec.id, entry.error)
            if isinstance(failure, EngineWorkerUnreachable):  # 503: it loads once it answers
                raise from_engine(failure) from None
            raise ModelLoadFailed(entry.spec.id, entry.error) from None
        entry.state = "loaded"
        entry.load_seconds = time.monotonic() - started
        log.info("loaded %s in %.1f s", entry.spec.id, entry.load_seconds)

    async def _located(self, entry: _Entry) -> ModelSpec:
        """The spec with a file to load: a config model's `hf` repo is pulled first."""
        spec = entry.spec
        if spec.path is not None:
            return spec  # a missing file is the engine's to report
        if spec.hf is None or self._puller is None:
            raise FileNotFoundError(f"model {spec.id} has no file to load")
        path = await asyncio.to_thread(self._puller, spec)
        entry.spec = replace(spec, path=Path(path))
        return entry.spec

    async def _unload(self, entry: _Entry) -> None:
        engine, entry.engine = entry.engine, None
        entry.state = "unloaded"
        entry.formats.clear()
        entry.styles.clear()
        if engine is not None:
            await engine.close()
        self._queue.wake()

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Load the default model now (a broken default fails start-up), start keep-alive."""
        async with self.acquire(self._default):
            pass
        self.started = True
        if self.keep_alive > 0:
            self._reaper = asyncio.create_task(self._reap_idle())

    async def _reap_idle(self) -> None:
        tick = min(5.0, max(self.keep_alive / 4, 0.1))
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for entry in self._entries.values():
                if entry.engine is None or entry.state != "loaded":
                    continue
                if entry.busy:
                    entry.last_used = now  # idle time counts from the last request's end
                elif now - entry.last_used >= self.keep_alive:
                    async with self._load_lock:
                        if entry.engine is not None and not entry.busy:
                            log.info(
                                "unloading %s: idle for %.0f s",
                                entry.spec.id,
                                now - entry.last_used,
                            )
                            await self._unload(entry)

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for entry in self._entries.values():
            await self._unload(entry)

    # ---- reports ------------------------------------------------------------------------

    def engine_of(self, model_id: str) -> Engine | None:
        """The engine of a resident model, for reports; None when it is not loaded."""
        entry = self._entries.get(model_id)
        return entry.engine if entry is not None and entry.state == "loaded" else None

    def health(self) -> dict[str, object]:
        models = {}
        for entry in self._entries.values():
            report: dict[str, object] = {"state": entry.state}
            if entry.error:
                report["error"] = entry.error
            if entry.engine is not None and entry.engine.failure:
                report["state"], report["error"] = "failed", str(entry.engine.failure)
            if entry.load_seconds is not None:
                report["load_seconds"] = round(entry.load_seconds, 2)
            if entry.engine is not None and entry.engine.ready:
                report.update(entry.engine.load())
            models[entry.spec.id] = report
        return {
            "default_model": self._default,
            "max_loaded_models": self.max_loaded,
            "model_queue": self._queue.waiting,
            "models": models,
        }


def _model_template(info: ModelInfo, settings: ModelSettings) -> ModelTemplate | None:
    if not info.chat_template:
        return None
    return ModelTemplate(
        info.chat_template,
        info.bos_token,
        info.eos_token,
        info.add_bos,
        special_tokens_in_content=settings.special_tokens_in_content,
    )


def _reasoning_style(fmt: ChatFormat, settings: ModelSettings) -> ReasoningStyle | None:
    """The model's reasoning style in this format: from its chat template when the format
    is the template (a transcript prompt does not ask the model to think), or as
    --reasoning-format names it."""
    template = fmt.model.source if isinstance(fmt, ModelChatTemplate) else None
    return detect_reasoning(template, settings.reasoning_format)


def _variant_prompt(model_id: str, entry: _Entry) -> str | None:
    base, _, variant = model_id.rpartition(":")
    if base == entry.spec.id and variant:
        return variant
    return entry.spec.settings.prompt


def _retrieve(load: asyncio.Future[None]) -> None:
    """A load whose request was cancelled: its failure is logged by _load, not re-raised."""
    if not load.cancelled():
        load.exception()


def _one_line(error: Exception) -> str:
    if isinstance(error, HearthError):
        return error.message
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def default_max_loaded(specs: list[ModelSpec]) -> int:
    """As many of the largest library model as fit in MEMORY_SHARE of the free memory
    (its file plus its KV cache at its context and slots), between 1 and 3."""
    largest = 0
    for spec in specs:
        facts = _Entry(spec).facts()
        if facts is not None:
            kv = facts.kv_bytes_per_token * spec.settings.n_ctx * spec.settings.parallel
            largest = max(largest, facts.size_bytes + kv)
    if largest == 0:
        return 1
    fits = int(psutil.virtual_memory().available * MEMORY_SHARE // largest)
    return max(1, min(MAX_LOADED_BY_DEFAULT, fits))
