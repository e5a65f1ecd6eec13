"""`hearth batch submit`: how a file becomes batch lines."""

from __future__ import annotations

import json

import pytest

from hearth.batch_cli import request_lines


def test_a_list_of_prompts_becomes_one_chat_request_per_line():
    lines = request_lines("First?\n\n  \nSecond?\n", model="m", max_tokens=5, system="Be brief.")
    assert [x["custom_id"] for x in lines] == ["line-1", "line-2"]
    assert lines[1]["body"] == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Second?"},
        ],
        "max_tokens": 5,
    }
    assert {x["url"] for x in lines} == {"/v1/chat/completions"}


def test_jsonl_is_sent_as_it_is_with_a_missing_model_filled_in():
    rows = [
        {"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x"}},
        {"custom_id": "b", "method": "POST", "url": "/v1/completions", "body": {"model": "own"}},
    ]
    lines = request_lines("\n".join(json.dumps(r) for r in rows), model="m")
    assert [x["body"]["model"] for x in lines] == ["m", "own"]


def test_prompts_need_a_model_and_a_file_needs_lines():
    with pytest.raises(ValueError, match="--model"):
        request_lines("Hi?", model=None)
    with pytest.raises(ValueError, match="empty"):
        request_lines("\n\n", model="m")
