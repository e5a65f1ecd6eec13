"""Where `hearth chat` gets its replies: the model in this process, or a running server.

Both backends take the whole conversation each turn and stream the reply back as text
pieces, ending with one `ReplyDone`. Stopping a reply is cancelling the task that iterates
it; each backend makes sure the model stops too (the engine's slot is freed, or the HTTP
stream is closed so the server cancels the generation).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol, TypeAlias

import httpx

from hearth.engine.base import Finished, TextDelta
from hearth.engine.errors import EngineError
from hearth.prompts import Message
from hearth.runtime.errors import ContextOverflow, HearthError, as_hearth_error
from hearth.runtime.pipeline import submit_chat
from hearth.runtime.reasoning import Piece
from hearth.runtime.registry import ModelRegistry
from hearth.runtime.settings import ModelSettings
from hearth.server.openai.protocol import DROPPED_MESSAGES_HEADER

log = logging.getLogger(__name__)


class ChatFailed(Exception):
    """This turn cannot be answered; the message says why, in a line a user can act on."""


@dataclass(frozen=True)
class ReplyDone:
    reason: str  # "stop" or "length"
    dropped_messages: int = 0


@dataclass(frozen=True)
class Thought:
    """A piece of a thinking model's reasoning, shown apart from the answer."""

    text: str


ReplyEvent: TypeAlias = TextDelta | Thought | ReplyDone


class ChatBackend(Protocol):
    description: str

    def reply(self, messages: Sequence[Message]) -> AsyncIterator[ReplyEvent]: ...

    async def close(self) -> None: ...


class LocalChat:
    """A model of this machine's library, loaded in this process through the model registry
    and the same chat pipeline the HTTP API uses."""

    def __init__(self, registry: ModelRegistry, model_id: str, *, max_tokens: int) -> None:
        self._registry = registry
        self._model_id = model_id
        self._max_tokens = max_tokens
        self.description = f"{model_id}, in process"

    @classmethod
    async def start(
        cls, registry: ModelRegistry, model_id: str | None = None, *, max_tokens: int
    ) -> LocalChat:
        """Load the model now, so a broken model or prompt fails before the first line."""
        chat = cls(registry, model_id or registry.default_id, max_tokens=max_tokens)
        try:
            async with registry.acquire(chat._model_id) as handle:
                chat.description = f"{handle.model} ({handle.chat_format.name}), in process"
        except HearthError as unusable:
            await registry.close()
            raise ChatFailed(unusable.message) from None
        return chat

    async def reply(self, messages: Sequence[Message]) -> AsyncGenerator[ReplyEvent, None]:
        try:
            async with self._registry.acquire(self._model_id) as handle:
                # The reply may use half the context at most, so a huge --max-tokens still
                # leaves room for the question.
                room = min(self._max_tokens, handle.engine.info.n_ctx // 2)
                prepared = await submit_chat(
                    handle, messages, max_tokens=room, sampling=handle.sampling, truncate=True
                )
        except ContextOverflow as too_long:
            raise ChatFailed(
                f"that message is too long: it needs {too_long.prompt_tokens} tokens of the "
                f"{too_long.limit - room} the context leaves for the conversation"
            ) from None
        except (HearthError, EngineError) as refused:
            raise ChatFailed(_message(refused)) from None
        reader = prepared.reader()
        try:
            async for event in prepared.events():
                if isinstance(event, Finished):
                    for piece in reader.finish(event.reason)[0]:
                        yield _reply_piece(piece)
                    yield ReplyDone(event.reason, prepared.dropped_messages)
                    return
                for piece in reader.feed(event.text):
                    yield _reply_piece(piece)
        except (HearthError, EngineError) as failed:  # the engine failed mid-reply
            raise ChatFailed(_message(failed)) from None
        finally:
            # Ctrl-C cancels the task iterating us: free the engine's slot at once.
            prepared.generation.cancel()

    async def close(self) -> None:
        await self._registry.close()


class RemoteChat:
    """A Hearth (or any OpenAI-compatible) server, over streaming /v1/chat/completions."""

    def __init__(
        self, client: httpx.AsyncClient, model: str, settings: ModelSettings, *, max_tokens: int
    ) -> None:
        self._client = client
        self._model = model
        self._body = {
            "model": model,
            "stream": True,
            "max_tokens": max_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "top_k": settings.top_k,
            "min_p": settings.min_p,
            "repeat_penalty": settings.repeat_penalty,
            # A long chat keeps going with its oldest turns left out; the user is told.
            "truncation": "auto",
        }
        self.description = f"{model} at {client.base_url}"

    @classmethod
    async def connect(
        cls, url: str, api_key: str | None, settings: ModelSettings, *, max_tokens: int
    ) -> RemoteChat:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        client = httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=None)
        try:
            served = await _served_models(client)
        except (httpx.HTTPError, ChatFailed) as problem:
            await client.aclose()
            raise ChatFailed(f"cannot use the server at {url}: {problem}") from None
        model = settings.model or served[0]
        if settings.prompt:
            model = f"{model}:{settings.prompt}"  # Hearth's id for a model in another format
        if model not in served:
            await client.aclose()
            raise ChatFailed(f"the server at {url} has no model {model} ({', '.join(served)})")
        return cls(client, model, settings, max_tokens=max_tokens)

    async def reply(self, messages: Sequence[Message]) -> AsyncGenerator[ReplyEvent, None]:
        body = {**self._body, "messages": [asdict(message) for message in messages]}
        try:
            async with self._client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    raise ChatFailed(_error_message(await response.aread(), response.status_code))
                dropped = int(response.headers.get(DROPPED_MESSAGES_HEADER, "0"))
                async for line in response.aiter_lines():
                    for event in _chunk_events(line, dropped):
                        yield event
                        if isinstance(event, ReplyDone):
                            return
        except httpx.HTTPError as problem:
            raise ChatFailed(f"the server connection failed: {problem}") from None

    async def close(self) -> None:
        await self._client.aclose()


async def _served_models(client: httpx.AsyncClient) -> list[str]:
    response = await client.get("/v1/models")
    if response.status_code != 200:
        raise ChatFailed(_error_message(response.content, response.status_code))
    models = [str(model["id"]) for model in response.json().get("data") or []]
    if not models:
        raise ChatFailed("the server lists no models")
    return models


def _chunk_events(line: str, dropped: int) -> list[ReplyEvent]:
    """One server-sent-events line of a chat completion stream, as reply events."""
    if not line.startswith("data:"):
        return []
    data = line.removeprefix("data:").strip()
    if data == "[DONE]":
        return [ReplyDone("stop", dropped)]
    try:
        chunk = json.loads(data)
    except ValueError:
        raise ChatFailed(f"the server sent something that is not JSON: {data[:80]!r}") from None
    if "error" in chunk:
        raise ChatFailed(str(chunk["error"].get("message", chunk["error"])))
    events: list[ReplyEvent] = []
    for choice in chunk.get("choices", [])[:1]:
        delta = choice.get("delta") or {}
        thought = delta.get("reasoning_content") or delta.get("reasoning")
        if thought:
            events.append(Thought(thought))
        content = delta.get("content")
        if content:
            events.append(TextDelta(content))
        if choice.get("finish_reason"):
            events.append(ReplyDone(choice["finish_reason"], dropped))
    return events


def _reply_piece(piece: Piece) -> ReplyEvent:
    return Thought(piece.text) if piece.kind == "reasoning" else TextDelta(piece.text)


def _message(error: HearthError | EngineError) -> str:
    known = as_hearth_error(error)
    return known.message if known is not None else str(error)


def _error_message(body: bytes, status: int) -> str:
    try:
        return f"the server answered {status}: {json.loads(body)['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return f"the server answered {status}: {body[:200].decode(errors='replace')}"
