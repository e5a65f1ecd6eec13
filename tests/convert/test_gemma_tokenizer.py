"""Gemma 3 with its real tokenizer.model: the vocabulary is written as llama.cpp's converter
writes it, and llama.cpp then tokenizes as SentencePiece does."""

from __future__ import annotations

from pathlib import Path

import pytest
from checkpoint_builders import build_tiny
from hf_tokenizers import llama_cpp_vocab, vocab_test_pairs

from hearth.convert.converter import convert_checkpoint
from hearth.convert.quantize import OUT_TYPES
from hearth.convert.tokenizer_check import SAMPLES, SPECIAL

GEMMA3_VOCAB = 262144


def _texts(llama_cpp_models: Path) -> list[str]:
    """llama.cpp's LLaMA and Gemma tokenizer test texts, and the tokenizer check's samples."""
    return [
        *(
            t
            for name in ("llama-spm", "gemma-4")
            for t, _ in vocab_test_pairs(llama_cpp_models / f"ggml-vocab-{name}.gguf")
        ),
        *("".join("<eos>" if p is SPECIAL else str(p) for p in s) for s in SAMPLES),
    ]


def _llama_cpp_tokens(path: Path, texts: list[str]) -> list[list[int]]:
    from llama_cpp import Llama

    llm = Llama(str(path), vocab_only=True, verbose=False)
    try:
        return [llm.tokenize(t.encode("utf-8"), add_bos=False, special=False) for t in texts]
    finally:
        llm.close()


def _vocabulary(path: Path) -> tuple[list[str], list[int]]:
    tokens, _, types = llama_cpp_vocab(path)
    return tokens, types


def test_rebuilt_gemma3_tokenizer_model_is_gemma3s(
    gemma3_tokenizer_model: Path, gemma3_gguf: Path, llama_cpp_models: Path
) -> None:
    """The fixture itself: SentencePiece with the rebuilt tokenizer.model splits every text as
    llama.cpp does with the GGUF llama.cpp's converter made from Google's files."""
    from sentencepiece import SentencePieceProcessor

    processor = SentencePieceProcessor(model_file=str(gemma3_tokenizer_model / "tokenizer.model"))
    texts = _texts(llama_cpp_models)
    assert len(texts) > 90
    assert [list(processor.encode(t)) for t in texts] == _llama_cpp_tokens(gemma3_gguf, texts)
    assert list(processor.encode("   three leading spaces")) == [139, 19891, 5830, 9952]


@pytest.fixture(scope="module")
def gemma3_folder(gemma3_tokenizer_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(
        "gemma3", tmp_path_factory.mktemp("gemma3") / "model", gemma3_tokenizer_model, GEMMA3_VOCAB
    )


def test_gemma3_whitespace_tokens_were_written_as_metaspace_runs(
    gemma3_folder: Path, gemma3_gguf: Path, llama_cpp_models: Path, tmp_path: Path
) -> None:
    """Gemma 3's real tokenizer was refused: the 30 whitespace-run added tokens (138-167) were
    written as '▁▁'.. (llama.cpp matches them in raw text, so as spaces) and <unk> as UNKNOWN."""
    from sentencepiece import SentencePieceProcessor

    out = tmp_path / "gemma3.gguf"
    convert_checkpoint(gemma3_folder, out, OUT_TYPES["f16"], progress=False)
    assert _vocabulary(out) == _vocabulary(gemma3_gguf)
    processor = SentencePieceProcessor(model_file=str(gemma3_folder / "tokenizer.model"))
    texts = _texts(llama_cpp_models)
    assert _llama_cpp_tokens(out, texts) == [list(processor.encode(t)) for t in texts]
