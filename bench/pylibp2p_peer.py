"""py-libp2p (PyPI ``libp2p``) peer for the round-trip reference. A standalone script.

Run by ``bench.rtt`` with an interpreter that has ``libp2p`` installed (it need not be the
project's: py-libp2p pins dependencies the project cannot take, see docs/benchmarks.md):

``python bench/pylibp2p_peer.py server`` prints ``{"addr": ...}`` and echoes frames on
``/bench/echo/1.0.0`` until stdin closes. ``python bench/pylibp2p_peer.py client ADDR``
connects, prints ``{"ready": true}``, then for each stdin line ``rtt N SIZE`` opens N new
streams one after the other, each carrying one SIZE-byte frame and its echo, and prints
``{"samples_ms": [...]}``. Default py-libp2p stack: TCP, Noise, yamux (as p2pd's).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import multiaddr  # type: ignore[import-not-found]
import trio  # type: ignore[import-not-found]
from libp2p import new_host  # type: ignore[import-not-found]
from libp2p.custom_types import TProtocol  # type: ignore[import-not-found]
from libp2p.peer.peerinfo import info_from_p2p_addr  # type: ignore[import-not-found]

PROTOCOL = TProtocol("/bench/echo/1.0.0")
LISTEN = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]


def emit(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def read_exactly(stream: Any, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = await stream.read(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


async def echo_handler(stream: Any) -> None:
    try:
        while True:
            header = await read_exactly(stream, 4)
            body = await read_exactly(stream, int.from_bytes(header, "big"))
            await stream.write(header + body)
    except Exception:
        pass
    finally:
        await stream.close()


async def readline() -> str:
    return await trio.to_thread.run_sync(sys.stdin.readline)


async def server() -> None:
    host = new_host(listen_addrs=LISTEN)
    async with host.run(listen_addrs=LISTEN):
        host.set_stream_handler(PROTOCOL, echo_handler)
        emit({"addr": str(host.get_addrs()[0])})
        while await readline():
            pass


async def client(addr: str) -> None:
    host = new_host(listen_addrs=LISTEN)
    async with host.run(listen_addrs=LISTEN):
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        await host.connect(info)
        emit({"ready": True})
        while True:
            line = await readline()
            if not line:
                return
            _, count, size = line.split()
            payload = int(size).to_bytes(4, "big") + b"x" * int(size)
            samples = []
            for _ in range(int(count)):
                t0 = time.perf_counter()
                stream = await host.new_stream(info.peer_id, [PROTOCOL])
                await stream.write(payload)
                await read_exactly(stream, len(payload))
                await stream.close()
                samples.append((time.perf_counter() - t0) * 1000)
            emit({"samples_ms": samples})


def main() -> None:
    logging.disable(logging.CRITICAL)
    if sys.argv[1] == "server":
        trio.run(server)
    else:
        trio.run(client, sys.argv[2])


if __name__ == "__main__":
    main()
