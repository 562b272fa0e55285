"""The adapter between fabstir_sidecar and the p2pd control protocol.

This is the only module that imports ``p2pclient``. We use its protobuf definitions and
peer-ID type, and do the socket work ourselves, because p2pclient 0.3.0 as published does
not work against the p2pd that ships in hivemind 1.1.12 for inbound streams, and has sharp
edges elsewhere. Each defect is fixed here, once, and tested in tests/unit/test_control.py
and the integration tests:

1. ``StreamHandlerRequest.balanced`` is *required* by hivemind's p2pd fork and absent from
   p2pclient's protobuf: we append field 3 to the encoded request (``_handler_request``).
2. multiaddr 0.2.0 encodes ``/unix/<path>`` without the path's leading slash, so the daemon
   would dial a relative path for our handler socket: ``unix_multiaddr_bytes`` encodes it
   as go-multiaddr does.
3. An exception in a p2pclient handler silently stops its listener: our ``HandlerServer``
   runs each inbound stream in its own task, logs handler errors and keeps serving.
4. ``Client.close()`` without ``listen()`` raises, and listener socket files are left
   behind: ``HandlerServer.serve`` owns its socket file and removes it on every exit path.
5. p2pclient writes varints one byte per ``send`` and reads them one byte per ``receive``:
   we send a request in one write and parse responses from a buffer, which matters on the
   per-request hot path (one STREAM_OPEN per message).

Daemon error strings are mapped into the ``fabstir_sidecar.errors`` tree by
``classify_daemon_error``; callers never see ``p2pclient`` or socket exceptions.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import anyio
import anyio.abc
import base58
from multiaddr import Multiaddr
from p2pclient.libp2p_stubs.peer.id import ID
from p2pclient.pb import p2pd_pb2 as pb

from ..errors import (
    ConfigError,
    ControlError,
    DaemonUnavailableError,
    FabstirError,
    FabstirTimeoutError,
    InvalidPeerIdError,
    PeerUnreachableError,
    ProtocolNotSupportedError,
    StreamClosedError,
)
from ..wire.keys import encode_uvarint
from .runtime_dir import remove_socket
from .stream import DaemonStream

log = logging.getLogger(__name__)

StreamHandler = Callable[[DaemonStream], Awaitable[None]]
Gate = Callable[[], None]

_P_UNIX = 400
_MAX_CONTROL_MESSAGE = 4 * 1024 * 1024  # p2pd's own persistentConnMaxMsgSize default


# ------------------------------------------------------------------ pure encoders


# One varint implementation for the package (multiformats unsigned LEB128).
encode_varint = encode_uvarint


def decode_varint(buf: bytes | bytearray, *, max_bytes: int = 9) -> tuple[int, int] | None:
    """``(value, bytes_used)``, or None if ``buf`` holds only part of a varint."""
    value = 0
    for i, byte in enumerate(buf[:max_bytes]):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, i + 1
    if len(buf) >= max_bytes:
        raise ControlError("malformed varint from p2pd control socket")
    return None


def unix_multiaddr_bytes(path: Path | str) -> bytes:
    """Binary ``/unix/<absolute path>`` as go-multiaddr encodes it (leading slash kept)."""
    raw = str(path).encode()
    if not raw.startswith(b"/"):
        raise ValueError(f"unix socket path must be absolute: {path}")
    return encode_varint(_P_UNIX) + encode_varint(len(raw)) + raw


def peer_id_to_bytes(peer_id: str, *, name: str = "peer_id") -> bytes:
    """Validate a base58 peer ID string (identity or sha2-256 multihash) and decode it."""
    try:
        raw = base58.b58decode(peer_id.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidPeerIdError(name, peer_id, "not base58") from exc
    ok = len(raw) >= 2 and (
        (raw[0] == 0x00 and 1 <= raw[1] <= 42 and raw[1] == len(raw) - 2)  # inlined key
        or (raw[0] == 0x12 and raw[1] == 32 and len(raw) == 34)  # sha2-256 (RSA keys)
    )
    if not ok:
        raise InvalidPeerIdError(name, peer_id, "not a libp2p peer ID multihash")
    return bytes(raw)


def peer_id_from_bytes(raw: bytes) -> str:
    return str(ID(raw).to_base58())


def multiaddr_to_bytes(addr: str) -> bytes:
    if addr.startswith("/unix/"):
        return unix_multiaddr_bytes(addr[len("/unix") :])
    return bytes(Multiaddr(addr).to_bytes())


def tcp_host_port(addr: str) -> tuple[str, int] | None:
    """``("1.2.3.4", 5)`` for ``/ip4/1.2.3.4/tcp/5`` (or ``/ip6/...``); None for other shapes."""
    try:
        parts = str(Multiaddr(addr)).split("/")
    except Exception:
        return None
    if len(parts) != 5 or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp":
        return None
    return parts[2], int(parts[4])


def handler_addr_for(control_addr: str) -> str | None:
    """Where to listen for inbound streams so that the daemon at ``control_addr`` reaches us.

    None for a unix control socket (the caller keeps its private unix socket). For TCP: a free
    port on the local address that routes to the daemon, which is loopback for a daemon in our
    own network namespace (compose ``network_mode: service:p2pd``) and our interface on the
    shared network for a daemon in another container.
    """
    target = tcp_host_port(control_addr)
    if target is None:
        return None
    host, port = target
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:  # no packet is sent
        probe.connect((host, port))
        local = str(probe.getsockname()[0])
    return f"/{'ip6' if family == socket.AF_INET6 else 'ip4'}/{local}/tcp/0"


def multiaddr_from_bytes(raw: bytes) -> str | None:
    try:
        return str(Multiaddr(raw))
    except Exception:  # an address kind multiaddr 0.2.0 does not know: skip it
        log.debug("skipping undecodable multiaddr from p2pd", extra={"raw": raw.hex()})
        return None


def _frame(message_bytes: bytes) -> bytes:
    return encode_varint(len(message_bytes)) + message_bytes


def _nested(field_number: int, payload: bytes) -> bytes:
    return encode_varint(field_number << 3 | 2) + encode_varint(len(payload)) + payload


def _handler_request(
    request_type: int,
    field_number: int,
    addr: bytes,
    protocols: Sequence[str],
    *,
    balanced: bool | None,
) -> bytes:
    """Encode STREAM_HANDLER / REMOVE_STREAM_HANDLER requests of hivemind's p2pd fork."""
    inner = pb.StreamHandlerRequest(addr=addr, proto=list(protocols)).SerializeToString()
    if balanced is not None:
        inner += encode_varint(3 << 3 | 0) + (b"\x01" if balanced else b"\x00")
    return encode_varint(1 << 3 | 0) + encode_varint(request_type) + _nested(field_number, inner)


async def read_delimited(
    sock: anyio.abc.ByteStream, buffer: bytearray, *, limit: int = _MAX_CONTROL_MESSAGE
) -> bytes:
    """One varint-length-prefixed protobuf message from ``sock``; ``buffer`` keeps the rest.

    Raises ``anyio.EndOfStream`` if the socket ends before a whole message arrived.
    """
    while True:
        decoded = decode_varint(buffer)
        if decoded is not None:
            size, used = decoded
            if size > limit:
                raise ControlError(f"p2pd control message too large ({size} bytes)")
            if len(buffer) >= used + size:
                message = bytes(buffer[used : used + size])
                del buffer[: used + size]
                return message
        chunk = await sock.receive(65536)
        buffer += chunk


# ------------------------------------------------------------ daemon error mapping

_UNREACHABLE = re.compile(
    r"failed to dial|no addresses|dial backoff|connection refused|no route|"
    r"context deadline exceeded|i/o timeout|all dials failed|no good addresses|"
    r"peer id mismatch|failed to negotiate security|cannot connect|"
    r"failed to find any peer in table|routing: not found|dial to self",
    re.IGNORECASE,
)
_UNSUPPORTED = re.compile(r"protocols? not supported|protocol negotiation failed", re.IGNORECASE)


def classify_daemon_error(
    message: str, *, peer_id: str | None = None, protocols: Sequence[str] = ()
) -> FabstirError:
    """Map a p2pd ErrorResponse text into the exception tree (pure; unit tested)."""
    # go-libp2p's dial errors span lines ("all dials failed\n  * [addr] reason"): one line.
    message = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    if _UNSUPPORTED.search(message):
        proto = ", ".join(protocols)
        return ProtocolNotSupportedError(
            f"peer {peer_id} does not support {proto}: {message}",
            peer_id=peer_id,
            protocol=proto,
        )
    if _UNREACHABLE.search(message):
        return PeerUnreachableError(f"cannot reach peer {peer_id}: {message}", peer_id=peer_id)
    return ControlError(f"p2pd refused the request: {message}")


# ------------------------------------------------------------------- the client


@dataclass(frozen=True, slots=True)
class PeerInfo:
    peer_id: str
    addrs: tuple[str, ...]


def _peer_info(raw: pb.PeerInfo) -> PeerInfo:
    return PeerInfo(
        peer_id_from_bytes(raw.id),
        tuple(a for a in map(multiaddr_from_bytes, raw.addrs) if a),
    )


def _no_gate() -> None:
    return None


class DaemonControl:
    """Control-socket client: one short unix (or TCP) connection per request, as p2pd wants.

    ``gate`` is called before every request; the supervisor makes it raise
    ``DaemonUnavailableError`` while the daemon is down, so callers fail fast instead of
    waiting on a socket nobody listens on.
    """

    def __init__(
        self, control_addr: str, *, gate: Gate = _no_gate, request_timeout: float = 30.0
    ) -> None:
        self.control_addr = control_addr
        self._gate = gate
        self.request_timeout = request_timeout
        self._unix_path: str | None = None
        self._tcp: tuple[str, int] | None = None
        if control_addr.startswith("/unix/"):
            self._unix_path = control_addr[len("/unix") :]
        else:
            self._tcp = tcp_host_port(control_addr)
            if self._tcp is None:
                raise ConfigError(
                    "control_addr",
                    control_addr,
                    "expected /unix/<path>, /ip4/<ip>/tcp/<port> or /ip6/<ip>/tcp/<port>",
                )

    async def _open(self) -> anyio.abc.ByteStream:
        self._gate()
        try:
            if self._unix_path is not None:
                return await anyio.connect_unix(self._unix_path)
            assert self._tcp is not None
            return await anyio.connect_tcp(*self._tcp)
        except OSError as exc:
            raise DaemonUnavailableError(
                f"cannot reach p2pd control socket {self.control_addr}: {exc.strerror or exc}"
            ) from exc

    async def _exchange(
        self, request: bytes
    ) -> tuple[pb.Response, anyio.abc.ByteStream, bytearray]:
        """Send one request, read one response; returns the still-open socket and extra bytes."""
        sock = await self._open()
        buffer = bytearray()
        try:
            await sock.send(request)
            try:
                raw = await read_delimited(sock, buffer)
            except anyio.EndOfStream:
                raise DaemonUnavailableError(
                    "p2pd closed the control connection without answering"
                ) from None
            response = pb.Response()
            response.ParseFromString(raw)
            return response, sock, buffer
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await sock.aclose()
            if isinstance(exc, (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)):
                raise DaemonUnavailableError(f"p2pd control connection broke: {exc}") from exc
            raise

    async def _call(
        self,
        request: bytes,
        *,
        peer_id: str | None = None,
        protocols: Sequence[str] = (),
        timeout: float | None = None,
    ) -> pb.Response:
        limit = self.request_timeout if timeout is None else timeout
        try:
            with anyio.fail_after(limit):
                response, sock, _ = await self._exchange(request)
                await sock.aclose()
        except TimeoutError:
            raise FabstirTimeoutError(f"p2pd did not answer within {limit:.1f}s") from None
        if response.type == pb.Response.ERROR:
            raise classify_daemon_error(response.error.msg, peer_id=peer_id, protocols=protocols)
        return response

    # -- requests --------------------------------------------------------------

    async def identify(self) -> tuple[str, tuple[str, ...]]:
        req = pb.Request(type=pb.Request.IDENTIFY).SerializeToString()
        resp = await self._call(_frame(req))
        addrs = tuple(a for a in map(multiaddr_from_bytes, resp.identify.addrs) if a)
        return peer_id_from_bytes(resp.identify.id), addrs

    async def connect(
        self, peer_id: str, addrs: Iterable[str], *, timeout: float | None = None
    ) -> None:
        raw_id = peer_id_to_bytes(peer_id)
        req = pb.Request(
            type=pb.Request.CONNECT,
            connect=pb.ConnectRequest(
                peer=raw_id,
                addrs=[multiaddr_to_bytes(a) for a in addrs],
                timeout=max(1, int(timeout or self.request_timeout)),
            ),
        ).SerializeToString()
        await self._call(_frame(req), peer_id=peer_id, timeout=timeout)

    async def disconnect(self, peer_id: str) -> None:
        req = pb.Request(
            type=pb.Request.DISCONNECT,
            disconnect=pb.DisconnectRequest(peer=peer_id_to_bytes(peer_id)),
        ).SerializeToString()
        await self._call(_frame(req), peer_id=peer_id)

    async def list_peers(self) -> list[PeerInfo]:
        req = pb.Request(type=pb.Request.LIST_PEERS).SerializeToString()
        resp = await self._call(_frame(req))
        return [
            PeerInfo(
                peer_id_from_bytes(p.id), tuple(a for a in map(multiaddr_from_bytes, p.addrs) if a)
            )
            for p in resp.peers
        ]

    async def open_stream(
        self, peer_id: str, protocols: Sequence[str], *, timeout: float | None = None
    ) -> DaemonStream:
        """Open a libp2p stream; dials the peer if needed (known addresses only)."""
        raw_id = peer_id_to_bytes(peer_id)
        limit = self.request_timeout if timeout is None else timeout
        req = pb.Request(
            type=pb.Request.STREAM_OPEN,
            streamOpen=pb.StreamOpenRequest(
                peer=raw_id, proto=list(protocols), timeout=max(1, int(limit))
            ),
        ).SerializeToString()
        try:
            with anyio.fail_after(limit):
                response, sock, extra = await self._exchange(_frame(req))
        except TimeoutError:
            raise FabstirTimeoutError(
                f"opening {', '.join(protocols)} to {peer_id} took over {limit:.1f}s"
            ) from None
        if response.type == pb.Response.ERROR:
            await sock.aclose()
            raise classify_daemon_error(response.error.msg, peer_id=peer_id, protocols=protocols)
        return DaemonStream(
            sock, peer_id=peer_id, protocol=response.streamInfo.proto, buffered=extra
        )

    # -- DHT ---------------------------------------------------------------------

    async def dht_provide(self, cid: bytes, *, timeout: float) -> None:
        """Announce that we provide ``cid``. Slow on small networks (5-20 s): run it in the
        background, never on a request path."""
        req = pb.Request(
            type=pb.Request.DHT,
            dht=pb.DHTRequest(type=pb.DHTRequest.PROVIDE, cid=cid, timeout=max(1, int(timeout))),
        ).SerializeToString()
        await self._call(_frame(req), timeout=timeout)

    async def dht_find_providers(
        self, cid: bytes, *, count: int, timeout: float
    ) -> AsyncGenerator[PeerInfo, None]:
        """Yield providers of ``cid`` as the daemon streams them, for at most ``timeout`` s.

        Ask for the ``count`` you need: with fewer providers on the network the daemon keeps
        searching until its timeout, so results are read as they come and the wait is ours.
        """
        req = pb.Request(
            type=pb.Request.DHT,
            dht=pb.DHTRequest(
                type=pb.DHTRequest.FIND_PROVIDERS,
                cid=cid,
                count=count,
                timeout=max(1, int(timeout)),
            ),
        ).SerializeToString()
        deadline = anyio.current_time() + timeout
        with anyio.move_on_after(timeout) as opening:
            response, sock, buffer = await self._exchange(_frame(req))
        if opening.cancelled_caught:
            return
        try:
            if response.type == pb.Response.ERROR:
                raise classify_daemon_error(response.error.msg)
            if response.dht.type == pb.DHTResponse.VALUE:
                yield _peer_info(response.dht.peer)
                return
            while True:
                message = pb.DHTResponse()
                # The deadline scope never spans the ``yield``: a cancel scope must not be
                # left open across a suspension of an async generator.
                with anyio.move_on_after(max(0.0, deadline - anyio.current_time())) as waiting:
                    try:
                        message.ParseFromString(await read_delimited(sock, buffer))
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        return
                if waiting.cancelled_caught or message.type == pb.DHTResponse.END:
                    return  # our deadline passed, or the daemon has no more
                yield _peer_info(message.peer)
        finally:
            with anyio.CancelScope(shield=True):
                await sock.aclose()

    async def dht_closest_peers(self, key: bytes, *, timeout: float) -> list[str]:
        """Peer IDs closest to ``key`` in the DHT (at most 20): a view of the routing table."""
        req = pb.Request(
            type=pb.Request.DHT,
            dht=pb.DHTRequest(
                type=pb.DHTRequest.GET_CLOSEST_PEERS, key=key, timeout=max(1, int(timeout))
            ),
        ).SerializeToString()
        found: list[str] = []
        with anyio.move_on_after(timeout):
            response, sock, buffer = await self._exchange(_frame(req))
            try:
                if response.type == pb.Response.ERROR:
                    raise classify_daemon_error(response.error.msg)
                while True:
                    message = pb.DHTResponse()
                    try:
                        message.ParseFromString(await read_delimited(sock, buffer))
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        break
                    if message.type == pb.DHTResponse.END:
                        break
                    if message.type == pb.DHTResponse.VALUE:
                        found.append(peer_id_from_bytes(message.value))
            finally:
                with anyio.CancelScope(shield=True):
                    await sock.aclose()
        return found

    async def register_handler(self, handler: Path | str, protocols: Sequence[str]) -> None:
        """``handler``: our unix socket's path, or the multiaddr the daemon dials."""
        req = _handler_request(
            pb.Request.STREAM_HANDLER, 4, _handler_bytes(handler), protocols, balanced=False
        )
        await self._call(_frame(req))

    async def unregister_handler(self, handler: Path | str, protocols: Sequence[str]) -> None:
        req = _handler_request(10, 9, _handler_bytes(handler), protocols, balanced=None)
        await self._call(_frame(req))


def _handler_bytes(handler: Path | str) -> bytes:
    return (
        unix_multiaddr_bytes(handler) if isinstance(handler, Path) else multiaddr_to_bytes(handler)
    )


# ------------------------------------------------------------ inbound streams


@dataclass(slots=True)
class _Registration:
    handler: StreamHandler
    max_concurrent: int
    max_per_peer: int
    active: int = 0


class HandlerServer:
    """Receives the inbound streams p2pd forwards to our unix socket and dispatches them.

    One task per stream; a handler that raises is logged and the server keeps serving.
    Per-protocol and per-peer concurrency caps: a stream over a cap is closed at once (the
    daemon resets it for the remote) rather than queued without bound.
    """

    def __init__(
        self, control: DaemonControl, socket_path: Path | str, *, header_timeout: float = 10.0
    ) -> None:
        """``socket_path``: a unix socket path, or a ``/ip4/<ip>/tcp/<port>`` multiaddr to
        listen on (port 0: any; ``address`` then has the real port once serving)."""
        self._control = control
        self._tcp = tcp_host_port(socket_path) if isinstance(socket_path, str) else None
        if isinstance(socket_path, str) and self._tcp is None:
            socket_path = Path(socket_path.removeprefix("/unix"))
        self.socket_path: Path | None = None if self._tcp else Path(socket_path)
        self.address: Path | str = self.socket_path or str(socket_path)
        self._header_timeout = header_timeout
        self._handlers: dict[str, _Registration] = {}
        self._per_peer: dict[tuple[str, str], int] = {}
        self._ready = anyio.Event()

    @property
    def protocols(self) -> list[str]:
        return list(self._handlers)

    async def add(
        self,
        protocol: str,
        handler: StreamHandler,
        *,
        max_concurrent: int = 256,
        max_per_peer: int = 64,
    ) -> None:
        await self._ready.wait()
        self._handlers[protocol] = _Registration(handler, max_concurrent, max_per_peer)
        try:
            await self._control.register_handler(self.address, [protocol])
        except BaseException:
            self._handlers.pop(protocol, None)
            raise

    async def remove(self, protocol: str) -> None:
        if self._handlers.pop(protocol, None) is not None:
            await self._control.unregister_handler(self.address, [protocol])

    async def register_all(self) -> None:
        """Re-announce every handler (after the daemon restarted and forgot them)."""
        if self._handlers:
            await self._control.register_handler(self.address, list(self._handlers))

    async def unregister_all(self) -> None:
        if self._handlers:
            await self._control.unregister_handler(self.address, list(self._handlers))

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        listener: anyio.abc.SocketListener
        if self._tcp is not None:
            host, port = self._tcp
            tcp = await anyio.create_tcp_listener(local_host=host, local_port=port)
            listener = cast(anyio.abc.SocketListener, tcp.listeners[0])  # an IP: one listener
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            self.address = f"/{'ip6' if ':' in host else 'ip4'}/{host}/tcp/{port}"
        else:
            assert self.socket_path is not None
            remove_socket(self.socket_path)
            listener = await anyio.create_unix_listener(self.socket_path)
        try:
            async with listener, anyio.create_task_group() as tg:
                self._ready.set()
                task_status.started()
                while True:
                    try:
                        sock = await listener.accept()
                    except (anyio.BrokenResourceError, OSError) as exc:
                        log.warning("handler socket accept failed", extra={"error": str(exc)})
                        await anyio.sleep(0.05)
                        continue
                    tg.start_soon(self._dispatch, sock)
        finally:
            if self.socket_path is not None:
                remove_socket(self.socket_path)

    async def _read_stream_info(
        self, sock: anyio.abc.ByteStream
    ) -> tuple[pb.StreamInfo, bytearray]:
        buffer = bytearray()
        with anyio.fail_after(self._header_timeout):
            raw = await read_delimited(sock, buffer, limit=64 * 1024)
        info = pb.StreamInfo()
        info.ParseFromString(raw)
        return info, buffer

    async def _dispatch(self, sock: anyio.abc.ByteStream) -> None:
        try:
            info, extra = await self._read_stream_info(sock)
        except (Exception, TimeoutError) as exc:
            log.warning(
                "dropping inbound stream with unreadable header", extra={"error": repr(exc)}
            )
            with anyio.CancelScope(shield=True):
                await sock.aclose()
            return
        stream = DaemonStream(
            sock, peer_id=peer_id_from_bytes(info.peer), protocol=info.proto, buffered=extra
        )
        reg = self._handlers.get(info.proto)
        key = (info.proto, stream.peer_id)
        if reg is None:
            log.warning(
                "inbound stream for a protocol we do not handle",
                extra={"protocol": info.proto, "peer": stream.peer_id},
            )
            await stream.aclose()
            return
        if reg.active >= reg.max_concurrent or self._per_peer.get(key, 0) >= reg.max_per_peer:
            log.warning(
                "concurrency limit reached, resetting inbound stream",
                extra={"protocol": info.proto, "peer": stream.peer_id, "active": reg.active},
            )
            await stream.aclose()
            return
        reg.active += 1
        self._per_peer[key] = self._per_peer.get(key, 0) + 1
        try:
            await reg.handler(stream)
        except StreamClosedError as exc:
            log.info(
                "inbound stream closed early",
                extra={"protocol": info.proto, "peer": stream.peer_id, "error": str(exc)},
            )
        except Exception:
            log.exception(
                "stream handler failed; node keeps serving",
                extra={"protocol": info.proto, "peer": stream.peer_id},
            )
        finally:
            reg.active -= 1
            left = self._per_peer[key] - 1
            if left:
                self._per_peer[key] = left
            else:
                del self._per_peer[key]
            await stream.aclose()
