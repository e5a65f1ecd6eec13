"""The tokenizer check against transformers: added tokens' rstrip flags and `legacy` count.

Phi-3's and a legacy-false Mistral's tokenizers are rebuilt from llama.cpp's ggml-vocab-phi-3.gguf
(checked against its recorded ids first). llama.cpp strips the space after Phi-3's special tokens
only when the model's name says Phi-3, and never knows `legacy`; the check must pass what
llama.cpp reads as transformers does, and refuse the rest.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from checkpoint_builders import build_tiny
from hf_tokenizers import PHI3_PIECES, vocab_test_pairs

from hearth.convert.converter import convert_checkpoint
from hearth.convert.errors import ConversionError
from hearth.convert.quantize import OUT_TYPES
from hearth.convert.tokenizer_check import SAMPLES, SPECIAL, SentencePieceReference

PHI3_TOKENS = 32011  # 32,000 pieces and 11 added tokens
END = ("<|end|>", 32007)


def _sample_texts(eos: str) -> list[str]:
    return ["".join(eos if part is SPECIAL else str(part) for part in s) for s in SAMPLES]


def _transformers_tokens(folder: Path, texts: list[str]) -> list[list[int]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    return [tokenizer.encode(text, add_special_tokens=False) for text in texts]


def _llama_cpp_tokens(path: Path, texts: list[str]) -> list[list[int]]:
    from llama_cpp import Llama

    llm = Llama(str(path), vocab_only=True, verbose=False)
    try:
        return [llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in texts]
    finally:
        llm.close()


def _tiny(arch: str, tokenizer: Path, dest: Path, vocab_size: int, eos_id: int) -> Path:
    folder = build_tiny(arch, dest, tokenizer, vocab_size)
    config = json.loads((folder / "config.json").read_text())
    config.update(bos_token_id=1, eos_token_id=eos_id)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def phi3_folder(phi3_tokenizer: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Phi-3 with Phi-3-mini-128k-instruct's tokenizer files."""
    return _tiny(
        "phi3", phi3_tokenizer, tmp_path_factory.mktemp("phi3") / "model", PHI3_TOKENS, END[1]
    )


@pytest.fixture(scope="module")
def mistral_folder(
    mistral_legacy_false_tokenizer: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return _tiny(
        "mistral",
        mistral_legacy_false_tokenizer,
        tmp_path_factory.mktemp("mistral") / "model",
        PHI3_PIECES,
        2,
    )


def test_rebuilt_phi3_tokenizer_is_phi3s(llama_cpp_models: Path, phi3_tokenizer: Path) -> None:
    """The fixture itself: tokenizer.model and tokenizer.json give llama.cpp's recorded ids."""
    from sentencepiece import SentencePieceProcessor
    from tokenizers import Tokenizer

    pairs = vocab_test_pairs(llama_cpp_models / "ggml-vocab-phi-3.gguf")
    processor = SentencePieceProcessor(model_file=str(phi3_tokenizer / "tokenizer.model"))
    tokenizer = Tokenizer.from_file(str(phi3_tokenizer / "tokenizer.json"))
    want = [ids for _, ids in pairs]
    assert len(pairs) > 40
    assert [list(processor.encode(text)) for text, _ in pairs] == want
    assert [tokenizer.encode(text, add_special_tokens=False).ids for text, _ in pairs] == want


def test_phi3_with_end_as_eos_was_refused(phi3_folder: Path, tmp_path: Path) -> None:
    """'Paris<|end|> is the end': the check ignored <|end|>'s rstrip and wanted a '▁' llama.cpp
    and transformers both drop, so a real Phi-3 folder could not be converted."""
    out = tmp_path / "phi3.gguf"
    convert_checkpoint(
        phi3_folder, out, OUT_TYPES["f16"], progress=False, name="Phi-3-mini-128k-instruct"
    )
    texts = _sample_texts(END[0])
    assert _llama_cpp_tokens(out, texts) == _transformers_tokens(phi3_folder, texts)
    assert _llama_cpp_tokens(out, ["Paris<|end|> is the end"]) == [[3681, 32007, 338, 278, 1095]]


def test_phi3_not_named_phi3_converted_though_llama_cpp_keeps_the_space_after_end(
    phi3_folder: Path, tmp_path: Path
) -> None:
    """llama.cpp strips the space after <|end|> only in a model named Phi-3; under another name
    the GGUF read 'Paris<|end|> is the end' with an extra '▁', and the check let it through."""
    out = tmp_path / "out" / "model.gguf"
    out.parent.mkdir()
    with pytest.raises(ConversionError, match=r"'Paris<\|end\|> is the end'.*named Phi-3"):
        convert_checkpoint(phi3_folder, out, OUT_TYPES["f16"], progress=False, name="my-chat")
    assert list(out.parent.iterdir()) == []


def test_legacy_false_mistral_converted_though_llama_cpp_reads_text_after_eos_differently(
    mistral_folder: Path, tmp_path: Path
) -> None:
    """transformers gives no extra '▁' after </s> with legacy false (nor before a leading
    space); llama.cpp cannot be told, and the check, encoding each part alone, let it through."""
    out = tmp_path / "out" / "model.gguf"
    out.parent.mkdir()
    with pytest.raises(ConversionError, match="refusing"):
        convert_checkpoint(mistral_folder, out, OUT_TYPES["f16"], progress=False)
    assert list(out.parent.iterdir()) == []
    after_eos = _transformers_tokens(mistral_folder, ["Paris</s> is the end"])
    assert after_eos == [[3681, 2, 338, 278, 1095]]


@pytest.mark.parametrize("which", ["phi3", "mistral"])
def test_sentencepiece_reference_is_transformers(
    request: pytest.FixtureRequest, tmp_path: Path, which: str
) -> None:
    """With only tokenizer.model, the check's reference encodes every sample as transformers
    does (rstrip, legacy false)."""
    folder = shutil.copytree(request.getfixturevalue(f"{which}_folder"), tmp_path / "model")
    (folder / "tokenizer.json").unlink(missing_ok=True)
    eos = END if which == "phi3" else ("</s>", 2)
    texts = _sample_texts(eos[0]) + [f"{eos[0]}x", f"a {eos[0]}  b", "x</s>y <|end|>"]
    reference = SentencePieceReference(folder, eos)
    assert [reference.encode(text) for text in texts] == _transformers_tokens(folder, texts)
