"""A batch's input file, checked line by line, and its output lines in OpenAI's format.

Every input line is checked before any runs: JSON, an object, a `custom_id` not seen
before in the file, `method` POST, and a `url` that is the batch's endpoint. A bad line
goes to the error file (with its line number) and the rest run; a file with no good line
at all is wrong as a whole, and the batch fails with those errors. Whether a line's body
is a valid request is decided when it runs, by the endpoint's own request model, so that
it fails exactly as the same request sent live would (a 400 in the error file).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from hearth.runtime.batch.store import NewLine, TokenUsage

# A file wrong as a whole reports at most this many of its errors.
MAX_REPORTED_ERRORS = 16

# How a response body names its usage: (input, its details, output, its details). Chat
# and text completions (and embeddings, input only) use OpenAI's older names; the
# Responses API the newer ones, which the Batch object's usage also uses.
USAGE_NAMES = (
    ("prompt_tokens", "prompt_tokens_details", "completion_tokens", "completion_tokens_details"),
    ("input_tokens", "input_tokens_details", "output_tokens", "output_tokens_details"),
)


@dataclass(frozen=True)
class LineError:
    code: str
    message: str
    line: int  # 1-based, as an editor numbers it
    param: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "param": self.param, "line": self.line}


@dataclass(frozen=True)
class CheckedFile:
    lines: list[NewLine]
    errors: list[LineError]

    @property
    def runnable(self) -> int:
        return sum(line.result is None for line in self.lines)


def check_lines(content: bytes, endpoint: str) -> CheckedFile:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        error = LineError("invalid_file", "The file is not UTF-8 text.", 1)
        return CheckedFile([], [error])
    lines: list[NewLine] = []
    errors: list[LineError] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        parsed, error = _check(raw, number, endpoint, seen)
        if error is not None:
            errors.append(error)
            lines.append(NewLine(parsed, result=error_line(parsed, error)))
        else:
            assert parsed is not None
            seen.add(parsed)
            lines.append(NewLine(parsed, body=json.loads(raw)["body"]))
    if not lines:
        errors.append(LineError("empty_file", "The file has no requests.", 1))
    return CheckedFile(lines, errors)


def _check(
    raw: str, number: int, endpoint: str, seen: set[str]
) -> tuple[str | None, LineError | None]:
    """A line's custom_id (None when it has none), and what is wrong with it, if anything."""
    try:
        line = json.loads(raw)
    except ValueError:
        return None, LineError("invalid_json_line", f"Line {number} is not valid JSON.", number)
    if not isinstance(line, dict):
        return None, LineError("invalid_request", f"Line {number} is not a JSON object.", number)
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return None, LineError(
            "missing_required_parameter",
            f"Line {number} has no custom_id (a non-empty string).",
            number,
            "custom_id",
        )
    if custom_id in seen:
        return custom_id, LineError(
            "duplicate_custom_id",
            f"Line {number} repeats custom_id '{custom_id}'; each must be unique in the file.",
            number,
            "custom_id",
        )
    if line.get("method") != "POST":
        return custom_id, LineError(
            "invalid_method", f"Line {number}: method must be POST.", number, "method"
        )
    if line.get("url") != endpoint:
        return custom_id, LineError(
            "invalid_url",
            f"Line {number}: url {line.get('url')!r} is not this batch's endpoint {endpoint}.",
            number,
            "url",
        )
    if not isinstance(line.get("body"), dict):
        return custom_id, LineError(
            "invalid_request", f"Line {number}: body must be a JSON object.", number, "body"
        )
    return custom_id, None


def batch_model(lines: list[NewLine]) -> str | None:
    """The model a batch's lines ask for: the first runnable line's (OpenAI runs a batch
    on one model; Hearth runs each line on the model it names)."""
    for line in lines:
        if line.body is not None and isinstance(line.body.get("model"), str):
            return line.body["model"]
    return None


def usage_of(body: dict) -> TokenUsage:
    """The tokens a line's response reports it used (none for a response without usage)."""
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return TokenUsage()
    for input_name, input_details, output_name, output_details in USAGE_NAMES:
        if input_name in usage:
            return TokenUsage(
                input_tokens=int(usage[input_name] or 0),
                cached_tokens=int((usage.get(input_details) or {}).get("cached_tokens") or 0),
                output_tokens=int(usage.get(output_name) or 0),
                reasoning_tokens=int(
                    (usage.get(output_details) or {}).get("reasoning_tokens") or 0
                ),
            )
    return TokenUsage()


def request_id() -> str:
    return f"batch_req_{uuid.uuid4().hex}"


def response_line(custom_id: str, status_code: int, body: dict) -> str:
    """A line of the output file (status 200) or of the error file (an error response)."""
    return json.dumps(
        {
            "id": request_id(),
            "custom_id": custom_id,
            "response": {
                "status_code": status_code,
                "request_id": f"req_{uuid.uuid4().hex}",
                "body": body,
            },
            "error": None,
        }
    )


def error_line(custom_id: str | None, error: LineError) -> str:
    """A line of the error file for a request that never ran."""
    return json.dumps(
        {
            "id": request_id(),
            "custom_id": custom_id,
            "response": None,
            "error": {"code": error.code, "message": error.message},
        }
    )


def not_jsonl(content: bytes) -> str | None:
    """Why an uploaded batch file is not JSONL at all, or None when some line is a request.

    Single bad lines are left for the batch to report; a file none of whose lines is a JSON
    object (a CSV, a JSON array, a binary) is refused at upload.
    """
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return "The file is not UTF-8 text; a batch file is JSONL, one JSON request per line."
    for raw in text.splitlines():
        try:
            if isinstance(json.loads(raw), dict):
                return None
        except ValueError:
            continue
    return "The file is not JSONL: no line of it is a JSON object (one request per line)."
