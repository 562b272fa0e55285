"""A status prober in its own process, so that the host's status latency under load is not
the load generator's event loop delay: ``python -m bench.status_probe --addr MA [--p2pd P]``.

JSON lines on stdout: ``{"event": "ready"}``, then for each stdin command ``probe SECONDS``
one ``{"event": "probe", "ms": [...]}`` (a status request every 20 ms). Closing stdin stops.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time

import anyio

from fabstir_sidecar.client import FabstirClient, RetryConfig
from fabstir_sidecar.core.errors import FabstirError
from fabstir_sidecar.node.manager import DiscoveryManager


def emit(value: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def probe(client: FabstirClient, peer: str, seconds: float) -> list[float]:
    samples: list[float] = []
    stop_at = time.perf_counter() + seconds
    while time.perf_counter() < stop_at:
        t0 = time.perf_counter()
        with contextlib.suppress(FabstirError):
            await client.get_status(peer)
            samples.append((time.perf_counter() - t0) * 1000)
        await anyio.sleep(0.02)
    return samples


async def main(args: argparse.Namespace) -> int:
    options: dict[str, object] = {
        "enable_mdns": False,
        "enable_dht": False,
        "bootstrap": (),
        "connection_timeout": 10.0,
    }
    if args.p2pd:
        options["p2pd_path"] = args.p2pd
    async with DiscoveryManager(**options) as node:  # type: ignore[arg-type]
        peer = await node.connect_to_peer(args.addr)
        client = FabstirClient(node, retry=RetryConfig.none())
        await probe(client, peer, 0.3)  # warm up
        emit({"event": "ready"})
        stdin = anyio.wrap_file(sys.stdin)
        while line := (await stdin.readline()).strip():
            command, _, value = line.partition(" ")
            if command == "probe":
                emit({"event": "probe", "ms": await probe(client, peer, float(value))})
            else:
                emit({"event": "error", "error": f"unknown command {command!r}"})
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.status_probe")
    parser.add_argument("--addr", required=True)
    parser.add_argument("--p2pd", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    sys.exit(anyio.run(main, parse_args()))
