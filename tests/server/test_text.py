"""Stop matching, UTF-8 assembly, reply trimming and chunk filling: pure functions."""

from __future__ import annotations

import json

import pytest
from sse_starlette import ServerSentEvent

from hearth.engine.text import StopMatcher, Utf8Assembler
from hearth.runtime.pipeline import ReplyTrimmer
from hearth.server.openai.chat.protocol import ChatChunkChoice, ChatCompletionChunk, ChatDelta
from hearth.server.openai.streaming import TextChunks
from hearth.server.streaming import SEP


def feed_all(matcher: StopMatcher, pieces: list[str]) -> tuple[list[str], bool]:
    out = []
    for piece in pieces:
        text, stopped = matcher.feed(piece)
        out.append(text)
        if stopped:
            return out, True
    out.append(matcher.flush())
    return out, False


def test_stop_split_across_pieces_never_leaks_its_beginning():
    out, stopped = feed_all(StopMatcher(["\nUser:"]), ["Paris", ".", "\n", "Us", "er", ": hi"])
    assert stopped
    assert "".join(out) == "Paris."
    # The newline that began the stop was held back, not sent and then retracted.
    assert out == ["Paris", ".", "", "", "", ""]


def test_held_text_is_released_once_it_cannot_become_a_stop():
    out, stopped = feed_all(StopMatcher(["\nUser:"]), ["a", "\n", "Use", "ful"])
    assert not stopped
    assert out == ["a", "", "", "\nUseful", ""]


def test_held_text_is_released_at_the_end():
    out, stopped = feed_all(StopMatcher(["END"]), ["the E"])
    assert not stopped
    assert "".join(out) == "the E"
    assert out[0] == "the "


def test_earliest_of_several_stops_wins():
    matcher = StopMatcher(["world", "lo w"])
    text, stopped = matcher.feed("hello world")
    assert stopped and text == "hel"
    assert matcher.matched == "lo w"  # Anthropic's stop_sequence names it


def test_stop_inside_a_single_piece_cuts_the_rest():
    text, stopped = StopMatcher(["###"]).feed("answer### trailing")
    assert stopped and text == "answer"


def test_no_stops_passes_text_through():
    assert StopMatcher([]).feed("anything") == ("anything", False)


def test_multibyte_character_split_across_tokens_is_assembled():
    assembler = Utf8Assembler()
    snowman_and_dragon = "☃🐉".encode()
    pieces = [snowman_and_dragon[:2], snowman_and_dragon[2:4], snowman_and_dragon[4:]]
    out = [assembler.feed(p) for p in pieces]
    assert out == ["", "☃", "🐉"]
    assert assembler.flush() == ""


def test_truncated_character_at_the_end_becomes_a_replacement_char():
    assembler = Utf8Assembler()
    assert assembler.feed("é".encode()[:1]) == ""
    assert assembler.flush() == "\ufffd"


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        ([" ", " Hello", " there", "\n", " "], ["", "Hello", " there", "", ""]),
        (["\n\n", "Hi", "  ", "!"], ["", "Hi", "", "  !"]),
    ],
)
def test_reply_trimmer_strips_both_ends_while_streaming(pieces, expected):
    trimmer = ReplyTrimmer()
    assert [trimmer.feed(p) for p in pieces] == expected


AWKWARD_TEXTS = [
    "",
    "plain",
    ' "quoted" ',
    "back\\slash",
    "line\nbreak\ttab\r",
    "\x00\x1f\x7f",
    "été ☃ 🐉 中文",
    "</script>",
    "hearth-text-9c1f0e",
]


@pytest.mark.parametrize("text", AWKWARD_TEXTS)
@pytest.mark.parametrize("model_id", ["smollm2", 'odd "model" \\ id', "hearth-text-9c1f0e"])
def test_text_chunks_are_exactly_what_the_chunk_model_dumps(text, model_id):
    def build(content: str) -> ChatCompletionChunk:
        delta = ChatDelta(content=content)
        return ChatCompletionChunk(
            id="chatcmpl-1", created=7, model=model_id, choices=[ChatChunkChoice(delta=delta)]
        )

    chunks = TextChunks(build)
    filled = chunks(text)
    assert json.loads(filled) == json.loads(build(text).model_dump_json())
    # The framed event is byte for byte what sse-starlette makes of the JSON.
    assert chunks.event(text) == ServerSentEvent(filled, sep=SEP).encode()
