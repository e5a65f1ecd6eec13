"""Sampler chains on the real model's logits."""

from __future__ import annotations

import re

import llama_cpp
import pytest

from hearth.engine.base import EngineOptions, SamplingParams
from hearth.engine.batch import TokenBatch
from hearth.engine.model import LlamaModel
from hearth.engine.sampler import SamplerChain
from hearth.runtime.settings import bundled_model_path


@pytest.fixture(scope="module")
def model():
    path = bundled_model_path()
    loaded = LlamaModel(
        EngineOptions(path, path.stem, n_ctx=512, n_seq=1, n_batch=64, threads=2, n_gpu_layers=0)
    )
    yield loaded
    loaded.close()


def test_plain_greedy_takes_the_same_tokens_as_llama_cpps_greedy_sampler(model):
    ours = SamplerChain(SamplingParams(temperature=0), model.n_vocab)
    assert ours.argmax_only
    theirs = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    llama_cpp.llama_sampler_chain_add(theirs, llama_cpp.llama_sampler_init_greedy())
    batch = TokenBatch(64)
    tokens = model.tokenize(
        "The three best things about autumn are", add_special=True, parse_special=False
    )
    batch.add(tokens, 0, 0, True)
    chosen = []
    try:
        for _ in range(48):
            assert batch.decode(model.ctx) == 0
            token = ours.sample(model.ctx, batch.size - 1)
            assert token == llama_cpp.llama_sampler_sample(theirs, model.ctx, batch.size - 1)
            chosen.append(token)
            batch.clear()
            batch.add([token], len(tokens) + len(chosen) - 1, 0, True)
    finally:
        ours.close()
        llama_cpp.llama_sampler_free(theirs)
    assert len(set(chosen)) > 10  # a real continuation, not one token repeated


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=0, repeat_penalty=1.3),
        SamplingParams(temperature=0, presence_penalty=0.5),
        SamplingParams(temperature=0, logit_bias=((42, 5.0),)),
        SamplingParams(temperature=0.7),
    ],
)
def test_chains_with_more_than_a_greedy_pick_run_in_llama_cpp(model, params):
    chain = SamplerChain(params, model.n_vocab)
    try:
        assert not chain.argmax_only
    finally:
        chain.close()


@pytest.mark.parametrize(
    "params",
    [SamplingParams(temperature=0), SamplingParams(temperature=1.0, repeat_penalty=1.3, seed=7)],
)
def test_grammar_constrains_the_draw_and_never_sees_the_prompt(model, params):
    """Fed the prompt's tokens (as the penalties are), a grammar would reject them and abort."""
    grammar = 'root ::= "[" [0-9]{1,3} ("," [0-9]{1,3}){0,4} "]"'
    chain = SamplerChain(params, model.n_vocab, grammar, model.vocab)
    llama_cpp.llama_memory_seq_rm(model.memory, 0, -1, -1)  # what earlier tests left in seq 0
    tokens = model.tokenize("Write some words about autumn:", add_special=True, parse_special=False)
    for token in tokens:
        chain.accept(token)
    batch = TokenBatch(64)
    batch.add(tokens, 0, 0, True)
    text = b""
    try:
        for position in range(len(tokens), len(tokens) + 40):
            assert batch.decode(model.ctx) == 0
            token = chain.sample(model.ctx, batch.size - 1)
            if model.is_end_of_generation(token):
                break
            text += model.piece(token)
            batch.clear()
            batch.add([token], position, 0, True)
    finally:
        chain.close()
        llama_cpp.llama_memory_seq_rm(model.memory, 0, -1, -1)
    assert re.fullmatch(rb"\[[0-9]{1,3}(,[0-9]{1,3}){0,4}\]", text), text


def test_a_logit_bias_that_bans_every_token_the_grammar_allows_does_not_abort(model):
    """A grammar needing "<" with "<" banned by logit_bias: the chain picked an end token the
    grammar refused, and llama.cpp aborted the whole server on accepting it."""
    less_than = model.tokenize("<", add_special=False, parse_special=False)
    params = SamplingParams(temperature=0.0, logit_bias=((less_than[0], -100.0),))
    chain = SamplerChain(params, model.n_vocab, 'root ::= "<" [a-z]+', model.vocab)
    llama_cpp.llama_memory_seq_rm(model.memory, 0, -1, -1)
    tokens = model.tokenize("Write a tag:", add_special=True, parse_special=False)
    batch = TokenBatch(64)
    batch.add(tokens, 0, 0, True)
    try:
        assert batch.decode(model.ctx) == 0
        token = chain.sample(model.ctx, batch.size - 1)
    finally:
        chain.close()
        llama_cpp.llama_memory_seq_rm(model.memory, 0, -1, -1)
    assert model.piece(token).startswith(b"<")
