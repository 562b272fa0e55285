"""``/fabstir-llm/job/1.0.0``: a job_request, then tokens (if streamed) and one terminal frame.

Terminal frames (PROTOCOL.md 3.1): ``job_result``, ``job_rejected`` (model not served, busy)
or ``error``. The host closes the stream after it; the requester never half-closes before.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from ..errors import JobRejectedError, MalformedMessageError, RemoteError
from ..host.backends.base import Backend, BackendError
from ..p2pd.control import DaemonControl
from ..wire.messages import (
    ERROR_INTERNAL,
    MAX_JOB_ID_LENGTH,
    ErrorMessage,
    JobRejected,
    JobRequest,
    JobResult,
    JobToken,
    parse_job_response,
)
from . import ids
from .rpc import Exchange, RequestHandler, open_request

log = logging.getLogger(__name__)

Outcome = Literal["result", "rejected", "error"]


@dataclass(frozen=True, slots=True)
class JobEvent:
    """What a host reports about each job it answered (the CLI prints these)."""

    peer_id: str
    job_id: str
    model: str
    outcome: Outcome
    detail: str = ""


class JobHost(Protocol):
    """What the job handler needs from the host role."""

    backend: Backend

    def try_admit(self, model: str, protocol: str = "job") -> str | None:
        """Reserve a job slot; return a rejection reason instead if the job cannot run
        (``protocol``: which protocol asked, ``job`` or ``inference``, for the counters)."""

    def release(self) -> None: ...

    def report(self, event: JobEvent) -> None: ...


def _raw_job_id(request: dict[str, object]) -> str | None:
    raw = request.get("job_id")
    return raw if isinstance(raw, str) and 0 < len(raw) <= MAX_JOB_ID_LENGTH else None


def job_handler(host: JobHost) -> RequestHandler:
    async def handle(exchange: Exchange) -> None:
        exchange.job_id = _raw_job_id(exchange.request)  # so a bad_request error can echo it
        request = JobRequest.from_json(exchange.request)
        job_id, peer = request.job_id, exchange.peer_id
        reason = host.try_admit(request.model)
        if reason is not None:
            await exchange.send(JobRejected(job_id=job_id, reason=reason).to_json())
            host.report(JobEvent(peer, job_id, request.model, "rejected", reason))
            return
        try:
            if request.stream:
                # ``async with``: a requester that goes away mid-stream releases the backend.
                # Tokens go out in batches (at most BATCH_DELAY late), all before the result.
                async with host.backend.stream(request) as tokens, exchange.batched() as out:
                    async for text in tokens:
                        await out.send(JobToken(job_id=job_id, text=text).to_json())
                    completion = tokens.completion
            else:
                completion = await host.backend.complete(request)
        except BackendError as exc:
            log.warning("backend failed", extra={"job_id": job_id, "error": str(exc)})
            await exchange.send(
                ErrorMessage(code=ERROR_INTERNAL, message=str(exc), job_id=job_id).to_json()
            )
            host.report(JobEvent(peer, job_id, request.model, "error", str(exc)))
            return
        finally:
            host.release()
        await exchange.send(
            JobResult(
                job_id=job_id,
                content=completion.text,
                tokens_used=completion.tokens_used,
                finish_reason=completion.finish_reason,
            ).to_json()
        )
        host.report(JobEvent(peer, job_id, request.model, "result"))

    return handle


async def job_frames(
    control: DaemonControl,
    peer_id: str,
    request: JobRequest,
    *,
    timeout: float,
) -> AsyncGenerator[JobToken | JobResult, None]:
    """Yield the host's token frames, then its result. Rejections and errors raise."""
    exchange = await open_request(control, peer_id, ids.JOB, request.to_json(), timeout=timeout)
    async with exchange:
        while True:
            frame = await exchange.receive()
            response = parse_job_response(frame)
            if response.job_id not in (None, request.job_id):
                raise MalformedMessageError(
                    f"host {peer_id} answered job {response.job_id!r}, expected {request.job_id!r}"
                )
            if isinstance(response, JobToken):
                yield response
            elif isinstance(response, JobResult):
                yield response
                return
            elif isinstance(response, JobRejected):
                raise JobRejectedError(response.reason, peer_id=peer_id)
            else:
                raise RemoteError(response.code, response.message, peer_id=peer_id)


async def run_job_once(
    control: DaemonControl,
    peer_id: str,
    request: JobRequest,
    *,
    timeout: float,
    on_token: Callable[[str], None] | None = None,
) -> JobResult:
    async for frame in job_frames(control, peer_id, request, timeout=timeout):
        if isinstance(frame, JobResult):
            return frame
        if on_token is not None:
            on_token(frame.text)
    raise MalformedMessageError(f"host {peer_id} closed the job stream without a result")
