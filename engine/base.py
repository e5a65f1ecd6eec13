"""The engine interface: what the HTTP layer and the terminal chat may rely on.

An engine takes a `GenerationRequest`, admits it (or refuses it with a typed error before
anything is streamed), and hands back a `Generation`: an async stream of `TextDelta`s ending
in exactly one `Finished`. How requests share the model (one at a time, or decoded together
in one llama.cpp batch) is the engine's business; nothing above this interface changes with
it. Nothing in this module imports llama_cpp.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class SamplingParams:
    """llama.cpp sampler chain settings for one request. Defaults are llama.cpp's own."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    logit_bias: tuple[tuple[int, float], ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True)
class Prompt:
    """Text for the model, and how to tokenize it.

    `add_special` adds the model's BOS (and whatever else its tokenizer adds); a chat
    template that writes its own BOS turns it off. `parse_special` lets text such as
    `<|im_start|>` become the special token: right for a rendered chat template, wrong for
    raw user text.
    """

    text: str
    add_special: bool = True
    parse_special: bool = False
    # (text, parse_special) stretches whose join is `text`, tokenized one by one so that a
    # user's "<|im_start|>" stays text while the template's own markup is parsed. Empty:
    # `text` is tokenized whole by `parse_special`.
    pieces: tuple[tuple[str, bool], ...] = ()


Priority = Literal["interactive", "batch"]


@dataclass(frozen=True)
class InsertText:
    """Text the engine writes into a reply itself, as if the model had, once the reply has
    `after_tokens` tokens, unless its text already holds `unless` by then. With `requires`,
    only when the reply (leading whitespace aside) began with that text.

    Its tokens go into the slot one per step instead of sampled ones, are accepted by the
    request's grammar like any token (an insert the grammar refuses is dropped), count as
    generated and come out as text.
    """

    text: str
    after_tokens: int
    unless: str
    requires: str = ""


@dataclass(frozen=True)
class GenerationRequest:
    prompt: Prompt
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    sampling: SamplingParams = field(default_factory=SamplingParams)
    # GBNF (root rule `root`) every generated token must fit; None leaves output free.
    grammar: str | None = None
    # With a trigger the grammar is lazy: output is free until it contains this text, and
    # from the trigger's first character on it must fit the grammar.
    grammar_trigger: str | None = None
    # Report each generated token's log probability and this many of the likeliest
    # alternatives (0: the token's own only); None reports nothing and costs nothing.
    logprobs: int | None = None
    insert: InsertText | None = None
    # "batch" work (the Batch API's lines) waits behind every interactive request and
    # never takes the last free slot (see LlamaEngine._admit).
    priority: Priority = "interactive"


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token as the model saw it: its bytes and log probability, and the
    likeliest tokens at that position (from the model's distribution, before sampling)."""

    piece: bytes
    logprob: float
    top: tuple[tuple[bytes, float], ...] = ()


@dataclass(frozen=True)
class TextDelta:
    """Newly generated text: whole UTF-8 characters, never part of a stop sequence.

    With logprobs asked for, the tokens whose text this delta completes (a token whose
    bytes end mid-character is reported with the delta that finishes the character)."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()

    def followed_by(self, later: TextDelta) -> TextDelta:
        """This delta and the next one of the same generation, as one."""
        return TextDelta(self.text + later.text, self.logprobs + later.logprobs)


@dataclass(frozen=True)
class Finished:
    reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    # The stop sequence that ended the reply (reason "stop"); None when the model ended it.
    stop_sequence: str | None = None
    # Speculation (engine/speculation.py): tokens guessed for this reply, and how many of
    # them the model's own sampling confirmed (each confirmed one saved a decode step).
    draft_tokens: int = 0
    accepted_draft_tokens: int = 0


GenerationEvent = TextDelta | Finished


@dataclass(frozen=True)
class EngineOptions:
    """How to load one model and serve it: the engine's own terms, built from settings."""

    path: Path
    name: str
    n_ctx: int = 4096  # per sequence: one request's prompt plus reply
    n_seq: int = 4  # slots decoded together
    n_batch: int = 512
    threads: int = 1
    n_gpu_layers: int = 0
    amx: bool = False  # llama.cpp's AMX kernels, which crash on some CPUs (engine/cpu.py)
    cache_ram_bytes: int = 256 << 20
    # The prompt cache on disk (engine/disk_cache.py): the folder under which each model's
    # files go, and the bytes they may take (0: off).
    cache_dir: Path | None = None
    cache_disk_bytes: int = 0
    max_queue: int = 64
    # A GGUF LoRA adapter applied to every context of this engine (llama.cpp applies
    # adapters per context, not per sequence), scaled by lora_scale.
    lora: Path | None = None
    lora_scale: float = 1.0
    # llama.cpp RPC workers (HOST:PORT) holding the offloaded layers; see engine/rpc.py.
    rpc: tuple[str, ...] = ()
    # Guess tokens from the request's own context and verify them in the batch
    # (engine/speculation.py); at most draft_max guessed tokens a step per slot.
    speculate: bool = True
    draft_max: int = 12
    # A model of the same vocabulary that drafts instead (engine/draft_model.py).
    draft_model: Path | None = None
    # Flash attention: "on", "off", or "auto" (engine/model.py says what auto chooses).
    flash_attn: str = "auto"
    # The least time between two hand-offs of generated text to the event loop, in seconds
    # (engine/stream.py's Outbox); 0 hands each step's text over as it comes.
    stream_interval: float = 0.02


@dataclass(frozen=True)
class ModelInfo:
    """What the served model is, as read from its GGUF."""

    path: Path
    name: str
    n_ctx: int  # the context one request may use: prompt plus completion
    n_ctx_train: int
    n_params: int
    size_bytes: int
    description: str
    chat_template: str | None
    bos_token: str
    eos_token: str
    add_bos: bool


class Generation(Protocol):
    """One admitted request. Iterate it for events; cancel it to free its slot."""

    prompt_tokens: int

    def __aiter__(self) -> AsyncIterator[GenerationEvent]: ...

    def cancel(self) -> None: ...

    def finish_now(self) -> None:
        """End soon with its text so far and a Finished of reason "length"."""
        ...


class Engine(Protocol):
    @property
    def info(self) -> ModelInfo: ...

    @property
    def ready(self) -> bool: ...

    @property
    def active(self) -> int:
        """Requests admitted and not finished, waiting ones included."""
        ...

    @property
    def failure(self) -> Exception | None:
        """Why the engine stopped serving on its own (a model whose process died with its
        RPC worker); None while it serves. The registry then loads the model again."""
        ...

    def count_tokens(self, prompt: Prompt) -> int: ...

    def tokenize(self, prompt: Prompt) -> list[int]: ...

    def detokenize(self, tokens: list[int]) -> str:
        """The text of these tokens (control tokens render as nothing); raises
        InvalidTokens for an id outside the vocabulary."""
        ...

    def token_piece(self, token: int) -> str: ...

    def control_text(self, token: int) -> str | None:
        """A control token's own text (`<|im_start|>`); None for a token that is text."""
        ...

    async def embed(self, inputs: list[Prompt | list[int]]) -> tuple[list[list[float]], int]:
        """Each input's pooled, L2-normalized embedding, and the number of tokens read."""
        ...

    def load(self) -> dict[str, Any]:
        """Slots, queue and cache figures for /health."""
        ...

    def submit(self, request: GenerationRequest) -> Generation:
        """Admit a request, or raise ContextExceeded / QueueFull / NotStarted."""
        ...

    def submit_choices(self, request: GenerationRequest, n: int) -> list[Generation]:
        """Admit n generations of one request (OpenAI's `n`), all or none, decoded side by
        side. With a seed, choice i samples with seed + i so that the choices differ."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...
