"""Falcon's, StarCoder2's and OLMo 2's own byte-level BPE tokenizers, through llama.cpp.

Each tokenizer is rebuilt for real (hf_tokenizers) and carried by its family's tiny model; the
converted GGUF must name the pre-tokenizer llama.cpp's converter names for that model and
tokenize llama.cpp's tokenizer test texts exactly as the Hugging Face tokenizers library does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hf_tokenizers import vocab_test_pairs

from hearth.convert.converter import convert_checkpoint
from hearth.convert.quantize import OUT_TYPES

# Architecture -> (tokenizer fixture, llama.cpp pre-tokenizer name, llama.cpp vocab whose test
# texts are used). dolma2 has no vocab file in llama.cpp; Llama 3's texts are generic ones.
FAMILIES = {
    "falcon": ("falcon_tokenizer", "falcon", "ggml-vocab-falcon.gguf"),
    "starcoder2": ("starcoder_tokenizer", "starcoder", "ggml-vocab-starcoder.gguf"),
    "olmo2": ("dolma2_tokenizer", "dbrx", "ggml-vocab-llama-bpe.gguf"),
}


def _hf_tokens(tokenizer_folder: Path, texts: list[str]) -> list[list[int]]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_folder / "tokenizer.json"))
    return [tokenizer.encode(text, add_special_tokens=False).ids for text in texts]


def _llama_cpp_tokens(gguf_path: Path, texts: list[str]) -> list[list[int]]:
    from llama_cpp import Llama

    llm = Llama(str(gguf_path), vocab_only=True, verbose=False)
    try:
        return [llm.tokenize(t.encode("utf-8"), add_bos=False, special=False) for t in texts]
    finally:
        llm.close()


@pytest.mark.parametrize("name", ["falcon", "starcoder"])
def test_rebuilt_tokenizer_gives_llama_cpps_recorded_ids(
    request: pytest.FixtureRequest, llama_cpp_models: Path, name: str
) -> None:
    """The fixtures themselves: llama.cpp recorded these ids from the original tokenizers."""
    folder = request.getfixturevalue(f"{name}_tokenizer")
    pairs = vocab_test_pairs(llama_cpp_models / f"ggml-vocab-{name}.gguf")
    assert len(pairs) > 40
    assert _hf_tokens(folder, [t for t, _ in pairs]) == [ids for _, ids in pairs]


def test_rebuilt_dolma2_is_cl100k_base(dolma2_tokenizer: Path) -> None:
    """cl100k_base's ids ("hello world" is 15339, 1917 in GPT-4's tokenizer), dolma2's added
    tokens after them."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(dolma2_tokenizer / "tokenizer.json"))
    assert tokenizer.encode("hello world", add_special_tokens=False).ids == [15339, 1917]
    assert tokenizer.get_vocab_size() == 100278
    assert tokenizer.token_to_id("<|endoftext|>") == 100257


@pytest.fixture(scope="module")
def family_gguf(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    made: dict[str, Path] = {}

    def get(arch: str) -> Path:
        if arch not in made:
            made[arch] = tmp_path_factory.mktemp(arch) / f"{arch}.gguf"
            convert_checkpoint(tiny_models[arch], made[arch], OUT_TYPES["f16"], progress=False)
        return made[arch]

    return get


@pytest.mark.parametrize("arch", list(FAMILIES))
def test_family_tokenizer_is_written_with_llama_cpps_pre_tokenizer(family_gguf, arch: str) -> None:
    import gguf

    reader = gguf.GGUFReader(family_gguf(arch))
    assert reader.fields["tokenizer.ggml.model"].contents() == "gpt2"
    assert reader.fields["tokenizer.ggml.pre"].contents() == FAMILIES[arch][1]


@pytest.mark.parametrize("arch", list(FAMILIES))
def test_llama_cpp_tokenizes_like_hugging_face(
    request: pytest.FixtureRequest, llama_cpp_models: Path, family_gguf, arch: str
) -> None:
    fixture, _, vocab_file = FAMILIES[arch]
    texts = [text for text, _ in vocab_test_pairs(llama_cpp_models / vocab_file)]
    expected = _hf_tokens(request.getfixturevalue(fixture), texts)
    assert _llama_cpp_tokens(family_gguf(arch), texts) == expected
