"""Placeholders in transcript files, in the style of llama.cpp's prompts/chat.txt.

`[[USER_NAME]]`, `[[AI_NAME]]`, `[[DATE_TIME]]` and `[[DATE_YEAR]]` are filled once, when the
file is loaded. Filling the date at every request would be more accurate, but it would change
the prompt's first tokens every minute and so defeat the prompt cache for every conversation;
a server restarted daily says the right year, which is what the examples need.

An unknown `[[NAME]]` is an error rather than left as is: it is almost always a typo, and a
model that reads "[[USR_NAME]]" in its transcript answers worse without anyone noticing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

PLACEHOLDER = re.compile(r"\[\[([A-Z][A-Z0-9_]*)\]\]")

DEFAULT_USER_NAME = "User"
DEFAULT_AI_NAME = "Assistant"


@dataclass(frozen=True)
class PlaceholderValues:
    """What the placeholders are filled with; `now` is fixed so a test can pin it."""

    user_name: str = DEFAULT_USER_NAME
    ai_name: str = DEFAULT_AI_NAME
    now: datetime = field(default_factory=datetime.now)


PLACEHOLDERS: dict[str, Callable[[PlaceholderValues], str]] = {
    "USER_NAME": lambda values: values.user_name,
    "AI_NAME": lambda values: values.ai_name,
    "DATE_TIME": lambda values: values.now.strftime("%H:%M"),
    "DATE_YEAR": lambda values: values.now.strftime("%Y"),
}


class UnknownPlaceholder(ValueError):
    def __init__(self, name: str) -> None:
        known = ", ".join(f"[[{known}]]" for known in PLACEHOLDERS)
        super().__init__(f"unknown placeholder [[{name}]] (known: {known})")
        self.name = name


def fill_placeholders(text: str, values: PlaceholderValues) -> str:
    """Replace every known placeholder; raise UnknownPlaceholder for any other."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in PLACEHOLDERS:
            raise UnknownPlaceholder(name)
        return PLACEHOLDERS[name](values)

    return PLACEHOLDER.sub(replace, text)
