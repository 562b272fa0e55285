"""A process holding the server side of the benchmarks: hosts, raw handlers, a TCP server.

``python -m bench.hostproc --hosts N [--bootstrap MA] [--dht off|server] [--role host|node]
[--raw] [--max-jobs N] [--batch N] [--wait-advertised]``

Servers live in their own process so that "jobs per second one host sustains" is the host's
figure, not shared with the requesters' event loop. Protocol on stdout, one JSON object per
line: ``{"event": "ready", "hosts": [...], "tcp_port": ...}`` once every node runs (and, with
``--wait-advertised``, has provided its DHT records), then one answer per stdin command:
``stats`` (host counters) and ``ping``. Closing stdin stops every node (each through
``DiscoveryManager``'s context management, so every p2pd is stopped) and the process exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from fabstir_sidecar.host.backends.echo import EchoBackend
from fabstir_sidecar.host.service import HostConfig, HostService
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.rpc.limits import RpcLimits

from . import refs

MODEL = "bench-echo-1b"


@dataclass
class Running:
    index: int
    node: DiscoveryManager
    service: HostService | None
    started_s: float
    advertised_s: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


def emit(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def run_one(
    args: argparse.Namespace,
    index: int,
    limiter: anyio.CapacityLimiter,
    started: list[Running],
    failed: list[str],
    all_started: anyio.Event,
    stop: anyio.Event,
) -> None:
    options: dict[str, Any] = {
        "enable_mdns": False,
        "enable_dht": args.dht != "off",
        "bootstrap": tuple(args.bootstrap),
        "connection_timeout": 10.0,
        "max_connections": args.max_connections,
        "provide_interval": 3600.0,
    }
    if args.dht != "off":
        options["dht_mode"] = args.dht
    if args.p2pd:
        options["p2pd_path"] = args.p2pd
    try:
        async with contextlib.AsyncExitStack() as stack:
            async with limiter:
                t0 = time.perf_counter()
                node = await stack.enter_async_context(DiscoveryManager(**options))
                service = None
                if args.role == "host":
                    service = HostService(
                        node,
                        HostConfig(models=(MODEL,), max_jobs=args.max_jobs, reputation=50),
                        EchoBackend(),
                    )
                    await service.start()
                if args.raw and index == 0:
                    for protocol, handler in refs.RAW_HANDLERS.items():
                        await node.add_stream_handler(
                            protocol, handler, RpcLimits(max_concurrent=4096, max_per_peer=4096)
                        )
                running = Running(index, node, service, time.perf_counter() - t0)
            if args.wait_advertised and service is not None:
                with anyio.move_on_after(args.advertise_timeout):
                    await service.advertised.wait()
                if service.advertised.is_set():
                    running.advertised_s = time.perf_counter() - t0
            running.info = {
                "index": index,
                "peer_id": node.peer_id,
                "addrs": await node.get_addrs(),
                "daemon_pid": refs.node_daemon_pid(node),
                "control_socket": refs.node_control_socket(node),
                "start_s": running.started_s,
                "advertised_s": running.advertised_s,
            }
            started.append(running)
            if len(started) + len(failed) == args.hosts:
                all_started.set()
            await stop.wait()
    except Exception as exc:
        failed.append(f"host {index}: {type(exc).__name__}: {exc}")
        if len(started) + len(failed) == args.hosts:
            all_started.set()


async def serve_commands(started: list[Running]) -> None:
    stdin = anyio.wrap_file(sys.stdin)
    while True:
        line = await stdin.readline()
        if not line:
            return
        command = line.strip()
        if command == "stats":
            emit(
                {
                    "event": "stats",
                    "hosts": [
                        {
                            "index": r.index,
                            "results": r.service.stats.results if r.service else 0,
                            "rejected": r.service.stats.rejected if r.service else 0,
                            "errors": r.service.stats.errors if r.service else 0,
                            "active": r.service.active_jobs if r.service else 0,
                            "admission": r.service.admission.as_dict() if r.service else {},
                        }
                        for r in started
                    ],
                }
            )
        elif command == "ping":
            emit({"event": "pong"})
        else:
            emit({"event": "error", "error": f"unknown command {command!r}"})


async def main(args: argparse.Namespace) -> int:
    started: list[Running] = []
    failed: list[str] = []
    stop = anyio.Event()
    all_started = anyio.Event()
    limiter = anyio.CapacityLimiter(max(1, args.batch))
    t0 = time.perf_counter()
    tcp_scope = anyio.CancelScope()

    async def serve_tcp(listener: anyio.abc.Listener[anyio.abc.SocketStream]) -> None:
        with tcp_scope:
            await listener.serve(refs.tcp_server_handler)

    async with anyio.create_task_group() as tg:
        tcp_port: int | None = None
        if args.raw:
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
            tcp_port = listener.extra(anyio.abc.SocketAttribute.local_port)
            tg.start_soon(serve_tcp, listener)
        for i in range(args.hosts):
            tg.start_soon(run_one, args, i, limiter, started, failed, all_started, stop)
        if args.hosts:
            await all_started.wait()
        started.sort(key=lambda r: r.index)
        emit(
            {
                "event": "ready" if not failed else "failed",
                "pid": os.getpid(),
                "hosts": [r.info for r in started],
                "errors": failed,
                "tcp_port": tcp_port,
                "elapsed_s": time.perf_counter() - t0,
            }
        )
        if not failed:
            await serve_commands(started)
        stop.set()  # every host leaves its DiscoveryManager context: its p2pd is stopped
        tcp_scope.cancel()
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.hostproc")
    parser.add_argument("--hosts", type=int, default=1)
    parser.add_argument("--bootstrap", action="append", default=[])
    parser.add_argument("--dht", choices=("off", "server", "client", "auto"), default="off")
    parser.add_argument("--role", choices=("host", "node"), default="host")
    parser.add_argument("--raw", action="store_true", help="raw handlers on host 0 + TCP server")
    parser.add_argument("--max-jobs", type=int, default=4096)
    parser.add_argument("--max-connections", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8, help="nodes started concurrently")
    parser.add_argument("--wait-advertised", action="store_true")
    parser.add_argument("--advertise-timeout", type=float, default=60.0)
    parser.add_argument("--p2pd", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    sys.exit(anyio.run(main, parse_args()))
