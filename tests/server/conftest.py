"""Fixtures shared by the server's unit tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from hearth.engine.base import EngineOptions, SamplingParams
from hearth.engine.model import LlamaModel
from hearth.engine.sampler import SamplerChain, grammar_parses
from hearth.runtime.settings import bundled_model_path


@pytest.fixture(scope="session")
def grammar_takes() -> Iterator[Callable[[str, str], bool]]:
    """Whether llama.cpp's grammar sampler takes a text (as the bundled model's tokens) as
    the start of a reply under a grammar: the check the engine makes on every token."""
    path = bundled_model_path()
    model = LlamaModel(EngineOptions(path, path.stem, n_ctx=64, n_seq=1, n_batch=64))

    def takes(grammar: str, text: str) -> bool:
        assert grammar_parses(grammar), grammar
        chain = SamplerChain(SamplingParams(temperature=0), model.n_vocab)
        tokens = model.tokenize(text, add_special=False, parse_special=False)
        try:
            return chain.constrain(grammar, model.vocab, tokens)
        finally:
            chain.close()

    yield takes
    model.close()
