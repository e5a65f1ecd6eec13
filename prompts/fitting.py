"""Fitting a conversation into the context by dropping its oldest exchanges.

What always stays: the system messages that open the conversation (they set up the whole
chat), and the newest user message with anything after it (what is being answered). What
goes, oldest first, are whole exchanges: a user message together with the replies that follow
it, so the remaining conversation still alternates user / assistant as templates demand.

The number of exchanges to drop is found by bisection over full renders, so a long history
costs a handful of tokenizations, not one per message; it relies on a render never growing
when an exchange is removed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from hearth.prompts.base import Message, PromptTooLong, RenderedPrompt, TokenCounter

Renderer = Callable[[Sequence[Message]], RenderedPrompt]


class FittedFormat:
    """The `render` every chat format shares: render all, then fit to the budget.

    A format only says how to render a whole conversation (`render_all`); dropping old
    exchanges to fit is the same for every format.
    """

    # Whether the format writes tool definitions and calls itself (see ModelChatTemplate).
    knows_tools = False
    variables: frozenset[str] = frozenset()

    def with_tools(self, tools: list[dict]) -> FittedFormat:
        """The format, describing `tools` itself; one that knows no tools is unchanged."""
        return self

    def with_variables(self, variables: dict[str, object]) -> FittedFormat:
        """The format with extra template variables; one without a template is unchanged."""
        return self

    def render_all(self, messages: Sequence[Message]) -> RenderedPrompt:
        raise NotImplementedError

    def render(
        self,
        messages: Sequence[Message],
        *,
        count_tokens: TokenCounter | None = None,
        max_prompt_tokens: int | None = None,
    ) -> RenderedPrompt:
        return fit_conversation(messages, self.render_all, count_tokens, max_prompt_tokens)


@dataclass(frozen=True)
class ConversationParts:
    pinned_head: tuple[Message, ...]  # leading system messages
    exchanges: tuple[tuple[Message, ...], ...]  # droppable, oldest first
    pinned_tail: tuple[Message, ...]  # the newest user message and what follows it

    @classmethod
    def split(cls, messages: Sequence[Message]) -> ConversationParts:
        head_end = 0
        while head_end < len(messages) and messages[head_end].role == "system":
            head_end += 1
        user_turns = [i for i in range(head_end, len(messages)) if messages[i].role == "user"]
        tail_start = user_turns[-1] if user_turns else len(messages)
        exchanges: list[tuple[Message, ...]] = []
        for message in messages[head_end:tail_start]:
            if message.role == "user" or not exchanges:
                exchanges.append((message,))
            else:
                exchanges[-1] += (message,)
        return cls(tuple(messages[:head_end]), tuple(exchanges), tuple(messages[tail_start:]))

    def without_oldest(self, count: int) -> tuple[list[Message], int]:
        """The conversation minus its `count` oldest exchanges, and how many messages that is."""
        kept = [message for exchange in self.exchanges[count:] for message in exchange]
        dropped = sum(len(exchange) for exchange in self.exchanges[:count])
        return [*self.pinned_head, *kept, *self.pinned_tail], dropped


def fit_conversation(
    messages: Sequence[Message],
    render: Renderer,
    count_tokens: TokenCounter | None,
    max_prompt_tokens: int | None,
) -> RenderedPrompt:
    """Render all of `messages` if they fit, else the most recent part that does."""
    full = render(messages)
    if count_tokens is None or max_prompt_tokens is None:
        return full
    needed = count_tokens(full)
    if needed <= max_prompt_tokens:
        return full
    parts = ConversationParts.split(messages)
    best: RenderedPrompt | None = None
    low, high = 1, len(parts.exchanges)  # invariant: dropping fewer than `low` does not fit
    while low <= high:
        middle = (low + high) // 2
        kept, dropped = parts.without_oldest(middle)
        candidate = render(kept)
        tokens = count_tokens(candidate)
        if tokens <= max_prompt_tokens:
            best, high = replace(candidate, dropped_messages=dropped), middle - 1
        else:
            needed, low = tokens, middle + 1
    if best is None:
        raise PromptTooLong(needed=needed, limit=max_prompt_tokens)
    return best
