"""``/fabstir-llm/job/1.0.0``: a job_request, then tokens (if streamed) and one terminal frame.

Terminal frames (docs/protocol.md §6.1): ``job_result``, ``job_rejected`` (codes
``model_not_served``, ``busy`` with ``retry_after_ms``, ``shutting_down``) or ``error``.
The host closes the stream after it; the requester never half-closes before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Literal, Protocol

from fabstir_sidecar.backend import Backend, BackendError
from fabstir_sidecar.core.errors import (
    ConnectionLostError,
    HostBusyError,
    JobOutcomeUnknownError,
    JobRejectedError,
    MalformedMessageError,
    RemoteError,
)
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.protocols import ids
from fabstir_sidecar.rpc.client import open_request
from fabstir_sidecar.rpc.exchange import Exchange
from fabstir_sidecar.rpc.server import RequestHandler
from fabstir_sidecar.wire.codes import Rejection
from fabstir_sidecar.wire.messages import (
    ERROR_INTERNAL,
    MAX_JOB_ID_LENGTH,
    ErrorMessage,
    JobRejected,
    JobRequest,
    JobResult,
    JobToken,
    parse_job_response,
)

log = logging.getLogger(__name__)

BUSY_CODES = frozenset({"busy", "shutting_down"})
"""Rejection codes that mean "not now": the job did not run and may be sent again."""

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

    def try_admit(self, model: str, peer: str, protocol: str) -> Rejection | None:
        """Reserve a job slot for ``peer``; return why not instead if the job cannot run."""

    def release(self, peer: str, seconds: float) -> None:
        """Free the slot ``peer`` held for ``seconds``."""

    def report(self, event: JobEvent) -> None: ...


def _raw_job_id(request: dict[str, object]) -> str | None:
    raw = request.get("job_id")
    return raw if isinstance(raw, str) and 0 < len(raw) <= MAX_JOB_ID_LENGTH else None


def job_handler(host: JobHost) -> RequestHandler:
    async def handle(exchange: Exchange) -> None:
        exchange.job_id = _raw_job_id(exchange.request)  # so a bad_request error can echo it
        request = JobRequest.from_json(exchange.request)
        job_id, peer = request.job_id, exchange.peer_id
        rejection = host.try_admit(request.model, peer, exchange.protocol)
        if rejection is not None:
            reason = rejection.reason
            answer = JobRejected(
                job_id=job_id,
                reason=reason,
                code=rejection.code,
                retry_after_ms=rejection.retry_after_ms,
            )
            await exchange.send(answer.to_json())
            host.report(JobEvent(peer, job_id, request.model, "rejected", reason))
            return
        started = time.monotonic()
        try:  # the slot is held until the answer is written: it measures the host's work
            await _run_job(host, exchange, request)
        finally:
            host.release(peer, time.monotonic() - started)

    return handle


async def _run_job(host: JobHost, exchange: Exchange, request: JobRequest) -> None:
    job_id, peer = request.job_id, exchange.peer_id
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
    await exchange.send(
        JobResult(
            job_id=job_id,
            content=completion.text,
            tokens_used=completion.tokens_used,
            finish_reason=completion.finish_reason,
        ).to_json()
    )
    host.report(JobEvent(peer, job_id, request.model, "result"))


async def job_frames(
    control: DaemonControl,
    peer_id: str,
    request: JobRequest,
    *,
    timeout: float,
) -> AsyncGenerator[JobToken | JobResult, None]:
    """Yield the host's token frames, then its result. Rejections and errors raise.

    Once the request frame is written the host may run the job: an exchange that breaks after
    that raises :class:`JobOutcomeUnknownError`, never a retryable error. A ``busy`` or
    ``shutting_down`` answer raises :class:`HostBusyError` (the job did not run).
    """
    exchange = await open_request(control, peer_id, ids.JOB, request.to_json(), timeout=timeout)
    async with exchange:
        while True:
            try:
                frame = await exchange.receive()
            except ConnectionLostError as exc:
                raise JobOutcomeUnknownError(request.job_id, peer_id=peer_id, cause=exc) from exc
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
                # Hosts that predate rejection codes said reason "busy".
                code = response.code or (response.reason if response.reason in BUSY_CODES else "")
                if code in BUSY_CODES:
                    wait = response.retry_after_ms
                    raise HostBusyError(
                        code,
                        response.reason,
                        peer_id=peer_id,
                        retry_after=None if wait is None else wait / 1000,
                    )
                raise JobRejectedError(response.reason, peer_id=peer_id, code=code or "rejected")
            else:
                raise RemoteError(response.code, response.message, peer_id=peer_id)


async def run_job_once(
    control: DaemonControl,
    peer_id: str,
    request: JobRequest,
    *,
    timeout: float,
) -> JobResult:
    async for frame in job_frames(control, peer_id, request, timeout=timeout):
        if isinstance(frame, JobResult):
            return frame
    raise MalformedMessageError(f"host {peer_id} closed the job stream without a result")
