"""InsertText on the real engine: the closing tag a thinking budget writes, and when not."""

from __future__ import annotations

from hearth.engine.base import Finished, GenerationRequest, InsertText, Prompt, TextDelta
from hearth.engine.llama import LlamaEngine
from hearth.runtime.settings import ModelSettings

from .test_engine import GREEDY, on_real_engine

SETTINGS = ModelSettings.load({"parallel": 1, "n_ctx": 1024, "threads": 2})
CLOSE = InsertText(text="</think>", after_tokens=12, unless="</think>", requires="<think>")


async def reply(
    engine: LlamaEngine, grammar: str, insert: InsertText, max_tokens: int
) -> tuple[str, int]:
    """The reply's text and how many tokens it took."""
    request = GenerationRequest(
        Prompt("Think, then answer."),
        max_tokens=max_tokens,
        sampling=GREEDY,
        grammar=grammar,
        insert=insert,
    )
    parts, tokens = [], 0
    async for event in engine.submit(request):
        if isinstance(event, TextDelta):
            parts.append(event.text)
        else:
            assert isinstance(event, Finished)
            tokens = event.completion_tokens
    return "".join(parts), tokens


def test_a_spent_budget_writes_the_closing_tag_and_the_grammar_goes_on():
    # Left alone, the grammar lets the model think until max_tokens.
    grammar = 'root ::= "<think>" ("x y ")* "</think>" "answer"'

    async def scenario(engine: LlamaEngine) -> None:
        text, _ = await reply(engine, grammar, CLOSE, max_tokens=100)
        thought, closed, after = text.partition("</think>")
        assert thought.startswith("<think>x y") and closed and after == "answer", text
        assert thought.count("x y") < 12, text  # closed at the budget, not by max_tokens

    on_real_engine(SETTINGS, scenario)
