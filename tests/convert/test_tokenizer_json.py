"""LLaMA/Mistral/Gemma 3 folders saved by transformers 5: SentencePiece only as tokenizer.json."""

from __future__ import annotations

from pathlib import Path

import pytest
from checkpoint_builders import build_tiny, build_tiny_with_tokenizer_json
from hf_tokenizers import gemma3_tokenizer_json, vocab_test_pairs
from model_runs import llama_cpp_greedy

from hearth.convert.converter import convert_checkpoint
from hearth.convert.quantize import OUT_TYPES

LLAMA2_VOCAB = 32000
GEMMA3_VOCAB = 262144


@pytest.fixture(scope="session")
def llama2_json_gguf(llama2_tokenizer_json: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("llama2-json")
    folder = build_tiny_with_tokenizer_json(root / "model", llama2_tokenizer_json, LLAMA2_VOCAB)
    out = root / "model-f16.gguf"
    convert_checkpoint(folder, out, OUT_TYPES["f16"], progress=False)
    return out


def _vocab_only_tokens(path: Path, texts: list[str]) -> list[list[int]]:
    from llama_cpp import Llama

    llm = Llama(str(path), vocab_only=True, verbose=False)
    try:
        return [llm.tokenize(t.encode("utf-8"), add_bos=False, special=False) for t in texts]
    finally:
        llm.close()


def test_rebuilt_tokenizer_is_llama2s(llama_cpp_models: Path, llama2_tokenizer_json: Path) -> None:
    """The fixture itself: the rebuilt tokenizer.json gives llama.cpp's recorded LLaMA 2 ids."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(llama2_tokenizer_json / "tokenizer.json"))
    pairs = vocab_test_pairs(llama_cpp_models / "ggml-vocab-llama-spm.gguf")
    assert [tokenizer.encode(t, add_special_tokens=False).ids for t, _ in pairs] == [
        ids for _, ids in pairs
    ]


def test_rebuilt_gpt2_tokenizer_is_gpt2s(llama_cpp_models: Path, gpt2_tokenizer: Path) -> None:
    """The BPE families' fixture: the rebuilt tokenizer.json gives llama.cpp's GPT-2 test ids."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(gpt2_tokenizer / "tokenizer.json"))
    pairs = vocab_test_pairs(llama_cpp_models / "ggml-vocab-gpt-2.gguf")
    assert len(pairs) > 40
    assert [tokenizer.encode(t, add_special_tokens=False).ids for t, _ in pairs] == [
        ids for _, ids in pairs
    ]


def test_tokenizer_json_only_llama_was_converted_as_gpt2_bpe(
    llama2_json_gguf: Path, llama_cpp_models: Path
) -> None:
    """transformers 5 folders became GPT-2 BPE GGUFs: "Hello world" -> 3 wrong pieces, exit 0."""
    import gguf

    reader = gguf.GGUFReader(llama2_json_gguf)
    assert reader.fields["tokenizer.ggml.model"].contents() == "llama"
    pairs = vocab_test_pairs(llama_cpp_models / "ggml-vocab-llama-spm.gguf")
    texts = [t for t, _ in pairs]
    assert _vocab_only_tokens(llama2_json_gguf, texts) == [ids for _, ids in pairs]
    assert _vocab_only_tokens(llama2_json_gguf, ["Hello world"]) == [[15043, 3186]]


def test_tokenizer_json_only_llama_generates(llama2_json_gguf: Path) -> None:
    (reply,) = llama_cpp_greedy(llama2_json_gguf, [[1, 15043, 3186]], 6)
    assert reply


def test_vocabulary_that_reads_text_differently_fails_and_leaves_no_file(
    llama2_tokenizer_json: Path, tmp_path: Path
) -> None:
    """transformers 5's own LLaMA pre-tokenizer adds no "▁" before a leading space; llama.cpp's
    SentencePiece always does, so " leading space" differs and the conversion must refuse."""
    import json

    from hearth.convert.errors import ConversionError

    folder = build_tiny_with_tokenizer_json(tmp_path / "model", llama2_tokenizer_json, LLAMA2_VOCAB)
    path = folder / "tokenizer.json"
    content = json.loads(path.read_text(encoding="utf-8"))
    content["normalizer"] = None
    content["pre_tokenizer"] = {
        "type": "Metaspace",
        "replacement": "\u2581",
        "prepend_scheme": "first",
        "split": False,
    }
    path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out" / "model.gguf"
    out.parent.mkdir()
    with pytest.raises(ConversionError, match="' leading space'"):
        convert_checkpoint(folder, out, OUT_TYPES["q8_0"], progress=False)
    assert list(out.parent.iterdir()) == []


@pytest.fixture(scope="module")
def gemma3_json_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Gemma 3 with Gemma 3's real tokenizer, as transformers 5 saves it."""
    root = tmp_path_factory.mktemp("gemma3-json")
    tokenizer = gemma3_tokenizer_json(root / "tokenizer")
    assert not (tokenizer / "tokenizer.model").exists()
    return build_tiny("gemma3", root / "model", tokenizer, GEMMA3_VOCAB)


def test_tokenizer_json_only_gemma3_converts_and_tokenizes_like_hugging_face(
    gemma3_json_folder: Path, llama_cpp_models: Path, tmp_path: Path
) -> None:
    """The conversion's own tokenizer check passes, and llama.cpp splits llama.cpp's LLaMA and
    Gemma tokenizer test texts (93) exactly as the tokenizers library does with tokenizer.json."""
    import gguf
    from tokenizers import Tokenizer

    out = tmp_path / "gemma3.gguf"
    convert_checkpoint(gemma3_json_folder, out, OUT_TYPES["f16"], progress=False)
    reader = gguf.GGUFReader(out)
    assert reader.fields["tokenizer.ggml.model"].contents() == "llama"
    assert reader.fields["tokenizer.ggml.add_space_prefix"].contents() is False
    texts = [
        t
        for name in ("llama-spm", "gemma-4")
        for t, _ in vocab_test_pairs(llama_cpp_models / f"ggml-vocab-{name}.gguf")
    ]
    tokenizer = Tokenizer.from_file(str(gemma3_json_folder / "tokenizer.json"))
    assert len(texts) > 90
    assert _vocab_only_tokens(out, texts) == [
        tokenizer.encode(t, add_special_tokens=False).ids for t in texts
    ]
    assert _vocab_only_tokens(out, ["Hello world"]) == [[9259, 1902]]
