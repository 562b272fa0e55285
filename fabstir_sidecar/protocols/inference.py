"""``/fabstir/inference/1.0.0``: fabstir-llm-node compatibility (docs/protocol.md §6.4).

serde's externally tagged JSON: ``{"Inference": {...}}`` in, ``{"Inference": {...}}`` out,
one frame each way. Served by the same host admission and backend as jobs; refusals and
failures are answered with this project's ``error`` frame (the spec defines no Rust-side
error shape): ``bad_request`` for a model not served, ``busy`` (with ``retry_after_ms``) or
``shutting_down`` when the host cannot take it now, ``internal`` for a backend failure.
"""

from __future__ import annotations

import time

from fabstir_sidecar.backend import BackendError
from fabstir_sidecar.core.errors import (
    ConnectionLostError,
    JobOutcomeUnknownError,
    MalformedMessageError,
)
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.protocols import ids
from fabstir_sidecar.protocols.job import JobEvent, JobHost
from fabstir_sidecar.rpc.client import call
from fabstir_sidecar.rpc.exchange import Exchange
from fabstir_sidecar.rpc.server import RequestHandler
from fabstir_sidecar.wire.codes import REJECTED_MODEL_NOT_SERVED
from fabstir_sidecar.wire.messages import (
    ERROR_BAD_REQUEST,
    ERROR_INTERNAL,
    ErrorMessage,
    InferenceRequest,
    InferenceResponse,
    JobRequest,
)

_ERROR_CODE_OF_REJECTION = {REJECTED_MODEL_NOT_SERVED: ERROR_BAD_REQUEST}
"""The ``error`` code answering a refusal (by its rejection code); others: ``internal``."""


def inference_handler(host: JobHost) -> RequestHandler:
    async def handle(exchange: Exchange) -> None:
        request = InferenceRequest.from_json(exchange.request)
        exchange.job_id = request.request_id
        rejection = host.try_admit(request.model, exchange.peer_id, exchange.protocol)
        if rejection is not None:
            code = _ERROR_CODE_OF_REJECTION.get(rejection.code, rejection.code)
            reason = rejection.reason
            await exchange.send(
                ErrorMessage(
                    code=code,
                    message=reason,
                    job_id=request.request_id,
                    retry_after_ms=rejection.retry_after_ms,
                ).to_json()
            )
            host.report(
                JobEvent(exchange.peer_id, request.request_id, request.model, "rejected", reason)
            )
            return
        job = JobRequest(
            job_id=request.request_id,
            model=request.model,
            prompt=request.prompt,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
        )
        started = time.monotonic()
        try:  # the slot is held until the answer is written (as for jobs)
            await _answer(host, exchange, request, job)
        finally:
            host.release(exchange.peer_id, time.monotonic() - started)

    return handle


async def _answer(
    host: JobHost, exchange: Exchange, request: InferenceRequest, job: JobRequest
) -> None:
    try:
        completion = await host.backend.complete(job)
    except BackendError as exc:
        await exchange.send(
            ErrorMessage(code=ERROR_INTERNAL, message=str(exc), job_id=request.request_id).to_json()
        )
        host.report(
            JobEvent(exchange.peer_id, request.request_id, request.model, "error", str(exc))
        )
        return
    await exchange.send(
        InferenceResponse(
            request_id=request.request_id,
            content=completion.text,
            tokens_used=completion.tokens_used,
            model_used=request.model,
            finish_reason=completion.finish_reason,
        ).to_json()
    )
    host.report(JobEvent(exchange.peer_id, request.request_id, request.model, "result"))


async def request_inference(
    control: DaemonControl, peer_id: str, request: InferenceRequest, *, timeout: float
) -> InferenceResponse:
    try:
        frame = await call(control, peer_id, ids.INFERENCE, request.to_json(), timeout=timeout)
    except ConnectionLostError as exc:  # the request went out: the host may have run it
        raise JobOutcomeUnknownError(request.request_id, peer_id=peer_id, cause=exc) from exc
    response = InferenceResponse.from_json(frame)
    if response.request_id != request.request_id:
        raise MalformedMessageError(
            f"inference answer for {response.request_id!r}, expected {request.request_id!r}"
        )
    return response
