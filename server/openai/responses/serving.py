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
from hearth.runtime.reasoning import Piece
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
    OutputReasoning,
    OutputText,
    ReasoningText,
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
    reply: Reply,
    finished: Finished,
) -> Response:
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
        reasoning=body.reasoning.model_dump() if body.reasoning else None,
    )
    if body.store:
        turn = ChatMessage(
            role="assistant",
            content=reply.content or None,
            tool_calls=wire_calls(reply) or None,
            reasoning_content=reply.reasoning or None,
        )
        store.put(response, [*conversation, turn])
    return response


def output_items(reply: Reply) -> list[OutputItem]:
    """The reply's reasoning, then its text, then its calls."""
    items: list[OutputItem] = []
    status = "incomplete" if reply.end == "length" else "completed"
    if reply.reasoning:
        cut_short = status == "incomplete" and not reply.content and not reply.calls
        items.append(
            OutputReasoning(
                content=[ReasoningText(text=reply.reasoning)],
                status="incomplete" if cut_short else "completed",
            )
        )
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
    reply = prepared.read(text, finished.reason)
    return finish(body, prepared, store, conversation, reply, finished)


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
        reader = prepared.reader()
        live = LiveItems(event)
        finished: Finished | None = None
        async for item in prepared.events():
            if isinstance(item, Finished):
                finished = item
                break
            for piece in reader.feed(item.text):
                for sent in live.piece(piece):
                    yield sent
        if finished is None:
            raise RuntimeError("the generation ended without finishing")
        pieces, reply = reader.finish(finished.reason)
        for piece in pieces:
            for sent in live.piece(piece):
                yield sent
        response = finish(body, prepared, self.store, self.conversation, reply, finished)
        for index, output in enumerate(response.output):
            for done in _item_events(event, index, output, live):
                yield done
        if self.cut:
            yield self.error_event(
                DrainTimeout("The server is shutting down and ended this response.")
            )
            response.status = "incomplete"
            yield event("response.incomplete", response=response.model_dump())
            return
        yield event("response.completed", response=response.model_dump())


class LiveItems:
    """The output items streamed while the reply is generated: its reasoning, then its
    text, each opened (output_item.added, content_part.added) at its first piece. The
    reasoning item is closed when the text begins, as OpenAI sends them: one item at a time.
    """

    def __init__(self, event: EventWriter) -> None:
        self.event = event
        self.ids: dict[str, tuple[int, str]] = {}  # piece kind: (output index, item id)
        self.texts: dict[str, list[str]] = {}
        self.closed: set[str] = set()

    def piece(
        self, piece: Piece, index: int | None = None, item: OutputItem | None = None
    ) -> list[dict[str, str]]:
        """A piece's delta, after the opening events of its item if it is the first."""
        sent = []
        if piece.kind not in self.ids:
            sent += self.close("reasoning") if "reasoning" in self.ids else []
            sent += self._open(piece.kind, len(self.ids) if index is None else index, item)
        self.texts[piece.kind].append(piece.text)
        at, item_id = self.ids[piece.kind]
        kind = "reasoning_text" if piece.kind == "reasoning" else "output_text"
        delta = {"item_id": item_id, "output_index": at, "content_index": 0}
        return [*sent, self.event(f"response.{kind}.delta", **delta, delta=piece.text)]

    def close(self, kind: str, item: OutputItem | None = None) -> list[dict[str, str]]:
        """The closing events of a streamed item (once): its text done, its part, itself."""
        if kind in self.closed:
            return []
        self.closed.add(kind)
        index, item_id = self.ids[kind]
        if item is None:
            text = "".join(self.texts[kind])
            item = (
                OutputReasoning(id=item_id, content=[ReasoningText(text=text)])
                if kind == "reasoning"
                else OutputMessage(id=item_id, content=[OutputText(text=text)])
            )
        item.id = item_id
        part = item.content[0]
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        text_kind = "reasoning_text" if kind == "reasoning" else "output_text"
        return [
            self.event(f"response.{text_kind}.done", **where, text=part.text),
            self.event("response.content_part.done", **where, part=part.model_dump()),
            self.event("response.output_item.done", output_index=index, item=item.model_dump()),
        ]

    def _open(self, kind: str, index: int, item: OutputItem | None) -> list[dict[str, str]]:
        if item is None:
            item = OutputReasoning(content=[]) if kind == "reasoning" else OutputMessage(content=[])
        opened = item.model_copy(update={"status": "in_progress", "content": []})
        part = ReasoningText(text="") if kind == "reasoning" else OutputText(text="")
        self.ids[kind] = (index, item.id)
        self.texts[kind] = []
        return [
            self.event("response.output_item.added", output_index=index, item=opened.model_dump()),
            self.event(
                "response.content_part.added",
                item_id=item.id,
                output_index=index,
                content_index=0,
                part=part.model_dump(),
            ),
        ]


def _item_events(
    event: EventWriter, index: int, item: OutputItem, live: LiveItems
) -> list[dict[str, str]]:
    """An item's closing events, and its opening ones first when it was not streamed."""
    if isinstance(item, OutputFunctionCall):
        added = item.model_copy(update={"status": "in_progress", "arguments": ""})
        return [
            event("response.output_item.added", output_index=index, item=added.model_dump()),
            event(
                "response.function_call_arguments.delta",
                item_id=item.id,
                output_index=index,
                delta=item.arguments,
            ),
            event(
                "response.function_call_arguments.done",
                item_id=item.id,
                output_index=index,
                arguments=item.arguments,
            ),
            event("response.output_item.done", output_index=index, item=item.model_dump()),
        ]
    kind = "reasoning" if isinstance(item, OutputReasoning) else "content"
    if kind in live.ids:
        item.id = live.ids[kind][1]  # the id its deltas went out under
        return live.close(kind, item)
    return live.piece(Piece(kind, item.content[0].text), index, item) + live.close(kind, item)
