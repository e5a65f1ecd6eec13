"""How model families write tool calls, registered by family.

Each family's models were trained to write calls one way; the model's chat template gives
the family away by the markers it contains. A model with no known format gets the generic
one, which is Hermes' wrapper (`<tool_call>` JSON `</tool_call>`): explicit open and close
markers are what a small model copies most reliably from the tool-use prompt.

A format knows three things: how to write a call (to render history and examples), the
grammar rule around the call JSON (to force a call under `required` or a named function),
and how to find calls in the model's text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ParsedCall:
    name: str
    arguments: dict


@dataclass(frozen=True)
class CallFormat:
    name: str
    # Text in a chat template that marks this family; empty for the fallback.
    template_markers: tuple[str, ...]
    opener: str  # text that starts the calls (what streaming holds back on)
    closer: str
    arguments_key: str = "arguments"
    # Several calls: each wrapped in opener/closer, or one JSON list after the opener.
    as_list: bool = False

    def render(self, calls: list[ParsedCall]) -> str:
        objects = [
            json.dumps({"name": c.name, self.arguments_key: c.arguments}, ensure_ascii=False)
            for c in calls
        ]
        if self.as_list:
            return f"{self.opener}[{', '.join(objects)}]{self.closer}"
        return "\n".join(f"{self.opener}{obj}{self.closer}" for obj in objects)

    def grammar_root(self, call_rule: str, parallel: bool) -> str:
        """GBNF `root` for one call (or several) around the rule matching one call's JSON."""
        opener, closer = _literal(self.opener), _literal(self.closer)
        if self.as_list:
            more = f' ("," " "? {call_rule})*' if parallel else ""
            return f'root ::= {opener} "[" {call_rule}{more} "]" {closer}'
        one = f"{opener} {call_rule} {closer}"
        more = f' ("\\n" {one})*' if parallel else ""
        return f"root ::= {one}{more}"

    def parse(self, text: str) -> tuple[str, list[ParsedCall]]:
        """The text before the first call, and the calls; (text, []) when there are none."""
        start = text.find(self.opener) if self.opener else _first_brace(text)
        if start < 0:
            return text, []
        body = text[start + len(self.opener) :]
        calls, _ = self._parse_calls(body)
        if not calls:
            return text, []
        return text[:start].strip(), calls

    def cut_call(self, text: str) -> tuple[str, str] | None:
        """The name and the arguments written so far of a call the text breaks off inside
        (max_tokens ran out), or None when no call was cut after its name."""
        start = text.find(self.opener) if self.opener else _first_brace(text)
        if start < 0:
            return None
        body = text[start + len(self.opener) :]
        _, complete = self._parse_calls(body)
        # The last call begun after the complete ones.
        begun = next(reversed(list(_CALL_HEAD.finditer(body, complete))), None)
        if begun is None:
            return None
        try:
            name = json.loads(begun["name"])
        except json.JSONDecodeError:
            return None
        return name, body[begun.end() :]

    def before_calls(self, text: str) -> str:
        """The text up to the opener: what a reader may see of a reply whose call broke off."""
        start = text.find(self.opener) if self.opener else _first_brace(text)
        return text if start < 0 else text[:start].strip()

    def _parse_calls(self, body: str) -> tuple[list[ParsedCall], int]:
        """The calls written whole, and where the text after the last of them starts."""
        decoder = json.JSONDecoder()
        found: list[ParsedCall] = []
        position = 0
        while True:
            brace = _next_json(body, position)
            if brace < 0:
                break
            try:
                value, position = decoder.raw_decode(body, brace)
            except json.JSONDecodeError:
                break
            for item in value if isinstance(value, list) else [value]:
                call = self._call(item)
                if call is not None:
                    found.append(call)
        return found, position

    def _call(self, item: object) -> ParsedCall | None:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return None
        arguments = item.get(self.arguments_key, item.get("arguments", {}))
        if isinstance(arguments, str):  # some models write the arguments as JSON text
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                return None
        return ParsedCall(item["name"], arguments) if isinstance(arguments, dict) else None


# The start of one call's JSON up to its arguments, as the call grammar writes it.
_CALL_HEAD = re.compile(
    r'\{\s*"name"\s*:\s*(?P<name>"(?:[^"\\]|\\.)*")\s*,\s*"(?:arguments|parameters)"\s*:\s*'
)


def _literal(text: str) -> str:
    return json.dumps(text) if text else ""


def _first_brace(text: str) -> int:
    stripped = len(text) - len(text.lstrip())
    return stripped if text[stripped : stripped + 1] == "{" else -1


def _next_json(text: str, position: int) -> int:
    match = re.compile(r"[\[{]").search(text, position)
    return match.start() if match else -1


HERMES = CallFormat("hermes", ("<tool_call>",), "<tool_call>\n", "\n</tool_call>")
MISTRAL = CallFormat("mistral", ("[TOOL_CALLS]",), "[TOOL_CALLS] ", "", as_list=True)
# Llama 3.1+ writes a bare JSON object with "parameters" (its template's custom-tool form).
LLAMA3 = CallFormat("llama3", ("<|python_tag|>", "ipython"), "", "", arguments_key="parameters")
GENERIC = CallFormat("generic", (), "<tool_call>\n", "\n</tool_call>")

# Checked in order: the first family whose marker the template contains.
CALL_FORMATS: dict[str, CallFormat] = {f.name: f for f in (HERMES, MISTRAL, LLAMA3)}


def call_format_for(chat_template: str | None) -> CallFormat:
    for fmt in CALL_FORMATS.values():
        if chat_template and any(marker in chat_template for marker in fmt.template_markers):
            return fmt
    return GENERIC
