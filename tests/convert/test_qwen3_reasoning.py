"""A Qwen3 checkpoint that `hearth convert` makes is served as the thinking model it is.

The checkpoint is the tiny random Qwen3 (tests/convert/checkpoint_builders.py) carrying the
real Qwen3-0.6B chat template in its tokenizer_config.json, as a Hugging Face folder does.
Its random weights do not think; a request grammar gives the reply the thinking shape, and
everything else is the real path: conversion, the template in the GGUF, detection of the
reasoning style at load, and the split on the wire.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import openai

from hearth.cli import main
from tests.conftest import start_server

THINKING = r'root ::= "<think>\n" [a-z ,]{5,40} "\n</think>\n\n" [A-Za-z ,.]{1,30}'


def test_a_converted_qwen3_checkpoint_splits_its_thinking(
    tiny_models: dict[str, Path], real_templates: Path, tmp_path: Path
) -> None:
    source = tmp_path / "qwen3"
    shutil.copytree(tiny_models["qwen3"], source)
    config_path = source / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = (real_templates / "Qwen-Qwen3-0.6B.jinja").read_text()
    config_path.write_text(json.dumps(config))
    gguf = tmp_path / "qwen3-f16.gguf"
    assert main(["convert", str(source), "--outtype", "f16", "-o", str(gguf)]) == 0

    server = start_server(tmp_path, "--model", str(gguf), "--n-ctx", "512", "--parallel", "1")
    try:
        client = openai.OpenAI(base_url=server.api, api_key="none", timeout=300)
        message = (
            client.chat.completions.create(
                model="qwen3-f16",
                messages=[{"role": "user", "content": "What is the capital of France?"}],
                temperature=0,
                max_tokens=120,
                extra_body={"grammar": THINKING},
            )
            .choices[0]
            .message
        )
    finally:
        server.stop()
    reasoning = message.model_extra["reasoning_content"]
    assert reasoning.strip() and "think>" not in reasoning
    assert message.content and "think>" not in message.content
