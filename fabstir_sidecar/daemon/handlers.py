"""The inbound side: the unix socket p2pd forwards libp2p streams to, and their dispatch.

An exception in a p2pclient handler silently stops its listener, and its listener socket
file is left behind; :class:`HandlerServer` runs each inbound stream in its own task, logs
handler errors and keeps serving, and removes its socket file on every exit path.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import anyio
import anyio.abc

from fabstir_sidecar.core.admission import AdmissionCounters, FairShare, LogSummary
from fabstir_sidecar.core.errors import StreamClosedError
from fabstir_sidecar.core.multiaddr import tcp_host_port
from fabstir_sidecar.core.peer_id import PeerId
from fabstir_sidecar.daemon import p2pd_pb2 as pb
from fabstir_sidecar.daemon.codec import read_message
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.daemon.runtime_dir import remove_socket
from fabstir_sidecar.daemon.stream import DaemonStream

__all__ = ["HandlerServer", "StreamHandler"]

log = logging.getLogger(__name__)

StreamHandler = Callable[[DaemonStream], Awaitable[None]]

_MAX_STREAM_INFO = 64 * 1024


@functools.lru_cache(maxsize=4096)
def _peer_of(raw: bytes) -> PeerId:
    """Peer ids repeat stream after stream: base58-encode each one once (profiled: 2.5%)."""
    return PeerId.from_bytes(raw)


@dataclass(slots=True)
class _Registration:
    handler: StreamHandler
    streams: FairShare
    counters: AdmissionCounters | None

    @property
    def active(self) -> int:
        return self.streams.total


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


class HandlerServer:
    """Receives the inbound streams p2pd forwards to our unix socket and dispatches them.

    One task per stream; a handler that raises is logged and the server keeps serving.
    Per-protocol and per-peer hard caps, with a fair share per peer under contention
    (``core/admission.FairShare``): a stream over them is closed unread at once (the daemon
    resets it for the remote) rather than queued without bound. These are flood defences,
    set well above the protocols' soft capacity (busy answers, in the rpc layer); resets
    are counted (``counters.reset``) and logged as one summary line per interval.
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
        self._ready = anyio.Event()
        self._resets = LogSummary(log, "inbound streams reset unread (over a hard cap)")

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
        min_share: int = 64,
        counters: AdmissionCounters | None = None,
    ) -> None:
        await self._ready.wait()
        streams = FairShare(max_concurrent, max_per_peer, min_share=min_share)
        self._handlers[protocol] = _Registration(handler, streams, counters)
        try:
            await self._control.register_handler(self.address, [protocol])
        except BaseException:
            self._handlers.pop(protocol, None)
            raise

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

    async def _read_stream_info(self, sock: anyio.abc.ByteStream) -> DaemonStream:
        """The stream p2pd announces with the StreamInfo header it sends first."""
        buffer = bytearray()
        with anyio.fail_after(self._header_timeout):
            info = await read_message(sock, buffer, pb.StreamInfo(), limit=_MAX_STREAM_INFO)
        return DaemonStream(sock, peer_id=_peer_of(info.peer), protocol=info.proto, buffered=buffer)

    async def _dispatch(self, sock: anyio.abc.ByteStream) -> None:
        try:
            stream = await self._read_stream_info(sock)
        except (Exception, TimeoutError) as exc:
            log.warning(
                "dropping inbound stream with unreadable header", extra={"error": repr(exc)}
            )
            with anyio.CancelScope(shield=True):
                await sock.aclose()
            return
        protocol = stream.protocol
        reg = self._handlers.get(protocol)
        peer = str(stream.peer_id)
        if reg is None:
            log.warning(
                "inbound stream for a protocol we do not handle",
                extra={"protocol": protocol, "peer": stream.peer_id},
            )
            await stream.aclose()
            return
        why = reg.streams.refusal(peer)
        if why is not None:
            if reg.counters is not None:
                reg.counters.reset[protocol] += 1
            self._resets.count(f"{protocol} {why}", active=reg.active)
            await stream.aclose()
            return
        reg.streams.take(peer)
        try:
            await reg.handler(stream)
        except StreamClosedError as exc:
            log.info(
                "inbound stream closed early",
                extra={"protocol": protocol, "peer": stream.peer_id, "error": str(exc)},
            )
        except Exception:
            log.exception(
                "stream handler failed; node keeps serving",
                extra={"protocol": protocol, "peer": stream.peer_id},
            )
        finally:
            reg.streams.release(peer)
            await stream.aclose()
