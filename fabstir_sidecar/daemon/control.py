"""The control-socket client of p2pd: one request, one short connection.

p2pclient 0.3.0 as published does not work against the p2pd of hivemind 1.1.12 for inbound
streams and has sharp edges elsewhere (its ``Client.close()`` raises without ``listen()``),
so we speak the protocol ourselves, with messages generated from the fork's schema
(:mod:`~fabstir_sidecar.daemon.p2pd_pb2`). The bytes are in
:mod:`~fabstir_sidecar.daemon.codec`, the daemon's error texts in
:mod:`~fabstir_sidecar.daemon.errors`, inbound streams in
:mod:`~fabstir_sidecar.daemon.handlers`. Callers never see protobuf or socket exceptions.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from pathlib import Path

import anyio
import anyio.abc

from fabstir_sidecar.core.defaults import DEFAULT_TIMEOUT
from fabstir_sidecar.core.errors import (
    ConfigError,
    DaemonUnavailableError,
    FabstirTimeoutError,
)
from fabstir_sidecar.core.multiaddr import PeerAddrs, tcp_host_port
from fabstir_sidecar.core.peer_id import PeerId
from fabstir_sidecar.daemon import p2pd_pb2 as pb
from fabstir_sidecar.daemon.codec import (
    addrs_from_bytes,
    handler_addr_bytes,
    multiaddr_to_bytes,
    peer_addrs,
    read_message,
    request,
)
from fabstir_sidecar.daemon.errors import classify_daemon_error
from fabstir_sidecar.daemon.stream import DaemonStream

__all__ = ["DaemonControl", "Gate"]

Gate = Callable[[], None]


def _no_gate() -> None:
    return None


class DaemonControl:
    """Control-socket client: one short unix (or TCP) connection per request, as p2pd wants.

    ``gate`` is called before every request; the supervisor makes it raise
    ``DaemonUnavailableError`` while the daemon is down, so callers fail fast instead of
    waiting on a socket nobody listens on.
    """

    def __init__(
        self, control_addr: str, *, gate: Gate = _no_gate, request_timeout: float = DEFAULT_TIMEOUT
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

    async def _exchange(self, req: bytes) -> tuple[pb.Response, anyio.abc.ByteStream, bytearray]:
        """Send one request, read one response; returns the still-open socket and extra bytes."""
        sock = await self._open()
        buffer = bytearray()
        try:
            await sock.send(req)
            try:
                response = await read_message(sock, buffer, pb.Response())
            except anyio.EndOfStream:
                raise DaemonUnavailableError(
                    "p2pd closed the control connection without answering"
                ) from None
            return response, sock, buffer
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await sock.aclose()
            if isinstance(exc, (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)):
                raise DaemonUnavailableError(f"p2pd control connection broke: {exc}") from exc
            raise

    async def _call(
        self,
        req: bytes,
        *,
        peer_id: str | None = None,
        protocols: Sequence[str] = (),
        timeout: float | None = None,
    ) -> pb.Response:
        limit = self.request_timeout if timeout is None else timeout
        try:
            with anyio.fail_after(limit):
                response, sock, _ = await self._exchange(req)
                await sock.aclose()
        except TimeoutError:
            raise FabstirTimeoutError(f"p2pd did not answer within {limit:.1f}s") from None
        if response.type == pb.Response.ERROR:
            raise classify_daemon_error(response.error.msg, peer_id=peer_id, protocols=protocols)
        return response

    # -- requests --------------------------------------------------------------

    async def identify(self) -> tuple[PeerId, tuple[str, ...]]:
        resp = await self._call(request(type=pb.Request.IDENTIFY))
        return PeerId.from_bytes(resp.identify.id), addrs_from_bytes(resp.identify.addrs)

    async def connect(
        self, peer_id: str, addrs: Iterable[str], *, timeout: float | None = None
    ) -> None:
        connect = pb.ConnectRequest(
            peer=PeerId.parse(peer_id).to_bytes(),
            addrs=[multiaddr_to_bytes(a) for a in addrs],
            timeout=max(1, int(timeout or self.request_timeout)),
        )
        req = request(type=pb.Request.CONNECT, connect=connect)
        await self._call(req, peer_id=peer_id, timeout=timeout)

    async def disconnect(self, peer_id: str) -> None:
        disconnect = pb.DisconnectRequest(peer=PeerId.parse(peer_id).to_bytes())
        await self._call(
            request(type=pb.Request.DISCONNECT, disconnect=disconnect), peer_id=peer_id
        )

    async def list_peers(self) -> list[PeerAddrs]:
        resp = await self._call(request(type=pb.Request.LIST_PEERS))
        return [peer_addrs(p) for p in resp.peers]

    async def open_stream(
        self, peer_id: str, protocols: Sequence[str], *, timeout: float | None = None
    ) -> DaemonStream:
        """Open a libp2p stream; dials the peer if needed (known addresses only)."""
        limit = self.request_timeout if timeout is None else timeout
        open_req = pb.StreamOpenRequest(
            peer=PeerId.parse(peer_id).to_bytes(), proto=list(protocols), timeout=max(1, int(limit))
        )
        try:
            with anyio.fail_after(limit):
                response, sock, extra = await self._exchange(
                    request(type=pb.Request.STREAM_OPEN, streamOpen=open_req)
                )
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
        dht = pb.DHTRequest(type=pb.DHTRequest.PROVIDE, cid=cid, timeout=max(1, int(timeout)))
        await self._call(request(type=pb.Request.DHT, dht=dht), timeout=timeout)

    async def dht_find_providers(
        self, cid: bytes, *, count: int, timeout: float
    ) -> AsyncGenerator[PeerAddrs, None]:
        """Yield providers of ``cid`` as the daemon streams them, for at most ``timeout`` s.

        Ask for the ``count`` you need: with fewer providers on the network the daemon keeps
        searching until its timeout, so results are read as they come and the wait is ours.
        """
        dht = pb.DHTRequest(
            type=pb.DHTRequest.FIND_PROVIDERS, cid=cid, count=count, timeout=max(1, int(timeout))
        )
        deadline = anyio.current_time() + timeout
        with anyio.move_on_after(timeout) as opening:
            response, sock, buffer = await self._exchange(request(type=pb.Request.DHT, dht=dht))
        if opening.cancelled_caught:
            return
        try:
            if response.type == pb.Response.ERROR:
                raise classify_daemon_error(response.error.msg)
            if response.dht.type == pb.DHTResponse.VALUE:
                yield peer_addrs(response.dht.peer)
                return
            while True:
                # The deadline scope never spans the ``yield``: a cancel scope must not be
                # left open across a suspension of an async generator.
                with anyio.move_on_after(max(0.0, deadline - anyio.current_time())) as waiting:
                    message = await _next_dht_value(sock, buffer)
                if waiting.cancelled_caught or message is None:
                    return  # our deadline passed, or the daemon has no more
                yield peer_addrs(message.peer)
        finally:
            with anyio.CancelScope(shield=True):
                await sock.aclose()

    async def dht_closest_peers(self, key: bytes, *, timeout: float) -> list[PeerId]:
        """Peer IDs closest to ``key`` in the DHT (at most 20): a view of the routing table."""
        dht = pb.DHTRequest(
            type=pb.DHTRequest.GET_CLOSEST_PEERS, key=key, timeout=max(1, int(timeout))
        )
        found: list[PeerId] = []
        with anyio.move_on_after(timeout):
            response, sock, buffer = await self._exchange(request(type=pb.Request.DHT, dht=dht))
            try:
                if response.type == pb.Response.ERROR:
                    raise classify_daemon_error(response.error.msg)
                while (message := await _next_dht_value(sock, buffer)) is not None:
                    found.append(PeerId.from_bytes(message.value))
            finally:
                with anyio.CancelScope(shield=True):
                    await sock.aclose()
        return found

    # -- inbound stream handlers (served by daemon.handlers.HandlerServer) ----------

    async def register_handler(self, address: Path | str, protocols: Sequence[str]) -> None:
        """``address``: our unix socket's path, or the multiaddr the daemon dials."""
        handler = pb.StreamHandlerRequest(
            addr=handler_addr_bytes(address), proto=list(protocols), balanced=False
        )
        await self._call(request(type=pb.Request.STREAM_HANDLER, streamHandler=handler))

    async def unregister_handler(self, address: Path | str, protocols: Sequence[str]) -> None:
        remove = pb.RemoveStreamHandlerRequest(
            addr=handler_addr_bytes(address), proto=list(protocols)
        )
        req = request(type=pb.Request.REMOVE_STREAM_HANDLER, removeStreamHandler=remove)
        await self._call(req)


async def _next_dht_value(sock: anyio.abc.ByteStream, buffer: bytearray) -> pb.DHTResponse | None:
    """The next VALUE of a streamed DHT answer; None at its END or when the socket ends."""
    while True:
        try:
            message = await read_message(sock, buffer, pb.DHTResponse())
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            return None
        if message.type == pb.DHTResponse.END:
            return None
        if message.type == pb.DHTResponse.VALUE:
            return message
