"""Running a request's producer on the worker pool and answering as JSON or as server-sent events.

An endpoint describes its answer as an :class:`Answer`: the producer (text pieces, then a
:class:`~llmapp.server.catalog.Final`), and a :class:`Wire` that writes OpenAI's chunk and body
shapes. :func:`respond` does the rest, the same for every endpoint: the first item is awaited before
the response starts (so an early error gets a proper status even when streaming), a client that
hangs up cancels the job, and a stream ends in ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from llmapp.server.catalog import Final
from llmapp.server.errors import api_error
from llmapp.server.pool import Job, QueueFull, WorkerPool
from llmapp.server.schemas import APIError, Usage

log = logging.getLogger(__name__)

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy may hold tokens back


class Wire(Protocol):
    """How one endpoint writes its answer: chunks while streaming, or one body at the end."""

    def opening(self) -> list[BaseModel]:
        """Chunks sent before the first piece (a chat stream announces the assistant role)."""

    def piece(self, text: str) -> BaseModel:
        """The chunk carrying one piece of text."""

    def closing(self, final: Final) -> list[BaseModel]:
        """The chunks after the last piece: the finish reason, then usage when asked for."""

    def whole(self, text: str, final: Final) -> BaseModel:
        """The non-streaming body."""


@dataclass
class Answer:
    """One request's work and how to write it."""

    produce: Callable[[], Iterator[Any]]  # run on a worker: text pieces, then one Final
    wire: Wire
    label: str  # for logs and /health
    param: str  # the request field an early error is blamed on ("messages", "prompt")
    stream: bool
    include_usage: bool


def usage(final: Final) -> Usage:
    return Usage(prompt_tokens=final.prompt_tokens, completion_tokens=final.completion_tokens,
                 total_tokens=final.prompt_tokens + final.completion_tokens)


def submit(pool: WorkerPool, produce: Callable[[], Iterator[Any]], label: str) -> Job:
    """Queue a job, or answer 429 with ``Retry-After`` when the queue is full."""
    try:
        return pool.submit(produce, label)
    except QueueFull as exc:
        raise APIError(429, f"the server is busy ({pool.workers} generating, {pool.queue_size} waiting); "
                       f"retry in {exc.retry_after} s", type="rate_limit_error", code="rate_limit_exceeded",
                       headers={"Retry-After": str(exc.retry_after)}) from None


async def _watch_disconnect(request: Request, job: Job) -> None:
    """Cancel ``job`` when the client hangs up before its response starts."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            job.cancel.set()
            return


async def first(request: Request, job: Job, param: str) -> Any:
    """The job's first item, or its error as an :class:`APIError`; a hang-up meanwhile cancels it."""
    watcher = asyncio.create_task(_watch_disconnect(request, job))
    try:
        return await job.peek()
    except Exception as exc:
        raise api_error(exc, param) from None
    finally:
        watcher.cancel()
        if job.cancel.is_set():
            log.info("client left before job %d answered", job.id)


async def respond(request: Request, answer: Answer) -> Any:
    """Run ``answer.produce`` and reply as one JSON body or as SSE chunks ending in ``[DONE]``."""
    job = submit(request.app.state.pool, answer.produce, answer.label)
    try:
        await first(request, job, answer.param)
        if not answer.stream:
            return JSONResponse((await _collect(request, job, answer)).model_dump())
    except BaseException:
        job.cancel.set()
        raise
    return StreamingResponse(_events(job, answer), media_type="text/event-stream", headers=_SSE_HEADERS)


async def _collect(request: Request, job: Job, answer: Answer) -> BaseModel:
    watcher = asyncio.create_task(_watch_disconnect(request, job))
    try:
        parts = [item async for item in job]
    except Exception as exc:
        raise api_error(exc, answer.param) from None
    finally:
        watcher.cancel()
    final = parts.pop() if parts and isinstance(parts[-1], Final) else Final(0, 0, "stop")
    return answer.wire.whole("".join(parts), final)


async def _events(job: Job, answer: Answer) -> AsyncIterator[str]:
    exclude = None if answer.include_usage else {"usage"}
    try:
        for chunk in answer.wire.opening():
            yield _sse(chunk, exclude)
        async for item in job:
            for chunk in answer.wire.closing(item) if isinstance(item, Final) else [answer.wire.piece(item)]:
                yield _sse(chunk, exclude)
        yield "data: [DONE]\n\n"
    except Exception as exc:  # headers are sent: report it as an error event, which the client raises
        yield f"data: {JSONResponse(api_error(exc, answer.param).body()).body.decode()}\n\n"
    finally:
        job.cancel.set()  # no-op when finished; stops the model when the client went away


def _sse(chunk: BaseModel, exclude: set[str] | None) -> str:
    return f"data: {chunk.model_dump_json(exclude=exclude)}\n\n"
