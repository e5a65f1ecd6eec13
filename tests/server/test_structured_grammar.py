"""Schema to grammar compilation: what compiles, what is refused, the cache, and what the
compiled grammar lets through llama.cpp's grammar sampler (on the bundled model's vocabulary)."""

from __future__ import annotations

import pytest

from hearth.engine import grammar as engine_grammar
from hearth.runtime import structured
from hearth.server.errors import to_openai


def compile_(schema: dict) -> str:
    return structured.schema_grammar(schema, param="response_format.json_schema.schema")


def test_root_ref_with_nested_refs_in_definitions_compiles():
    """A root $ref (zod's output) left the refs inside its definitions unresolved: KeyError."""
    schema = {
        "$ref": "#/definitions/A",
        "definitions": {
            "A": {"type": "object", "properties": {"b": {"$ref": "#/definitions/B"}}},
            "B": {"enum": ["x", "y"]},
        },
    }
    gbnf = compile_(schema)
    assert '"\\"x\\""' in gbnf and "root ::=" in gbnf


def test_recursive_defs_compile():
    node = {
        "type": "object",
        "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/N"}}},
    }
    assert "root ::=" in compile_({"$defs": {"N": node}, "$ref": "#/$defs/N"})


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "strng"}, "strng"),
        ({"$ref": "#/$defs/Nope", "$defs": {}}, "Nope"),
        ({"$ref": "https://example.com/schema.json"}, "Fetching remote schemas"),
    ],
)
def test_uncompilable_schemas_are_invalid_schema_naming_the_part(schema, named):
    with pytest.raises(structured.InvalidSchema) as refused:
        compile_(schema)
    assert named in refused.value.message
    assert to_openai(refused.value).status == 400


def test_compiled_grammars_are_cached_per_schema_text():
    engine_grammar._compile.cache_clear()
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    first, second = compile_(schema), compile_(dict(schema))
    assert first is second
    assert engine_grammar._compile.cache_info().hits == 1


def test_raw_grammar_that_does_not_parse_is_invalid_grammar():
    with pytest.raises(structured.InvalidGrammar):
        structured.raw_grammar("root ::= missing")
    assert structured.raw_grammar('root ::= "ok"') == 'root ::= "ok"'


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        {
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 20}},
            "required": ["name"],
        },
        {"type": "object"},  # what response_format json_object compiles
    ],
)
def test_schema_strings_refuse_raw_control_characters(grammar_takes, schema):
    """The converter's string rule let a raw newline into a "name": the reply was not JSON."""
    gbnf = compile_(schema)
    assert grammar_takes(gbnf, '{"name": "Ada\\nLovelace \\u00e9\\t\\"x\\""}')
    for raw in ("\n", "\t", "\r", "\x00", "\x1f"):
        assert not grammar_takes(gbnf, f'{{"name": "Ada{raw}'), repr(raw)


def test_pattern_strings_refuse_raw_control_characters(grammar_takes):
    """A pattern's `.` took any character but a line break, a raw tab or quote included."""
    gbnf = compile_({"type": "string", "pattern": "^a.c$"})
    assert grammar_takes(gbnf, '"abc"')
    assert not grammar_takes(gbnf, '"a\tc"')
    assert not grammar_takes(gbnf, '"a"c"')


def test_a_subschema_that_constrains_nothing_is_any_json_value(grammar_takes):
    """A parameter with only a description (Claude Code's tools have them) was refused as
    "Unrecognized schema"; JSON Schema calls it any value."""
    gbnf = compile_(
        {
            "type": "object",
            "properties": {
                "args": {"description": "Passed to the script verbatim."},
                "tags": {"type": "array", "items": {}},
            },
            "required": ["args"],
        }
    )
    for value in ('[1, "two"]', '{"k": null}', '"text"', "3.5", "true", "null"):
        assert grammar_takes(gbnf, f'{{"args": {value}, "tags": [{value}]}}'), value
    assert not grammar_takes(gbnf, '{"args": nope')


def test_a_huge_max_length_is_left_to_max_tokens_and_a_huge_min_length_refused(grammar_takes):
    """maxLength 524,288 (a Claude Code tool has it) compiled to a grammar nested that deep,
    and llama.cpp's parser overflowed its stack: the server died."""
    gbnf = compile_({"type": "string", "maxLength": 524_288})
    assert grammar_takes(gbnf, '"' + "x" * 600 + '"')
    with pytest.raises(structured.InvalidSchema, match="minLength 100000"):
        compile_({"type": "string", "minLength": 100_000})


def test_a_grammar_nested_past_the_parsers_depth_is_refused_not_a_crash():
    deep = "root ::= " + '("a" ' * 30_000 + ")?" * 30_000
    with pytest.raises(structured.InvalidGrammar, match="nests parentheses 30000 deep"):
        structured.raw_grammar(deep)
    assert not engine_grammar.grammar_parses(deep)


def test_nesting_is_counted_outside_strings_classes_and_comments():
    assert engine_grammar.grammar_nesting('root ::= ("(" [(] ("a"))  # ((((\nx ::= "\\"("') == 2
