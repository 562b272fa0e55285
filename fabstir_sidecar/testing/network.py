"""A real Fabstir network for tests: one bootstrap node, hosts, clients, all real p2pd.

``start_network`` is the plain async context manager; ``NetworkFactory`` is what the
``fabstir_network`` fixture hands to tests (several networks in one test, all closed at its
end). Everything runs on loopback with ``/tcp/0`` ports, private runtime directories and a
private working directory (identity keys), so networks of parallel tests never collide.

Start-up: every node at once (p2pd start-up dominates), then each host dials the bootstrap
node; the network is ready once every host is connected to it.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from fabstir_sidecar.client import FabstirClient, RetryConfig
from fabstir_sidecar.discovery.config import FinderConfig
from fabstir_sidecar.testing.netnode import NetworkNode
from fabstir_sidecar.testing.spec import HostSpec, node_names


class FabstirNetwork:
    """A running test network. Nodes: ``bootstrap`` (or None), ``hosts``, ``clients``."""

    def __init__(
        self,
        task_group: anyio.abc.TaskGroup,
        workdir: Path,
        *,
        p2pd_path: str | None = None,
        name: str = "net",
        node_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.node_options = dict(node_options or {})
        self.workdir = workdir
        self.bootstrap: NetworkNode | None = None
        self.hosts: list[NetworkNode] = []
        self.clients: list[NetworkNode] = []
        self._tg = task_group
        self._p2pd_path = p2pd_path
        self._closed = False

    @property
    def nodes(self) -> list[NetworkNode]:
        boot = [self.bootstrap] if self.bootstrap is not None else []
        return [*boot, *self.hosts, *self.clients]

    @property
    def bootstrap_addrs(self) -> list[str]:
        """What a node joining this network dials: the bootstrap node, else every host."""
        if self.bootstrap is not None:
            return [self.bootstrap.address]
        return [h.address for h in self.hosts]

    def host(self, name: str) -> NetworkNode:
        """A host by its name (``host0``... or ``HostSpec.name``)."""
        for node in self.hosts:
            if node.name == name:
                return node
        raise KeyError(f"no host named {name!r} (hosts: {[h.name for h in self.hosts]})")

    def __getitem__(self, name: str) -> NetworkNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def _node(self, name: str, role: Any, **kwargs: Any) -> NetworkNode:
        return NetworkNode(
            f"{self.name}.{name}" if self.name != "net" else name,
            role,
            task_group=self._tg,
            workdir=self.workdir,
            p2pd_path=self._p2pd_path,
            network_options=self.node_options,
            **kwargs,
        )

    async def _start(self, hosts: Sequence[HostSpec], bootstrap: bool) -> None:
        """Every node starts at once; then the hosts dial the bootstrap node (which they
        also keep as their bootstrap peer for restarts)."""
        names = node_names(hosts)
        if bootstrap:
            self.bootstrap = self._node("bootstrap", "bootstrap")
        nodes = [
            self._node(name, "host", spec=spec) for name, spec in zip(names, hosts, strict=True)
        ]
        self.hosts.extend(nodes)
        await _all(n.start for n in ([self.bootstrap] if self.bootstrap else []) + nodes)
        if self.bootstrap is not None:
            seeds = [self.bootstrap.address]
            await _all(functools.partial(n.join, seeds) for n in nodes)

    async def add_host(self, spec: HostSpec | None = None) -> NetworkNode:
        """Start one more host, joined to the network."""
        spec = spec or HostSpec()
        name = node_names([*(h.spec for h in self.hosts if h.spec is not None), spec])[-1]
        node = self._node(name, "host", spec=spec, bootstrap=self.bootstrap_addrs)
        self.hosts.append(node)
        await node.start()
        return node

    async def add_client_node(
        self, *, finder: FinderConfig | None = None, **options: Any
    ) -> NetworkNode:
        """A fresh client node joined to the network (``options``: NodeConfig fields;
        ``finder``: its discovery settings, e.g. ``FinderConfig(status_ttl=0)``)."""
        node = self._node(
            f"client{len(self.clients)}",
            "client",
            bootstrap=self.bootstrap_addrs,
            options=options,
            finder=finder,
        )
        self.clients.append(node)
        await node.start()
        return node

    async def client(
        self,
        *,
        retry: RetryConfig | None = None,
        request_timeout: float | None = None,
        job_timeout: float = 60.0,
        connect: bool = True,
        finder: FinderConfig | None = None,
        **options: Any,
    ) -> FabstirClient:
        """A :class:`FabstirClient` on a fresh client node of this network (its ``node``
        finds hosts: ``await client.node.find_host(HostCriteria(...))``).

        ``connect``: also dial every running host, so jobs can be sent by peer ID at once
        (False: the client knows only the bootstrap node and must discover the hosts).
        """
        node = await self.add_client_node(finder=finder, **options)
        if connect:
            async with anyio.create_task_group() as tg:
                for host in self.hosts:
                    if host.running:
                        tg.start_soon(node.node.connect_to_peer, host.address)
        return FabstirClient(
            node.node, retry=retry, request_timeout=request_timeout, job_timeout=job_timeout
        )

    def daemon_pids(self) -> dict[int, str]:
        """Every p2pd pid this network ran, with its node's name (for log attribution)."""
        return {pid: node.name for node in self.nodes for pid in node.pids}

    def log_names(self) -> dict[int | str, str]:
        """Node names by p2pd pid and by peer ID: who is who in the logs."""
        names: dict[int | str, str] = {pid: name for pid, name in self.daemon_pids().items()}
        names.update({node.peer_id: node.name for node in self.nodes if node.peer_id})
        return names

    async def aclose(self) -> None:
        """Stop every node concurrently (paused daemons are resumed first). Idempotent."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for node in self.nodes:
                    tg.start_soon(node.stop)


async def _all(calls: Iterable[Callable[[], Coroutine[Any, Any, None]]]) -> None:
    """Run ``calls`` concurrently (e.g. node starts); the first failure propagates (nodes
    already started are stopped with the network). A single failure is raised as itself,
    not as a group."""
    try:
        async with anyio.create_task_group() as tg:
            for call in calls:
                tg.start_soon(call)
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


class NetworkFactory:
    """Starts networks in its own task group and closes them all when it exits.

    ``net = await factory(hosts=[HostSpec(...)], bootstrap=True)``. Enter it in the task
    that will also exit it (the ``fabstir_network`` fixture does).
    """

    def __init__(self, *, p2pd_path: str | None = None, workdir: Path | None = None) -> None:
        self.p2pd_path = p2pd_path
        self.networks: list[FabstirNetwork] = []
        self._base = workdir
        self._own_dir: Path | None = None
        self._stack = contextlib.AsyncExitStack()
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> NetworkFactory:
        # identity keys of restartable nodes: private (mkdtemp is 0700), removed at exit
        self._own_dir = Path(tempfile.mkdtemp(prefix="fabstir-net-", dir=self._base))
        self._stack.callback(shutil.rmtree, self._own_dir, True)
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._stack.push_async_callback(self._close_networks)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def _close_networks(self) -> None:
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for net in self.networks:
                    tg.start_soon(net.aclose)
        assert self._tg is not None
        self._tg.cancel_scope.cancel()  # nothing may outlive the factory

    async def __call__(
        self,
        hosts: Sequence[HostSpec] = (),
        *,
        bootstrap: bool = True,
        node_options: Mapping[str, Any] | None = None,
    ) -> FabstirNetwork:
        """Start a network. ``node_options``: :class:`~fabstir_sidecar.NodeConfig` fields
        for every node of it (e.g. ``{"enable_dht": True, "dht_mode": "server"}``)."""
        if self._tg is None or self._own_dir is None:
            raise RuntimeError("NetworkFactory must be entered (async with) before use")
        index = len(self.networks)
        workdir = self._own_dir / f"net{index}"
        workdir.mkdir(mode=0o700)
        net = FabstirNetwork(
            self._tg,
            workdir,
            p2pd_path=self.p2pd_path,
            name="net" if index == 0 else f"net{index}",
            node_options=node_options,
        )
        self.networks.append(net)
        await net._start(list(hosts), bootstrap)
        return net

    def daemon_pids(self) -> dict[int, str]:
        return {pid: name for net in self.networks for pid, name in net.daemon_pids().items()}

    def log_names(self) -> dict[int | str, str]:
        return {key: name for net in self.networks for key, name in net.log_names().items()}


@contextlib.asynccontextmanager
async def start_network(
    hosts: Sequence[HostSpec] = (),
    *,
    bootstrap: bool = True,
    p2pd_path: str | None = None,
    node_options: Mapping[str, Any] | None = None,
) -> AsyncIterator[FabstirNetwork]:
    """``async with start_network(hosts=[HostSpec(models=["m"])]) as net:`` — outside
    pytest, or inside any async test; every node is stopped when the block exits."""
    async with NetworkFactory(p2pd_path=p2pd_path) as factory:
        yield await factory(hosts, bootstrap=bootstrap, node_options=node_options)
