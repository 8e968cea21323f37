"""Concurrent load over two real workers behind the real balancer: batching, spreading, and a
worker killed in the middle of the load."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import httpx
import pytest

from tests.api_helpers import chat_body, start_worker, wait_healthy

N_REQUESTS = 64


@pytest.fixture
def cluster(api_cluster):
    return api_cluster


def prompts(tag: str) -> list[str]:
    # different lengths, so each answer's prompt_tokens tells whose answer it is
    return [f"{tag} {i}: " + "go " * (i % 16) for i in range(N_REQUESTS)]


async def fire(url: str, contents: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=300,
                                 limits=httpx.Limits(max_connections=N_REQUESTS)) as client:
        return await asyncio.gather(*(client.post("/v1/chat/completions", json=chat_body(c, max_tokens=8))
                                      for c in contents))


def test_concurrent_requests_are_batched_and_spread(cluster):
    contents = prompts("load")
    single = [httpx.post(cluster.workers[0].url + "/v1/chat/completions",
                         json=chat_body(c, max_tokens=1), timeout=60).json()["usage"]["prompt_tokens"]
              for c in contents[:16]]
    responses = asyncio.run(fire(cluster.balancer.url, contents))
    assert [r.status_code for r in responses] == [200] * N_REQUESTS
    bodies = [r.json() for r in responses]
    assert [b["usage"]["prompt_tokens"] for b in bodies[:16]] == single
    ids = [b["id"] for b in bodies]
    assert len(set(ids)) == N_REQUESTS

    logged = {w.name: [line for line in w.nfe_lines() if line["request_ids"][0] in set(ids)]
              for w in cluster.workers}
    logged_ids = [rid for lines in logged.values() for line in lines for rid in line["request_ids"]]
    assert sorted(logged_ids) == sorted(ids), "each request generated exactly once"
    assert all(logged.values()), f"a worker got nothing: { {k: len(v) for k, v in logged.items()} }"
    assert max(line["batch_size"] for lines in logged.values() for line in lines) > 1


def test_killing_a_worker_mid_load_loses_no_request_and_it_comes_back(cluster):
    victim = cluster.workers[1]
    health_codes: list[int] = []
    stop_polling = threading.Event()

    def poll_health():
        while not stop_polling.is_set():
            health_codes.append(httpx.get(cluster.balancer.url + "/health", timeout=5).status_code)
            time.sleep(0.05)

    def kill_when_busy():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(victim.nfe_lines()) == before:
            time.sleep(0.01)
        victim.stop(signal.SIGKILL)

    before = len(victim.nfe_lines())
    threads = [threading.Thread(target=poll_health), threading.Thread(target=kill_when_busy)]
    for t in threads:
        t.start()
    try:
        responses = asyncio.run(fire(cluster.balancer.url, prompts("kill")))
    finally:
        stop_polling.set()
        for t in threads:
            t.join()
    assert victim.popen.returncode == -signal.SIGKILL
    assert [r.status_code for r in responses] == [200] * N_REQUESTS, [r.text for r in responses if r.status_code != 200][:3]
    assert len({r.json()["id"] for r in responses}) == N_REQUESTS
    assert health_codes and set(health_codes) == {200}
    health = httpx.get(cluster.balancer.url + "/health").json()
    state = {w["address"]: w for w in health["workers"]}
    assert state[victim.address]["healthy"] is False
    assert state[cluster.workers[0].address]["healthy"] is True
    assert health["healthy_workers"] == 1
    assert "retrying request" in cluster.balancer.output(), "the kill hit no request in flight"

    # a new worker on the same address is taken back once healthy
    port = int(victim.address.rsplit(":", 1)[1])
    cluster.workers[1] = start_worker(cluster.ckpt, cluster.workdir, victim.name, *cluster.worker_args, port=port)
    wait_healthy(cluster.workers[1])
    deadline = time.monotonic() + 30
    while httpx.get(cluster.balancer.url + "/health").json()["healthy_workers"] != 2:
        assert time.monotonic() < deadline, "the balancer did not take the restarted worker back"
        time.sleep(0.1)
