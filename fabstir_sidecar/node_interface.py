"""The small interface a node offers to the roles built on it: discovery, host, client.

Those roles depend on this, never on :class:`~fabstir_sidecar.node.manager.DiscoveryManager`
itself, so layers point one way: ``node/`` composes the roles, and the roles see the node
only through these few members. A test double needs only these too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from fabstir_sidecar.core.peer_id import PeerId
from fabstir_sidecar.core.settings import NodeConfig
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.rpc.limits import RpcLimits
from fabstir_sidecar.rpc.server import RequestHandler
from fabstir_sidecar.wire.messages import PeerInfo

__all__ = ["NodeInterface"]


class NodeInterface(Protocol):
    """What discovery, the host role and the client need from a running node."""

    @property
    def peer_id(self) -> PeerId:
        """This node's peer id (survives daemon restarts)."""
        ...

    @property
    def config(self) -> NodeConfig: ...

    @property
    def control(self) -> DaemonControl:
        """The daemon's control API (dial, streams, DHT, peers)."""
        ...

    @property
    def bootstrap_peers(self) -> tuple[PeerId, ...]:
        """Peer ids of the configured bootstrap nodes."""
        ...

    async def get_addrs(self) -> list[str]:
        """This node's full multiaddrs, each ending in ``/p2p/<peer id>``."""
        ...

    async def connect_to_peer(self, multiaddr: str) -> str:
        """Dial a full multiaddr; returns the peer id."""
        ...

    async def serve(self, protocol: str, handler: RequestHandler, limits: RpcLimits) -> None:
        """Answer framed requests of ``protocol`` with ``handler`` under ``limits``."""
        ...

    def spawn(self, work: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run ``work(*args)`` in the background until it ends or the node stops.

        Raises :class:`~fabstir_sidecar.core.errors.NodeStateError` when the node is not
        running."""
        ...

    def on_daemon_restart(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Call ``hook`` after each daemon restart, once handlers and connections are back."""
        ...

    def set_local_host(self, host: PeerInfo | None) -> None:
        """Declare that this node hosts (``host``) or no longer does (None): peer exchange
        answers list it."""
        ...
