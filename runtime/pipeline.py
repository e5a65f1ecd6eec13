"""From a request in the runtime's terms (or a `hearth chat` turn) to an admitted generation.

Chat requests go through the chosen chat format (template or transcript); a conversation
that does not fit the context is refused (ContextOverflow, as OpenAI refuses it) unless
truncation was asked for, in which case its oldest turns are dropped. Dropping is opt-in
because a reply to a silently shortened conversation looks right and is not. Text
completions send the prompt as it is. Either way the engine admits the request before any
reply starts, so admission errors (context overflow, a full queue) reach the caller as
ordinary errors, before a stream could have begun.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from hearth.engine.base import (
    Finished,
    Generation,
    GenerationEvent,
    GenerationRequest,
    InsertText,
    Priority,
    Prompt,
    SamplingParams,
    TextDelta,
    TokenLogprob,
)
from hearth.engine.errors import ContextExceeded
from hearth.prompts.base import (
    ChatFormat,
    Message,
    PromptRenderFailed,
    PromptTooLong,
    RenderedPrompt,
    TemplateOverBudget,
)
from hearth.runtime.errors import (
    ChatTemplateBroken,
    ContextOverflow,
    InvalidRequest,
    PromptRenderError,
    from_engine,
)
from hearth.runtime.observer import NO_OBSERVER, GenerationObserver
from hearth.runtime.reasoning import ReasoningStyle, thinking_grammar, thinking_variables
from hearth.runtime.registry import ModelHandle
from hearth.runtime.requests import ChatRequest, TextRequest, Thinking, Truncation
from hearth.runtime.settings import ServerSettings
from hearth.runtime.structured import output_grammar, raw_grammar
from hearth.runtime.tools.plan import ToolPlan, plan_tools
from hearth.runtime.tools.reply import Reply, ReplyReader, read_reply

# A request that leaves a thinking model's reasoning to the model's default.
NO_THINKING_CHOICE = Thinking()

# Room kept for the reply when a chat request sets no max_tokens and its conversation must
# be shortened to fit: without it the prompt could fill the context and leave nothing.
DEFAULT_REPLY_ROOM = 512


@dataclass
class PreparedGeneration:
    generations: list[Generation]  # one per choice (OpenAI's `n`), all admitted
    model_id: str
    trim_reply: bool = False
    dropped_messages: int = 0
    tools: ToolPlan | None = None  # how to read tool calls out of the reply
    logprobs: int | None = field(default=None)  # the alternatives asked for per token
    observer: GenerationObserver = NO_OBSERVER
    # How the model marks its reasoning (None: the reply is all content).
    reasoning: ReasoningStyle | None = None

    @property
    def generation(self) -> Generation:
        return self.generations[0]

    def reader(self) -> ReplyReader:
        """A reader for one choice's streamed reply (reasoning, content, calls)."""
        return ReplyReader(self.tools, self.reasoning)

    def read(self, text: str, reason: str) -> Reply:
        """One choice's whole reply, read."""
        return read_reply(self.tools, text, reason, self.reasoning)

    def cancel(self) -> None:
        for generation in self.generations:
            generation.cancel()

    def finish_now(self) -> None:
        """End every choice at the engine's next step, each as max_tokens would end it."""
        for generation in self.generations:
            generation.finish_now()

    async def events(self, choice: int = 0) -> AsyncIterator[GenerationEvent]:
        """One choice's events, with surrounding whitespace trimmed where the format asks.

        The observer learns when the first text came and the token counts at the end.
        """
        trimmer = ReplyTrimmer() if self.trim_reply else None
        observer = self.observer
        seen_text = False
        async for event in self.generations[choice]:
            if isinstance(event, TextDelta):
                if not seen_text:
                    seen_text = True
                    observer.first_token()
                if trimmer is not None:
                    text = trimmer.feed(event.text)
                    if text or event.logprobs:
                        yield TextDelta(text, event.logprobs)
                    continue
            else:
                observer.finished(event.prompt_tokens, event.completion_tokens)
            yield event

    async def all_events(self) -> AsyncIterator[tuple[int, GenerationEvent]]:
        """Every choice's events as they come, each with its choice index."""
        if len(self.generations) == 1:
            async for event in self.events(0):
                yield 0, event
            return
        queue: asyncio.Queue[tuple[int, GenerationEvent | Exception]] = asyncio.Queue()

        async def pump(choice: int) -> None:
            try:
                async for event in self.events(choice):
                    queue.put_nowait((choice, event))
            except Exception as error:  # noqa: BLE001 - handed to the consumer, raised there
                queue.put_nowait((choice, error))

        pumps = [asyncio.create_task(pump(i)) for i in range(len(self.generations))]
        try:
            running = len(pumps)
            while running:
                choice, event = await queue.get()
                if isinstance(event, Exception):
                    raise event
                yield choice, event
                running -= isinstance(event, Finished)
        finally:
            for task in pumps:
                task.cancel()  # a consumer gone early frees every choice's slot


class ReplyTrimmer:
    """Strips whitespace around a streamed reply without holding back anything else.

    Leading whitespace is dropped until the first visible character; trailing whitespace is
    held until more text follows, and dropped if none does.
    """

    def __init__(self) -> None:
        self._started = False
        self._held = ""

    def feed(self, text: str) -> str:
        if not self._started:
            text = text.lstrip()
            if not text:
                return ""
            self._started = True
        text = self._held + text
        visible = text.rstrip()
        self._held = text[len(visible) :]
        return visible


def chat_messages(request: ChatRequest) -> list[Message]:
    return [
        Message(role=turn.role, content=turn.content, reasoning=turn.reasoning)
        for turn in request.turns
    ]


def prompt_budget(n_ctx: int, max_tokens: int | None) -> int:
    """Tokens the conversation may take: the context less the reply's room."""
    return n_ctx - (max_tokens or min(DEFAULT_REPLY_ROOM, n_ctx // 4))


@dataclass(frozen=True)
class ChatPolicy:
    """What the server allows a chat request, from its settings."""

    truncation: Truncation = "disabled"  # for a request that does not say
    max_messages: int = 2048
    priority: Priority = "interactive"  # "batch": the Batch API's lines (engine/llama.py)

    @classmethod
    def of(cls, settings: ServerSettings) -> ChatPolicy:
        return cls(truncation=settings.truncation, max_messages=settings.max_messages)


async def submit_chat(
    handle: ModelHandle,
    messages: Sequence[Message],
    *,
    max_tokens: int | None,
    sampling: SamplingParams,
    stop: tuple[str, ...] = (),
    grammar: str | None = None,
    grammar_trigger: str | None = None,
    tools: ToolPlan | None = None,
    n: int = 1,
    logprobs: int | None = None,
    truncate: bool = False,
    observer: GenerationObserver = NO_OBSERVER,
    thinking: Thinking = NO_THINKING_CHOICE,
    template_kwargs: Mapping[str, object] | None = None,
    think_before_grammar: bool = False,
    fit_max_tokens: bool = False,
    priority: Priority = "interactive",
) -> PreparedGeneration:
    """The chat pipeline of every API and of `hearth chat`: render the conversation in
    the handle's chat format and submit it. With `truncate`, its oldest turns are dropped
    to fit; without, a conversation that does not fit raises ContextOverflow.

    A thinking model's template gets the request's thinking choice as its variables
    (`template_kwargs`, as a client sent them, win). Whether the reply starts inside the
    reasoning is read from the render; `think_before_grammar` lets a grammar that forces
    the reply (a tool call, JSON) be preceded by the thinking block, and a thinking budget
    becomes the engine's insert of the closing tag. With `fit_max_tokens`, max_tokens is a
    ceiling lowered to the room the prompt leaves instead of a reason to refuse.

    Rendering and tokenizing run in a worker thread: for a 7.9 MB message or 10,000
    messages they take seconds, which on the event loop stalled every other stream and
    /health. (llama.cpp's tokenizer releases the GIL; the engine keeps the tokens, so its
    submit on the loop does not tokenize again.)
    """
    observer.model_chosen(handle.id)
    fmt = _chat_format(handle, tools, thinking, template_kwargs)
    ceiling = max_tokens if fit_max_tokens else None
    rendered = await asyncio.to_thread(
        _render_chat, handle, fmt, messages, None if fit_max_tokens else max_tokens, truncate
    )
    if ceiling is not None:
        # Counted in the worker thread above; the engine hands back the same tokens.
        room = handle.engine.info.n_ctx - handle.engine.count_tokens(_engine_prompt(rendered))
        max_tokens = min(ceiling, room)
    style = handle.reasoning.after_prompt(closing_markup(rendered)) if handle.reasoning else None
    if style is not None and grammar is not None and think_before_grammar and not grammar_trigger:
        grammar = thinking_grammar(style, grammar)
    try:
        generations = handle.engine.submit_choices(
            GenerationRequest(
                prompt=_engine_prompt(rendered),
                max_tokens=max_tokens,
                stop=rendered.stop + stop,
                sampling=sampling,
                grammar=grammar,
                grammar_trigger=grammar_trigger,
                logprobs=logprobs,
                insert=_thinking_budget(style, thinking),
                priority=priority,
            ),
            n,
        )
    except ContextExceeded as overflow:
        raise from_engine(overflow) from None  # param "messages"
    return PreparedGeneration(
        generations=generations,
        model_id=handle.id,
        trim_reply=rendered.trim_reply,
        dropped_messages=rendered.dropped_messages,
        tools=tools,
        logprobs=logprobs,
        observer=observer,
        reasoning=style,
    )


def closing_markup(rendered: RenderedPrompt) -> str:
    """The template markup after the last message's text: the generation prompt."""
    if not rendered.pieces:
        return rendered.text[-256:]
    tail: list[str] = []
    for piece in reversed(rendered.pieces):
        if not piece.special:
            break
        tail.append(piece.text)
    return "".join(reversed(tail))


def _thinking_budget(style: ReasoningStyle | None, thinking: Thinking) -> InsertText | None:
    """The closing tag, written once the reasoning has used its budget and is still open."""
    if style is None or thinking.budget_tokens is None:
        return None
    return InsertText(
        text=style.budget_text(),
        after_tokens=thinking.budget_tokens,
        unless=style.close,
        requires="" if style.opened_in_prompt else style.open,
    )


def _chat_format(
    handle: ModelHandle,
    tools: ToolPlan | None,
    thinking: Thinking,
    template_kwargs: Mapping[str, object] | None,
) -> ChatFormat:
    """The handle's chat format, given the tools when its template renders them itself and
    the thinking choice as its variables (the client's own template_kwargs win)."""
    fmt = handle.chat_format
    if tools is not None and tools.template_tools is not None:
        fmt = fmt.with_tools(tools.template_tools)
    variables = {**thinking_variables(thinking, fmt.variables), **(template_kwargs or {})}
    return fmt.with_variables(variables) if variables else fmt


def _render_chat(
    handle: ModelHandle,
    fmt: ChatFormat,
    messages: Sequence[Message],
    max_tokens: int | None,
    truncate: bool,
) -> RenderedPrompt:
    """The conversation rendered and tokenized, fitted when `truncate` (worker thread)."""
    engine = handle.engine
    n_ctx = engine.info.n_ctx

    def count(candidate: RenderedPrompt) -> int:
        return engine.count_tokens(_engine_prompt(candidate))

    try:
        if truncate:
            return fmt.render(
                messages, count_tokens=count, max_prompt_tokens=prompt_budget(n_ctx, max_tokens)
            )
        rendered = fmt.render(messages)
    except PromptTooLong as too_long:
        raise ContextOverflow(
            limit=n_ctx, prompt_tokens=too_long.needed, max_tokens=max_tokens
        ) from None
    except TemplateOverBudget as broken:
        raise ChatTemplateBroken(
            f"The model's chat template is broken: {broken}. The server goes on serving; "
            "choose another chat format with --prompt or fix the model's template."
        ) from None
    except PromptRenderFailed as failed:
        raise PromptRenderError(f"The model's chat template failed: {failed}") from None
    needed = count(rendered)
    if needed + (max_tokens or 1) > n_ctx:
        raise ContextOverflow(limit=n_ctx, prompt_tokens=needed, max_tokens=max_tokens)
    return rendered


async def prepare_chat(
    handle: ModelHandle,
    request: ChatRequest,
    policy: ChatPolicy = ChatPolicy(),
    observer: GenerationObserver = NO_OBSERVER,
) -> PreparedGeneration:
    if len(request.turns) > policy.max_messages:
        raise InvalidRequest(
            f"A conversation may have at most {policy.max_messages} messages; this one has "
            f"{len(request.turns)}.",
            param="messages",
        )
    native = handle.chat_format.knows_tools
    tools = plan_tools(request, handle.engine.info.chat_template, native=native)
    return await submit_chat(
        handle,
        tools.messages if tools else chat_messages(request),
        max_tokens=request.max_tokens,
        sampling=request.sampling.over(handle.sampling),
        stop=request.stop,
        grammar=tools.grammar if tools else output_grammar(request.output),
        grammar_trigger=tools.grammar_trigger if tools else None,
        tools=tools,
        n=request.n,
        logprobs=request.logprobs,
        truncate=(request.truncation or policy.truncation) == "auto",
        observer=observer,
        thinking=request.thinking,
        template_kwargs=request.template_kwargs,
        # A grammar the request wrote itself says the whole reply, thinking included.
        think_before_grammar=request.output is None or request.output.grammar is None,
        fit_max_tokens=request.fit_max_tokens,
        priority=policy.priority,
    )


async def count_chat_tokens(handle: ModelHandle, request: ChatRequest) -> int:
    """The prompt tokens `request` would take, rendered as prepare_chat renders it (tools
    and tool turns included). A conversation too long for the context is counted all the
    same: a client counts to learn whether it fits."""
    native = handle.chat_format.knows_tools
    tools = plan_tools(request, handle.engine.info.chat_template, native=native)
    messages = tools.messages if tools else chat_messages(request)
    fmt = _chat_format(handle, tools, request.thinking, request.template_kwargs)
    try:
        rendered = await asyncio.to_thread(_render_chat, handle, fmt, messages, None, False)
    except ContextOverflow as overflow:
        return overflow.prompt_tokens
    return await asyncio.to_thread(handle.engine.count_tokens, _engine_prompt(rendered))


async def prepare_completion(
    handle: ModelHandle,
    request: TextRequest,
    observer: GenerationObserver = NO_OBSERVER,
    priority: Priority = "interactive",
) -> PreparedGeneration:
    observer.model_chosen(handle.id)
    prompt = Prompt(request.prompt, add_special=True, parse_special=False)
    # Tokenized in a worker thread first (see submit_chat); the engine keeps the tokens.
    await asyncio.to_thread(handle.engine.count_tokens, prompt)
    try:
        generations = handle.engine.submit_choices(
            GenerationRequest(
                prompt=prompt,
                max_tokens=request.max_tokens,
                stop=request.stop,
                sampling=request.sampling.over(handle.sampling),
                grammar=raw_grammar(request.grammar) if request.grammar is not None else None,
                logprobs=request.logprobs,
                priority=priority,
            ),
            request.n,
        )
    except ContextExceeded as overflow:
        error = from_engine(overflow)
        error.param = "prompt"  # the engine cannot know which field held the text
        raise error from None
    return PreparedGeneration(
        generations=generations, model_id=handle.id, logprobs=request.logprobs, observer=observer
    )


def _engine_prompt(rendered: RenderedPrompt) -> Prompt:
    return Prompt(
        rendered.text,
        add_special=rendered.add_special,
        parse_special=rendered.parse_special,
        pieces=tuple((piece.text, piece.special) for piece in rendered.pieces),
    )


@dataclass(frozen=True)
class Collected:
    """One choice, whole."""

    text: str
    finished: Finished
    logprobs: tuple[TokenLogprob, ...] = ()


async def collect_choice(prepared: PreparedGeneration, choice: int = 0) -> Collected:
    parts: list[str] = []
    logprobs: list[TokenLogprob] = []
    async for event in prepared.events(choice):
        if isinstance(event, TextDelta):
            parts.append(event.text)
            logprobs.extend(event.logprobs)
        else:
            return Collected("".join(parts), event, tuple(logprobs))
    raise RuntimeError("generation ended without a Finished event")


async def collect_all(prepared: PreparedGeneration) -> list[Collected]:
    """Every choice, whole; a failure of one cancels the others."""
    tasks = [
        asyncio.ensure_future(collect_choice(prepared, i)) for i in range(len(prepared.generations))
    ]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()


async def collect(prepared: PreparedGeneration) -> tuple[str, Finished]:
    """The first choice's text and its end (the Responses API and `hearth chat`)."""
    whole = await collect_choice(prepared)
    return whole.text, whole.finished


async def rendered_prompt(handle: ModelHandle, request: ChatRequest) -> Prompt:
    """The prompt a chat request becomes for the model: its chat format's rendering, as the
    engine tokenizes it (for a page that shows the prompt as the model saw it)."""
    rendered = await asyncio.to_thread(
        _render_chat, handle, handle.chat_format, chat_messages(request), request.max_tokens, False
    )
    return _engine_prompt(rendered)
