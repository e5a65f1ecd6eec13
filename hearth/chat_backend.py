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

from hearth.prompts import (
    ChatFormat,
    Message,
    ModelTemplate,
    PromptError,
    PromptTooLong,
    RenderedPrompt,
    load_chat_format,
)
from hearth.server.engine.base import Engine, Finished, GenerationRequest, Prompt, TextDelta
from hearth.server.errors import HearthError
from hearth.server.generation import ReplyTrimmer
from hearth.server.protocol import DROPPED_MESSAGES_HEADER
from hearth.server.settings import ModelSettings

log = logging.getLogger(__name__)



class ChatFailed(Exception):
    """This turn cannot be answered; the message says why, in a line a user can act on."""


@dataclass(frozen=True)
class ReplyDone:
    reason: str  # "stop" or "length"
    dropped_messages: int = 0


ReplyEvent: TypeAlias = TextDelta | ReplyDone


class ChatBackend(Protocol):
    description: str

    def reply(self, messages: Sequence[Message]) -> AsyncIterator[ReplyEvent]: ...

    async def close(self) -> None: ...


class LocalChat:
    """The model loaded in this process, through Hearth's own engine and chat formats."""

    def __init__(
        self, engine: Engine, chat_format: ChatFormat, settings: ModelSettings, *, max_tokens: int
    ) -> None:
        self._engine = engine
        self._format = chat_format
        self._sampling = settings.sampling_defaults()
        n_ctx = engine.info.n_ctx
        # What the reply may use; the conversation gets the rest and loses its oldest turns
        # when it outgrows it. Half the context at most, so a huge --max-tokens still leaves
        # room for the question.
        self._reply_room = min(max_tokens, n_ctx // 2)
        self._prompt_budget = n_ctx - self._reply_room
        self.description = f"{engine.info.name} ({chat_format.name}), in process"

    @classmethod
    async def start(cls, engine: Engine, settings: ModelSettings, *, max_tokens: int) -> LocalChat:
        await engine.start()
        info = engine.info
        template = (
            ModelTemplate(
                info.chat_template,
                info.bos_token,
                info.eos_token,
                info.add_bos,
                special_tokens_in_content=settings.special_tokens_in_content,
            )
            if info.chat_template
            else None
        )
        try:
            chat_format = load_chat_format(
                settings.prompt,
                model_template=template,
                user_name=settings.user_name,
                ai_name=settings.ai_name,
            )
        except PromptError:
            await engine.close()
            raise
        return cls(engine, chat_format, settings, max_tokens=max_tokens)

    async def reply(self, messages: Sequence[Message]) -> AsyncGenerator[ReplyEvent, None]:
        try:
            rendered = self._format.render(
                messages, count_tokens=self._count, max_prompt_tokens=self._prompt_budget
            )
        except PromptTooLong as too_long:
            raise ChatFailed(
                f"that message is too long: it needs {too_long.needed} tokens of the "
                f"{too_long.limit} the context leaves for the conversation"
            ) from None
        except PromptError as failed:
            raise ChatFailed(str(failed)) from None
        try:
            generation = self._engine.submit(
                GenerationRequest(
                    prompt=_engine_prompt(rendered),
                    max_tokens=self._reply_room,
                    stop=rendered.stop,
                    sampling=self._sampling,
                )
            )
        except HearthError as refused:
            raise ChatFailed(refused.message) from None
        trimmer = ReplyTrimmer() if rendered.trim_reply else None
        try:
            async for event in generation:
                if isinstance(event, Finished):
                    yield ReplyDone(event.reason, rendered.dropped_messages)
                    return
                text = trimmer.feed(event.text) if trimmer else event.text
                if text:
                    yield TextDelta(text)
        except HearthError as failed:  # the engine failed mid-reply
            raise ChatFailed(failed.message) from None
        finally:
            # Ctrl-C cancels the task iterating us: free the engine's slot at once.
            generation.cancel()

    def _count(self, candidate: RenderedPrompt) -> int:
        return self._engine.count_tokens(_engine_prompt(candidate))

    async def close(self) -> None:
        await self._engine.close()


def _engine_prompt(rendered: RenderedPrompt) -> Prompt:
    pieces = tuple((piece.text, piece.special) for piece in rendered.pieces)
    return Prompt(rendered.text, rendered.add_special, rendered.parse_special, pieces)


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
        content = (choice.get("delta") or {}).get("content")
        if content:
            events.append(TextDelta(content))
        if choice.get("finish_reason"):
            events.append(ReplyDone(choice["finish_reason"], dropped))
    return events


def _error_message(body: bytes, status: int) -> str:
    try:
        return f"the server answered {status}: {json.loads(body)['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return f"the server answered {status}: {body[:200].decode(errors='replace')}"
