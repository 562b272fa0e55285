"""Connection upkeep: dial bootstrap peers, retry the ones that failed with backoff, and
re-dial every peer the node knows when no connection is left."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence

import anyio
from tenacity import AsyncRetrying, retry_if_result, wait_exponential

from fabstir_sidecar.core.errors import FabstirError
from fabstir_sidecar.core.multiaddr import split_peer_multiaddr
from fabstir_sidecar.core.settings import NodeConfig
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.daemon.dialguard import connect_guarded
from fabstir_sidecar.discovery.peer_cache import PeerCache

__all__ = ["BootstrapResult", "ConnectionUpkeep"]

log = logging.getLogger(__name__)

CACHED_REDIALS = 32
"""Most recent cached hosts dialed again when the node lost every connection."""


@dataclasses.dataclass(frozen=True, slots=True)
class BootstrapResult:
    address: str
    peer_id: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class ConnectionUpkeep:
    """The node's connections to the peers it was told about (bootstrap, ``connect_to_peer``)
    and the hosts it remembers (the peer cache)."""

    def __init__(
        self,
        config: NodeConfig,
        control: Callable[[], DaemonControl],
        peer_cache: PeerCache,
        is_running: Callable[[], bool],
    ) -> None:
        self._config = config
        self._control = control
        self._peer_cache = peer_cache
        self._is_running = is_running
        self.results: list[BootstrapResult] = []
        self.dialed: dict[str, list[str]] = {}  # peer -> addrs we were asked to connect to
        self._failures = anyio.Event()  # set while some bootstrap peer is unreachable

    # -------------------------------------------------------------- dialing

    async def connect_bootstrap(self) -> list[BootstrapResult]:
        """Dial every bootstrap peer concurrently; failures are retried in the background."""
        self._set_results(await self._dial_bootstrap(self._config.bootstrap))
        return self.results

    async def _dial_bootstrap(self, addresses: Sequence[str]) -> list[BootstrapResult]:
        results: list[BootstrapResult] = []

        async def dial(address: str) -> None:
            addr, peer_id = split_peer_multiaddr(address, name="bootstrap")
            try:
                await self._control().connect(
                    peer_id, [addr], timeout=self._config.connection_timeout
                )
            except FabstirError as exc:
                log.warning(
                    "bootstrap peer unreachable", extra={"address": address, "error": str(exc)}
                )
                results.append(BootstrapResult(address, peer_id, str(exc)))
            else:
                results.append(BootstrapResult(address, peer_id))

        async with anyio.create_task_group() as tg:
            for address in addresses:
                tg.start_soon(dial, address)
        return results

    def _set_results(self, results: list[BootstrapResult]) -> None:
        self.results = results
        if any(not r.ok for r in results):
            self._failures.set()

    async def connect_to(self, multiaddr: str) -> str:
        """Dial ``multiaddr`` for ``connect_to_peer`` (remembered for redials); a peer that is
        down does not leave p2pd in dial backoff (daemon/dialguard.py). Returns its peer ID."""
        addr, peer_id = split_peer_multiaddr(multiaddr, name="multiaddr")
        timeout = self._config.connection_timeout
        cfg = self._config
        if cfg.dial_guard and cfg.daemon == "process" and cfg.control_addr is None:
            await connect_guarded(self._control(), peer_id, [addr], timeout=timeout)
        else:  # p2pd may live in another network namespace: only it can tell
            await self._control().connect(peer_id, [addr], timeout=timeout)
        self.remember(peer_id, addr)
        return peer_id

    def remember(self, peer_id: str, addr: str) -> None:
        """``connect_to_peer`` dialed ``addr``: dial it again when connections are lost."""
        known = self.dialed.setdefault(peer_id, [])
        if addr not in known:
            known.append(addr)

    def forget(self, peer_id: str) -> None:
        self.dialed.pop(peer_id, None)

    async def redial_known(self) -> None:
        for peer_id, addrs in list(self.dialed.items()):
            with contextlib.suppress(FabstirError):
                await self._control().connect(
                    peer_id, addrs, timeout=self._config.connection_timeout
                )

    async def reconnect_cached(self) -> None:
        """Dial the hosts we knew (the peer cache) without waiting for discovery."""
        limiter = anyio.CapacityLimiter(8)

        async def dial(peer_id: str, addrs: tuple[str, ...]) -> None:
            async with limiter:
                with contextlib.suppress(FabstirError):
                    await self._control().connect(peer_id, addrs, timeout=5.0)

        async with anyio.create_task_group() as tg:
            for cached in self._peer_cache.peers()[:CACHED_REDIALS]:
                tg.start_soon(dial, cached.peer_id, cached.addrs)

    async def reconnect_all(self) -> list[BootstrapResult]:
        """Bootstrap peers, peers given to ``connect_to_peer``, then cached hosts."""
        results = await self.connect_bootstrap()
        await self.redial_known()
        await self.reconnect_cached()
        return results

    # ------------------------------------------------------------ upkeep

    async def run(self, *, interval: float = 5.0) -> None:
        """Until cancelled: watch for a node with no connection left, and retry the bootstrap
        peers whose dial failed (backoff 1 s doubling to 60 s, reset by a success)."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_connections, interval)
            tg.start_soon(self._retry_failed_bootstrap)

    async def _watch_connections(self, interval: float) -> None:
        while True:
            await anyio.sleep(interval if self._config.bootstrap else max(interval, 30.0))
            if not self._is_running():
                continue
            try:
                connected = await self._control().list_peers()
            except FabstirError:
                continue
            known = self._config.bootstrap or self.dialed or len(self._peer_cache) > 0
            if not connected and known:
                log.warning("no connections left, reconnecting to known peers")
                await self.reconnect_all()

    async def _retry_failed_bootstrap(self) -> None:
        while True:
            await self._failures.wait()
            retrying = AsyncRetrying(
                wait=wait_exponential(multiplier=1.0, min=1.0, max=60.0),
                retry=retry_if_result(bool),
                sleep=anyio.sleep,
            )
            await anyio.sleep(1.0)
            async for attempt in retrying:
                with attempt:
                    still_failing = await self._retry_failed_once()
                if attempt.retry_state.outcome is None or not attempt.retry_state.outcome.failed:
                    attempt.retry_state.set_result(still_failing)
            self._failures = anyio.Event()
            if any(not r.ok for r in self.results):  # a reconnect_all meanwhile
                self._failures.set()

    async def _retry_failed_once(self) -> list[BootstrapResult]:
        failed = [r for r in self.results if not r.ok]
        if not failed or not self._is_running():
            return failed
        retried = {r.address: r for r in await self._dial_bootstrap([r.address for r in failed])}
        self.results = [retried.get(r.address, r) for r in self.results]
        return [r for r in self.results if not r.ok]
