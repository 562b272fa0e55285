"""The references our figures are paired with, both ends.

* raw daemon path: p2pclient 0.3.0's own ``Client(control_maddr=...).stream_open`` on the
  client side; on the server side a raw handler registered through
  ``fabstir_sidecar.daemon.control.HandlerServer`` (p2pclient's own handler registration does
  not work against hivemind's p2pd, see docs/architecture.md). No Fabstir protocol layer.
* plain TCP: anyio TCP streams on loopback, the physical floor of an asyncio program.

Every reference exchange is a 4-byte big-endian length + body frame, the same framing and
the same number of bytes as the Fabstir exchange it is compared with.
"""

from __future__ import annotations

import struct
from typing import Any

import anyio
import anyio.abc
from multiaddr import Multiaddr
from p2pclient import Client
from p2pclient.libp2p_stubs.peer.id import ID

from fabstir_sidecar.core.errors import StreamClosedError
from fabstir_sidecar.daemon.stream import DaemonStream
from fabstir_sidecar.rpc.frames import read_frame
from fabstir_sidecar.wire.framing import HEADER_SIZE, parse_header
from fabstir_sidecar.wire.json_codec import MAX_MESSAGE_SIZE

ECHO = "/bench/echo/1.0.0"  # frames echoed back until EOF (new stream per request, or reused)
SINK = "/bench/sink/1.0.0"  # u64 byte count, then raw bytes; 1-byte ack at the end
FRAMED_SINK = "/bench/framed-sink/1.0.0"  # u64 frame count, frames via our codec; ack
JSON_SINK = "/bench/json-sink/1.0.0"  # u64 frame count, JSON frames via rpc.read_frame; ack
TOKENS = "/bench/tokens/1.0.0"  # u32 count + u32 frame size; that many frames, one send each

RAW_PROTOCOLS = (ECHO, SINK, FRAMED_SINK, JSON_SINK, TOKENS)
ACK = b"k"
CHUNK = 256 * 1024


def frame(size: int) -> bytes:
    """One frame whose body is ``size`` bytes."""
    return size.to_bytes(HEADER_SIZE, "big") + b"x" * size


# ------------------------------------------------------------- server (host side)


async def _drain_raw(stream: DaemonStream, total: int) -> None:
    """Read ``total`` bytes, bypassing DaemonStream's buffer copies (the raw path)."""
    got = len(stream._buffer)
    stream._buffer.clear()
    sock = stream._sock
    while got < total:
        got += len(await sock.receive(CHUNK))


async def raw_echo(stream: DaemonStream) -> None:
    while True:
        try:
            header = await stream.receive_exactly(HEADER_SIZE)
        except StreamClosedError:
            return
        body = await stream.receive_exactly(int.from_bytes(header, "big"))
        await stream.send(header + body)


async def raw_sink(stream: DaemonStream) -> None:
    (total,) = struct.unpack(">Q", await stream.receive_exactly(8))
    await _drain_raw(stream, total)
    await stream.send(ACK)
    await stream.receive_some(1)  # wait for the client to close


async def framed_sink(stream: DaemonStream) -> None:
    """Our framed codec on the receive side: header cap check, then the body."""
    (count,) = struct.unpack(">Q", await stream.receive_exactly(8))
    for _ in range(count):
        length = parse_header(await stream.receive_exactly(HEADER_SIZE), max_size=MAX_MESSAGE_SIZE)
        await stream.receive_exactly(length)
    await stream.send(ACK)
    await stream.receive_some(1)


async def json_sink(stream: DaemonStream) -> None:
    """What a Fabstir protocol does with a frame: decode and validate it as a JSON object."""
    (count,) = struct.unpack(">Q", await stream.receive_exactly(8))
    for _ in range(count):
        await read_frame(stream, max_size=MAX_MESSAGE_SIZE)
    await stream.send(ACK)
    await stream.receive_some(1)


async def tokens(stream: DaemonStream) -> None:
    count, size = struct.unpack(">II", await stream.receive_exactly(8))
    one = frame(size)
    for _ in range(count):
        await stream.send(one)
    await stream.receive_some(1)


RAW_HANDLERS = {
    ECHO: raw_echo,
    SINK: raw_sink,
    FRAMED_SINK: framed_sink,
    JSON_SINK: json_sink,
    TOKENS: tokens,
}


async def tcp_server_handler(sock: anyio.abc.SocketStream) -> None:
    """One TCP connection: the first byte picks echo (E), sink (S) or tokens (T)."""
    reader = FrameReader(sock)
    async with sock:
        try:
            mode = await reader.read_exactly(1)
            if mode == b"E":
                while True:
                    header = await reader.read_exactly(HEADER_SIZE)
                    body = await reader.read_exactly(int.from_bytes(header, "big"))
                    await sock.send(header + body)
            elif mode == b"S":
                (total,) = struct.unpack(">Q", await reader.read_exactly(8))
                await reader.skip(total)
                await sock.send(ACK)
                await reader.read_exactly(1)
            elif mode == b"T":
                count, size = struct.unpack(">II", await reader.read_exactly(8))
                one = frame(size)
                for _ in range(count):
                    await sock.send(one)
                await reader.read_exactly(1)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return


# ------------------------------------------------------------- client side


class FrameReader:
    """A buffered reader over any anyio byte stream (p2pclient's socket, TCP)."""

    def __init__(self, sock: anyio.abc.ByteReceiveStream) -> None:
        self.sock = sock
        self.buffer = bytearray()

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += await self.sock.receive(max(CHUNK, n - len(self.buffer)))
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def read_frame(self) -> bytes:
        header = await self.read_exactly(HEADER_SIZE)
        return await self.read_exactly(int.from_bytes(header, "big"))

    async def skip(self, n: int) -> None:
        got = min(n, len(self.buffer))
        del self.buffer[:got]
        while got < n:
            chunk = await self.sock.receive(CHUNK)
            got += len(chunk)
            if got > n:
                self.buffer += chunk[len(chunk) - (got - n) :]

    async def count_frames(self, count: int) -> None:
        """Consume ``count`` frames, parsing headers from the buffer (no per-frame copy)."""
        buf = self.buffer
        pos = 0
        seen = 0
        while seen < count:
            while len(buf) - pos >= HEADER_SIZE:
                end = pos + HEADER_SIZE + int.from_bytes(buf[pos : pos + HEADER_SIZE], "big")
                if end > len(buf):
                    break
                pos = end
                seen += 1
                if seen == count:
                    break
            if seen == count:
                break
            del buf[:pos]
            pos = 0
            buf += await self.sock.receive(CHUNK)
        del buf[:pos]


class RawDaemonClient:
    """p2pclient 0.3.0's ``Client`` on one node's control socket (new stream per call)."""

    def __init__(self, control_socket: str) -> None:
        self.client = Client(control_maddr=Multiaddr(f"/unix{control_socket}"))

    async def open(self, peer_id: str, protocol: str) -> anyio.abc.SocketStream:
        _, sock = await self.client.stream_open(ID.from_base58(peer_id), [protocol])
        return sock

    async def open_reader(
        self, peer_id: str, protocol: str
    ) -> tuple[anyio.abc.SocketStream, FrameReader]:
        """``open``, with a FrameReader on the stream (as ``open_tcp`` returns)."""
        sock = await self.open(peer_id, protocol)
        return sock, FrameReader(sock)

    async def echo_once(self, peer_id: str, payload: bytes) -> None:
        """Open a stream, send one frame, read the echo, close: one request, raw."""
        sock = await self.open(peer_id, ECHO)
        try:
            await sock.send(payload)
            await FrameReader(sock).read_frame()
        finally:
            await sock.aclose()


async def echo_on(reader: FrameReader, sock: anyio.abc.ByteSendStream, payload: bytes) -> None:
    """One request/response on an already open stream or connection."""
    await sock.send(payload)
    await reader.read_frame()


async def open_tcp(port: int, mode: bytes) -> tuple[anyio.abc.SocketStream, FrameReader]:
    sock = await anyio.connect_tcp("127.0.0.1", port)
    await sock.send(mode)
    return sock, FrameReader(sock)


def node_control_socket(node: Any) -> str:
    """The control socket of a node's spawned p2pd (package internals, read only)."""
    return str(node._daemon.spec.control_socket)


def node_daemon_pid(node: Any) -> int | None:
    pid = node._daemon.pid
    return int(pid) if pid is not None else None
