"""The synchronous face: a test network running in a background thread with its own loop.

For tests (or scripts) that are not async. ``network_sync()`` starts an anyio blocking
portal (a thread running an event loop), starts the network in it and hands back proxies
whose methods block until the network's loop has done the work. ``SyncNetwork.call`` runs
any coroutine function of yours in that loop, next to the nodes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from fabstir_sidecar.client import FabstirClient, RetryConfig
from fabstir_sidecar.discovery.matching import HostCriteria
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.protocols.status import HostStatus
from fabstir_sidecar.testing.netnode import NetworkNode
from fabstir_sidecar.testing.network import FabstirNetwork, start_network
from fabstir_sidecar.testing.spec import HostSpec
from fabstir_sidecar.wire.messages import JobResult

T = TypeVar("T")


def _blocking(name: str) -> Callable[..., None]:
    """A SyncNode method that runs the async ``NetworkNode.<name>`` through the portal."""

    def call(self: SyncNode, *args: Any) -> None:
        self._portal.call(getattr(self.node, name), *args)

    call.__name__ = name
    call.__doc__ = f"Blocking :meth:`NetworkNode.{name}`."
    return call


class SyncNode:
    """Blocking proxy of a :class:`NetworkNode` (same names, no ``await``)."""

    def __init__(self, portal: BlockingPortal, node: NetworkNode) -> None:
        self._portal = portal
        self.node = node  # the async object; use it only through SyncNetwork.call

    name = property(lambda self: self.node.name)
    role = property(lambda self: self.node.role)
    peer_id = property(lambda self: self.node.peer_id)
    addrs = property(lambda self: list(self.node.addrs))
    address = property(lambda self: self.node.address)
    daemon_pid = property(lambda self: self.node.daemon_pid)
    running = property(lambda self: self.node.running)
    faults = property(lambda self: self.node.faults)
    service = property(lambda self: self.node.service)  # read its stats; call nothing on it
    events = property(lambda self: list(self.node.events))

    # The faults, blocking: each runs the NetworkNode method of the same name in the loop.
    kill = _blocking("kill")
    terminate = _blocking("terminate")
    pause = _blocking("pause")
    resume = _blocking("resume")
    stop = _blocking("stop")
    restart = _blocking("restart")
    wait_running = _blocking("wait_running")  # (timeout=10.0)

    def make_busy(self, busy: bool = True) -> None:
        self._portal.call(_sync_in_loop, self.node.make_busy, busy)

    def make_slow(self, job_delay: float, *, status_delay: float = 0.0) -> None:
        self._portal.call(
            _sync_in_loop, lambda: self.node.make_slow(job_delay, status_delay=status_delay)
        )

    def clear_faults(self) -> None:
        self._portal.call(_sync_in_loop, self.node.clear_faults)


async def _sync_in_loop(fn: Callable[..., None], *args: Any) -> None:
    fn(*args)  # faults are read by the loop's tasks: change them from the loop's thread


class SyncClient:
    """Blocking proxy of a :class:`FabstirClient` on a client node of the network."""

    def __init__(
        self, portal: BlockingPortal, client: FabstirClient, node: DiscoveryManager
    ) -> None:
        self._portal = portal
        self.client = client
        self.node = node  # the client node (async object: use it through SyncNetwork.call)

    @property
    def peer_id(self) -> str:
        return self.node.peer_id

    def find_host(self, criteria: HostCriteria | None = None) -> HostStatus:
        return self._portal.call(self.node.find_host, criteria)

    def find_hosts(self, criteria: HostCriteria | None = None) -> list[HostStatus]:
        return self._portal.call(self.node.find_hosts, criteria)

    def get_status(self, peer: str) -> HostStatus:
        return self._portal.call(self.client.get_status, peer)

    def run_job(self, peer: str, model: str, prompt: str, **options: Any) -> JobResult:
        async def run() -> JobResult:
            return await self.client.run_job(peer, model, prompt, **options)

        return self._portal.call(run)

    def stream_job(self, peer: str, model: str, prompt: str, **options: Any) -> list[str]:
        """The streamed job's tokens, collected."""

        async def run() -> list[str]:
            return [t async for t in self.client.stream_job(peer, model, prompt, **options)]

        return self._portal.call(run)


class SyncNetwork:
    """Blocking proxy of a :class:`FabstirNetwork` running in a background thread."""

    def __init__(self, portal: BlockingPortal, network: FabstirNetwork) -> None:
        self.portal = portal
        self.network = network
        self._proxies: dict[int, SyncNode] = {}

    def _proxy(self, node: NetworkNode) -> SyncNode:
        return self._proxies.setdefault(id(node), SyncNode(self.portal, node))

    @property
    def bootstrap(self) -> SyncNode | None:
        boot = self.network.bootstrap
        return self._proxy(boot) if boot is not None else None

    @property
    def hosts(self) -> list[SyncNode]:
        return [self._proxy(h) for h in self.network.hosts]

    @property
    def bootstrap_addrs(self) -> list[str]:
        return self.network.bootstrap_addrs

    def host(self, name: str) -> SyncNode:
        return self._proxy(self.network.host(name))

    def add_host(self, spec: HostSpec | None = None) -> SyncNode:
        return self._proxy(self.portal.call(self.network.add_host, spec))

    def client(self, *, retry: RetryConfig | None = None, **options: Any) -> SyncClient:
        """A client on a fresh client node (``options``: those of ``FabstirNetwork.client``)."""

        async def make() -> FabstirClient:
            return await self.network.client(retry=retry, **options)

        client = self.portal.call(make)
        return SyncClient(self.portal, client, self.network.clients[-1].node)

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` in the network's event loop and return its result."""
        return self.portal.call(fn, *args)


@contextlib.contextmanager
def network_sync(
    hosts: Sequence[HostSpec] = (),
    *,
    bootstrap: bool = True,
    p2pd_path: str | None = None,
    backend: str = "asyncio",
    node_options: Mapping[str, Any] | None = None,
) -> Iterator[SyncNetwork]:
    """``with network_sync(hosts=[HostSpec(models=["m"])]) as net:``; every node and the
    thread are stopped when the block exits, whatever happens in it."""
    with (
        start_blocking_portal(backend) as portal,
        portal.wrap_async_context_manager(
            start_network(
                hosts, bootstrap=bootstrap, p2pd_path=p2pd_path, node_options=node_options
            )
        ) as network,
    ):
        yield SyncNetwork(portal, network)
