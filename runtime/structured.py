"""What a reply must look like, as a grammar for the engine: a JSON schema, or raw GBNF.

The engine compiles and checks (engine/grammar.py, where the enforced and unenforced
schema keywords are listed); this module names the request field at fault when it refuses.
"""

from __future__ import annotations

from hearth.engine.errors import GrammarRefused
from hearth.engine.grammar import check_grammar, schema_to_gbnf
from hearth.runtime.errors import InvalidRequest
from hearth.runtime.requests import OutputFormat


class InvalidSchema(InvalidRequest):
    code = "invalid_json_schema"


class InvalidGrammar(InvalidRequest):
    code = "invalid_grammar"


def schema_grammar(schema: dict, *, param: str) -> str:
    """GBNF for a JSON schema, or InvalidSchema naming what the converter refused."""
    try:
        return schema_to_gbnf(schema)
    except GrammarRefused as refused:
        raise InvalidSchema(refused.message, param=param) from None


def raw_grammar(grammar: str, *, param: str = "grammar") -> str:
    try:
        check_grammar(grammar)
    except GrammarRefused as refused:
        raise InvalidGrammar(refused.message, param=param) from None
    return grammar


def output_grammar(output: OutputFormat | None) -> str | None:
    """The grammar a reply must follow, or None for free text."""
    if output is None:
        return None
    if output.grammar is not None:
        return raw_grammar(output.grammar, param=output.param)
    return schema_grammar(output.schema or {"type": "object"}, param=output.param)
