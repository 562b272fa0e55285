"""The requester side: open a stream, send the request, read frames within one deadline."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec

import anyio

from fabstir_sidecar.core.errors import (
    FabstirTimeoutError,
    HostBusyError,
    PeerUnreachableError,
    RemoteError,
)
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.daemon.stream import DaemonStream
from fabstir_sidecar.rpc.frames import read_buffered_frame, read_frame
from fabstir_sidecar.wire.framing import encode_json_frame
from fabstir_sidecar.wire.json_codec import MAX_MESSAGE_SIZE
from fabstir_sidecar.wire.messages import ErrorMessage

P = ParamSpec("P")


class ClientExchange:
    """An open request: read response frames with the exchange's deadline applied."""

    def __init__(
        self, stream: DaemonStream, *, max_size: int, deadline: float, timeout: float
    ) -> None:
        self._stream = stream
        self._max_size = max_size
        self._deadline = deadline
        self._timeout = timeout

    @property
    def peer_id(self) -> str:
        return self._stream.peer_id

    async def receive(self) -> dict[str, Any]:
        frame = read_buffered_frame(self._stream, max_size=self._max_size)
        if frame is not None:
            return frame
        remaining = self._deadline - anyio.current_time()
        try:
            with anyio.fail_after(max(remaining, 0.0)):
                return await read_frame(self._stream, max_size=self._max_size)
        except TimeoutError:
            raise FabstirTimeoutError(
                f"{self._stream.protocol} to {self.peer_id}: no response within "
                f"{self._timeout:.1f}s"
            ) from None

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def __aenter__(self) -> ClientExchange:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def open_request(
    control: DaemonControl,
    peer_id: str,
    protocol: str,
    request: Mapping[str, Any],
    *,
    timeout: float,
    max_size: int = MAX_MESSAGE_SIZE,
) -> ClientExchange:
    """Open a stream, write the request frame (no half-close), return the exchange."""
    frame = encode_json_frame(dict(request), max_size=max_size)  # too large: raise, no dial
    deadline = anyio.current_time() + timeout
    try:
        with anyio.fail_after(timeout):
            stream = await control.open_stream(peer_id, [protocol], timeout=timeout)
    except TimeoutError:  # nothing was sent: safe to retry, unlike a timeout after sending
        raise PeerUnreachableError(
            f"opening {protocol} to {peer_id} took over {timeout:.1f}s", peer_id=peer_id
        ) from None
    try:
        await stream.send(frame)
    except BaseException:
        await stream.aclose()
        raise
    return ClientExchange(stream, max_size=max_size, deadline=deadline, timeout=timeout)


BUSY_ERROR_CODES = frozenset({"busy", "shutting_down"})
"""``error`` codes that mean "not now": the request was refused without being acted on."""


def raise_if_error(frame: Mapping[str, Any], *, peer_id: str) -> None:
    """Turn an ``error`` frame into RemoteError (the peer's code and message), or into
    HostBusyError for ``busy`` / ``shutting_down`` (refused, not acted on: it may be sent
    again, after ``retry_after_ms`` when the peer gave it)."""
    if frame.get("type") == "error":
        err = ErrorMessage.from_json(frame)
        if err.code in BUSY_ERROR_CODES:
            wait = err.retry_after_ms
            raise HostBusyError(
                err.code,
                err.message,
                peer_id=peer_id,
                retry_after=None if wait is None else wait / 1000,
            )
        raise RemoteError(err.code, err.message, peer_id=peer_id)


def _one_frame(
    open_: Callable[P, Awaitable[ClientExchange]],
) -> Callable[P, Awaitable[dict[str, Any]]]:
    async def call(*args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        """One request, one response frame (status, discovery, inference): the arguments
        of :func:`open_request`; an ``error`` frame raises (:func:`raise_if_error`)."""
        async with await open_(*args, **kwargs) as exchange:
            frame = await exchange.receive()
        raise_if_error(frame, peer_id=exchange.peer_id)
        return frame

    return call


call = _one_frame(open_request)
