"""The terminal side of `hearth chat`: reading the user's lines, showing the reply.

The user's typing is coloured apart from the model's reply (llama.cpp's `--color` does the
same), and plain text goes out when stdout is not a terminal, NO_COLOR is set or TERM is
dumb. Input goes through readline when Python has it, for line editing and a history kept
across sessions.

A message spans several lines when each line but the last ends with a backslash; a paste
keeps its newlines in terminals with bracketed paste (readline 8.1 and later turn it on),
since readline then inserts the pasted text as a whole instead of submitting it line by line.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)

CONTINUATION = "\\"
HISTORY_LENGTH = 1000


@dataclass(frozen=True)
class Palette:
    user: str
    note: str
    reset: str
    thought: str = ""  # a thinking model's reasoning: dim, so the answer stands out


PLAIN = Palette(user="", note="", reset="")
ANSI = Palette(user="\033[1;32m", note="\033[33m", reset="\033[0m", thought="\033[2m")


def wants_colour(choice: bool | None, out: TextIO) -> bool:
    if choice is not None:
        return choice
    dumb = os.environ.get("TERM") == "dumb"
    return out.isatty() and not dumb and "NO_COLOR" not in os.environ


class Terminal:
    def __init__(self, *, colour: bool, history_file: Path | None, out: TextIO = sys.stdout):
        self._out = out
        self._palette = ANSI if colour else PLAIN
        self._thinking = False  # the reply so far ends in reasoning
        self._history_file = history_file
        self._readline = _load_readline(history_file)

    def read_message(self) -> str | None:
        """The user's next message; None at end of input (Ctrl-D).

        Ctrl-C while typing abandons the message and returns "", as a shell does.
        """
        lines: list[str] = []
        prompt = "> "
        while True:
            try:
                line = input(self._input_prompt(prompt))
            except EOFError:
                self._end_input()
                self._out.write("\n")
                return None if not lines else "\n".join(lines)
            except KeyboardInterrupt:
                self._end_input()
                self._out.write("^C\n")
                return ""
            self._end_input()
            if not line.endswith(CONTINUATION):
                lines.append(line)
                return "\n".join(lines)
            lines.append(line[: -len(CONTINUATION)])
            prompt = ". "

    def _input_prompt(self, prompt: str) -> str:
        if not self._palette.user:
            return prompt
        # \001 and \002 tell readline the colour codes take no room on screen; the colour
        # stays on for the text the user types.
        return f"{prompt}\001{self._palette.user}\002"

    def _end_input(self) -> None:
        if self._palette.reset:
            self._out.write(self._palette.reset)
            self._out.flush()

    def write_thought(self, text: str) -> None:
        """Reasoning, dimmed; the answer that follows starts on a line of its own."""
        self._thinking = True
        self._out.write(f"{self._palette.thought}{text}{self._palette.reset}")
        self._out.flush()

    def write_reply(self, text: str) -> None:
        if self._thinking:
            self._thinking = False
            self._out.write("\n")
        self._out.write(text)
        self._out.flush()

    def end_reply(self, note: str | None = None) -> None:
        self._thinking = False
        self._out.write("\n")
        if note:
            self.note(note)
        self._out.flush()

    def note(self, text: str) -> None:
        """A line for the user that is not part of the conversation."""
        self._out.write(f"{self._palette.note}{text}{self._palette.reset}\n")
        self._out.flush()

    def close(self) -> None:
        if self._readline is not None and self._history_file is not None:
            try:
                self._history_file.parent.mkdir(parents=True, exist_ok=True)
                self._readline.write_history_file(str(self._history_file))
            except OSError as problem:
                log.warning(
                    "could not save the chat history to %s: %s", self._history_file, problem
                )


def _load_readline(history_file: Path | None):
    try:
        import readline
    except ImportError:  # Windows, or a Python built without it: input() still works
        return None
    readline.set_history_length(HISTORY_LENGTH)
    if history_file is not None and history_file.is_file():
        try:
            readline.read_history_file(str(history_file))
        except OSError as problem:
            log.warning("could not read the chat history %s: %s", history_file, problem)
    return readline
