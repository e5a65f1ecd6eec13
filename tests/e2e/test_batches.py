"""The Files and Batches APIs with the official openai client against a real `hearth serve`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import GEMMA, RunningServer, free_port, start_server

MAX_FILE_BYTES = 256 * 1024


def chat_line(custom_id: str, content: str, model: str = "smollm2", tokens: int = 8) -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": tokens,
            "temperature": 0,
        },
    }


def jsonl(lines: list[dict | str]) -> bytes:
    return "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()


def serve(tmp: Path, data: Path, *extra: str, port: int | None = None) -> RunningServer:
    return start_server(
        tmp,
        "--n-ctx",
        "1024",
        "--library-dir",
        str(data),
        "--max-file-bytes",
        str(MAX_FILE_BYTES),
        *extra,
        port=port,
    )


@pytest.fixture(scope="module")
def batch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("batches")
    running = serve(tmp, tmp / "data")
    yield running
    running.stop()


@pytest.fixture
def client(batch_server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=batch_server.api, api_key="unused", max_retries=0)


def upload(client: openai.OpenAI, lines: list[dict | str]) -> str:
    return client.files.create(file=("input.jsonl", jsonl(lines)), purpose="batch").id


def wait_for(client: openai.OpenAI, batch_id: str, done=None, deadline: float = 600):
    """Poll until the batch is finished (or `done(batch)` holds)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        batch = client.batches.retrieve(batch_id)
        if (done or finished)(batch):
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} still {batch.status}: {batch.request_counts}")


def finished(batch) -> bool:
    return batch.status in ("completed", "failed", "expired", "cancelled")


def lines_of(client: openai.OpenAI, file_id: str | None) -> dict[str, dict]:
    if file_id is None:
        return {}
    rows = [json.loads(x) for x in client.files.content(file_id).text.splitlines()]
    by_id = {row["custom_id"]: row for row in rows}
    assert len(by_id) == len(rows), "a custom_id answered twice"
    return by_id


def test_a_batch_answers_good_lines_and_reports_bad_ones_by_custom_id(client):
    good = [chat_line(f"q{i}", q) for i, q in enumerate(["What is 2+2?", "Name a colour.", "Hi!"])]
    lines = [
        *good,
        "{not json",
        chat_line("q0", "a duplicate custom_id"),
        {**chat_line("wrong-url", "x"), "url": "/v1/moderations"},
        chat_line("no-model", "Hello", model="no-such-model"),
        {**chat_line("bad-body", "x"), "body": {"model": "smollm2", "messages": "not a list"}},
    ]
    file_id = upload(client, lines)
    assert client.files.retrieve(file_id).purpose == "batch"
    batch = client.batches.create(
        input_file_id=file_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "smoke"},
    )
    assert batch.status == "validating" and batch.metadata == {"job": "smoke"}
    batch = wait_for(client, batch.id)
    assert batch.status == "completed", batch
    assert (batch.request_counts.total, batch.request_counts.completed) == (8, 3)
    assert batch.request_counts.failed == 5
    assert batch.in_progress_at and batch.completed_at and batch.expires_at
    output = lines_of(client, batch.output_file_id)
    assert set(output) == {"q0", "q1", "q2"}
    for row in output.values():
        assert row["response"]["status_code"] == 200 and row["error"] is None
        assert row["response"]["body"]["object"] == "chat.completion"
    # The Batch object's model and usage: the tokens of the answered lines, summed.
    assert batch.model == "smollm2"
    used = [row["response"]["body"]["usage"] for row in output.values()]
    assert batch.usage.input_tokens == sum(u["prompt_tokens"] for u in used) > 0
    assert batch.usage.output_tokens == sum(u["completion_tokens"] for u in used) > 0
    assert batch.usage.total_tokens == batch.usage.input_tokens + batch.usage.output_tokens
    assert batch.usage.input_tokens_details.cached_tokens == sum(
        u["prompt_tokens_details"]["cached_tokens"] for u in used
    )
    assert batch.usage.output_tokens_details.reasoning_tokens == 0
    # The same request sent live gets the same reply (greedy).
    live = client.chat.completions.create(**good[1]["body"])
    assert output["q1"]["response"]["body"]["choices"][0]["message"]["content"] == (
        live.choices[0].message.content
    )
    errors = [json.loads(x) for x in client.files.content(batch.error_file_id).text.splitlines()]
    by_id = {row["custom_id"]: row for row in errors}
    assert len(errors) == 5
    assert [r["error"]["code"] for r in errors if r["custom_id"] is None] == ["invalid_json_line"]
    assert by_id["q0"]["error"]["code"] == "duplicate_custom_id"
    assert by_id["wrong-url"]["error"]["code"] == "invalid_url"
    assert by_id["no-model"]["response"]["status_code"] == 404
    assert by_id["no-model"]["response"]["body"]["error"]["code"] == "model_not_found"
    assert by_id["bad-body"]["response"]["status_code"] == 400
    assert by_id["bad-body"]["response"]["body"]["error"]["param"] == "messages"


@pytest.mark.parametrize(
    ("endpoint", "body", "kind"),
    [
        ("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 6}, "text_completion"),
        ("/v1/embeddings", {"input": "a sentence to embed"}, "list"),
        ("/v1/responses", {"input": "Say hi.", "max_output_tokens": 6}, "response"),
    ],
)
def test_every_endpoint_runs_in_a_batch(client, endpoint, body, kind):
    line = {
        "custom_id": "one",
        "method": "POST",
        "url": endpoint,
        "body": {"model": "smollm2", **body},
    }
    batch = client.batches.create(
        input_file_id=upload(client, [line]), endpoint=endpoint, completion_window="24h"
    )
    batch = wait_for(client, batch.id)
    assert batch.status == "completed" and batch.error_file_id is None, batch
    body = lines_of(client, batch.output_file_id)["one"]["response"]["body"]
    assert body["object"] == kind
    # Each endpoint's usage, whatever its names, is counted in the batch's.
    reported = body["usage"]
    assert batch.usage.input_tokens == reported.get("prompt_tokens", reported.get("input_tokens"))
    assert batch.usage.output_tokens == reported.get(
        "completion_tokens", reported.get("output_tokens", 0)
    )


def test_batches_list_newest_first_with_after_and_limit(client):
    file_id = upload(client, [chat_line("only", "Hi", tokens=1)])
    made = [
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id
        for _ in range(3)
    ]
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == made[::-1][:2] and page.has_more
    after = client.batches.list(limit=2, after=page.data[-1].id)
    assert after.data[0].id == made[0]
    # The client's own pagination walks every page.
    assert set(made) <= {b.id for b in client.batches.list(limit=1)}
    for batch_id in made:
        wait_for(client, batch_id)
    assert file_id in {f.id for f in client.files.list(purpose="batch")}


def test_cancel_stops_a_batch_and_keeps_what_was_answered(client):
    lines = [chat_line(f"c{i}", f"Count to {i + 50}.", tokens=48) for i in range(24)]
    batch = client.batches.create(
        input_file_id=upload(client, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    wait_for(client, batch.id, lambda b: b.request_counts.completed >= 1)
    cancelled = client.batches.cancel(batch.id)
    assert cancelled.status in ("cancelling", "cancelled")
    batch = wait_for(client, batch.id)
    assert batch.status == "cancelled" and batch.cancelled_at
    answered = lines_of(client, batch.output_file_id)
    assert 1 <= len(answered) < 24
    assert batch.request_counts.completed == len(answered)
    with pytest.raises(openai.ConflictError, match="Cannot cancel a batch with status"):
        client.batches.cancel(batch.id)


def test_bad_input_gets_clear_4xx_and_nothing_is_lost(client):
    with pytest.raises(openai.APIStatusError) as too_large:
        client.files.create(file=("big.jsonl", b"x" * (MAX_FILE_BYTES + 10)), purpose="batch")
    assert too_large.value.status_code == 413
    assert "max-file-bytes" in too_large.value.message
    with pytest.raises(openai.BadRequestError, match="not JSONL"):
        client.files.create(file=("data.csv", b"a,b\n1,2\n"), purpose="batch")
    with pytest.raises(openai.NotFoundError):
        client.batches.create(
            input_file_id="file-missing", endpoint="/v1/chat/completions", completion_window="24h"
        )
    file_id = upload(client, [chat_line("x", "Hi", tokens=1)])
    with pytest.raises(openai.BadRequestError, match="endpoint"):
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/moderations", completion_window="24h"
        )
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="1h"
        )
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_missing")
    with pytest.raises(openai.NotFoundError):
        client.files.content("file-missing")
    # Nothing lost: the good file is still there and still runs.
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert wait_for(client, batch.id).status == "completed"
    assert client.files.delete(file_id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(file_id)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "crash"])
def test_a_batch_survives_a_restart_and_answers_every_line_once(tmp_path, stop):
    data = tmp_path / "data"
    server = serve(tmp_path, data, "--parallel", "2")
    client = openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0)
    lines = [chat_line(f"r{i}", f"Tell me about the number {i}.", tokens=24) for i in range(16)]
    batch = client.batches.create(
        input_file_id=upload(client, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    before = wait_for(client, batch.id, lambda b: b.request_counts.completed >= 3)
    # A follower started before the restart rides it out (it waits for the server to return).
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hearth",
            "batch",
            "--url",
            server.url,
            "status",
            batch.id,
            "--wait",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    server.process.send_signal(stop)
    assert server.process.wait(timeout=60) in (0, -signal.SIGKILL), server.log()
    server = serve(tmp_path, data, "--parallel", "2", port=server.port)
    try:
        client = openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0)
        batch = wait_for(client, batch.id)
        assert batch.status == "completed", batch
        assert batch.request_counts.completed == 16 >= before.request_counts.completed
        output = lines_of(client, batch.output_file_id)  # asserts no custom_id twice
        assert set(output) == {f"r{i}" for i in range(16)}
        assert batch.error_file_id is None
        out, _ = follower.communicate(timeout=300)
        assert follower.returncode == 0 and "completed  16/16 done" in out
    finally:
        follower.kill()
        server.stop()


def hearth_batch(server: RunningServer, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hearth", "batch", "--url", server.url, *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


def test_hearth_batch_submits_prompts_follows_lists_and_fetches_results(batch_server, tmp_path):
    (tmp_path / "prompts.txt").write_text("What is 2+2?\n\nName a fruit.\nSay hello.\n")
    submitted = hearth_batch(
        batch_server,
        "submit",
        "prompts.txt",
        "--model",
        "smollm2",
        "--max-tokens",
        "6",
        "--wait",
        cwd=tmp_path,
    )
    assert submitted.returncode == 0, submitted.stderr
    batch_id = submitted.stdout.split()[0]
    assert "completed  3/3 done, 0 failed" in submitted.stdout
    assert "3/3" in submitted.stderr  # the progress bar
    fetched = hearth_batch(batch_server, "results", batch_id, "-o", "out.jsonl", cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["custom_id"] for r in rows] == ["line-1", "line-2", "line-3"]
    assert batch_id in hearth_batch(batch_server, "list", cwd=tmp_path).stdout
    status = hearth_batch(batch_server, "status", batch_id, cwd=tmp_path)
    assert status.returncode == 0 and "completed" in status.stdout
    made = sum(r["response"]["body"]["usage"]["completion_tokens"] for r in rows)
    assert f", {made} out (smollm2)" in status.stdout
    refused = hearth_batch(batch_server, "cancel", batch_id, cwd=tmp_path)
    assert refused.returncode == 1
    assert "409: Cannot cancel a batch with status 'completed'" in refused.stderr
    none = hearth_batch(batch_server, "results", batch_id, "--errors", cwd=tmp_path)
    assert none.returncode == 1 and "no error file" in none.stderr


def test_hearth_batch_says_so_when_no_server_answers(tmp_path):
    gone = RunningServer(process=None, port=free_port(), log_path=tmp_path / "none")  # type: ignore[arg-type]
    result = hearth_batch(gone, "list", cwd=tmp_path)
    assert result.returncode == 1 and "no server answers" in result.stderr


def eval_command(server: RunningServer, *args: str) -> list[str]:
    command = [sys.executable, "-m", "hearth", "eval", "--url", server.url, "--max-tokens", "24"]
    return [*command, *args]


def hearth_eval(server: RunningServer, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = eval_command(server, *args)
    return subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=cwd)


def check_eval(result: subprocess.CompletedProcess, out: Path, questions: int):
    assert result.returncode == 0, result.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == questions
    for row in rows:
        assert row["answer_a"] and row["answer_b"] and not row["answer_a"].startswith("(error")
        # The grammar holds even a 135M judge to the verdict form.
        assert row["judge_ab"] in ("[[A]]", "[[B]]", "[[C]]"), row
        assert row["judge_ba"] in ("[[A]]", "[[B]]", "[[C]]"), row
        assert row["winner"] in ("a", "b", "tie")
    # Model A's row, then model B's: win, tie, loss after the 28-character name column.
    a, b = ([int(x) for x in line[28:].split()[:3]] for line in result.stdout.splitlines()[1:3])
    assert sum(a) == sum(b) == questions
    assert (a[0], a[1], a[2]) == (b[2], b[1], b[0])
    assert a[0] == sum(r["winner"] == "a" for r in rows)
    return rows


def test_hearth_eval_judges_two_chat_formats_with_position_swap_and_grades(batch_server, tmp_path):
    result = hearth_eval(
        batch_server,
        "--model-a",
        "smollm2",
        "--model-b",
        "smollm2:chat-with-bob",
        "--judge",
        "smollm2",
        "--limit",
        "3",
        "--grade",
        "-o",
        "eval.jsonl",
        cwd=tmp_path,
    )
    rows = check_eval(result, tmp_path / "eval.jsonl", 3)
    assert all(1 <= row["grade_a"] <= 10 and 1 <= row["grade_b"] <= 10 for row in rows)
    assert "mean grade (1-10)" in result.stdout


def test_a_killed_hearth_eval_run_again_takes_up_its_batches(batch_server, client, tmp_path):
    """Killed while judging, a re-run finds its answering and judging batches on the server
    instead of submitting them again, and its results are whole."""
    args = ("--model-a", "smollm2", "--model-b", "smollm2:chat-with-bob", "--limit", "2")
    before = len(list(client.batches.list(limit=100)))
    killed = subprocess.Popen(
        eval_command(batch_server, *args), cwd=tmp_path, stderr=subprocess.DEVNULL
    )
    ledger = tmp_path / "eval.jsonl.batches.json"
    try:
        # Both batches written down: the answers are in and the judging runs.
        while not ledger.exists() or len(json.loads(ledger.read_text())["batches"]) < 2:
            assert killed.poll() is None, "the eval ended before it could be killed"
            time.sleep(0.05)
    finally:
        killed.kill()
        killed.wait()
    assert not (tmp_path / "eval.jsonl").exists()

    result = hearth_eval(batch_server, *args, cwd=tmp_path)
    check_eval(result, tmp_path / "eval.jsonl", 2)
    assert result.stderr.count("submitted by an earlier run") == 2
    assert len(list(client.batches.list(limit=100))) == before + 2
    assert not ledger.exists()


def test_hearth_eval_compares_smollm2_with_gemma_3(gemma_models_dir, tmp_path):
    server = start_server(
        tmp_path,
        "--n-ctx",
        "1024",
        "--models-dir",
        str(gemma_models_dir),
        "--library-dir",
        str(tmp_path / "data"),
        "--model",
        "smollm2",
    )
    try:
        result = hearth_eval(
            server,
            "--model-a",
            "smollm2:chat-with-bob",
            "--model-b",
            f"{GEMMA}:chat-with-bob",
            "--judge",
            "smollm2",
            "--limit",
            "4",
            "-o",
            "eval.jsonl",
            cwd=tmp_path,
        )
        check_eval(result, tmp_path / "eval.jsonl", 4)
        print(result.stdout)
    finally:
        server.stop()
