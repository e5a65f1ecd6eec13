"""`hearth batch`: submit, follow, list, cancel and fetch batch jobs of a running server.

It speaks the server's OpenAI Batch API with the official openai client, as any other
client would (`--url`), so it works the same against a server on another machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import openai
    from openai.types import Batch

DEFAULT_URL = "http://127.0.0.1:8080"
ENDPOINT = "/v1/chat/completions"
FINISHED = ("completed", "failed", "expired", "cancelled")
POLL_SECONDS = 1.0
# How long a follower waits for a server that went away (a restart) before giving up.
RESTART_PATIENCE_SECONDS = 300.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the server (default {DEFAULT_URL})")
    parser.add_argument("--api-key", default=None, help="the server's --api-key, if it has one")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    submit = actions.add_parser(
        "submit",
        help="submit a JSONL file of requests, or a text file of prompts (one per line)",
    )
    submit.add_argument("file", type=Path)
    submit.add_argument("--model", help="the model for prompts, and for lines that name none")
    submit.add_argument("--max-tokens", type=int, default=None, help="for prompts")
    submit.add_argument("--system", default=None, help="a system message for prompts")
    submit.add_argument("--endpoint", default=None, help="default: the lines' url, else chat")
    submit.add_argument("--wait", action="store_true", help="follow it with a progress bar")
    status = actions.add_parser("status", help="a batch's status and counts")
    status.add_argument("batch_id")
    status.add_argument("--wait", action="store_true", help="follow it with a progress bar")
    listing = actions.add_parser("list", help="the newest batches")
    listing.add_argument("--limit", type=int, default=20)
    cancel = actions.add_parser("cancel", help="cancel a batch (answered lines are kept)")
    cancel.add_argument("batch_id")
    results = actions.add_parser("results", help="a batch's output (or error) lines, as JSONL")
    results.add_argument("batch_id")
    results.add_argument("--errors", action="store_true", help="the error file instead")
    results.add_argument("-o", "--output", type=Path, default=None, help="default: stdout")


def run(args: argparse.Namespace) -> int:
    import openai

    client = openai.OpenAI(base_url=args.url.rstrip("/") + "/v1", api_key=args.api_key or "none")
    try:
        return ACTIONS[args.action](client, args)
    except openai.APIStatusError as error:
        print(f"hearth batch: {error.status_code}: {_message(error)}", file=sys.stderr)
        return 1
    except openai.APIConnectionError:
        print(f"hearth batch: no server answers at {args.url}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as problem:
        print(f"hearth batch: {problem}", file=sys.stderr)
        return 1


def request_lines(
    text: str,
    *,
    model: str | None,
    max_tokens: int | None = None,
    system: str | None = None,
) -> list[dict]:
    """The batch lines of a file: its JSONL lines (a missing model filled in), or one chat
    request per non-empty line of plain text."""
    rows = [row for row in text.splitlines() if row.strip()]
    if not rows:
        raise ValueError("the file is empty")
    try:
        first = json.loads(rows[0])
    except ValueError:
        first = None
    if isinstance(first, dict) and "custom_id" in first:
        lines = [json.loads(row) for row in rows]
        for line in lines:
            if model and isinstance(line.get("body"), dict):
                line["body"].setdefault("model", model)
        return lines
    if not model:
        raise ValueError("--model is needed to turn a list of prompts into requests")
    lines = []
    for number, prompt in enumerate(rows, 1):
        messages = [{"role": "user", "content": prompt}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        body: dict = {"model": model, "messages": messages}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        lines.append(
            {"custom_id": f"line-{number}", "method": "POST", "url": ENDPOINT, "body": body}
        )
    return lines


def submit_lines(client: openai.OpenAI, lines: list[dict], endpoint: str | None = None) -> Batch:
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = client.files.create(file=("batch.jsonl", content), purpose="batch")
    return client.batches.create(
        input_file_id=uploaded.id,
        endpoint=endpoint or lines[0].get("url") or ENDPOINT,  # type: ignore[arg-type]
        completion_window="24h",
    )


def follow(client: openai.OpenAI, batch_id: str, *, quiet: bool = False) -> Batch:
    """Poll a batch until it finishes, with a progress bar of its answered lines.

    A server that restarts meanwhile (its batches resume where they were) is waited for,
    up to RESTART_PATIENCE_SECONDS, so a long job outlives the restart on both sides."""
    from tqdm import tqdm

    batch = _retrieve(client, batch_id)
    with tqdm(total=0, unit="line", desc=batch_id[:20], disable=quiet) as bar:
        while True:
            counts = batch.request_counts
            if counts is not None:
                bar.total = counts.total
                bar.n = counts.completed + counts.failed
                bar.set_postfix_str(f"{batch.status}, {counts.failed} failed")
                bar.refresh()
            if batch.status in FINISHED:
                return batch
            time.sleep(POLL_SECONDS)
            batch = _retrieve(client, batch_id)


def _retrieve(client: openai.OpenAI, batch_id: str) -> Batch:
    import openai

    deadline = time.monotonic() + RESTART_PATIENCE_SECONDS
    while True:
        try:
            return client.batches.retrieve(batch_id)
        except (openai.APIConnectionError, openai.InternalServerError):
            # Gone, or draining (503) before a restart.
            if time.monotonic() > deadline:
                raise
            time.sleep(POLL_SECONDS)


def _submit(client: openai.OpenAI, args: argparse.Namespace) -> int:
    text = args.file.read_text(encoding="utf-8")
    lines = request_lines(text, model=args.model, max_tokens=args.max_tokens, system=args.system)
    batch = submit_lines(client, lines, args.endpoint)
    print(batch.id)
    if args.wait:
        return _report(follow(client, batch.id))
    return 0


def _status(client: openai.OpenAI, args: argparse.Namespace) -> int:
    batch = follow(client, args.batch_id) if args.wait else client.batches.retrieve(args.batch_id)
    return _report(batch)


def _report(batch: Batch) -> int:
    counts = batch.request_counts
    done = f"{counts.completed}/{counts.total} done, {counts.failed} failed" if counts else ""
    print(f"{batch.id}  {batch.status}  {done}")
    if batch.usage is not None and batch.usage.total_tokens:
        used = batch.usage
        print(f"  tokens  {used.input_tokens} in, {used.output_tokens} out ({batch.model})")
    if batch.output_file_id:
        print(f"  output  {batch.output_file_id}")
    if batch.error_file_id:
        print(f"  errors  {batch.error_file_id}")
    for error in (batch.errors.data or []) if batch.errors else []:
        print(f"  line {error.line}: {error.message}")
    return 1 if batch.status == "failed" else 0


def _list(client: openai.OpenAI, args: argparse.Namespace) -> int:
    for batch in client.batches.list(limit=args.limit).data:
        counts = batch.request_counts
        made = time.strftime("%Y-%m-%d %H:%M", time.localtime(batch.created_at))
        done = f"{counts.completed}/{counts.total}" if counts else "-"
        print(f"{batch.id}  {made}  {batch.status:<11}  {done:>9}  {batch.endpoint}")
    return 0


def _cancel(client: openai.OpenAI, args: argparse.Namespace) -> int:
    return _report(client.batches.cancel(args.batch_id))


def _results(client: openai.OpenAI, args: argparse.Namespace) -> int:
    batch = client.batches.retrieve(args.batch_id)
    file_id = batch.error_file_id if args.errors else batch.output_file_id
    if file_id is None:
        what = "error" if args.errors else "output"
        print(f"hearth batch: {batch.id} ({batch.status}) has no {what} file", file=sys.stderr)
        return 1
    content = client.files.content(file_id).content
    if args.output is None:
        sys.stdout.buffer.write(content)
    else:
        args.output.write_bytes(content)
    return 0


def _message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return error.message


ACTIONS = {
    "submit": _submit,
    "status": _status,
    "list": _list,
    "cancel": _cancel,
    "results": _results,
}
