"""The pieces of `hearth chat` that need no model: input, stream parsing, the local pipeline."""

from __future__ import annotations

import asyncio
import builtins
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hearth.chat_backend import ChatFailed, LocalChat, RemoteChat, ReplyDone, _chunk_events
from hearth.chat_terminal import Terminal, wants_colour
from hearth.engine.base import (
    Finished,
    GenerationRequest,
    ModelInfo,
    Prompt,
    TextDelta,
)
from hearth.engine.errors import GenerationFailed
from hearth.prompts import Message
from hearth.runtime.library import ModelLibrary, ModelSpec
from hearth.runtime.registry import ModelRegistry
from hearth.runtime.settings import ModelSettings
from tests.server.scripted_engine import ScriptedEngine as ServerEngine
from tests.server.scripted_engine import scripted_client


def scripted_input(monkeypatch: pytest.MonkeyPatch, answers: list[str | BaseException]) -> None:
    replies: Iterator[str | BaseException] = iter(answers)

    def fake_input(prompt: str = "") -> str:
        answer = next(replies)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    monkeypatch.setattr(builtins, "input", fake_input)


def terminal() -> tuple[Terminal, io.StringIO]:
    out = io.StringIO()
    return Terminal(colour=False, history_file=None, out=out), out


def test_trailing_backslash_continues_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    scripted_input(monkeypatch, ["first line\\", "\\", "third\\", "last"])
    assert terminal()[0].read_message() == "first line\n\nthird\nlast"


def test_ctrl_d_ends_input_and_ctrl_c_abandons_the_line(monkeypatch: pytest.MonkeyPatch) -> None:
    scripted_input(monkeypatch, [KeyboardInterrupt(), EOFError()])
    term, out = terminal()
    assert term.read_message() == ""
    assert term.read_message() is None
    assert out.getvalue() == "^C\n\n"


def test_colour_follows_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert wants_colour(None, io.StringIO()) is False  # not a terminal
    assert wants_colour(True, io.StringIO()) is True
    coloured_out = io.StringIO()
    Terminal(colour=True, history_file=None, out=coloured_out).note("hi")
    assert coloured_out.getvalue().startswith("\033[") and "hi" in coloured_out.getvalue()
    plain, out = terminal()
    plain.note("hi")
    assert out.getvalue() == "hi\n"


def test_history_is_written_on_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readline = pytest.importorskip("readline")
    history = tmp_path / "state" / "history"
    term = Terminal(colour=False, history_file=history, out=io.StringIO())
    readline.add_history("remember me")
    term.close()
    assert "remember me" in history.read_text()


def test_sse_lines_become_reply_events() -> None:
    assert _chunk_events(": keep-alive", 0) == []
    assert _chunk_events('data: {"choices":[{"delta":{"content":"Hi"}}]}', 2) == [TextDelta("Hi")]
    final = 'data: {"choices":[{"delta":{"content":"!"},"finish_reason":"length"}]}'
    assert _chunk_events(final, 2) == [TextDelta("!"), ReplyDone("length", 2)]
    assert _chunk_events("data: [DONE]", 0) == [ReplyDone("stop", 0)]
    with pytest.raises(ChatFailed, match="boom"):
        _chunk_events('data: {"error":{"message":"boom"}}', 0)


class ScriptedGeneration:
    def __init__(self, pieces: list[str | Exception]) -> None:
        self.pieces = pieces
        self.prompt_tokens = 1
        self.cancelled = False

    async def __aiter__(self) -> AsyncIterator[TextDelta | Finished]:
        for piece in self.pieces:
            await asyncio.sleep(0)
            if isinstance(piece, Exception):
                raise piece
            yield TextDelta(piece)
        yield Finished("stop", 1, len(self.pieces))

    def cancel(self) -> None:
        self.cancelled = True


class ScriptedEngine:
    """Counts a token per 4 characters and answers with a fixed script."""

    def __init__(self, pieces: list[str | Exception], n_ctx: int = 2048) -> None:
        self.pieces = pieces
        self.requests: list[GenerationRequest] = []
        self.generations: list[ScriptedGeneration] = []
        self.info = ModelInfo(
            Path("x.gguf"), "scripted", n_ctx, n_ctx, 1, 1, "", None, "", "", True
        )

    ready = True
    active = 0

    def count_tokens(self, prompt: Prompt) -> int:
        return len(prompt.text) // 4

    def load(self) -> dict[str, int]:
        return {}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def submit(self, request: GenerationRequest) -> ScriptedGeneration:
        self.requests.append(request)
        self.generations.append(ScriptedGeneration(self.pieces))
        return self.generations[-1]

    def submit_choices(self, request: GenerationRequest, n: int) -> list[ScriptedGeneration]:
        return [self.submit(request) for _ in range(n)]


async def collect(chat: LocalChat, messages: list[Message]) -> list[object]:
    return [event async for event in chat.reply(messages)]


def local_chat(engine: ScriptedEngine, max_tokens: int = 64) -> LocalChat:
    settings = ModelSettings(temperature=0.0, prompt="chat-with-bob")
    spec = ModelSpec("scripted", "test", Path("x.gguf"), settings)
    registry = ModelRegistry(ModelLibrary([spec]), lambda _: engine, max_loaded=1)  # type: ignore[arg-type, return-value]
    return LocalChat(registry, "scripted", max_tokens=max_tokens)


def test_local_reply_is_trimmed_and_stops_at_the_user_label() -> None:
    engine = ScriptedEngine([" ", " Hello", " there", "\n", " "])
    events = asyncio.run(collect(local_chat(engine), [Message("user", "Hi")]))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello there"
    assert events[-1] == ReplyDone("stop", 0)
    request = engine.requests[0]
    assert request.prompt.text.endswith("User: Hi\nBob:")
    assert request.stop == ("\nUser:",) and request.max_tokens == 64
    assert request.sampling.greedy


def test_local_reply_drops_old_turns_and_says_so() -> None:
    engine = ScriptedEngine(["ok"], n_ctx=512)
    history = [Message(role, "word " * 60) for _ in range(10) for role in ("user", "assistant")]
    events = asyncio.run(collect(local_chat(engine), [*history, Message("user", "now?")]))
    done = events[-1]
    assert isinstance(done, ReplyDone) and done.dropped_messages > 0
    assert engine.count_tokens(engine.requests[0].prompt) <= 512 - 64


def test_local_message_too_long_is_a_chat_error() -> None:
    engine = ScriptedEngine(["ok"], n_ctx=512)
    with pytest.raises(ChatFailed, match="too long"):
        asyncio.run(collect(local_chat(engine), [Message("user", "word " * 2000)]))
    assert engine.requests == []


def test_stopping_early_cancels_the_generation() -> None:
    engine = ScriptedEngine(["a", "b", "c"])

    async def first_piece_only() -> None:
        stream = local_chat(engine).reply([Message("user", "Hi")])
        await stream.__anext__()
        await stream.aclose()

    asyncio.run(first_piece_only())
    assert engine.generations[0].cancelled


def test_engine_failure_mid_reply_is_a_chat_error() -> None:
    engine = ScriptedEngine(["Hel", GenerationFailed("llama_decode failed")])
    with pytest.raises(ChatFailed, match="llama_decode failed"):
        asyncio.run(collect(local_chat(engine), [Message("user", "Hi")]))
    assert engine.generations[0].cancelled


def test_remote_reply_asks_for_truncation_and_says_what_was_left_out() -> None:
    """The server refuses an over-long chat by default; `hearth chat` opts in to dropping."""
    history = [Message(role, "word " * 10) for _ in range(10) for role in ("user", "assistant")]

    async def main() -> list:
        async for client in scripted_client(ServerEngine(n_ctx=64)):
            chat = RemoteChat(client, "scripted", ModelSettings.load({}), max_tokens=8)
            return await collect(chat, [*history, Message("user", "now?")])
        raise AssertionError("no client")

    done = asyncio.run(main())[-1]
    assert isinstance(done, ReplyDone) and done.dropped_messages > 0
