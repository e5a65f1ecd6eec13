"""A scripted engine for unit tests of the HTTP layer: no model, fixed replies.

It honours the engine interface (admission errors, events, cancel), so routing, validation,
error shapes and the SSE framing can be tested in-process in milliseconds. Everything that
claims the product works is tested again end to end against llama.cpp.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from hearth.engine.base import (
    Finished,
    GenerationEvent,
    GenerationRequest,
    ModelInfo,
    Prompt,
    TextDelta,
)
from hearth.engine.errors import ContextExceeded, InvalidTokens
from hearth.runtime.library import ModelLibrary, ModelSpec
from hearth.runtime.registry import ModelRegistry
from hearth.runtime.settings import ModelSettings, ServerSettings
from hearth.server.app import create_app

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@dataclass
class ScriptedGeneration:
    pieces: list[str]
    prompt_tokens: int
    fail_after: Exception | None = None
    cancelled: bool = False
    done: bool = False
    finish_reason: str = "stop"

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        try:
            for piece in self.pieces:
                await asyncio.sleep(0)
                yield TextDelta(piece)
            if self.fail_after is not None:
                raise self.fail_after
            yield Finished(self.finish_reason, self.prompt_tokens, len(self.pieces))
        finally:
            self.done = True

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class ScriptedEngine:
    reply: list[str] = field(default_factory=lambda: ["Hello", ", ", "world", "!"])
    n_ctx: int = 64
    fail_after: Exception | None = None
    template: str = TEMPLATE  # the chat template its "GGUF" ships
    started: bool = False
    requests: list[GenerationRequest] = field(default_factory=list)
    generations: list[ScriptedGeneration] = field(default_factory=list)

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            path=Path("scripted.gguf"),
            name="scripted",
            n_ctx=self.n_ctx,
            n_ctx_train=self.n_ctx,
            n_params=0,
            size_bytes=0,
            description="scripted",
            chat_template=self.template,
            bos_token="<s>",
            eos_token="</s>",
            add_bos=False,
        )

    @property
    def ready(self) -> bool:
        return self.started

    @property
    def active(self) -> int:
        return sum(not g.done and not g.cancelled for g in self.generations)

    failure: Exception | None = None  # set by a test: the engine stopped on its own

    def count_tokens(self, prompt: Prompt) -> int:
        return len(prompt.text.split())

    def tokenize(self, prompt: Prompt) -> list[int]:
        return [len(word) for word in prompt.text.split()]

    def detokenize(self, tokens: list[int]) -> str:
        if any(not 0 <= token < 1000 for token in tokens):
            raise InvalidTokens("token id outside the vocabulary (0 to 999)")
        return " ".join("x" * token for token in tokens)

    async def embed(self, inputs: list[Prompt | list[int]]) -> tuple[list[list[float]], int]:
        counts = [self.count_tokens(i) if isinstance(i, Prompt) else len(i) for i in inputs]
        return [[1.0, 0.0] for _ in inputs], sum(counts)

    def token_piece(self, token: int) -> str:
        return "x" * token

    def control_text(self, token: int) -> str | None:
        return None

    def load(self) -> dict[str, object]:
        engine = {"draft_tokens": 5, "accepted_draft_tokens": 3}
        return {"slots": 1, "slots_busy": 0, "waiting": 0, "engine": engine}

    def submit(self, request: GenerationRequest) -> ScriptedGeneration:
        tokens = self.count_tokens(request.prompt)
        if tokens + (request.max_tokens or 0) > self.n_ctx:
            raise ContextExceeded(
                limit=self.n_ctx, prompt_tokens=tokens, max_tokens=request.max_tokens
            )
        self.requests.append(request)
        generation = ScriptedGeneration(list(self.reply), tokens, self.fail_after)
        self.generations.append(generation)
        return generation

    def submit_choices(self, request: GenerationRequest, n: int) -> list[ScriptedGeneration]:
        return [self.submit(request) for _ in range(n)]

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.started = False


def scripted_registry(
    engines: dict[str, ScriptedEngine], settings: ModelSettings | None = None, **options: object
) -> ModelRegistry:
    """A registry of scripted models, by id; the first is the default model."""
    settings = settings or ModelSettings.load({})
    specs = [ModelSpec(name, "test", Path(f"{name}.gguf"), settings) for name in engines]
    return ModelRegistry(
        ModelLibrary(specs),
        lambda opts: engines[opts.name],
        **options,  # type: ignore[arg-type]
    )


async def scripted_client(
    engine: ScriptedEngine, base_url: str = "http://localhost", **settings: object
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of an app serving `engine` as model "scripted", once it is ready."""
    loaded = ServerSettings.load({"web": False, **settings})
    app = create_app(loaded, scripted_registry({"scripted": engine}, loaded))
    async with app.router.lifespan_context(app):
        for _ in range(100):
            if app.state.hearth.ready:
                break
            await asyncio.sleep(0.01)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client
