"""The llama.cpp engine in process, on the real model: failure handling and the batch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from hearth.engine.base import (
    Finished,
    GenerationRequest,
    Prompt,
    SamplingParams,
    TextDelta,
)
from hearth.engine.batch import TokenBatch
from hearth.engine.errors import ContextExceeded, GenerationFailed, ModelLoadError
from hearth.engine.llama import LlamaEngine
from hearth.runtime.settings import ModelSettings, bundled_model_path

GREEDY = SamplingParams(temperature=0)


async def run(engine: LlamaEngine, text: str, max_tokens: int = 12) -> tuple[str, Finished]:
    request = GenerationRequest(Prompt(text), max_tokens=max_tokens, sampling=GREEDY)
    parts, finished = [], None
    async for event in engine.submit(request):
        if isinstance(event, TextDelta):
            parts.append(event.text)
        else:
            finished = event
    assert finished is not None
    return "".join(parts), finished


@pytest.fixture
def engine_settings() -> ModelSettings:
    return ModelSettings.load({"parallel": 2, "n_ctx": 512, "threads": 2})


def on_real_engine(settings: ModelSettings, scenario: Callable[[LlamaEngine], Awaitable[None]]):
    """Run `scenario` against a started engine, and close the engine whatever happens."""

    async def main() -> None:
        engine = LlamaEngine(settings.engine_options(bundled_model_path(), "smollm2"))
        await engine.start()
        try:
            await scenario(engine)
        finally:
            await engine.close()

    asyncio.run(main())


def test_a_failed_decode_fails_its_request_and_the_next_one_is_served(engine_settings, monkeypatch):
    async def scenario(engine: LlamaEngine) -> None:
        before, _ = await run(engine, "The sky is")
        real_decode = TokenBatch.decode
        calls = 0

        def failing_once(batch: TokenBatch, ctx: object) -> int:
            nonlocal calls
            calls += 1
            return -1 if calls == 1 else real_decode(batch, ctx)

        with monkeypatch.context() as patch:
            patch.setattr(TokenBatch, "decode", failing_once)
            with pytest.raises(GenerationFailed):
                await run(engine, "The sky is")
        after, finished = await run(engine, "The sky is")
        assert after == before  # nothing left over from the failed step
        assert finished.cached_tokens == 0  # the suspect KV was dropped

    on_real_engine(engine_settings, scenario)


def test_prompt_that_does_not_fit_is_refused_before_admission(engine_settings):
    async def scenario(engine: LlamaEngine) -> None:
        with pytest.raises(ContextExceeded) as overflow:
            engine.submit(GenerationRequest(Prompt("word " * 600), max_tokens=4))
        assert overflow.value.limit == 512
        with pytest.raises(ContextExceeded):
            engine.submit(GenerationRequest(Prompt("Hello"), max_tokens=600))
        _, finished = await run(engine, "Hello", max_tokens=3)
        assert finished.completion_tokens <= 3

    on_real_engine(engine_settings, scenario)


def test_generation_stops_at_the_context_end_with_length(engine_settings):
    async def scenario(engine: LlamaEngine) -> None:
        prompt = "count: " + "one two three " * 160
        request = GenerationRequest(
            Prompt(prompt), sampling=SamplingParams(temperature=0, logit_bias=((2, -100.0),))
        )
        events = [e async for e in engine.submit(request)]
        finished = events[-1]
        assert isinstance(finished, Finished) and finished.reason == "length"
        assert finished.prompt_tokens + finished.completion_tokens == 512

    on_real_engine(engine_settings, scenario)


def test_token_batch_lays_out_tokens_positions_and_sequences():
    batch = TokenBatch(8)
    assert batch.add([5, 6, 7], first_pos=10, seq_id=1, logits_last=True) == 2
    assert batch.add([9], first_pos=3, seq_id=0, logits_last=False) == 3
    assert batch.size == 4 and batch.room == 4
    np.testing.assert_array_equal(batch.tokens[:4], [5, 6, 7, 9])
    np.testing.assert_array_equal(batch.positions[:4], [10, 11, 12, 3])
    np.testing.assert_array_equal(batch.wants_logits[:4], [0, 0, 1, 0])
    assert [batch.struct.seq_id[i][0] for i in range(4)] == [1, 1, 1, 0]
    batch.clear()
    assert batch.size == 0


def test_a_prompt_counted_while_fitting_is_not_tokenized_again_on_admission(
    engine_settings, monkeypatch
):
    async def scenario(engine: LlamaEngine) -> None:
        model = engine._model
        assert model is not None
        calls: list[str] = []
        tokenize = model.tokenize

        def counted(text: str, **flags: bool) -> list[int]:
            calls.append(text)
            return tokenize(text, **flags)

        monkeypatch.setattr(model, "tokenize", counted)
        prompt = Prompt("The capital of France is")
        counted_tokens = engine.count_tokens(prompt)
        text, finished = await run(engine, prompt.text, max_tokens=4)
        assert calls == [prompt.text]  # once, for both the count and the admission
        direct = tokenize(prompt.text, add_special=True, parse_special=False)
        assert finished.prompt_tokens == counted_tokens == len(direct)
        assert text
        # The same text tokenized another way is another prompt, tokenized anew.
        engine.count_tokens(Prompt(prompt.text, parse_special=True))
        assert calls == [prompt.text, prompt.text]

    on_real_engine(engine_settings, scenario)


# A few-shot transcript after which the model writes a Hermes-style call by itself.
CALLS_PROMPT = (
    'Q: What is the weather in Rome?\nA: <tool_call>\n{"name": "get_weather", "arguments": '
    '{"city": "Rome"}}\n</tool_call>\nQ: What is the weather in Oslo?\nA: <tool_call>\n'
    '{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'
    "Q: What is the weather in Paris?\nA:"
)
# The call grammar asks for a "unit" the examples never show, so only a grammar that has
# taken over can make the model write it.
KELVIN_CALL = (
    'root ::= "<tool_call>\\n{\\"name\\": \\"get_weather\\", \\"arguments\\": '
    '{\\"city\\": \\"" [A-Za-z]+ "\\", \\"unit\\": \\"kelvin\\"}}\\n</tool_call>"'
)


async def lazy_run(
    engine: LlamaEngine, prompt: str, grammar: str | None, trigger: str | None
) -> str:
    request = GenerationRequest(
        Prompt(prompt),
        max_tokens=48,
        sampling=GREEDY,
        stop=("\nQ:",),
        grammar=grammar,
        grammar_trigger=trigger,
    )
    return "".join([e.text async for e in engine.submit(request) if isinstance(e, TextDelta)])


def test_a_lazy_grammar_takes_over_at_its_trigger_and_not_before(engine_settings):
    async def scenario(engine: LlamaEngine) -> None:
        free = await lazy_run(engine, CALLS_PROMPT, None, None)
        lazy = await lazy_run(engine, CALLS_PROMPT, KELVIN_CALL, "<tool_call>")
        assert free.startswith(" <tool_call>") and "kelvin" not in free
        # The space before the trigger was free; from the trigger on the grammar held.
        assert lazy.startswith(" <tool_call>\n")
        assert lazy.rstrip().endswith('"unit": "kelvin"}}\n</tool_call>')
        # A reply that never writes the trigger is not constrained at all.
        plain = "The capital of France is"
        assert await lazy_run(engine, plain, KELVIN_CALL, "<tool_call>") == await lazy_run(
            engine, plain, None, None
        )

    on_real_engine(engine_settings, scenario)


def test_a_lazy_grammar_that_rejects_the_trigger_leaves_the_reply_free(engine_settings):
    # llama.cpp aborts the process on a token its grammar refuses; the replay is checked
    # token by token first, so this reply simply goes on unconstrained.
    async def scenario(engine: LlamaEngine) -> None:
        refusing = 'root ::= "[call]"'
        free = await lazy_run(engine, CALLS_PROMPT, None, None)
        assert await lazy_run(engine, CALLS_PROMPT, refusing, "<tool_call>") == free
        assert (await run(engine, "The sky is"))[0]  # and the engine serves the next one

    on_real_engine(engine_settings, scenario)


def test_an_engine_whose_model_failed_to_load_closes_without_a_second_error(tmp_path):
    """The registry closes an engine whose start failed; that close must leave the load's
    own error (here: the model file is missing) as the one the user sees."""
    settings = ModelSettings.load({"parallel": 1, "n_ctx": 256})
    engine = LlamaEngine(settings.engine_options(tmp_path / "missing.gguf", "missing"))

    async def start_then_close() -> None:
        with pytest.raises(ModelLoadError, match="model file not found"):
            await engine.start()
        await engine.close()

    asyncio.run(start_then_close())


@pytest.mark.parametrize(("setting", "kind"), [("off", 0), ("on", 1), ("auto", -1)])
def test_flash_attention_is_set_as_asked_and_the_engine_serves_either_way(setting, kind):
    settings = ModelSettings.load(
        {"parallel": 1, "n_ctx": 256, "threads": 2, "flash_attn": setting}
    )

    async def scenario(engine: LlamaEngine) -> None:
        assert engine._model is not None
        assert engine._model.context_params.flash_attn_type == kind
        text, finished = await run(engine, "The capital of France is", max_tokens=8)
        assert text.strip() and finished.reason == "length"

    on_real_engine(settings, scenario)


def test_an_unknown_flash_attention_setting_is_refused():
    with pytest.raises(ValueError, match="flash_attn"):
        ModelSettings.load({"flash_attn": "sometimes"})
