"""Dynamic batching: requests wait up to `max_delay_s` to share one model call of up to `max_batch_size` texts.

One inference thread runs the batches in order (on a small CPU, parallel model calls only fight over
the cores). The queue is bounded: when `max_queue` requests wait, `submit` raises `QueueFull` at
once (the server answers 503) instead of letting latency grow without limit; a request counts as
waiting until its batch starts, including while the batch is still gathering.

The delay is only spent under load: when the previous batch held a single request and nothing else
is queued, a lone request runs at once (a client sending one request at a time never waits for
company that will not come); as soon as requests overlap, batches gather for up to `max_delay_s`.
`eager_when_idle=False` always waits, as Triton does. A request that times
out is dropped from its batch if it has not started yet.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from minilm_deploy.runtime import Predictions

PredictFn = Callable[[list[str], list[str] | None], Predictions]


class QueueFull(RuntimeError):
    pass


class ShuttingDown(RuntimeError):
    pass


@dataclass
class Job:
    texts: list[str]
    pairs: list[str] | None
    future: asyncio.Future
    enqueued: float


class DynamicBatcher:
    def __init__(
        self, predict: PredictFn, max_batch_size: int = 32, max_delay_s: float = 0.005, max_queue: int = 256,
        on_batch: Callable[[int, float, float], None] | None = None, eager_when_idle: bool = True,
    ) -> None:
        self.eager_when_idle = eager_when_idle
        self.predict, self.max_batch_size, self.max_delay_s, self.max_queue = predict, max_batch_size, max_delay_s, max_queue
        self.on_batch = on_batch  # (texts in batch, seconds in model, oldest wait) → metrics
        self.pending: deque[Job] = deque()
        self.arrived = asyncio.Event()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minilm-infer")
        self.gathering = 0  # requests in the batch being gathered
        self.last_batch_jobs = 0  # requests in the previous batch: 1 means no concurrent load
        self.closing = False
        self.task: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        return len(self.pending) + self.gathering

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def submit(self, texts: list[str], pairs: list[str] | None, timeout_s: float) -> Predictions:
        """Queue one request and wait for its answer; raises QueueFull, ShuttingDown or TimeoutError."""
        if self.closing:
            raise ShuttingDown("the server is shutting down")
        if self.depth >= self.max_queue:
            raise QueueFull(f"{self.depth} requests are waiting (the limit); retry later")
        job = Job(texts, pairs, asyncio.get_running_loop().create_future(), time.perf_counter())
        self.pending.append(job)
        self.arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout_s)
        except TimeoutError:
            job.future.cancel()  # not started: the batch skips it; started: the answer is dropped
            raise

    async def stop(self) -> None:
        """Finish every queued request, then stop the loop and the inference thread."""
        self.closing = True
        while self.depth and self.task is not None and not self.task.done():
            await asyncio.sleep(0.01)
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(loop)
            if not batch:
                continue
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self.executor, _run_batch, self.predict, [(j.texts, j.pairs) for j in batch])
            except Exception as exc:  # a model failure fails this batch's requests, not the server
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            elapsed = time.perf_counter() - started
            if self.on_batch is not None:
                self.on_batch(sum(len(j.texts) for j in batch), elapsed, started - batch[0].enqueued)
            for job, preds in zip(batch, results, strict=True):
                if not job.future.done():
                    job.future.set_result(preds)

    async def _collect(self, loop: asyncio.AbstractEventLoop) -> list[Job]:
        """Wait for one job, then gather more until the batch is full or the delay is up."""
        while not self.pending:
            self.arrived.clear()
            await self.arrived.wait()
        first = self.pending.popleft()
        batch, n = [first], len(first.texts)
        self.gathering = 1
        idle = self.eager_when_idle and self.last_batch_jobs <= 1 and not self.pending
        deadline = loop.time() + (0.0 if idle else self.max_delay_s)
        while n < self.max_batch_size:
            if not self.pending:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self.arrived.clear()
                try:
                    await asyncio.wait_for(self.arrived.wait(), remaining)
                except TimeoutError:
                    break
                continue
            if n + len(self.pending[0].texts) > self.max_batch_size:
                break  # it starts the next batch
            job = self.pending.popleft()
            batch.append(job)
            n += len(job.texts)
            self.gathering = len(batch)
        self.gathering = 0
        self.last_batch_jobs = len(batch)
        return [j for j in batch if not j.future.done()]


def _run_batch(predict: PredictFn, jobs: Sequence[tuple[list[str], list[str] | None]]) -> list[Predictions]:
    """One model call per kind of input (single texts, text pairs); answers split back per job."""
    out: list[Predictions | None] = [None] * len(jobs)
    for with_pairs in (False, True):
        idx = [i for i, (_, pairs) in enumerate(jobs) if (pairs is not None) == with_pairs]
        if not idx:
            continue
        texts = [t for i in idx for t in jobs[i][0]]
        pairs = [p for i in idx for p in jobs[i][1] or ()] if with_pairs else None
        preds = predict(texts, pairs)
        start = 0
        for i in idx:
            n = len(jobs[i][0])
            out[i] = _slice(preds, start, start + n)
            start += n
    return out  # type: ignore[return-value]


def _slice(p: Predictions, a: int, b: int) -> Predictions:
    def cut(x: np.ndarray | list | None):
        return None if x is None else x[a:b]

    return Predictions(p.task, labels=cut(p.labels), scores=cut(p.scores), embeddings=cut(p.embeddings))
