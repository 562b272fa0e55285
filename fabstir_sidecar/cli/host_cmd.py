"""``host``, ``job`` and ``status``: the host and client roles from the shell."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import anyio
import typer

from ..client import FabstirClient, RetryPolicy
from ..config import NodeConfig
from ..errors import FabstirError
from ..host.backends.base import Backend
from ..host.backends.echo import EchoBackend
from ..host.backends.fabstir_node import FabstirNodeBackend
from ..host.backends.openai import OpenAIBackend
from ..host.service import HostConfig, HostService
from ..node import DiscoveryManager
from ..protocols.job import JobEvent
from .common import (
    AnnounceOpt,
    BootstrapOpt,
    DhtModeOpt,
    DhtOpt,
    IdentityOpt,
    JsonOpt,
    ListenOpt,
    MaxConnOpt,
    P2pdOpt,
    TimeoutMsOpt,
    node_config,
)
from .output import emit_event, exit_code_for, fail, run_until_shutdown_signal, say


def make_backend(spec: str) -> Backend:
    """``echo`` or the base URL of an OpenAI-compatible server (``OPENAI_API_KEY`` if set)."""
    if spec == "echo":
        return EchoBackend()
    if spec.startswith("fabstir-node:"):
        return FabstirNodeBackend(spec.removeprefix("fabstir-node:"))
    if spec.startswith(("http://", "https://")):
        return OpenAIBackend(spec, api_key=os.environ.get("OPENAI_API_KEY") or None)
    raise typer.BadParameter(
        f"expected 'echo', 'fabstir-node:URL' or an http(s) base URL, got {spec!r}",
        param_hint="--backend",
    )


def host(
    model: Annotated[list[str], typer.Option("--model", "-m", help="Model served (repeatable).")],
    reputation: Annotated[int, typer.Option("--reputation", help="Declared reputation.")] = 0,
    location: Annotated[str | None, typer.Option("--location", help="ISO country code.")] = None,
    max_jobs: Annotated[int, typer.Option("--max-jobs", help="Concurrent jobs.")] = 4,
    api_url: Annotated[str | None, typer.Option("--api-url", help="Host HTTP API URL.")] = None,
    backend: Annotated[
        str, typer.Option("--backend", help="'echo', fabstir-node:URL or an OpenAI base URL.")
    ] = "echo",
    listen: ListenOpt = None,
    announce: AnnounceOpt = None,
    bootstrap: BootstrapOpt = None,
    identity: IdentityOpt = None,
    json_out: JsonOpt = False,
    p2pd: P2pdOpt = None,
    dht: DhtOpt = None,
    dht_mode: DhtModeOpt = None,
    max_connections: MaxConnOpt = None,
    connection_timeout: TimeoutMsOpt = None,
) -> None:
    """Run a host until SIGINT/SIGTERM: status, jobs (streamed), discovery, inference."""
    try:
        cfg = node_config(
            listen=listen,
            bootstrap=bootstrap,
            identity=identity,
            announce=tuple(announce) if announce else None,
            p2pd=p2pd,
            dht=dht,
            dht_mode=dht_mode,
            max_connections=max_connections,
            connection_timeout_ms=connection_timeout,
        )
        host_cfg = HostConfig(
            models=tuple(model),
            reputation=reputation,
            location=location,
            max_jobs=max_jobs,
            api_url=api_url,
        )
        anyio.run(_run_host, cfg, host_cfg, make_backend(backend), json_out)
    except FabstirError as exc:
        fail(str(exc), exit_code_for(exc))


async def _run_host(
    cfg: NodeConfig, host_cfg: HostConfig, backend: Backend, json_out: bool
) -> None:
    def on_job(event: JobEvent) -> None:
        if json_out:
            emit_event(
                "job",
                **{
                    "from": event.peer_id,
                    "job_id": event.job_id,
                    "model": event.model,
                    "outcome": event.outcome,
                },
            )
        else:
            say(
                f"job {event.job_id} from {event.peer_id}: {event.model} -> {event.outcome}"
                + (f" ({event.detail})" if event.detail else "")
            )

    def on_message(sender: str, message: Any) -> None:
        if json_out:
            emit_event("message", **{"from": sender, "message": message})
        else:
            say(f"message from {sender}: {json.dumps(message, ensure_ascii=False)}")

    async def serve() -> None:
        node = DiscoveryManager(cfg)
        service = HostService(node, host_cfg, backend, on_job=on_job)
        node.on_start(service.start)  # serving before the first bootstrap connection
        async with node:
            node.on_message(on_message)
            addrs = await node.get_addrs()
            if json_out:
                emit_event("ready", peer_id=node.peer_id, addrs=addrs)
            else:
                say(f"host {node.peer_id} serving {', '.join(host_cfg.models)}")
                for addr in addrs:
                    say(f"listening: {addr}")
            await anyio.sleep_forever()

    try:
        await run_until_shutdown_signal(serve)
    finally:
        await backend.aclose()


def _client_config(p2pd: str | None, timeout_ms: int | None) -> NodeConfig:
    return node_config(
        listen=None,
        bootstrap=[],
        identity=None,
        p2pd=p2pd,
        dht=False,
        connection_timeout_ms=timeout_ms,
    )


def job(
    peer: Annotated[str, typer.Argument(help="Host multiaddr ending in /p2p/<peer id>.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model to run.")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt.")],
    stream: Annotated[bool, typer.Option("--stream", help="Stream tokens as they arrive.")] = False,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens")] = None,
    temperature: Annotated[float | None, typer.Option("--temperature")] = None,
    attempts: Annotated[int, typer.Option("--attempts", help="Tries on transient faults.")] = 3,
    json_out: JsonOpt = False,
    p2pd: P2pdOpt = None,
    connection_timeout: TimeoutMsOpt = None,
) -> None:
    """Run one job on a host; print tokens as they arrive (or the result JSON with --json)."""
    try:
        cfg = _client_config(p2pd, connection_timeout)
        anyio.run(
            _job, cfg, peer, model, prompt, stream, max_tokens, temperature, attempts, json_out
        )
    except FabstirError as exc:
        fail(str(exc), exit_code_for(exc))


async def _job(
    cfg: NodeConfig,
    peer: str,
    model: str,
    prompt: str,
    stream: bool,
    max_tokens: int | None,
    temperature: float | None,
    attempts: int,
    json_out: bool,
) -> None:
    async with DiscoveryManager(cfg) as node:
        client = FabstirClient(node, retry=RetryPolicy(attempts=max(1, attempts)))
        if stream:
            tokens = client.stream_job(
                peer, model, prompt, max_tokens=max_tokens, temperature=temperature
            )
            async for token in tokens:
                if not json_out:
                    sys.stdout.write(token)
                    sys.stdout.flush()
            result = tokens.result
            if not json_out:
                sys.stdout.write("\n")
        else:
            result = await client.run_job(
                peer, model, prompt, max_tokens=max_tokens, temperature=temperature
            )
            if not json_out:
                say(result.content)
        if json_out and result is not None:
            say(json.dumps(result.to_json(), ensure_ascii=False))


def status(
    peer: Annotated[str, typer.Argument(help="Host multiaddr ending in /p2p/<peer id>.")],
    json_out: JsonOpt = False,
    p2pd: P2pdOpt = None,
    connection_timeout: TimeoutMsOpt = None,
) -> None:
    """Ask a host for its status record; print it with the measured latency."""
    try:
        cfg = _client_config(p2pd, connection_timeout)
        anyio.run(_status, cfg, peer, json_out)
    except FabstirError as exc:
        fail(str(exc), exit_code_for(exc))


async def _status(cfg: NodeConfig, peer: str, json_out: bool) -> None:
    async with DiscoveryManager(cfg) as node:
        answer = await FabstirClient(node).get_status(peer)
    record = {**answer.host.to_json(), "latency_ms": round(answer.latency_ms, 3)}
    if json_out:
        say(json.dumps(record, ensure_ascii=False))
    else:
        for key, value in record.items():
            say(f"{key:12} {value}")
