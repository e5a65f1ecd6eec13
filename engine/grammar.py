"""GBNF for llama.cpp's grammar sampler: JSON schemas compiled, hand-written grammars checked.

JSON schemas are compiled by llama-cpp-python's converter (`llama_cpp.llama_grammar`, its
port of llama.cpp's json-schema-to-grammar.py): a maintained library rather than our own.

Enforced by the grammar: `type` (one or a list), `properties`, `required`,
`additionalProperties` (false, or a schema; an object with `properties` and no
`additionalProperties` also gets no other keys, which is what strict clients ask for),
`$defs`/`definitions` with local `$ref` (recursion included), `anyOf`, `oneOf`, `allOf` of
objects, `enum`, `const`, `items`, `prefixItems`, `minItems`/`maxItems` and
`minLength`/`maxLength` up to 500 (a larger maximum is left to max_tokens, a larger minimum
refused: see MAX_ENFORCED_BOUND), `pattern`, and the string formats `date`, `time`, `date-time`
and `uuid`.

Not enforced (accepted, the output may break them): `minimum`, `maximum`,
`exclusiveMinimum`, `exclusiveMaximum`, `multipleOf`, `uniqueItems`, `contains`, `not`,
`if`/`then`/`else`, `patternProperties`, `propertyNames`, `minProperties`/`maxProperties`,
`dependentRequired`/`dependentSchemas`, the exclusivity of `oneOf`, and the other string
formats (`email`, `uri`...). Remote `$ref`s are refused: the server fetches nothing.

A schema that constrains nothing (`{}`, or only a `description`, `title`, `default`...) is
any JSON value, as JSON Schema says; the converter refused one with only a description
("Unrecognized schema"), and Claude Code's own tools have such parameters.

Objects keep their properties in the schema's order, and whitespace between tokens is at
most one space, so a small model cannot wander into endless blank lines.

Strings are JSON strings: the converter's own `char` rule takes any character but a quote
or a backslash, so a raw newline or other control character, which JSON forbids in a string,
could make a constrained reply fail to parse (a raw newline was seen inside a "name"). Its
`char` rule and its `dot` (a pattern's `.`) are replaced by rules without U+0000-U+001F.
"""

from __future__ import annotations

import json
from functools import lru_cache

from llama_cpp.llama_grammar import json_schema_to_gbnf

from hearth.engine.errors import GrammarRefused
from hearth.engine.sampler import MAX_GRAMMAR_NESTING, grammar_nesting, grammar_parses

__all__ = ["check_grammar", "schema_to_gbnf"]


def schema_to_gbnf(schema: dict) -> str:
    """GBNF (root rule `root`) for a JSON schema, or GrammarRefused naming what the
    converter could not follow."""
    # Key order is kept (no sort_keys): it is the order the reply's properties follow.
    return _compile(json.dumps(_hoist_root_ref(_normalized(schema))))


def check_grammar(grammar: str) -> None:
    """Raise GrammarRefused unless llama.cpp's parser takes the grammar (root rule `root`)."""
    _refuse_deep(grammar, "The grammar")
    if not grammar.strip() or not grammar_parses(grammar):
        raise GrammarRefused(
            "The grammar is not valid GBNF with a `root` rule (llama.cpp's parser refused it; "
            "the server log names the rule)."
        )


def _hoist_root_ref(schema: dict) -> dict:
    """`{"$ref": "#/definitions/X", "definitions": {...}}` (zod-to-json-schema's usual
    output) as `{"anyOf": [{"$ref": ...}], "definitions": {...}}`, which means the same.

    The converter's ref resolution stops at a dict that has a `$ref` and never walks its
    siblings, so with a `$ref` at the root the refs inside the definitions stay unresolved
    and compiling fails with a KeyError.
    """
    if "$ref" not in schema or len(schema) == 1:
        return schema
    rest = {key: value for key, value in schema.items() if key != "$ref"}
    return {**rest, "anyOf": [{"$ref": schema["$ref"]}]}


# Keywords that describe a value without constraining it.
_ANNOTATIONS = frozenset(
    ("title", "description", "default", "examples", "$comment", "deprecated", "readOnly")
    + ("writeOnly", "$schema", "$id")
)
ANY_VALUE = {"type": ["object", "array", "string", "number", "boolean", "null"]}
# Where a schema holds subschemas: one, a list of them, or a map of names to them.
_ONE = ("items", "additionalProperties", "not", "contains")
_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_MAPS = ("properties", "$defs", "definitions")


# The converter spells a bound of N characters or items as N nested optional parts: past
# this many the grammar would be refused for its depth (see check_grammar), so a larger
# maximum is left to max_tokens instead, and a larger minimum refused.
MAX_ENFORCED_BOUND = 500


def _normalized(schema: object, top: bool = True) -> object:
    """The schema as the converter can take it: every subschema that constrains nothing
    spelt as any JSON value, and maxima too large to spell as grammar left out.

    The root stays as it is: an empty root schema is what `json_object` compiles, an object.
    """
    if not isinstance(schema, dict):
        return schema
    if not top and _ANNOTATIONS.issuperset(schema):
        return ANY_VALUE
    out = dict(schema)
    for low, high in (("minLength", "maxLength"), ("minItems", "maxItems")):
        if isinstance(out.get(low), int) and out[low] > MAX_ENFORCED_BOUND:
            raise GrammarRefused(
                f"The JSON schema asks for {low} {out[low]}; at most {MAX_ENFORCED_BOUND} "
                "can be enforced."
            )
        if isinstance(out.get(high), int) and out[high] > MAX_ENFORCED_BOUND:
            del out[high]
    for key in _ONE:
        if isinstance(out.get(key), dict):
            out[key] = _normalized(out[key], top=False)
    for key in _LISTS:
        if isinstance(out.get(key), list):
            out[key] = [_normalized(part, top=False) for part in out[key]]
    for key in _MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: _normalized(part, top=False) for name, part in out[key].items()}
    return out


# A JSON string's characters: anything but `"`, `\` and U+0000-U+001F, or an escape.
JSON_CHAR = r'[^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
# The converter's rules that produce a string's characters, as JSON allows them.
_STRING_RULES = {"char": JSON_CHAR, "dot": r'[^"\\\x00-\x1F]'}


def _json_strings(gbnf: str) -> str:
    """The converter's grammar with string characters that JSON allows (see above)."""
    lines = []
    for line in gbnf.splitlines():
        name, _, _ = line.partition(" ::= ")
        lines.append(f"{name} ::= {_STRING_RULES[name]}" if name in _STRING_RULES else line)
    return "\n".join(lines)


# Clients send the same few schemas over and over (one per pydantic model); compiling a
# large one takes milliseconds, a cache hit nothing. The key is the schema's JSON text.
@lru_cache(maxsize=256)
def _compile(schema_json: str) -> str:
    try:
        gbnf = _json_strings(json_schema_to_gbnf(schema_json))
    except RecursionError:
        raise GrammarRefused("The JSON schema nests too deeply.") from None
    # The converter reports what it cannot follow by assertions and lookups; each names
    # the offending part of the schema, which is what the client needs to see.
    except (AssertionError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise GrammarRefused(
            f"The JSON schema cannot be compiled to a grammar: {_describe(error)}"
        ) from None
    _refuse_deep(gbnf, "The JSON schema's grammar")
    if not grammar_parses(gbnf):
        raise GrammarRefused("The JSON schema compiled to a grammar llama.cpp cannot parse.")
    return gbnf


def _refuse_deep(grammar: str, what: str) -> None:
    depth = grammar_nesting(grammar)
    if depth > MAX_GRAMMAR_NESTING:
        raise GrammarRefused(
            f"{what} nests parentheses {depth} deep; at most {MAX_GRAMMAR_NESTING} are "
            "accepted (a pattern's {m,n} or a large bound nests that deep)."
        )


def _describe(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"no definition {error.args[0]!r} (check $ref targets)"
    text = str(error) or type(error).__name__
    return text if len(text) <= 300 else text[:300] + "..."
