"""OpenAI-compatible and fabstir-llm-node-compatible routes (HTTP_API.md sections 2, 3)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fabstir_sidecar.core.errors import FabstirError
from fabstir_sidecar.discovery.matching import HostCriteria
from fabstir_sidecar.gateway.chat import ChatIds, JobSpec, parse_chat, parse_inference, sse
from fabstir_sidecar.gateway.criteria import parse_selection
from fabstir_sidecar.gateway.errors import from_library
from fabstir_sidecar.gateway.state import gateway, read_json
from fabstir_sidecar.gateway.streaming import TokenStreamResponse
from fabstir_sidecar.wire.messages import JobResult


async def list_models(request: Request) -> Response:
    gw = gateway(request)
    try:
        report = await gw.node.discovery.match(HostCriteria())
    except FabstirError as exc:
        raise from_library(exc) from None
    hosts: dict[str, set[str]] = {}
    for candidate in report.answers:
        for model in candidate.host.models:
            hosts.setdefault(model, set()).add(candidate.host.peer_id)
    data = [
        {
            "id": model,
            "object": "model",
            "created": gw.first_seen(model),
            "owned_by": "fabstir",
            "fabstir": {"hosts": len(peers)},
        }
        for model, peers in sorted(hosts.items())
    ]
    return JSONResponse({"object": "list", "data": data})


async def _run(request: Request, body: dict[str, Any], spec: JobSpec) -> tuple[str, JobResult]:
    selection = parse_selection(request.headers, body.get("fabstir"), (spec.model,))
    return await gateway(request).runner.complete(selection, spec)


async def chat_completions(request: Request) -> Response:
    body = await read_json(request)
    spec = parse_chat(body)
    ids = ChatIds(spec.model)
    if spec.stream:
        selection = parse_selection(request.headers, body.get("fabstir"), (spec.model,))
        opened = await gateway(request).runner.stream(selection, spec)
        return TokenStreamResponse(
            opened,
            encode=lambda text, first: ids.chunk(text, first=first),
            finish=lambda result: ids.last_chunk(result.finish_reason),
            headers={"X-Fabstir-Host": opened.peer_id},
        )
    peer, result = await _run(request, body, spec)
    answer = ids.completion(result.content, result.finish_reason, spec.prompt, result.tokens_used)
    return JSONResponse(answer, headers={"X-Fabstir-Host": peer})


async def inference(request: Request) -> Response:
    body = await read_json(request)
    spec = parse_inference(body)
    request_id = spec.request_id

    def last(result: JobResult) -> bytes:
        return sse(
            {
                "content": "",
                "finish_reason": result.finish_reason,
                "tokens_used": result.tokens_used,
                "request_id": request_id,
            }
        )

    if spec.stream:
        selection = parse_selection(request.headers, body.get("fabstir"), (spec.model,))
        opened = await gateway(request).runner.stream(selection, spec)
        return TokenStreamResponse(
            opened,
            encode=lambda text, first: sse({"content": text}),
            finish=last,
            headers={"X-Fabstir-Host": opened.peer_id},
        )
    peer, result = await _run(request, body, spec)
    answer = {
        "model": spec.model,
        "content": result.content,
        "tokens_used": result.tokens_used,
        "finish_reason": result.finish_reason,
        "request_id": request_id,
    }
    return JSONResponse(answer, headers={"X-Fabstir-Host": peer})
