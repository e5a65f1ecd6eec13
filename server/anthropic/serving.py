"""A Messages request through the chat pipeline, and the reply as Anthropic's content blocks.

The runtime reads the reply once for every API (runtime/tools/reply.py): its reasoning, its
text and its tool calls. Here they become a `thinking` block, a `text` block and `tool_use`
blocks, in that order, and the reply's end becomes Anthropic's stop_reason.
"""

from __future__ import annotations

import json

from hearth.engine.base import Finished
from hearth.runtime.observer import NO_OBSERVER, GenerationObserver
from hearth.runtime.pipeline import ChatPolicy, PreparedGeneration, count_chat_tokens, prepare_chat
from hearth.runtime.registry import ModelRegistry
from hearth.runtime.requests import ToolCall
from hearth.runtime.tools.reply import Reply
from hearth.server.anthropic.protocol import (
    CountTokensRequest,
    Message,
    MessagesRequest,
    OutputBlock,
    OutputText,
    OutputThinking,
    OutputToolUse,
    StopReason,
    TokenCount,
    Usage,
)


async def prepare(
    registry: ModelRegistry,
    body: MessagesRequest,
    policy: ChatPolicy,
    observer: GenerationObserver = NO_OBSERVER,
) -> PreparedGeneration:
    async with registry.acquire(body.model) as handle:
        return await prepare_chat(handle, body.to_runtime(), policy, observer)


async def count_tokens(registry: ModelRegistry, body: CountTokensRequest) -> TokenCount:
    async with registry.acquire(body.model) as handle:
        return TokenCount(input_tokens=await count_chat_tokens(handle, body.to_runtime()))


def tool_use_id(call: ToolCall) -> str:
    """Anthropic's id for a call the runtime named (`call_...` becomes `toolu_...`)."""
    return f"toolu_{call.id.removeprefix('call_')}"


def tool_input(call: ToolCall) -> dict:
    """A call's arguments as the object `input` must be. A call max_tokens cut off has
    arguments that are not whole JSON: its input is empty, as the stop_reason says."""
    try:
        value = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def stop_of(
    reply: Reply, finished: Finished, asked: tuple[str, ...]
) -> tuple[StopReason, str | None]:
    """Why the reply ended, as Anthropic says it, and the stop sequence that ended it.

    The engine also stops at the chat format's own end-of-turn strings; only one the client
    asked for is a `stop_sequence`.
    """
    if reply.end == "tool_calls":
        return "tool_use", None
    if reply.end == "length":
        return "max_tokens", None
    if finished.stop_sequence is not None and finished.stop_sequence in asked:
        return "stop_sequence", finished.stop_sequence
    return "end_turn", None


def usage_of(finished: Finished) -> Usage:
    return Usage(
        input_tokens=finished.prompt_tokens - finished.cached_tokens,
        output_tokens=finished.completion_tokens,
        cache_read_input_tokens=finished.cached_tokens,
    )


def content_of(reply: Reply) -> list[OutputBlock]:
    blocks: list[OutputBlock] = []
    if reply.reasoning:
        blocks.append(OutputThinking(thinking=reply.reasoning))
    if reply.content:
        blocks.append(OutputText(text=reply.content))
    for call in reply.calls:
        blocks.append(OutputToolUse(id=tool_use_id(call), name=call.name, input=tool_input(call)))
    return blocks


def whole_message(
    prepared: PreparedGeneration, body: MessagesRequest, text: str, finished: Finished
) -> Message:
    reply = prepared.read(text, finished.reason)
    reason, sequence = stop_of(reply, finished, body.stops())
    return Message(
        content=content_of(reply),
        model=prepared.model_id,
        stop_reason=reason,
        stop_sequence=sequence,
        usage=usage_of(finished),
    )
