"""Where host candidates come from: DHT providers, peer-exchange hints, the routing table.

Each source returns ``peer id -> addresses`` (possibly empty: the daemon may know them) and
never raises for a peer that fails: a lookup skips what it cannot reach.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence

import anyio

from fabstir_sidecar.core.errors import FabstirError, PeerUnreachableError
from fabstir_sidecar.core.multiaddr import strip_peer
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.discovery.config import FinderConfig
from fabstir_sidecar.protocols.discovery import request_discovery
from fabstir_sidecar.wire.keys import ANY_HOST_KEY, model_cid

log = logging.getLogger(__name__)

Found = dict[str, tuple[str, ...]]


def exchange_order(bootstrap: Sequence[str], connected: Sequence[str]) -> list[str]:
    """Whom to ask for discovery hints, best first: connected bootstrap peers, other connected
    peers, then bootstrap peers we are not connected to (their dial failed: last resort)."""
    linked = set(connected)
    ordered = [p for p in bootstrap if p in linked]
    ordered += [p for p in connected if p not in ordered]
    ordered += [p for p in bootstrap if p not in linked]
    return list(dict.fromkeys(ordered))


async def wait_for_routing_table(control: DaemonControl, own_key: bytes, timeout: float) -> bool:
    """Wait at most ``timeout`` until the DHT routing table has a peer (GET_CLOSEST_PEERS
    succeeds; p2pd says "failed to find any peer in table" while it is empty).
    True when it has one; False on timeout or another DHT error."""
    with anyio.move_on_after(timeout):
        while True:
            try:
                await control.dht_closest_peers(own_key, timeout=timeout)
            except PeerUnreachableError:
                await anyio.sleep(0.05)
                continue
            except FabstirError:
                return False
            return True
    return False


async def dht_providers(
    control: DaemonControl, models: Sequence[str], settings: FinderConfig
) -> Found:
    """Providers of each model's key, or of ``llm-inference`` when no model is asked."""
    found: Found = {}

    async def lookup(key: str) -> None:
        try:
            async for peer in control.dht_find_providers(
                model_cid(key), count=settings.dht_count, timeout=settings.dht_timeout
            ):
                found.setdefault(peer.peer_id, peer.addrs)
        except FabstirError as exc:
            log.info("DHT provider lookup failed", extra={"key": key, "error": str(exc)})

    async with anyio.create_task_group() as tg:
        for key in list(models) or [ANY_HOST_KEY]:
            tg.start_soon(lookup, key)
    return found


async def exchange_hints(
    control: DaemonControl, models: Sequence[str], asked: Sequence[str], settings: FinderConfig
) -> Found:
    """Ask the first ``exchange_peers`` of ``asked`` (see :func:`exchange_order`)."""
    hints: Found = {}

    async def ask(peer_id: str) -> None:
        with anyio.move_on_after(settings.status_timeout):
            try:
                answer = await request_discovery(
                    control, peer_id, models=models or None, timeout=settings.status_timeout
                )
            except FabstirError:
                return
            for info in answer:
                hints.setdefault(info.peer_id, tuple(strip_peer(a) for a in info.addrs))

    async with anyio.create_task_group() as tg:
        for peer_id in asked[: settings.exchange_peers]:
            tg.start_soon(ask, peer_id)
    return hints


async def both(first: Awaitable[Found], second: Awaitable[Found]) -> tuple[Found, Found]:
    """Run two source coroutines concurrently."""
    results: list[Found] = [{}, {}]

    async def run(i: int, coro: Awaitable[Found]) -> None:
        results[i] = await coro

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, 0, first)
        tg.start_soon(run, 1, second)
    return results[0], results[1]
