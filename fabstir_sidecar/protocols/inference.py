"""``/fabstir/inference/1.0.0``: fabstir-llm-node compatibility (PROTOCOL.md 3.4).

serde's externally tagged JSON: ``{"Inference": {...}}`` in, ``{"Inference": {...}}`` out,
one frame each way. Served by the same host admission and backend as jobs; refusals and
failures are answered with this project's ``error`` frame (the spec defines no Rust-side
error shape): ``bad_request`` for a model not served, ``internal`` for busy or a backend
failure.
"""

from __future__ import annotations

from ..errors import MalformedMessageError
from ..host.backends.base import BackendError
from ..p2pd.control import DaemonControl
from ..wire.messages import (
    ERROR_BAD_REQUEST,
    ERROR_INTERNAL,
    ErrorMessage,
    InferenceRequest,
    InferenceResponse,
    JobRequest,
)
from . import ids
from .job import JobEvent, JobHost
from .rpc import Exchange, RequestHandler, call


def inference_handler(host: JobHost) -> RequestHandler:
    async def handle(exchange: Exchange) -> None:
        request = InferenceRequest.from_json(exchange.request)
        exchange.job_id = request.request_id
        reason = host.try_admit(request.model, "inference")
        if reason is not None:
            code = ERROR_BAD_REQUEST if reason.startswith("model") else ERROR_INTERNAL
            await exchange.send(
                ErrorMessage(code=code, message=reason, job_id=request.request_id).to_json()
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
        try:
            completion = await host.backend.complete(job)
        except BackendError as exc:
            await exchange.send(
                ErrorMessage(
                    code=ERROR_INTERNAL, message=str(exc), job_id=request.request_id
                ).to_json()
            )
            host.report(
                JobEvent(exchange.peer_id, request.request_id, request.model, "error", str(exc))
            )
            return
        finally:
            host.release()
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

    return handle


async def request_inference(
    control: DaemonControl, peer_id: str, request: InferenceRequest, *, timeout: float
) -> InferenceResponse:
    frame = await call(control, peer_id, ids.INFERENCE, request.to_json(), timeout=timeout)
    response = InferenceResponse.from_json(frame)
    if response.request_id != request.request_id:
        raise MalformedMessageError(
            f"inference answer for {response.request_id!r}, expected {request.request_id!r}"
        )
    return response
