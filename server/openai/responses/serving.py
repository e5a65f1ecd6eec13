"""Creating a response: the request through the chat pipeline, the reply as output items.

Streaming sends the Responses API's typed events in order: response.created and
.in_progress; per output item its .added, the text deltas (or a function call's arguments)
and .done events; then response.completed with the whole response. Tool calls are parsed
from the whole reply before any of their events go out, so a client never sees raw call
text; plain text streams as it is generated.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from hearth.engine.base import Finished
from hearth.runtime.errors import DrainTimeout
from hearth.runtime.observer import NO_OBSERVER, GenerationObserver
from hearth.runtime.pipeline import ChatPolicy, PreparedGeneration, collect, prepare_chat
from hearth.runtime.registry import ModelRegistry
from hearth.runtime.tools.reply import Reply
from hearth.server.errors import to_openai
from hearth.server.openai.chat.tool_calls import wire_calls
from hearth.server.openai.protocol import ChatMessage
from hearth.server.openai.responses.protocol import (
    IncompleteDetails,
    InputTokensDetails,
    OutputFunctionCall,
    OutputItem,
    OutputMessage,
    OutputText,
    Response,
    ResponseRequest,
    ResponseUsage,
)
from hearth.server.openai.responses.store import ResponseStore


async def start(
    registry: ModelRegistry,
    store: ResponseStore,
    body: ResponseRequest,
    policy: ChatPolicy,
    observer: GenerationObserver = NO_OBSERVER,
) -> tuple[PreparedGeneration, list[ChatMessage]]:
    """Admit the generation; returns it with the conversation it continues."""
    history = []
    if body.previous_response_id:
        history = store.get(body.previous_response_id, "previous_response_id").conversation
    chat = body.to_chat(history)
    async with registry.acquire(body.model) as handle:
        prepared = await prepare_chat(handle, chat.to_runtime(), policy, observer)
    return prepared, history + body.input_messages()


def finish(
    body: ResponseRequest,
    prepared: PreparedGeneration,
    store: ResponseStore,
    conversation: list[ChatMessage],
    text: str,
    finished: Finished,
) -> Response:
    reply = prepared.read(text, finished.reason)
    cut = reply.end == "length"
    response = Response(
        status="incomplete" if cut else "completed",
        incomplete_details=IncompleteDetails(reason="max_output_tokens") if cut else None,
        instructions=body.instructions,
        max_output_tokens=body.max_output_tokens,
        model=prepared.model_id,
        output=output_items(reply),
        parallel_tool_calls=body.parallel_tool_calls is not False,
        previous_response_id=body.previous_response_id,
        store=body.store,
        temperature=body.temperature,
        top_p=body.top_p,
        text={"format": body.text.format.model_dump(by_alias=True)}
        if body.text and body.text.format
        else {"format": {"type": "text"}},
        tool_choice=body.tool_choice.model_dump()
        if hasattr(body.tool_choice, "model_dump")
        else (body.tool_choice or "auto"),
        tools=body.tools or [],
        usage=ResponseUsage(
            input_tokens=finished.prompt_tokens,
            input_tokens_details=InputTokensDetails(cached_tokens=finished.cached_tokens),
            output_tokens=finished.completion_tokens,
            total_tokens=finished.prompt_tokens + finished.completion_tokens,
        ),
        metadata=body.metadata or {},
    )
    if body.store:
        turn = ChatMessage(
            role="assistant", content=reply.content or None, tool_calls=wire_calls(reply) or None
        )
        store.put(response, [*conversation, turn])
    return response


def output_items(reply: Reply) -> list[OutputItem]:
    items: list[OutputItem] = []
    if reply.content:
        items.append(
            OutputMessage(
                status="incomplete" if reply.end == "length" else "completed",
                content=[OutputText(text=reply.content)],
            )
        )
    for call in reply.calls:
        items.append(OutputFunctionCall(call_id=call.id, name=call.name, arguments=call.arguments))
    return items


async def create(
    registry: ModelRegistry,
    store: ResponseStore,
    body: ResponseRequest,
    policy: ChatPolicy,
    observer: GenerationObserver = NO_OBSERVER,
) -> Response:
    prepared, conversation = await start(registry, store, body, policy, observer)
    text, finished = await collect(prepared)
    return finish(body, prepared, store, conversation, text, finished)


class EventWriter:
    """Numbers the events of one stream, as the Responses API does."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **fields: object) -> dict[str, str]:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return {"event": kind, "data": json.dumps(payload, ensure_ascii=False)}


class ResponseStream:
    """A streamed response as the stream wrapper takes it (see server/streaming.py).

    A stream the drain ends finishes like one cut by max_output_tokens, then says why in an
    `error` event, and closes with `response.incomplete`: the last event of every stream is
    a terminal one.
    """

    done = None  # the Responses API sends no "[DONE]"

    def __init__(
        self,
        body: ResponseRequest,
        prepared: PreparedGeneration,
        store: ResponseStore,
        conversation: list[ChatMessage],
    ) -> None:
        self.body = body
        self.prepared = prepared
        self.store = store
        self.conversation = conversation
        self.event = EventWriter()
        self.cut = False

    def finish_now(self) -> None:
        self.cut = True
        self.prepared.finish_now()

    def error_event(self, error: Exception) -> dict[str, str]:
        detail = to_openai(error).body.error
        return self.event("error", code=detail.code, message=detail.message, param=detail.param)

    def after_cut(self, error: DrainTimeout) -> list[dict[str, str]]:
        return []  # events() has said it: see the class docstring

    async def events(self) -> AsyncIterator[dict[str, str]]:
        body, prepared, event = self.body, self.prepared, self.event
        pending = Response(
            status="in_progress",
            model=prepared.model_id,
            previous_response_id=body.previous_response_id,
            store=body.store,
            instructions=body.instructions,
        ).model_dump()
        yield event("response.created", response=pending)
        yield event("response.in_progress", response=pending)
        live = prepared.tools is None or not prepared.tools.active
        message = OutputMessage(status="in_progress", content=[])
        parts: list[str] = []
        finished: Finished | None = None
        async for item in prepared.events():
            if isinstance(item, Finished):
                finished = item
                break
            parts.append(item.text)
            if live:
                if len(parts) == 1:
                    yield event(
                        "response.output_item.added", output_index=0, item=message.model_dump()
                    )
                    yield event(
                        "response.content_part.added",
                        item_id=message.id,
                        output_index=0,
                        content_index=0,
                        part=OutputText(text="").model_dump(),
                    )
                yield event(
                    "response.output_text.delta",
                    item_id=message.id,
                    output_index=0,
                    content_index=0,
                    delta=item.text,
                )
        if finished is None:
            raise RuntimeError("the generation ended without finishing")
        response = finish(body, prepared, self.store, self.conversation, "".join(parts), finished)
        for index, output in enumerate(response.output):
            async for done in _item_events(event, index, output, live, message.id):
                yield done
        if self.cut:
            yield self.error_event(
                DrainTimeout("The server is shutting down and ended this response.")
            )
            response.status = "incomplete"
            yield event("response.incomplete", response=response.model_dump())
            return
        yield event("response.completed", response=response.model_dump())


async def _item_events(
    event: EventWriter, index: int, item: OutputItem, streamed: bool, live_id: str
) -> AsyncIterator[dict[str, str]]:
    if isinstance(item, OutputMessage):
        if streamed:
            item.id = live_id  # the id its deltas went out under
        else:
            added = item.model_copy(update={"status": "in_progress", "content": []})
            yield event("response.output_item.added", output_index=index, item=added.model_dump())
            yield event(
                "response.content_part.added",
                item_id=item.id,
                output_index=index,
                content_index=0,
                part=OutputText(text="").model_dump(),
            )
            yield event(
                "response.output_text.delta",
                item_id=item.id,
                output_index=index,
                content_index=0,
                delta=item.content[0].text,
            )
        text = item.content[0].text
        yield event(
            "response.output_text.done",
            item_id=item.id,
            output_index=index,
            content_index=0,
            text=text,
        )
        yield event(
            "response.content_part.done",
            item_id=item.id,
            output_index=index,
            content_index=0,
            part=item.content[0].model_dump(),
        )
    else:
        added = item.model_copy(update={"status": "in_progress", "arguments": ""})
        yield event("response.output_item.added", output_index=index, item=added.model_dump())
        yield event(
            "response.function_call_arguments.delta",
            item_id=item.id,
            output_index=index,
            delta=item.arguments,
        )
        yield event(
            "response.function_call_arguments.done",
            item_id=item.id,
            output_index=index,
            arguments=item.arguments,
        )
    yield event("response.output_item.done", output_index=index, item=item.model_dump())
