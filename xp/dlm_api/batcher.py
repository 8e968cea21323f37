"""Groups concurrent requests that share decoding settings into engine batches.

One asyncio task owns the queue. When the oldest pending request has waited the gather window,
or `batch_size` requests with its key are pending, those requests (oldest first) go to the engine
in a single worker thread, so the event loop keeps serving (health, new requests, streams) while
the engine runs. Commit callbacks from the engine thread are handed back to the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional

from xp.dlm_api.errors import APIError
from xp.dlm_api.nfe_log import NfeLog
from xp.dlm_generate.types import Engine, GenerationError, GenerationRequest, GenerationResult

log = logging.getLogger("xp.dlm_api")

# (new token ids, pass index); called on the event loop
StreamSink = Callable[[list[int], int], None]

# After this many batches in a row fail with an unexpected error (e.g. a CUDA fault, which poisons
# the device), the worker reports itself unhealthy so the balancer stops sending it work.
FAILED_AFTER_ERRORS = 3


@dataclass
class Job:
    engine: Engine
    request: GenerationRequest
    future: asyncio.Future
    sink: Optional[StreamSink] = None
    arrived: float = field(default_factory=time.monotonic)

    def key(self) -> tuple:
        return (self.engine.name, self.request.decoding_key())


class Batcher:
    def __init__(self, batch_size: int, gather_seconds: float, nfe_log: NfeLog):
        self.batch_size = batch_size
        self.gather_seconds = gather_seconds
        self.nfe_log = nfe_log
        self._pending: list[Job] = []
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._task: Optional[asyncio.Task] = None
        self.busy = False
        self.failed: Optional[str] = None   # set when the engine looks unusable
        self._errors_in_row = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(APIError("The worker is shutting down; retry elsewhere.", 503))
        self._executor.shutdown(wait=True, cancel_futures=True)

    @property
    def queued(self) -> int:
        return len(self._pending)

    async def submit(self, engine: Engine, request: GenerationRequest,
                     sink: Optional[StreamSink] = None) -> GenerationResult:
        job = Job(engine, request, asyncio.get_running_loop().create_future(), sink)
        self._pending.append(job)
        self._wake.set()
        return await job.future

    async def _run(self) -> None:
        while True:
            await self._wait_for_work()
            batch = self._take_batch()
            if batch:
                self.busy = True
                try:
                    await self._execute(batch)
                finally:
                    self.busy = False

    async def _wait_for_work(self) -> None:
        while not self._pending:
            self._wake.clear()
            await self._wake.wait()
        oldest = self._pending[0]
        deadline = oldest.arrived + self.gather_seconds
        while self._count(oldest.key()) < self.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _count(self, key: tuple) -> int:
        return sum(1 for j in self._pending if j.key() == key and not j.future.done())

    def _take_batch(self) -> list[Job]:
        self._pending = [j for j in self._pending if not j.future.done()]   # drop cancelled ones
        if not self._pending:
            return []
        key = self._pending[0].key()
        batch, rest = [], []
        for job in self._pending:
            (batch if job.key() == key and len(batch) < self.batch_size else rest).append(job)
        self._pending = rest
        return batch

    async def _execute(self, batch: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._generate, batch, loop)
        except GenerationError as exc:
            if len(batch) > 1:   # find the culprit: run each request alone
                for job in batch:
                    await self._execute([job])
                return
            _fail(batch, APIError(str(exc), 400))
            return
        except Exception as exc:
            log.exception("engine failed on a batch of %d", len(batch))
            self._errors_in_row += 1
            if self._errors_in_row >= FAILED_AFTER_ERRORS:
                self.failed = f"the engine failed {self._errors_in_row} batches in a row (last: {type(exc).__name__})"
            _fail(batch, APIError(f"The engine failed on this batch ({type(exc).__name__}: {exc}).", 500))
            return
        self._errors_in_row = 0
        for job, result in zip(batch, results):
            if not job.future.done():
                job.future.set_result(result)

    def _generate(self, batch: list[Job], loop: asyncio.AbstractEventLoop) -> list[GenerationResult]:
        """Runs in the engine thread."""
        requests = [j.request for j in batch]
        sinks = [j.sink for j in batch]
        on_commit = None
        if any(sinks):
            def on_commit(row: int, tokens: list[int], pass_index: int) -> None:
                sink = sinks[row]
                if sink is not None:
                    loop.call_soon_threadsafe(sink, list(tokens), pass_index)
        start = time.perf_counter()
        results = batch[0].engine.generate(requests, on_commit)
        seconds = time.perf_counter() - start
        if len(results) != len(requests):
            raise RuntimeError(f"engine returned {len(results)} results for {len(requests)} requests")
        self.nfe_log.record(batch[0].engine.name, requests, results, seconds)
        return results


def _fail(batch: list[Job], error: APIError) -> None:
    for job in batch:
        if not job.future.done():
            job.future.set_exception(error)
