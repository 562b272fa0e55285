"""The node's use of mDNS: run the service on the interfaces it listens on, dial the peers
it hears, and tell discovery which of them are still there."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import anyio
import anyio.abc

from fabstir_sidecar.core.errors import FabstirError
from fabstir_sidecar.core.multiaddr import strip_peer
from fabstir_sidecar.core.settings import NodeConfig
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.discovery.mdns import MdnsService, mdns_interfaces

__all__ = ["MdnsLink"]

log = logging.getLogger(__name__)


class MdnsLink:
    """mDNS for one node; :meth:`live_peers` is the discovery's mDNS candidate source."""

    def __init__(self, config: NodeConfig, control: Callable[[], DaemonControl]) -> None:
        self._config = config
        self._control = control
        self._service: MdnsService | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._found = anyio.Event()

    async def start(
        self, tg: anyio.abc.TaskGroup, peer_id: str, addrs: Callable[[], Awaitable[list[str]]]
    ) -> None:
        """libp2p mDNS on the interfaces of our listen addresses only (none for loopback)."""
        interfaces = mdns_interfaces(self._config.listen)
        if not interfaces:
            return
        self._tg = tg
        self._service = MdnsService(
            peer_id=peer_id,
            addrs=await addrs(),
            interfaces=interfaces,
            on_peer=self._on_peer,
            query_interval=self._config.mdns_interval,
        )
        await tg.start(self._service.run)

    @property
    def active(self) -> bool:
        return self._service is not None

    @property
    def service(self) -> MdnsService | None:
        """The running mDNS service (None when mDNS is off or no interface qualifies)."""
        return self._service

    def live_peers(self) -> dict[str, tuple[str, ...]]:
        """Peers heard and not expired or gone (peer id -> bare addresses)."""
        if self._service is None:
            return {}
        return {
            peer: tuple(strip_peer(a) for a in addrs) for peer, addrs in self._service.peers.items()
        }

    def update_addrs(self, addrs: Sequence[str]) -> None:
        """Announce new addresses (a restarted daemon may listen on new ports)."""
        if self._service is not None:
            self._service.update_addrs(addrs)

    async def wait_for_peer(self, timeout: float) -> bool:
        """Wait until mDNS found at least one peer (False on timeout or if mDNS is off)."""
        if self._service is None:
            return False
        with anyio.move_on_after(timeout):
            await self._found.wait()
        return self._found.is_set()

    def _on_peer(self, peer_id: str, addrs: list[str]) -> None:
        self._found.set()
        if self._tg is not None:
            self._tg.start_soon(self._dial, peer_id, tuple(strip_peer(a) for a in addrs))

    async def _dial(self, peer_id: str, addrs: tuple[str, ...]) -> None:
        try:
            await self._control().connect(peer_id, addrs, timeout=self._config.connection_timeout)
        except FabstirError as exc:
            log.info("mDNS peer not reachable", extra={"peer": peer_id, "error": str(exc)})
        else:
            log.info("connected to mDNS peer", extra={"peer": peer_id})
