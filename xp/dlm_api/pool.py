"""The balancer's view of its workers: health, outstanding requests, least-outstanding choice.

A worker is up after a 200 from its /health and down after a refused connection, a 503, a dropped
request, or `DOWN_AFTER_TIMEOUTS` health polls in a row that time out. The poller brings a down
worker back as soon as it answers 200 again. Requests in flight on a worker that goes down are
told through their `Watch`, so the balancer can retry them elsewhere instead of waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Optional

from xp.dlm_api.upstream import Upstream, UpstreamError

log = logging.getLogger("xp.dlm_api.balancer")

DOWN_AFTER_TIMEOUTS = 2


class Watch:
    """Interrupts the task that proxies one request when its worker goes down or it times out."""

    __slots__ = ("task", "reason", "done")

    def __init__(self, task: asyncio.Task):
        self.task = task
        self.reason: Optional[str] = None
        self.done = False      # set once the answer is complete: nothing to interrupt any more

    def fire(self, reason: str) -> None:
        if self.reason is None and not self.done:
            self.reason = reason
            self.task.cancel()


@dataclass(eq=False)
class Worker:
    address: str                      # host:port
    healthy: bool = False
    outstanding: int = 0
    served: int = 0
    failures: int = 0
    timeouts_in_row: int = 0
    last_error: str = ""
    changed_at: float = field(default_factory=time.time)
    inflight: set = field(default_factory=set)     # Watch per request being proxied

    def snapshot(self) -> dict:
        return {"address": self.address, "healthy": self.healthy, "outstanding": self.outstanding,
                "served": self.served, "failures": self.failures, "last_error": self.last_error,
                "since": round(self.changed_at, 3)}


class WorkerPool:
    def __init__(self, addresses: list[str], worker_headers: Optional[dict] = None):
        self.worker_headers = worker_headers or {}   # e.g. the workers' API key
        self.workers = [Worker(a) for a in addresses]
        self._any_up = asyncio.Event()
        self._turn = 0
        self.models_body: Optional[dict] = None

    # ---- routing -------------------------------------------------------------------------------
    def healthy(self) -> list[Worker]:
        return [w for w in self.workers if w.healthy]

    def pick(self, exclude: set[Worker]) -> Optional[Worker]:
        """Least outstanding among healthy workers; ties go round robin. Workers already tried
        for this request are avoided while another healthy one exists."""
        healthy = self.healthy()
        candidates = [w for w in healthy if w not in exclude] or healthy
        if not candidates:
            return None
        n = len(self.workers)
        self._turn = (self._turn + 1) % n
        order = {w: (self.workers.index(w) - self._turn) % n for w in candidates}
        return min(candidates, key=lambda w: (w.outstanding, order[w]))

    async def acquire(self, exclude: set[Worker], wait_seconds: float) -> Optional[Worker]:
        deadline = time.monotonic() + wait_seconds
        while True:
            worker = self.pick(exclude)
            if worker is not None:
                worker.outstanding += 1
                return worker
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._any_up.clear()
            try:
                await asyncio.wait_for(self._any_up.wait(), remaining)
            except asyncio.TimeoutError:
                return None

    @staticmethod
    def release(worker: Worker, ok: bool) -> None:
        worker.outstanding -= 1
        if ok:
            worker.served += 1

    # ---- state changes -------------------------------------------------------------------------
    def mark_up(self, worker: Worker) -> None:
        worker.timeouts_in_row = 0
        if not worker.healthy:
            worker.healthy, worker.changed_at, worker.last_error = True, time.time(), ""
            log.info("worker %s is up", worker.address)
        self._any_up.set()

    def mark_down(self, worker: Worker, reason: str) -> None:
        worker.failures += 1
        worker.last_error = reason
        if worker.healthy:
            worker.healthy, worker.changed_at = False, time.time()
            log.warning("worker %s is down: %s", worker.address, reason)
        for watch in list(worker.inflight):
            watch.fire(f"worker {worker.address} went down ({reason})")

    # ---- health polling ------------------------------------------------------------------------
    async def poll_forever(self, upstream: Upstream, interval: float, timeout: float) -> None:
        while True:
            await self.poll_once(upstream, timeout)
            await asyncio.sleep(interval)

    async def poll_once(self, upstream: Upstream, timeout: float) -> None:
        await asyncio.gather(*(self._check(upstream, w, timeout) for w in self.workers))

    async def _check(self, upstream: Upstream, worker: Worker, timeout: float) -> None:
        try:
            head, _ = await asyncio.wait_for(upstream.request(worker.address, "GET", "/health", []), timeout)
        except asyncio.TimeoutError:
            worker.timeouts_in_row += 1
            if worker.timeouts_in_row >= DOWN_AFTER_TIMEOUTS:
                self.mark_down(worker, f"/health timed out {worker.timeouts_in_row} times in a row")
            return
        except UpstreamError as exc:
            self.mark_down(worker, f"/health failed: {exc}")
            return
        if head.status != 200:
            self.mark_down(worker, f"/health answered {head.status}")
            return
        self.mark_up(worker)
        if self.models_body is None:
            await self._fetch_models(upstream, worker, timeout)

    async def _fetch_models(self, upstream: Upstream, worker: Worker, timeout: float) -> None:
        try:
            head, body = await asyncio.wait_for(upstream.request(
                worker.address, "GET", "/v1/models", list(self.worker_headers.items())), timeout)
            if head.status == 200:
                self.models_body = json.loads(body)
        except (asyncio.TimeoutError, UpstreamError, ValueError):
            pass
