"""Dropping the oldest exchanges when the conversation outgrows the context."""

from __future__ import annotations

import pytest
from llama_cpp import Llama

from hearth.prompts import (
    Message,
    ModelChatTemplate,
    ModelTemplate,
    PromptTooLong,
    RenderedPrompt,
    load_chat_format,
)


def characters(candidate: RenderedPrompt) -> int:
    return len(candidate.text)


def conversation(exchanges: int) -> list[Message]:
    messages = [Message("system", "Keep this system text.")]
    for index in range(exchanges):
        messages += [Message("user", f"question {index}"), Message("assistant", f"answer {index}")]
    return [*messages, Message("user", "the latest question")]


def test_everything_fits_nothing_dropped() -> None:
    fmt = load_chat_format("chat-with-bob", model_template=None)
    messages = conversation(3)
    rendered = fmt.render(messages, count_tokens=characters, max_prompt_tokens=100_000)
    assert rendered == fmt.render(messages)
    assert rendered.dropped_messages == 0


def test_oldest_exchanges_go_first_and_whole() -> None:
    fmt = load_chat_format("chat-with-bob", model_template=None)
    messages = conversation(6)
    full = len(fmt.render(messages).text)
    exchange = len("User: question 0\nBob: answer 0\n")
    # Room for all but two and a half exchanges: three must go (whole ones, not two and a half).
    rendered = fmt.render(
        messages, count_tokens=characters, max_prompt_tokens=full - 5 * exchange // 2
    )
    assert rendered.dropped_messages == 6
    assert "question 2" not in rendered.text and "answer 2" not in rendered.text
    assert "User: question 3\nBob: answer 3\n" in rendered.text
    assert "Keep this system text." in rendered.text
    assert "User: How many days are there in a leap year?" in rendered.text  # examples stay
    assert rendered.text.endswith("User: the latest question\nBob:")
    # The most that fits: keeping one more exchange would not.
    kept_one_more = fmt.render([messages[0], *messages[5:]])
    assert len(kept_one_more.text) > full - 5 * exchange // 2
    assert rendered.text == fmt.render([messages[0], *messages[7:]]).text


def test_latest_message_too_long_is_prompt_too_long() -> None:
    fmt = load_chat_format("chat-with-bob", model_template=None)
    messages = [*conversation(2)[:-1], Message("user", "x" * 5000)]
    with pytest.raises(PromptTooLong) as raised:
        fmt.render(messages, count_tokens=characters, max_prompt_tokens=2000)
    assert raised.value.limit == 2000
    assert raised.value.needed == len(fmt.render([messages[0], messages[-1]]).text)


def test_model_template_drops_with_real_tokens(
    smollm2_template: ModelTemplate,
    smollm2_vocab: Llama,
) -> None:
    fmt = ModelChatTemplate(smollm2_template)

    def tokens(candidate: RenderedPrompt) -> int:
        return len(
            smollm2_vocab.tokenize(
                candidate.text.encode(),
                add_bos=candidate.add_special,
                special=candidate.parse_special,
            )
        )

    messages = conversation(40)
    full = tokens(fmt.render(messages))
    rendered = fmt.render(messages, count_tokens=tokens, max_prompt_tokens=full // 2)
    assert 0 < rendered.dropped_messages < 80 and rendered.dropped_messages % 2 == 0
    assert tokens(rendered) <= full // 2
    assert rendered.text.startswith("<|im_start|>system\nKeep this system text.<|im_end|>\n")
    assert rendered.text.endswith(
        "<|im_start|>user\nthe latest question<|im_end|>\n<|im_start|>assistant\n"
    )
    # Alternation survives: after the system turn, a user turn comes first.
    assert rendered.text.split("<|im_start|>")[2].startswith("user\n")


def test_counts_are_few_for_long_histories() -> None:
    fmt = load_chat_format("chat-with-bob", model_template=None)
    calls = 0

    def counting(candidate: RenderedPrompt) -> int:
        nonlocal calls
        calls += 1
        return len(candidate.text)

    fmt.render(conversation(500), count_tokens=counting, max_prompt_tokens=2000)
    assert calls <= 12  # bisection: log2(500) + 2, not one render per exchange
