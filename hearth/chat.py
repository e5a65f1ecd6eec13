"""`hearth chat`: talk to a model in the terminal, like llama.cpp's `main -i -r "User:"`.

The model is loaded in this process through Hearth's engine, or, with --url, a running
server is asked over its OpenAI API. Replies stream as they are generated. Ctrl-C stops the
current reply (what was shown stays in the conversation) and Ctrl-C while typing abandons
the line; Ctrl-D or /exit quits, /reset starts the conversation over. End a line with a
backslash to go on typing on the next one.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from hearth.chat_terminal import Terminal, wants_colour
from hearth.engine.base import TextDelta
from hearth.flags import add_settings_flags, settings_from_args
from hearth.prompts import Message, PromptError
from hearth.runtime.settings import ModelSettings

if TYPE_CHECKING:
    # Imported when the chat starts: httpx and the server modules would slow `hearth --help`.
    from hearth.chat_backend import ChatBackend, ReplyDone

log = logging.getLogger(__name__)


class ChatSettings(ModelSettings):
    """`hearth chat`: the model settings of `hearth serve`, plus the chat's own."""

    url: str | None = Field(
        default=None,
        description="Chat through a running server at this URL (e.g. http://127.0.0.1:8080) "
        "instead of loading the model here. --model then names the served model id.",
    )
    api_key: str | None = Field(default=None, description="API key for the server at --url.")
    max_tokens: int = Field(default=512, ge=1, description="Longest reply, in tokens.")
    system: str | None = Field(default=None, description="A system message opening the chat.")
    color: bool | None = Field(
        default=None,
        description="Colour your input apart from the reply (default: when the output is a "
        "terminal and NO_COLOR is unset).",
    )
    history_file: Path | None = Field(
        default_factory=lambda: Path.home() / ".hearth_history",
        description="Where readline keeps the lines you typed.",
    )
    parallel: int = Field(
        default=1, ge=1, le=64, description="Slots of the in-process engine (one chat: 1)."
    )


@dataclass
class Conversation:
    system: str | None
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.messages = [Message("system", self.system)] if self.system else []


@dataclass(frozen=True)
class Command:
    help: str
    act: Callable[[Conversation, Terminal], bool]  # False: leave the chat


def _reset(conversation: Conversation, terminal: Terminal) -> bool:
    conversation.reset()
    terminal.note("(conversation cleared)")
    return True


def _help(conversation: Conversation, terminal: Terminal) -> bool:
    for name, command in COMMANDS.items():
        terminal.note(f"{name:8} {command.help}")
    terminal.note("End a line with \\ to continue the message on the next line.")
    terminal.note("Ctrl-C stops a reply; Ctrl-D quits.")
    return True


COMMANDS: dict[str, Command] = {
    "/exit": Command("leave the chat (or Ctrl-D)", lambda conversation, terminal: False),
    "/quit": Command("leave the chat", lambda conversation, terminal: False),
    "/reset": Command("start the conversation over", _reset),
    "/help": Command("list these commands", _help),
}


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings_flags(parser, ChatSettings)


def run(args: argparse.Namespace) -> int:
    from hearth.chat_backend import ChatFailed
    from hearth.engine.errors import ModelLoadError

    settings = settings_from_args(ChatSettings, args)
    # The chat screen is for the conversation; library chatter would interleave with it.
    logging.getLogger().setLevel(logging.WARNING)
    loop = asyncio.new_event_loop()
    try:
        backend = loop.run_until_complete(_open_backend(settings))
    except (ChatFailed, PromptError, ModelLoadError, FileNotFoundError) as problem:
        print(f"hearth chat: {problem}", file=sys.stderr)
        loop.close()
        return 1
    terminal = Terminal(
        colour=wants_colour(settings.color, sys.stdout), history_file=settings.history_file
    )
    try:
        terminal.note(f"Chatting with {backend.description}. /help lists the commands.")
        _converse(loop, backend, terminal, Conversation(settings.system))
    finally:
        terminal.close()
        loop.run_until_complete(backend.close())
        loop.close()
    return 0


async def _open_backend(settings: ChatSettings) -> ChatBackend:
    from hearth.chat_backend import ChatFailed, LocalChat, RemoteChat

    if settings.url:
        return await RemoteChat.connect(
            settings.url, settings.api_key, settings, max_tokens=settings.max_tokens
        )
    from hearth.runtime.local import build_registry

    try:
        registry = build_registry(settings)
    except FileNotFoundError as missing:
        raise ChatFailed(str(missing)) from None
    return await LocalChat.start(registry, max_tokens=settings.max_tokens)


def _converse(
    loop: asyncio.AbstractEventLoop,
    backend: ChatBackend,
    terminal: Terminal,
    conversation: Conversation,
) -> None:
    while (text := terminal.read_message()) is not None:
        if not text.strip():
            continue
        word = text.strip()
        if word.startswith("/") and " " not in word and "/" not in word[1:]:
            command = COMMANDS.get(word)
            if command is None:
                terminal.note(f"unknown command {word}; /help lists them")
            elif not command.act(conversation, terminal):
                return
            continue
        conversation.messages.append(Message("user", text))
        _answer(loop, backend, terminal, conversation)


def _answer(
    loop: asyncio.AbstractEventLoop,
    backend: ChatBackend,
    terminal: Terminal,
    conversation: Conversation,
) -> None:
    """Stream one reply; Ctrl-C stops it and keeps what was shown."""
    from hearth.chat_backend import ChatFailed

    shown: list[str] = []
    task = loop.create_task(_stream(backend, conversation.messages, terminal, shown))
    # While a reply streams, Ctrl-C cancels it instead of raising KeyboardInterrupt
    # wherever the main thread happens to be; the default comes back for typing.
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        done: ReplyDone | None = loop.run_until_complete(task)
    except asyncio.CancelledError:
        done = None
    except ChatFailed as failed:
        conversation.messages.pop()
        terminal.end_reply(f"error: {failed}")
        return
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    reply = "".join(shown)
    if reply:
        conversation.messages.append(Message("assistant", reply))
    else:
        conversation.messages.pop()  # nothing answered it: keep user/assistant alternating
    terminal.end_reply(_outcome_note(done))


async def _stream(
    backend: ChatBackend, messages: list[Message], terminal: Terminal, shown: list[str]
) -> ReplyDone | None:
    from hearth.chat_backend import Thought

    async for event in backend.reply(list(messages)):
        if isinstance(event, Thought):
            terminal.write_thought(event.text)  # shown, but not part of the conversation
        elif isinstance(event, TextDelta):
            terminal.write_reply(event.text)
            shown.append(event.text)
        else:
            return event
    return None


def _outcome_note(done: ReplyDone | None) -> str | None:
    if done is None:
        return "(stopped)"
    notes = []
    if done.reason == "length":
        notes.append("the reply reached --max-tokens")
    if done.dropped_messages:
        notes.append(f"{done.dropped_messages} oldest messages no longer fit and were left out")
    return f"({'; '.join(notes)})" if notes else None
