"""From a PEFT folder to a chat: convert base and adapter, serve base + adapter, ask both.

A real `hearth serve` with a tiny Llama as the base, the adapter given by `--lora` and by a
config `[[models]]` entry; the same greedy prompt through the official openai client must
come out differently with the adapter, and exactly as llama.cpp itself runs base + adapter
(llama_cpp.Llama(lora_path=...)).
"""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from checkpoint_builders import build_lora_adapter

from hearth.convert.converter import convert_checkpoint
from hearth.convert.lora import convert_adapter
from hearth.convert.quantize import OUT_TYPES
from tests.conftest import start_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROMPT = "The capital of France is"
TOKENS = 24


@pytest.fixture(scope="module")
def converted(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lora-serving")
    peft_folder = build_lora_adapter(tiny_models["llama"], root / "my-lora", seed=3)
    base = root / "tiny-base.gguf"
    convert_checkpoint(tiny_models["llama"], base, OUT_TYPES["f16"], progress=False)
    adapter = root / "my-lora-F16.gguf"
    convert_adapter(peft_folder, adapter, OUT_TYPES["f16"], progress=False)
    return base, adapter


def llama_cpp_direct(base: Path, adapter: Path | None) -> tuple[str, int]:
    """llama.cpp's own run of the prompt, greedy: its text and its number of tokens."""
    from llama_cpp import Llama

    llm = Llama(
        str(base),
        lora_path=str(adapter) if adapter else None,
        n_ctx=256,
        n_threads=2,
        verbose=False,
    )
    try:
        out = llm.create_completion(PROMPT, max_tokens=TOKENS, temperature=0.0, repeat_penalty=1.0)
    finally:
        llm.close()
    return out["choices"][0]["text"], out["usage"]["completion_tokens"]


def test_base_and_adapter_are_served_side_by_side(converted, tmp_path: Path) -> None:
    base, adapter = converted
    config = tmp_path / "hearth.toml"
    config.write_text(f'[[models]]\nid = "tuned"\npath = "{base}"\nlora = "{adapter}"\n')
    server = start_server(
        tmp_path,
        "--config",
        str(config),
        "--model",
        str(base),
        "--lora",
        str(adapter),
        "--n-ctx",
        "256",
        "--parallel",
        "1",
        "--threads",
        "2",
    )
    try:
        client = openai.OpenAI(base_url=server.api, api_key="none", timeout=300)
        ids = [card.id for card in client.models.list().data]
        assert {"tiny-base", "my-lora-F16", "tuned"} <= set(ids)

        def ask(model: str) -> tuple[str, int]:
            reply = client.completions.create(
                model=model, prompt=PROMPT, max_tokens=TOKENS, temperature=0.0
            )
            # llama-cpp-python drops the bytes of a partial UTF-8 character where Hearth
            # writes U+FFFD; the tiny model's byte tokens make some.
            return reply.choices[0].text.replace("\ufffd", ""), reply.usage.completion_tokens

        plain, adapted, configured = ask("tiny-base"), ask("my-lora-F16"), ask("tuned")

        def embed(model: str) -> list[float]:
            return client.embeddings.create(model=model, input=PROMPT).data[0].embedding

        # The adapter model's embedding context runs with the adapter too.
        assert embed("my-lora-F16") == embed("tuned") != embed("tiny-base")
    finally:
        server.stop()
    assert plain[0] and adapted[0]
    assert adapted != plain  # the adapter changes what the model says
    assert configured == adapted  # the config entry is the same base + adapter
    assert adapted == llama_cpp_direct(base, adapter)
    assert plain == llama_cpp_direct(base, None)


def test_an_adapter_of_another_model_fails_that_model_only(
    converted, tiny_models, tmp_path: Path
) -> None:
    base, _ = converted
    other = tmp_path / "qwen2-base.gguf"
    convert_checkpoint(tiny_models["qwen2"], other, OUT_TYPES["f16"], progress=False)
    peft_folder = build_lora_adapter(tiny_models["qwen2"], tmp_path / "qwen-lora")
    wrong = tmp_path / "qwen-lora.gguf"
    convert_adapter(peft_folder, wrong, OUT_TYPES["f16"], progress=False)
    config = tmp_path / "hearth.toml"
    config.write_text(f'[[models]]\nid = "mismatched"\npath = "{base}"\nlora = "{wrong}"\n')
    server = start_server(
        tmp_path,
        "--config",
        str(config),
        "--model",
        str(base),
        "--n-ctx",
        "256",
        "--parallel",
        "1",
        "--threads",
        "2",
    )
    try:
        client = openai.OpenAI(base_url=server.api, api_key="none", timeout=300)
        with pytest.raises(openai.InternalServerError, match="LoRA adapter"):
            client.completions.create(model="mismatched", prompt=PROMPT, max_tokens=4)
        reply = client.completions.create(model="tiny-base", prompt=PROMPT, max_tokens=4)
        assert reply.choices[0].text
    finally:
        server.stop()
