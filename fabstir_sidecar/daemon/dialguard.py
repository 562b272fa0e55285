"""Dial a peer without leaving p2pd in dial backoff while the peer is down.

go-libp2p's swarm remembers each failed dial per (peer, address) and refuses to dial that
address again for 5 s or more ("dial backoff"). DISCONNECT does not clear it, the control
protocol has no request that does, and only a new connection to the peer (ours or theirs)
resets it. A client retrying a host whose daemon restarts in 0.3 s therefore failed on
"dial backoff" for about 5 s after the host was back.

So before asking p2pd to dial a peer it has no connection to, we probe the peer's TCP
addresses ourselves (a plain TCP connect, closed at once). If none accepts, the peer is
reported unreachable without p2pd dialing at all, so p2pd records no backoff, and the first
retry after the peer is back succeeds. Addresses we cannot probe (QUIC, relays) leave the
decision to p2pd. The cost: one local LIST_PEERS request, and one TCP handshake (one round
trip) before each new connection; an existing connection costs nothing extra.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import anyio

from fabstir_sidecar.core.errors import PeerUnreachableError
from fabstir_sidecar.core.multiaddr import tcp_endpoint
from fabstir_sidecar.daemon.control import DaemonControl

__all__ = ["connect_guarded", "probe"]

PROBE_TIMEOUT = 3.0


async def _accepts(host: str, port: int, timeout: float) -> bool:
    with anyio.move_on_after(timeout):
        try:
            sock = await anyio.connect_tcp(host, port)
        except OSError:
            return False
        with contextlib.suppress(OSError):
            await sock.aclose()
        return True
    return False


async def probe(addrs: Sequence[str], timeout: float) -> bool | None:
    """True if one of ``addrs`` accepts a TCP connection, False if none does, None if some
    address cannot be probed (then only p2pd can tell)."""
    targets = [tcp_endpoint(a) for a in addrs]
    if not targets or any(t is None for t in targets):
        return None
    results: list[bool] = []

    async def one(host: str, port: int) -> None:
        results.append(await _accepts(host, port, timeout))

    async with anyio.create_task_group() as tg:
        for target in targets:
            assert target is not None
            tg.start_soon(one, *target)
    return any(results)


async def connect_guarded(
    control: DaemonControl, peer_id: str, addrs: Sequence[str], *, timeout: float
) -> None:
    """``control.connect(peer_id, addrs)``, but a peer that is down is reported as
    :class:`PeerUnreachableError` without p2pd dialing it (and so without dial backoff)."""
    connected = {p.peer_id for p in await control.list_peers()}
    if peer_id not in connected and await probe(addrs, min(timeout, PROBE_TIMEOUT)) is False:
        raise PeerUnreachableError(
            f"cannot reach peer {peer_id}: nothing accepts connections at {', '.join(addrs)} "
            "(not dialed through p2pd, so it keeps no dial backoff)",
            peer_id=peer_id,
        )
    await control.connect(peer_id, addrs, timeout=timeout)
