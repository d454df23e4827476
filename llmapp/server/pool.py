"""The server's bounded worker pool: generation runs in threads, results flow back to the event loop.

Each request becomes a :class:`Job`. Its *producer* (a function returning an iterator: text pieces,
then a final record) runs on one of ``workers`` threads; torch releases the GIL while it computes, so
the event loop stays free to accept, stream and reject. At most ``queue_size`` jobs wait for a
thread; one more is refused with :class:`QueueFull` (the server answers 429 with ``Retry-After``).
Setting ``job.cancel`` (the client went away) closes the producer's iterator at its next item, which
for a chat model stops ``generate()`` within a token.

    pool = WorkerPool(workers=2, queue_size=8)
    job = pool.submit(lambda: iter(["a", "b"]), label="demo")   # inside a running event loop
    async for item in job:
        ...
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_END = object()
_ids = itertools.count(1)


class QueueFull(Exception):
    """Every worker is busy and the waiting queue is full; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"server busy; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass
class JobRecord:
    """What happened to one finished job (kept for /health and for tests)."""

    id: int
    label: str
    outcome: str  # "done", "cancelled" (client went away) or "error"
    items: int  # items produced; a chat stream yields about one per token
    wait_s: float  # time queued before a worker picked it up
    run_s: float  # time on the worker


class Job:
    """One request's work. Iterate it (``async for``) on the event loop to receive its items.

    An exception raised by the producer is re-raised by the iteration; ``cancel`` stops the producer.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, label: str) -> None:
        self.id, self.label, self.loop = next(_ids), label, loop
        self.cancel = threading.Event()
        self.items = 0
        self.submitted = time.perf_counter()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._peeked: list[Any] = []

    def put(self, item: Any) -> None:
        """Hand an item to the event loop (called from the worker thread)."""
        try:
            self.loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the server is shutting down
            self.cancel.set()

    async def next(self) -> Any:
        """The next item, or ``None`` at the end. Re-raises the producer's exception."""
        item = self._peeked.pop() if self._peeked else await self._queue.get()
        if item is _END:
            self._peeked.append(_END)  # stay at the end on further calls
            return None
        if isinstance(item, BaseException):
            self._peeked.append(_END)
            raise item
        return item

    async def peek(self) -> Any:
        """Wait for the first item without consuming it: errors surface before a response starts."""
        if not self._peeked:
            self._peeked.append(await self._queue.get())
        item = self._peeked[-1]
        if isinstance(item, BaseException):
            self._peeked[-1] = _END
            raise item
        return None if item is _END else item

    async def __aiter__(self) -> AsyncIterator[Any]:
        while (item := await self.next()) is not None:
            yield item


class WorkerPool:
    """``workers`` threads run jobs; ``queue_size`` more may wait; the rest get :class:`QueueFull`."""

    def __init__(self, workers: int, queue_size: int) -> None:
        if workers < 1 or queue_size < 0:
            raise ValueError("workers must be >= 1 and queue_size >= 0")
        self.workers, self.queue_size = workers, queue_size
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="llmapp-worker")
        self._lock = threading.Lock()
        self._live: set[Job] = set()
        self.active = self.queued = 0
        self.counts = {"done": 0, "cancelled": 0, "error": 0, "rejected": 0}
        self.recent: deque[JobRecord] = deque(maxlen=512)

    def submit(self, produce: Callable[[], Iterator[Any]], label: str = "") -> Job:
        """Queue ``produce`` for a worker thread; must be called on the event loop.

        Raises:
            QueueFull: ``workers + queue_size`` jobs are already admitted.
        """
        with self._lock:
            if self.active + self.queued >= self.workers + self.queue_size:
                self.counts["rejected"] += 1
                raise QueueFull(self._retry_after())
            self.queued += 1
        job = Job(asyncio.get_running_loop(), label)
        with self._lock:
            self._live.add(job)
        self._executor.submit(self._run, job, produce)
        return job

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"workers": self.workers, "queue_size": self.queue_size, "active": self.active,
                    "queued": self.queued, **self.counts}

    def shutdown(self) -> None:
        """Cancel running jobs and drop queued ones (server shutdown)."""
        with self._lock:
            live = list(self._live)
        for job in live:
            job.cancel.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _run(self, job: Job, produce: Callable[[], Iterator[Any]]) -> None:
        started = time.perf_counter()
        with self._lock:
            self.queued -= 1
            self.active += 1
        outcome = "done"
        try:
            if job.cancel.is_set():  # the client left while the job was queued
                outcome = "cancelled"
                return
            items = produce()
            try:
                for item in items:
                    if job.cancel.is_set():
                        outcome = "cancelled"
                        break
                    job.items += 1
                    job.put(item)
            finally:
                close = getattr(items, "close", None)
                if close:  # closing a model's stream cancels generate() within one token
                    close()
        except Exception as exc:  # noqa: BLE001 - handed to the request, which maps it to an HTTP error
            outcome = "error"
            job.put(exc)
        finally:
            job.put(_END)
            run_s = time.perf_counter() - started
            with self._lock:
                self.active -= 1
                self.counts[outcome] += 1
                self.recent.append(JobRecord(job.id, job.label, outcome, job.items, started - job.submitted, run_s))
                self._live.discard(job)
            log.debug("job %d %s: %s, %d items, %.2f s", job.id, job.label, outcome, job.items, run_s)

    def _retry_after(self) -> int:
        """Seconds until a slot is likely free: queue length over workers times the mean job time."""
        runs = [r.run_s for r in list(self.recent)[-32:]] or [1.0]
        mean = sum(runs) / len(runs)
        return max(1, min(60, math.ceil(mean * (self.queued + 1) / self.workers)))
