"""Replicas behind HAProxy: aggregate throughput of two replicas pinned to a core each
against one replica on one core, and the latency the balancer adds.

    python bench/replicas_bench.py --seconds 60 --clients 8

Each replica is a real `hearth serve` (bundled SmolLM2, 1 thread, --parallel 4) started
under `taskset`; the cluster is the tests' (tests/deploy/cluster.py: deploy/haproxy.cfg
on loopback). Clients send 64-token chat requests back to back, each with its own
prompt_cache_key unless --no-keys (then HAProxy spreads them round robin), end of sequence
banned so that every reply is 64 tokens; the requests each replica answered are counted
from X-Hearth-Replica, since 8 keys need not hash evenly onto 2 replicas. The added
latency is the median of sequential 1-token chat requests and of GET /health, through the
balancer minus straight to a replica. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.deploy.cluster import Cluster, start_cluster

REPLICA_ARGS = ("--threads", "1", "--parallel", "4", "--n-ctx", "1024", "--log-level", "warning")
TOKENS = 64


def body(key: str | None, turn: int, max_tokens: int = TOKENS) -> dict[str, object]:
    request: dict[str, object] = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": f"Write a short poem about number {turn}."}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "logit_bias": {"2": -100},
    }
    if key is not None:
        request["prompt_cache_key"] = key
    return request


def throughput(
    url: str, clients: int, seconds: float, keys: bool = True
) -> tuple[float, Counter[str], int]:
    """Completion tokens per second over all clients, requests done by replica, failed."""
    tokens, done, failed = [0], Counter[str](), [0]
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client(index: int) -> None:
        turn = 0
        with httpx.Client(base_url=url, timeout=600) as http:
            while time.monotonic() < end:
                turn += 1
                key = f"c{index}" if keys else None
                answer = http.post("/v1/chat/completions", json=body(key, turn))
                with lock:
                    if answer.status_code == 200:
                        tokens[0] += answer.json()["usage"]["completion_tokens"]
                        done[answer.headers["x-hearth-replica"]] += 1
                    else:
                        failed[0] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tokens[0] / (time.monotonic() - started), done, failed[0]


def median_ms(http: httpx.Client, method: str, path: str, json: dict | None, n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        answer = http.request(method, path, json=json)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.text
    return statistics.median(times)


def added_latency(cluster: Cluster, n: int) -> None:
    replica, balancer = cluster.replicas[0].url, cluster.balancer.url
    one_token = body("latency", 0, max_tokens=1)
    for label, method, path, json in (
        ("GET /health", "GET", "/health", None),
        ("1-token chat", "POST", "/v1/chat/completions", one_token),
    ):
        rows = {}
        for name, url in (("direct", replica), ("balancer", balancer), ("direct again", replica)):
            with httpx.Client(base_url=url, timeout=120) as http:
                median_ms(http, method, path, json, 5)  # warm: connections, prompt cache
                rows[name] = median_ms(http, method, path, json, n)
        direct = (rows["direct"] + rows["direct again"]) / 2
        print(
            f"{label}: direct {direct:.2f} ms, through HAProxy {rows['balancer']:.2f} ms, "
            f"added {rows['balancer'] - direct:.2f} ms (median of {n})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--latency-requests", type=int, default=50)
    parser.add_argument("--no-keys", action="store_true", help="no prompt_cache_key")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        sys.exit("needs two cores")
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for count in (1, 2):
            pins = [str(core) for core in cores[:count]]
            cluster = start_cluster(Path(tmp), count, REPLICA_ARGS, cpus=pins)
            try:
                keys = not args.no_keys
                throughput(cluster.balancer.url, args.clients, 5, keys)  # warm up
                rate, done, failed = throughput(
                    cluster.balancer.url, args.clients, args.seconds, keys
                )
                results[count] = rate
                print(
                    f"{count} replica(s) on core(s) {','.join(pins)} behind HAProxy, "
                    f"{args.clients} clients: {rate:.1f} tok/s (requests by replica "
                    f"{dict(sorted(done.items()))}, {failed} failed)"
                )
                if count == 1:
                    added_latency(cluster, args.latency_requests)
            finally:
                cluster.stop()
        print(f"2 replicas / 1 replica: {results[2] / results[1]:.2f}x")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
