"""Schemathesis over a real `hearth serve`: every route, valid and invalid bodies alike.

Starts `hearth serve` on the bundled model and reads its /openapi.json. Schemathesis then
generates, for every operation, --examples cases that fit the schema ("positive") and
--examples that break it ("negative": wrong types, missing fields, out-of-range values).
Generated bodies name the served model, so they get past the model lookup, and ask for
at most 16 tokens, so a run takes minutes. It sends
them four at a time. Every answer is checked for two things:

- no 5xx, whatever the input;
- every 4xx in OpenAI's error shape: {"error": {"message": str, "type": str, "param", "code"}}.

It prints the cases per operation, the status classes seen, and every failure. The run exits
1 if there was one.

    .venv/bin/python bench/api_fuzz.py --examples 60
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, given
from schemathesis import GenerationMode

from hearth.runtime.settings import bundled_model_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import RunningServer, ServerConfig, free_port, hearth

FAILURES: list[str] = []


def draw(operation: schemathesis.APIOperation, mode: GenerationMode, count: int) -> list:
    """`count` generated cases for one operation, without sending them yet."""
    cases: list = []

    @hypothesis.settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.generate],
    )
    @given(operation.as_strategy(generation_mode=mode))
    def collect(case) -> None:
        cases.append(case)

    try:
        collect()
    except hypothesis.errors.Unsatisfiable:
        return []  # nothing to break: an operation with no parameters and no body
    return cases


def openai_shaped(response: requests.Response) -> bool:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return (
        isinstance(error, dict)
        and isinstance(error.get("message"), str)
        and isinstance(error.get("type"), str)
        and "param" in error
        and "code" in error
    )


def aim_at_the_model(case, model: str) -> None:
    """A random model id is a 404 before anything else is read; use the served one.

    Only where the generated value is a string, so negative cases with a model of the
    wrong type still test that.
    """
    if isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
        case.body["model"] = model


# The length fields of each generating route; others would be refused as unknown.
LENGTH_FIELDS = {
    "/v1/chat/completions": ("max_tokens", "max_completion_tokens"),
    "/v1/completions": ("max_tokens",),
    "/v1/responses": ("max_output_tokens",),
}
MAX_TOKENS = 16


def keep_replies_short(case) -> None:
    """Up to 8 choices of a whole context each take minutes on a small CPU; 16 tokens do not.

    Only valid lengths are lowered (an absent one is set), so negative cases keep theirs.
    """
    if not isinstance(case.body, dict):
        return
    for field in LENGTH_FIELDS.get(case.operation.path, ()):
        value = case.body.get(field)
        if value is None or (
            isinstance(value, int) and not isinstance(value, bool) and value > MAX_TOKENS
        ):
            case.body[field] = MAX_TOKENS


def send(case, base_url: str) -> tuple[int | None, str | None]:
    """(status, why it failed) for one case; a timeout counts as a failure."""
    try:
        response = case.call(base_url=base_url, timeout=120)
    except requests.RequestException as error:
        return None, f"no answer: {type(error).__name__}"
    if response.status_code >= 500:
        return response.status_code, (
            f"{response.status_code}: {response.text[:200]}\n    {case.as_curl_command()[:800]}"
        )
    if response.status_code >= 400 and not openai_shaped(response):
        return response.status_code, f"not OpenAI-shaped: {response.text[:200]}"
    return response.status_code, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=60, help="cases per operation and mode")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--operation", help="only operations whose label contains this")
    args = parser.parse_args()

    port = free_port()
    config = ServerConfig(bundled_model_path(), port, args.threads, slots=4, ctx_per_slot=512)
    with tempfile.TemporaryDirectory() as tmp:
        server = RunningServer("hearth", hearth(config), port, Path(tmp) / "serve.log")
        try:
            run(server.url, args.examples, args.operation)
        finally:
            alive = server.process.poll() is None
            server.stop()
            log = (Path(tmp) / "serve.log").read_text(errors="replace")
            if "Traceback" in log:
                print("\nthe server's last traceback:\n" + log[log.rindex("Traceback") :][-2500:])
    print(f"server still running at the end: {alive}")
    if not alive or FAILURES:
        raise SystemExit(1)


def run(url: str, examples: int, only: str | None = None) -> None:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    model = requests.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]
    print(
        f"schemathesis {schemathesis.SCHEMATHESIS_VERSION}, {examples} cases per operation "
        "and mode\n"
    )
    print(
        f"{'operation':32} {'mode':9} {'cases':>5} {'2xx':>5} {'4xx':>5} {'5xx':>4} "
        f"{'bad shape':>9} {'s':>6}"
    )
    totals: collections.Counter = collections.Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        if only and only not in operation.label:
            continue
        for mode in GenerationMode:
            started = time.monotonic()
            cases = draw(operation, mode, examples)
            for case in cases:
                aim_at_the_model(case, model)
                keep_replies_short(case)
            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(lambda case: send(case, url), cases))
            seen = collections.Counter()
            for status, failure in answers:
                seen[f"{status // 100}xx" if status else "none"] += 1
                if failure:
                    seen["bad shape" if failure.startswith("not") else "failed"] += 1
                    FAILURES.append(f"{operation.label} [{mode.value}] {failure}")
            totals.update(seen)
            totals["cases"] += len(cases)
            print(
                f"{operation.label:32} {mode.value:9} {len(cases):5} {seen['2xx']:5} "
                f"{seen['4xx']:5} {seen['5xx']:4} {seen['bad shape']:9} "
                f"{time.monotonic() - started:6.1f}"
            )
    print(
        f"\ncases {totals['cases']}: 2xx {totals['2xx']}, 4xx {totals['4xx']}, "
        f"5xx {totals['5xx']}, no answer {totals['none']}, "
        f"errors not in OpenAI's shape {totals['bad shape']}"
    )
    for failure in FAILURES[:20]:
        print("FAIL", failure)


if __name__ == "__main__":
    main()
