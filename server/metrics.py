"""GET /metrics in the Prometheus text format, counted at the HTTP edge, never per token.

Each app has its own CollectorRegistry (no module globals: two apps in one test process
must not share counts). Request counts and durations come from a middleware; slot and
queue figures are read from each resident model's snapshot (`Engine.load()`, labelled by
model) when scraped, so
nothing is added to the decode loop. The route label is the route's template
(`/v1/chat/completions`), or "unmatched": raw paths would let any client grow the label
set without bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth.server.access_log import RequestRecord

# Engine snapshot keys exported as gauges, with their help text.
ENGINE_GAUGES = {
    "slots": "Generation slots.",
    "slots_busy": "Slots generating now.",
    "waiting": "Requests waiting for a slot.",
    "host_cache_entries": "Prompt states kept in host memory.",
    "host_cache_bytes": "Bytes of prompt states kept in host memory.",
    "disk_cache_entries": "Prompt states kept on disk (the prompt cache that survives restarts).",
    "disk_cache_bytes": "Bytes of prompt states kept on disk.",
}
# Engine snapshot keys that only grow, exported as counters (`hearth_<key>_total`).
ENGINE_SNAPSHOT_COUNTERS = {
    "disk_cache_hits": "Requests whose prompt prefix was restored from disk.",
    "disk_cache_restored_tokens": "Prompt tokens restored from disk instead of read.",
    "disk_cache_writes": "Prompt states written to disk.",
    "disk_cache_dropped_writes": "Prompt states not written because the writer was behind.",
}

# Counters of the engine's step profile (`Engine.load()["engine"]`), with their help text.
STEP_PROFILE_COUNTERS = {
    "draft_tokens": "Tokens guessed by speculative decoding and checked in a decode step.",
    "accepted_draft_tokens": "Guessed tokens the model's own sampling confirmed.",
}


class EngineCollector(Collector):
    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        state = self.app.state.hearth
        if not state.ready:
            return
        gauges: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            key: GaugeMetricFamily(f"hearth_{key}", help_text, labels=["model"])
            for key, help_text in ENGINE_GAUGES.items()
        }
        gauges.update(
            (key, CounterMetricFamily(f"hearth_{key}", help_text, labels=["model"]))
            for key, help_text in ENGINE_SNAPSHOT_COUNTERS.items()
        )
        loaded = GaugeMetricFamily(
            "hearth_model_loaded", "1 while the model is resident.", labels=["model"]
        )
        load_time = GaugeMetricFamily(
            "hearth_model_load_seconds", "How long the model's last load took.", labels=["model"]
        )
        counters = {
            key: CounterMetricFamily(f"hearth_{key}", help_text, labels=["model"])
            for key, help_text in STEP_PROFILE_COUNTERS.items()
        }
        models = state.registry.health()["models"]
        for model, report in models.items():
            loaded.add_metric([model], 1.0 if report["state"] == "loaded" else 0.0)
            if isinstance(report.get("load_seconds"), int | float):
                load_time.add_metric([model], report["load_seconds"])
            for key, gauge in gauges.items():
                if isinstance(report.get(key), int | float):
                    gauge.add_metric([model], report[key])
            profile = report.get("engine")
            for key, counter in counters.items():
                if isinstance(profile, dict) and isinstance(profile.get(key), int | float):
                    counter.add_metric([model], profile[key])
        yield from gauges.values()
        yield from counters.values()
        yield loaded
        yield load_time


class HttpMetrics:
    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "hearth_http_requests",
            "HTTP requests answered.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "hearth_http_request_duration_seconds",
            "Time from request to the end of the response body (whole streams included).",
            ["route"],
            registry=registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.requests.labels(label, scope["method"], str(status)).inc()
            self.duration.labels(label).observe(time.monotonic() - started)


class GenerationMetrics:
    """Time to first token, inter-token latency and tokens, per model: observed once per
    request when it ends (from its access-log record), never per token. The inter-token
    latency is each request's mean gap between streamed tokens after the first."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.ttft = Histogram(
            "hearth_time_to_first_token_seconds",
            "From request to the first generated text.",
            ["model"],
            registry=registry,
            buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.itl = Histogram(
            "hearth_inter_token_latency_seconds",
            "Each request's mean time between generated tokens after the first.",
            ["model"],
            registry=registry,
            buckets=(0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 1),
        )
        self.prompt_tokens = Counter(
            "hearth_prompt_tokens",
            "Prompt tokens of finished generations.",
            ["model"],
            registry=registry,
        )
        self.generation_tokens = Counter(
            "hearth_generation_tokens", "Tokens generated.", ["model"], registry=registry
        )

    def observe(self, record: RequestRecord) -> None:
        if record.model is None:
            return
        if record.ttft_seconds is not None:
            self.ttft.labels(record.model).observe(record.ttft_seconds)
        if record.inter_token_seconds is not None:
            self.itl.labels(record.model).observe(record.inter_token_seconds)
        if record.prompt_tokens is not None:
            self.prompt_tokens.labels(record.model).inc(record.prompt_tokens)
        if record.completion_tokens is not None:
            self.generation_tokens.labels(record.model).inc(record.completion_tokens)


def install_metrics(app: FastAPI) -> Callable[[RequestRecord], None]:
    """Adds /metrics and the HTTP counters; returns the observer of finished requests."""
    registry = CollectorRegistry()
    registry.register(EngineCollector(app))
    app.add_middleware(HttpMetrics, registry=registry)
    generation = GenerationMetrics(registry)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return generation.observe
