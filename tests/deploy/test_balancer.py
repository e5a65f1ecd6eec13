"""Two real replicas behind HAProxy with deploy/haproxy.cfg, on loopback.

What an operator relies on: a conversation stays on the replica that has it cached, a
rolling restart under load fails no request, and a replica killed outright costs only the
replies it was streaming.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.cluster import Cluster, chat, start_cluster, wait_for

REPLICA_ARGS = (
    "--n-ctx", "1024", "--parallel", "2", "--threads", "1", "--drain-timeout", "20",
)  # fmt: skip

QUESTION = "Name three animals that live in the sea, and say one thing about each."


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = start_cluster(tmp_path_factory.mktemp("cluster"), 2, REPLICA_ARGS)
    yield running
    running.stop()


def replica_of(response: httpx.Response) -> str:
    return response.headers["x-hearth-replica"]


def keys_by_replica(client: httpx.Client, count: int = 12) -> dict[str, list[str]]:
    """Which replica the balancer sends each of `count` conversation keys to."""
    placed: dict[str, list[str]] = {}
    for i in range(count):
        key = f"conversation-{i}"
        response = chat(client, [{"role": "user", "content": "Hi"}], key=key, max_tokens=1)
        assert response.status_code == 200, response.text
        placed.setdefault(replica_of(response), []).append(key)
    return placed


def test_a_conversation_stays_on_the_replica_that_has_it_cached(cluster: Cluster):
    with httpx.Client(base_url=cluster.balancer.url, timeout=120) as client:
        assert set(keys_by_replica(client)) == {"r1", "r2"}, "keys must spread over replicas"
        for conversation in range(4):
            by = (
                {"key": f"chat-{conversation}"}
                if conversation < 2
                else {"user": f"u{conversation}"}
            )
            messages = [
                {"role": "system", "content": f"You are assistant number {conversation}."},
                {"role": "user", "content": QUESTION},
            ]
            first = chat(client, messages, **by)
            assert first.status_code == 200, first.text
            messages += [
                first.json()["choices"][0]["message"],
                {"role": "user", "content": "And one more, please."},
            ]
            second = chat(client, messages, **by)
            assert second.status_code == 200, second.text
            assert replica_of(second) == replica_of(first)
            usage = second.json()["usage"]
            cached = usage["prompt_tokens_details"]["cached_tokens"]
            # The whole first turn (its prompt and reply) was in that replica's cache.
            assert cached >= first.json()["usage"]["prompt_tokens"], usage


def test_requests_without_a_key_are_spread_over_the_replicas(cluster: Cluster):
    with httpx.Client(base_url=cluster.balancer.url, timeout=120) as client:
        seen = {
            replica_of(chat(client, [{"role": "user", "content": "Hi"}], max_tokens=1))
            for _ in range(6)
        }
    assert seen == {"r1", "r2"}


class Load:
    """Clients sending chat requests back to back until stopped; every answer recorded."""

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.stopping = threading.Event()
        self.answers: list[tuple[int, str]] = []  # (status, replica or error text)
        self.threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=300)

    def _client(self, index: int) -> None:
        turn = 0
        with httpx.Client(base_url=self.url, timeout=300) as client:
            while not self.stopping.is_set():
                turn += 1
                messages = [{"role": "user", "content": f"Count to {turn % 7 + 3}."}]
                try:
                    response = chat(client, messages, key=f"load-{index}-{turn % 3}")
                    answer = (response.status_code, response.headers.get("x-hearth-replica", ""))
                    if response.status_code != 200:
                        answer = (response.status_code, response.text[:200])
                except httpx.HTTPError as error:
                    answer = (0, repr(error))
                self.answers.append(answer)

    def wait_for_answers(self, count: int) -> None:
        goal = len(self.answers) + count
        wait_for(lambda: len(self.answers) >= goal, f"{count} more answers", deadline=300)

    def failures(self) -> list[tuple[int, str]]:
        return [answer for answer in self.answers if answer[0] != 200]


def test_a_rolling_restart_under_load_fails_no_request(cluster: Cluster):
    balancer = cluster.balancer
    with Load(balancer.url, clients=4) as load:
        load.wait_for_answers(4)
        for replica in cluster.replicas:
            assert replica.terminate() == 0, replica.log()  # SIGTERM: it drains, exits 0
            wait_for(lambda r=replica: r.name not in balancer.up(), f"{replica.name} down")
            load.wait_for_answers(4)  # the other replica carries the load alone
            replica.start()
            replica.wait_healthy()
            wait_for(lambda r=replica: r.name in balancer.up(), f"{replica.name} up again")
            load.wait_for_answers(4)
    assert load.failures() == [], balancer.log()[-3000:]
    served = {replica for status, replica in load.answers if status == 200}
    assert served == {"r1", "r2"}
    assert len(load.answers) >= 20


def stream_chat(url: str, key: str, first_chunk: threading.Event, outcome: list[str]) -> None:
    """Stream a long reply; record whether it ended properly ([DONE]) or was cut."""
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Tell me a long story about the sea."}],
        "max_tokens": 400,
        "stream": True,
        "prompt_cache_key": key,
        # No end of sequence: the reply runs until the replica dies.
        "logit_bias": {"2": -100},
    }
    lines: list[str] = []
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as reply:
            for line in reply.iter_lines():
                lines.append(line)
                if line.startswith("data: {"):
                    first_chunk.set()
        outcome.append("done" if "data: [DONE]" in lines else "cut")
    except httpx.HTTPError:
        outcome.append("cut")
    finally:
        first_chunk.set()


def test_a_replica_killed_with_sigkill_costs_only_its_running_replies(
    cluster: Cluster, tmp_path: Path
):
    balancer = cluster.balancer
    with httpx.Client(base_url=balancer.url, timeout=120) as client:
        placed = keys_by_replica(client)
        victim = cluster.replica("r1")
        doomed_key, survivor_key = placed["r1"][0], placed["r2"][0]
        started, outcome = threading.Event(), []
        stream = threading.Thread(
            target=stream_chat, args=(balancer.url, doomed_key, started, outcome)
        )
        stream.start()
        assert started.wait(timeout=120)
        victim.kill()
        stream.join(timeout=120)
        assert outcome == ["cut"], "the reply in flight on the killed replica cannot end well"
        # New requests, the dead replica's conversations included, go to the survivor,
        # before and after HAProxy's health check has marked it down.
        for key in (doomed_key, survivor_key, doomed_key):
            response = chat(client, [{"role": "user", "content": "Hi"}], key=key)
            assert response.status_code == 200, response.text
            assert replica_of(response) == "r2"
        wait_for(lambda: "r1" not in balancer.up(), "r1 marked down")
        response = chat(client, [{"role": "user", "content": "Hi"}], key=doomed_key)
        assert response.status_code == 200 and replica_of(response) == "r2"
    victim.start()
    victim.wait_healthy()
    wait_for(lambda: "r1" in balancer.up(), "r1 up again")
    assert json.loads(httpx.get(f"{victim.url}/health").text)["replica"] == "r1"
