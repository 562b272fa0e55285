"""``host``, ``job`` and ``status``: the host and client roles from the shell."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

import anyio
import typer

from fabstir_sidecar.backend import Backend
from fabstir_sidecar.cli import common as opt
from fabstir_sidecar.cli.output import emit_event, failures_reported, say
from fabstir_sidecar.cli.serving import serve_until_signal
from fabstir_sidecar.client import FabstirClient, RetryConfig
from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.core.settings import NodeConfig
from fabstir_sidecar.host.service import HostConfig, HostService
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.protocols.job import JobEvent
from fabstir_sidecar.tools.backends import make_backend, parse_backend_spec


def _backend(spec: str) -> Backend:
    """The ``--backend`` spec's backend; a spec of no known form is a usage error."""
    try:
        parse_backend_spec(spec)
    except ConfigError as exc:
        raise typer.BadParameter(f"{exc.reason}, got {spec!r}", param_hint="--backend") from None
    return make_backend(spec)


def host(
    model: Annotated[list[str], typer.Option("--model", "-m", help="Model served (repeatable).")],
    reputation: Annotated[int, typer.Option("--reputation", help="Declared reputation.")] = 0,
    location: Annotated[str | None, typer.Option("--location", help="ISO country code.")] = None,
    max_jobs: Annotated[
        int, typer.Option("--max-jobs", envvar="P2P_HOST_MAX_JOBS", help="Concurrent jobs.")
    ] = 4,
    max_streams: Annotated[
        int | None,
        typer.Option(
            "--max-streams",
            envvar="P2P_HOST_MAX_STREAMS",
            help="Hard cap of job streams, reset unread beyond (default max(2048, 4 x jobs)).",
        ),
    ] = None,
    write_timeout: Annotated[
        float,
        typer.Option(
            "--write-timeout",
            envvar="P2P_HOST_WRITE_TIMEOUT_S",
            help="Seconds a requester may stop reading before it loses its job.",
        ),
    ] = 10.0,
    drain_timeout: Annotated[
        float,
        typer.Option(
            "--drain-timeout",
            envvar="P2P_HOST_DRAIN_TIMEOUT_S",
            help="On SIGINT/SIGTERM, seconds to let jobs in flight finish.",
        ),
    ] = 30.0,
    api_url: Annotated[str | None, typer.Option("--api-url", help="Host HTTP API URL.")] = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="'echo', or 'openai:URL' (or just the URL): an OpenAI-compatible server.",
        ),
    ] = "echo",
    listen: opt.ListenOpt = None,
    announce: opt.AnnounceOpt = None,
    bootstrap: opt.BootstrapOpt = None,
    identity: opt.IdentityOpt = None,
    json_out: opt.JsonOpt = False,
    p2pd: opt.P2pdOpt = None,
    dht: opt.DhtOpt = None,
    dht_mode: opt.DhtModeOpt = None,
    max_connections: opt.MaxConnOpt = None,
    connection_timeout: opt.TimeoutMsOpt = None,
    relay_service: opt.RelayServiceOpt = None,
    relay_client: opt.RelayClientOpt = None,
    relay: opt.RelayOpt = None,
    autonat: opt.AutonatOpt = None,
    hole_punching: opt.HolePunchOpt = None,
    nat_portmap: opt.NatPortmapOpt = None,
    force_reachability: opt.ReachabilityOpt = None,
    metrics_addr: opt.MetricsAddrOpt = None,
) -> None:
    """Run a host until SIGINT/SIGTERM: status, jobs (streamed), discovery, inference."""
    with failures_reported():
        cfg = opt.command_config("host", locals())
        host_cfg = HostConfig(
            models=tuple(model),
            reputation=reputation,
            location=location,
            max_jobs=max_jobs,
            api_url=api_url,
            max_streams=max_streams,
            write_timeout=write_timeout,
            drain_timeout=drain_timeout,
        )
        chosen = _backend(backend)
        services: list[HostService] = []

        def make_node() -> DiscoveryManager:
            node = DiscoveryManager(cfg)
            service = HostService(node, host_cfg, chosen, on_job=_print_job(json_out))
            services.append(service)
            node.on_start(service.start)  # serving before the first bootstrap connection
            return node

        async def drain() -> None:
            for service in services:
                await service.stop()  # shutting_down answers, then jobs in flight finish

        serve_until_signal(
            make_node,
            json_out=json_out,
            headline=lambda peer_id: f"host {peer_id} serving {', '.join(host_cfg.models)}",
            close=chosen.aclose,
            drain=drain,
        )


def _print_job(json_out: bool) -> Callable[[JobEvent], None]:
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

    return on_job


def _run_direct(
    params: Mapping[str, Any], main: Callable[..., Awaitable[None]], *args: Any
) -> None:
    """Run ``main(cfg, *args)`` on a ``direct`` node made from the command's flags."""
    with failures_reported():
        anyio.run(main, opt.command_config("direct", params), *args)


def job(
    peer: Annotated[str, typer.Argument(help="Host multiaddr ending in /p2p/<peer id>.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model to run.")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt.")],
    stream: Annotated[bool, typer.Option("--stream", help="Stream tokens as they arrive.")] = False,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens")] = None,
    temperature: Annotated[float | None, typer.Option("--temperature")] = None,
    attempts: Annotated[int, typer.Option("--attempts", help="Tries on transient faults.")] = 3,
    json_out: opt.JsonOpt = False,
    p2pd: opt.P2pdOpt = None,
    connection_timeout: opt.TimeoutMsOpt = None,
) -> None:
    """Run one job on a host; print tokens as they arrive (or the result JSON with --json)."""
    args = (peer, model, prompt, stream, max_tokens, temperature, attempts, json_out)
    _run_direct(locals(), _job, *args)


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
        client = FabstirClient(node, retry=RetryConfig(attempts=max(1, attempts)))
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
    json_out: opt.JsonOpt = False,
    p2pd: opt.P2pdOpt = None,
    connection_timeout: opt.TimeoutMsOpt = None,
) -> None:
    """Ask a host for its status record; print it with the measured latency."""
    _run_direct(locals(), _status, peer, json_out)


async def _status(cfg: NodeConfig, peer: str, json_out: bool) -> None:
    async with DiscoveryManager(cfg) as node:
        answer = await FabstirClient(node).get_status(peer)
    record = {**answer.host.to_json(), "latency_ms": round(answer.latency_ms, 3)}
    if json_out:
        say(json.dumps(record, ensure_ascii=False))
    else:
        for key, value in record.items():
            say(f"{key:12} {value}")


COMMANDS = (host, job, status)
"""The commands of this module, in the order ``fabstir-sidecar --help`` lists them."""
