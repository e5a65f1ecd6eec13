"""A request's samplers as one llama.cpp sampler chain.

Everything, logit_bias included, runs inside llama.cpp: no Python logits processor touches
the vocabulary per token (llama-cpp-python's Python logit_bias path halves its speed).
The chain order follows llama.cpp's own default: bias, penalties, the truncating samplers,
then temperature and the seeded draw.

One exception: a plain greedy request (temperature 0, no bias, no penalties) takes the
argmax of the logits row directly. llama_sampler_sample first copies every logit into a
candidate array (49,152 of them for SmolLM2) and then scans it: 123 us a token on a 2-core
Xeon, about 210 us inside the engine's step, where numpy's argmax over the same row takes
about 85 us (7 us with the row warm in cache). Both pick the first of equal maxima, so the
text is the same.

A grammar (GBNF, from a JSON schema or sent raw) is a sampler of its own, kept outside the
chain for two reasons. The prompt's tokens are fed to the chain for the penalties, and a
grammar fed them would reject the prompt and abort the process (llama.cpp aborts on a
token its grammar cannot accept). And a grammar is costly over the whole vocabulary: it
decodes and matches every candidate. So, as llama.cpp's own common sampler does, the token
is first drawn without the grammar and only checked against it; the grammar filters the
whole vocabulary only when it rejects that token.

A grammar may also start late (`constrain`): a tool call under `tool_choice: "auto"` is
free text until the model writes the call's opener, and grammar-bound from there on. The
text already written from the opener is replayed into the grammar token by token, each one
checked first, because llama.cpp aborts the process on a token its grammar cannot accept.
"""

from __future__ import annotations

import ctypes
import random

import llama_cpp
import numpy as np

from hearth.engine.base import SamplingParams
from hearth.engine.logits import LogitsRows

_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


# llama.cpp's GBNF parser recurses once per level of parentheses: 30,000 levels overflowed
# its stack and killed the server (a JSON schema's maxLength of 524,288 compiles to that
# many). Deeper grammars never reach it.
MAX_GRAMMAR_NESTING = 1000


def grammar_parses(grammar: str) -> bool:
    """Whether llama.cpp's GBNF parser takes the grammar (root rule `root`).

    The parser needs no vocabulary, so a request's grammar is checked before it is admitted.
    """
    sampler = _init_grammar(None, grammar)
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def grammar_nesting(grammar: str) -> int:
    """How deep the grammar's parentheses nest, outside its strings, classes and comments."""
    depth = deepest = 0
    closer = None  # the end of the string or character class being read
    chars = iter(grammar)
    for char in chars:
        if closer is not None:
            if char == "\\":
                next(chars, None)
            elif char == closer:
                closer = None
        elif char in '"[':
            closer = '"' if char == '"' else "]"
        elif char == "#":
            for rest in chars:
                if rest == "\n":
                    break
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    return deepest


def _init_grammar(vocab: llama_cpp.llama_vocab_p | None, grammar: str) -> llama_cpp.llama_sampler_p:
    """llama.cpp's grammar sampler, or NULL when it cannot parse (or must not see) it."""
    if grammar_nesting(grammar) > MAX_GRAMMAR_NESTING:
        return None
    return llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")


class SamplerChain:
    def __init__(
        self,
        params: SamplingParams,
        n_vocab: int,
        grammar: str | None = None,
        vocab: llama_cpp.llama_vocab_p | None = None,
    ) -> None:
        chain_params = llama_cpp.llama_sampler_chain_default_params()
        chain_params.no_perf = True
        self.handle = llama_cpp.llama_sampler_chain_init(chain_params)
        self.seed = params.seed if params.seed is not None else random.getrandbits(32)
        for sampler in _samplers(params, n_vocab, self.seed):
            # The chain takes ownership: freeing the chain frees these.
            llama_cpp.llama_sampler_chain_add(self.handle, sampler)
        # A chain that is only a greedy pick keeps no state, so skipping it changes
        # nothing but the time.
        self.argmax_only = params.greedy and not params.logit_bias and not _penalties_active(params)
        self._logits = LogitsRows(n_vocab)
        self._n_vocab = n_vocab
        self.grammar = None
        self._greedy = None  # the fallback pick of a grammar-bound draw (_sample_grammar)
        if grammar is not None and not self._attach(grammar, vocab):
            raise ValueError("llama.cpp could not parse the grammar")

    def _attach(self, grammar: str, vocab: llama_cpp.llama_vocab_p | None) -> bool:
        self.grammar = _init_grammar(vocab, grammar)
        if not self.grammar:
            return False
        self._candidates = _Candidates(self._n_vocab)
        self._probe = _Candidates(1)
        if self._greedy is None:
            self._greedy = llama_cpp.llama_sampler_init_greedy()
        return True

    def constrain(self, grammar: str, vocab: llama_cpp.llama_vocab_p, written: list[int]) -> bool:
        """Apply `grammar` from now on, to a text that starts with `written` (its tokens).

        False, and the output stays free, when the grammar does not parse or does not take
        what was written: the caller then reads the reply as it comes.
        """
        if self.grammar is not None or not self._attach(grammar, vocab):
            return False
        for token in written:
            if not self._allows(token):
                llama_cpp.llama_sampler_free(self.grammar)
                self.grammar = None
                return False
            llama_cpp.llama_sampler_accept(self.grammar, token)
        return True

    def sample(self, ctx: llama_cpp.llama_context_p, output_index: int) -> int:
        """Draw a token from the given output row and record it for the penalties."""
        if self.grammar is not None:
            return self._sample_grammar(ctx, output_index)
        if self.argmax_only:
            return int(self._logits(ctx, output_index).argmax())
        return llama_cpp.llama_sampler_sample(self.handle, ctx, output_index)

    def _sample_grammar(self, ctx: llama_cpp.llama_context_p, output_index: int) -> int:
        row = self._logits(ctx, output_index)
        if self.argmax_only:
            token = int(row.argmax())
        else:
            token = self._candidates.choose(row, (self.handle,))
        if not self._allows(token):
            token = self._candidates.choose(row, (self.grammar, self.handle))
            if not self._allows(token):
                # The request's other samplers (a logit_bias of -100) removed every token
                # the grammar allows: the chain then picks a token the grammar refuses, and
                # llama.cpp aborts the whole process on accepting it. The grammar wins.
                token = self._candidates.choose(row, (self.grammar, self._greedy))
        if not self.argmax_only:
            llama_cpp.llama_sampler_accept(self.handle, token)
        llama_cpp.llama_sampler_accept(self.grammar, token)
        return token

    def force(self, token: int) -> bool:
        """Take `token` as if drawn (an inserted text's), or False when the grammar refuses it."""
        if self.grammar is not None:
            if not self._allows(token):
                return False
            llama_cpp.llama_sampler_accept(self.grammar, token)
        if not self.argmax_only:
            llama_cpp.llama_sampler_accept(self.handle, token)
        return True

    def _allows(self, token: int) -> bool:
        self._probe.view["id"] = token
        self._probe.view["logit"] = 0.0
        self._probe.reset()
        llama_cpp.llama_sampler_apply(self.grammar, self._probe.pointer)
        return bool(np.isfinite(self._probe.view["logit"][0]))

    def accept(self, token: int) -> None:
        """Record a token of the prompt for the penalties (never for the grammar)."""
        llama_cpp.llama_sampler_accept(self.handle, token)

    def close(self) -> None:
        if self.handle:
            llama_cpp.llama_sampler_free(self.handle)
            self.handle = None
        if self.grammar:
            llama_cpp.llama_sampler_free(self.grammar)
            self.grammar = None
        if self._greedy:
            llama_cpp.llama_sampler_free(self._greedy)
            self._greedy = None


class _Candidates:
    """A reusable llama_token_data_array, filled from a logits row by numpy."""

    def __init__(self, size: int) -> None:
        self._buffer = (llama_cpp.llama_token_data * size)()
        self.view = np.frombuffer(self._buffer, dtype=_TOKEN_DATA)
        self._ids = np.arange(size, dtype=np.int32)
        self.array = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._buffer, llama_cpp.llama_token_data_p),
            size=size,
            selected=-1,
            sorted=False,
        )
        self.pointer = ctypes.pointer(self.array)

    def reset(self) -> None:
        # Samplers sort, truncate and select in place; each draw starts from the whole row.
        self.array.data = ctypes.cast(self._buffer, llama_cpp.llama_token_data_p)
        self.array.size = len(self._ids)
        self.array.selected = -1
        self.array.sorted = False

    def choose(self, row: np.ndarray, samplers: tuple) -> int:
        """Run the samplers in order over the whole row and return the token they select."""
        self.view["id"] = self._ids
        self.view["logit"] = row
        self.view["p"] = 0.0
        self.reset()
        for sampler in samplers:
            llama_cpp.llama_sampler_apply(sampler, self.pointer)
        return int(self.array.data[self.array.selected].id)


def _samplers(params: SamplingParams, n_vocab: int, seed: int) -> list:
    samplers = []
    if params.logit_bias:
        biases = (llama_cpp.llama_logit_bias * len(params.logit_bias))()
        for slot, (token, bias) in zip(biases, params.logit_bias, strict=True):
            slot.token = token
            # OpenAI's -100/100 mean "ban"/"force"; llama.cpp takes any float, and -inf bans.
            slot.bias = float("-inf") if bias <= -100 else bias
        samplers.append(
            llama_cpp.llama_sampler_init_logit_bias(
                n_vocab, len(params.logit_bias), ctypes.cast(biases, llama_cpp.llama_logit_bias_p)
            )
        )
    if _penalties_active(params):
        samplers.append(
            llama_cpp.llama_sampler_init_penalties(
                n_vocab,
                params.repeat_last_n,
                params.repeat_penalty,
                params.frequency_penalty,
                params.presence_penalty,
            )
        )
    if params.greedy:
        samplers.append(llama_cpp.llama_sampler_init_greedy())
        return samplers
    if params.top_k > 0:
        samplers.append(llama_cpp.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1.0:
        samplers.append(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
    if params.min_p > 0.0:
        samplers.append(llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
    samplers.append(llama_cpp.llama_sampler_init_temp(params.temperature))
    samplers.append(llama_cpp.llama_sampler_init_dist(seed))
    return samplers


def _penalties_active(params: SamplingParams) -> bool:
    return (
        params.repeat_penalty != 1.0
        or params.frequency_penalty != 0.0
        or params.presence_penalty != 0.0
    )
