"""``gateway``: one node serving the HTTP API (shared/HTTP_API.md) until SIGINT/SIGTERM."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import anyio
import typer

from fabstir_sidecar.cli.common import (
    BootstrapOpt,
    DhtModeOpt,
    DhtOpt,
    IdentityOpt,
    JsonOpt,
    ListenOpt,
    P2pdOpt,
    TimeoutMsOpt,
    command_config,
)
from fabstir_sidecar.cli.output import (
    emit_event,
    exit_code_for,
    fail,
    run_until_shutdown_signal,
    say,
)
from fabstir_sidecar.core.errors import ConfigError, FabstirError
from fabstir_sidecar.core.settings import NodeConfig
from fabstir_sidecar.gateway import GatewaySettings, create_app, serve_gateway
from fabstir_sidecar.gateway.server import is_loopback, parse_http_addr
from fabstir_sidecar.node.manager import DiscoveryManager

TOKEN_ENV = "FABSTIR_GATEWAY_TOKEN"


def read_token(token_file: Path | None) -> str | None:
    """``--token-file`` (stripped) wins over ``FABSTIR_GATEWAY_TOKEN``; empty is an error."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("--token-file", str(token_file), str(exc)) from None
        if not token:
            raise ConfigError("--token-file", str(token_file), "the file holds no token")
        return token
    raw = os.environ.get(TOKEN_ENV)
    if raw is None:
        return None
    if not raw.strip():
        raise ConfigError(TOKEN_ENV, raw, "an empty token is not a token")
    return raw.strip()


def gateway(
    http: Annotated[
        str,
        typer.Option(
            "--http", envvar="FABSTIR_HTTP_ADDR", help="HTTP HOST:PORT (port 0: pick one)."
        ),
    ] = "127.0.0.1:8080",
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help=f"Bearer token file (else env {TOKEN_ENV})."),
    ] = None,
    job_timeout: Annotated[
        float, typer.Option("--job-timeout", help="Seconds a job may take (504 after).")
    ] = 300.0,
    sse_buffer: Annotated[
        int,
        typer.Option(
            "--sse-buffer", envvar="FABSTIR_SSE_BUFFER", help="Messages per SSE subscriber."
        ),
    ] = 256,
    max_concurrent: Annotated[
        int, typer.Option("--max-concurrent", help="Requests in flight (503 above).")
    ] = 256,
    listen: ListenOpt = None,
    bootstrap: BootstrapOpt = None,
    identity: IdentityOpt = None,
    json_out: JsonOpt = False,
    p2pd: P2pdOpt = None,
    dht: DhtOpt = None,
    dht_mode: DhtModeOpt = None,
    connection_timeout: TimeoutMsOpt = None,
) -> None:
    """Run a node and serve the HTTP gateway (OpenAI-compatible API included)."""
    flags = dict(locals())
    try:
        host, port = parse_http_addr(http)
        token = read_token(token_file)
        if token is None and not is_loopback(host):
            raise ConfigError(
                "--http",
                http,
                "binding beyond loopback needs a bearer token: pass --token-file "
                f"(or set {TOKEN_ENV})",
            )
        settings = GatewaySettings(
            token=token,
            job_timeout=job_timeout,
            sse_buffer=sse_buffer,
            max_concurrent=max_concurrent,
        )
        cfg = command_config("client", flags)
        anyio.run(_serve, cfg, settings, host, port, json_out)
    except FabstirError as exc:
        fail(str(exc), exit_code_for(exc))


async def _serve(
    cfg: NodeConfig, settings: GatewaySettings, host: str, port: int, json_out: bool
) -> None:
    async def body() -> None:
        async with DiscoveryManager(cfg) as node:
            app = create_app(node, settings=settings)
            async with serve_gateway(
                app, host, port, header_timeout=settings.header_timeout
            ) as url:
                addrs = await node.get_addrs()
                if json_out:
                    emit_event("ready", peer_id=node.peer_id, addrs=addrs, http=url)
                else:
                    say(f"gateway {node.peer_id} serving {url}")
                    for addr in addrs:
                        say(f"listening: {addr}")
                await anyio.sleep_forever()

    await run_until_shutdown_signal(body)


COMMANDS = (gateway,)
"""The commands of this module, in the order ``fabstir-sidecar --help`` lists them."""
