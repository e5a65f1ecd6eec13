"""Reading a transcript prompt file: where the examples start and who speaks.

The format is llama.cpp's prompt files (chat-with-bob.txt and friends): free text setting the
scene (the preamble), then example exchanges, one turn per line as `Label: text`, and the
file ends with a bare label, which is the user's. The assistant is the speaker who answers
the user in the examples: the label that most often opens the turn right after a user turn.
So reason-act.txt, whose examples run `Question:` / `Thought:` / `Action:` / ... and end with
`Question:`, makes "Question" the user and "Thought" the assistant: the model's reply is the
whole Thought ... Answer block, up to the next `Question:`.

The file's text is kept verbatim; the turns found here only serve to infer the labels and the
layout (which colon, whether turns are separated by blank lines), so a continuation line such
as "Step 1: ..." that looks like a label costs nothing unless it changes who answers the user.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise

log = logging.getLogger(__name__)

# A label: one to three words before a colon at the start of a line. A full-width colon (as
# Chinese text writes it) counts too. An ASCII colon must be followed by a space or the end of
# the line, so "http://..." and "12:30" are not speakers.
LABEL_LINE = re.compile(r"(?P<label>\w[\w .'\-]{0,31})(?P<colon>[:：])(?P<rest>.*)")
MAX_LABEL_WORDS = 3


class TranscriptFileError(ValueError):
    """The problem, phrased to follow the file's name: "<file> does not end with ..."."""


@dataclass(frozen=True)
class Turn:
    label: str
    colon: str
    rest: str  # the text after the colon, as written


@dataclass(frozen=True)
class TranscriptLayout:
    """A transcript file taken apart: the verbatim text plus what rendering needs to know."""

    preamble: str  # text before the first example, trailing blank lines removed
    gap: str  # the newlines between preamble and examples
    examples: str  # the example exchanges, verbatim, no trailing newline
    user_label: str  # "User:" (with its colon)
    ai_label: str  # "Bob:"
    after_label: str  # what follows a label before the text: " " (or "" after "：")
    separator: str  # what ends a turn: "\n", or "\n\n" when the examples leave blank lines
    speakers: tuple[str, ...]


def parse_turn(line: str) -> Turn | None:
    match = LABEL_LINE.fullmatch(line)
    if match is None:
        return None
    label, colon, rest = match.group("label").rstrip(), match.group("colon"), match.group("rest")
    if len(label.split()) > MAX_LABEL_WORDS:
        return None
    if colon == ":" and rest and not rest[0].isspace():
        return None
    return Turn(label, colon, rest)


def parse_transcript(
    text: str, *, user_name: str | None = None, ai_name: str | None = None
) -> TranscriptLayout:
    """Take a transcript apart. `user_name`/`ai_name` settle a file that is ambiguous."""
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").rstrip().split("\n")
    if lines == [""]:
        raise TranscriptFileError("is empty")
    final = parse_turn(lines[-1])
    if final is not None and not final.rest.strip():
        user, user_colon, head = final.label, final.colon, lines[:-1]
        if user_name and user_name != user:
            log.warning("--user-name %r is not this transcript's user; using %r", user_name, user)
    elif user_name:
        user, user_colon, head = user_name, "", lines
    else:
        raise TranscriptFileError(
            # The line itself is not quoted: the file may be one that was never a prompt.
            "does not end with the user's label (its last line is not a "
            "bare label such as 'User:'; or name the user with --user-name)"
        )
    start = next((i for i, line in enumerate(head) if _speaks(line, user)), len(head))
    example_lines = head[start:]
    turns = [turn for turn in map(parse_turn, example_lines) if turn is not None]
    speakers = tuple(dict.fromkeys(turn.label for turn in turns))
    if final is None and user not in speakers:
        raise TranscriptFileError(f"has no turn of the user {user!r} named by --user-name")
    user_colon = user_colon or _colon_of(turns, user, ":")
    ai = _assistant_label(turns, user, ai_name)
    ai_colon = _colon_of(turns, ai, user_colon)
    preamble = "\n".join(head[:start]).rstrip()
    return TranscriptLayout(
        preamble=preamble,
        gap="\n" * (_blank_lines_before(head, start) + 1)
        if preamble and start < len(head)
        else "\n\n",
        examples="\n".join(example_lines).rstrip(),
        user_label=user + user_colon,
        ai_label=ai + ai_colon,
        after_label=_after_label(turns, user_colon),
        separator=_separator(example_lines),
        speakers=speakers if ai in speakers else (*speakers, ai),
    )


def _blank_lines_before(lines: list[str], index: int) -> int:
    count = 0
    while count < index and not lines[index - count - 1].strip():
        count += 1
    return count


def _speaks(line: str, label: str) -> bool:
    turn = parse_turn(line)
    return turn is not None and turn.label == label


def _assistant_label(turns: list[Turn], user: str, ai_name: str | None) -> str:
    others = [label for label in dict.fromkeys(turn.label for turn in turns) if label != user]
    if ai_name:
        if ai_name in others or not others:
            return ai_name
        log.warning(
            "--ai-name %r is not a speaker in this transcript; using its own (%s)",
            ai_name,
            ", ".join(others),
        )
    answers = Counter(
        after.label
        for before, after in pairwise(turns)
        if before.label == user and after.label != user
    )
    ranked = answers.most_common(2) or [(label, 0) for label in others[:2]]
    if not ranked:
        raise TranscriptFileError(
            f"has one speaker only ({user!r}): its examples must show who answers, "
            "or name the assistant with --ai-name"
        )
    if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
        raise TranscriptFileError(
            f"is ambiguous: both {ranked[0][0]!r} and {ranked[1][0]!r} could be the assistant; "
            "name it with --ai-name"
        )
    return ranked[0][0]


def _colon_of(turns: list[Turn], label: str, default: str) -> str:
    return next((turn.colon for turn in turns if turn.label == label), default)


def _after_label(turns: list[Turn], colon: str) -> str:
    spoken = [turn.rest for turn in turns if turn.rest.strip()]
    if spoken:
        return " " if spoken[0][0].isspace() else ""
    return " " if colon == ":" else ""


def _separator(example_lines: list[str]) -> str:
    """Blank lines between turns when every turn after the first follows a blank line."""
    starts = [i for i, line in enumerate(example_lines) if parse_turn(line) is not None]
    if len(starts) > 1 and all(example_lines[i - 1].strip() == "" for i in starts[1:]):
        return "\n\n"
    return "\n"
