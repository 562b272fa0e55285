"""DiscoveryManager: the node users hold — the TypeScript SDK's API in Python form.

It composes the daemon (node/launch), its control and handler server (daemon/), SDK messages
(node/sdk_messages), discovery (discovery/service), connection upkeep (node/upkeep) and mDNS
(node/mdns_link). It is a :class:`~fabstir_sidecar.node_interface.NodeInterface`: a
``HostService`` or ``FabstirClient`` on it uses only that interface.

Lifecycle (as httpx clients): new → running → closed, never reopened. ``create_node`` and
``stop`` must run in the same task (anyio task groups are task-bound); ``async with`` does
that for you and guarantees cleanup on errors and cancellation (Ctrl-C included).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import anyio
import anyio.abc

from fabstir_sidecar.core.errors import (
    FabstirError,
    NodeClosedError,
    NodeNotStartedError,
    NodeStateError,
)
from fabstir_sidecar.core.multiaddr import split_peer_multiaddr
from fabstir_sidecar.core.peer_id import PeerId
from fabstir_sidecar.core.settings import NodeConfig
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.daemon.handlers import HandlerServer, StreamHandler
from fabstir_sidecar.daemon.runtime_dir import RuntimeDir
from fabstir_sidecar.daemon.supervisor import Daemon, SpawnedDaemon
from fabstir_sidecar.discovery.config import FinderConfig
from fabstir_sidecar.discovery.matching import HostCriteria
from fabstir_sidecar.discovery.mdns import MdnsService
from fabstir_sidecar.discovery.peer_cache import PeerCache
from fabstir_sidecar.discovery.service import Discovery
from fabstir_sidecar.node.launch import handler_address, launch_daemon
from fabstir_sidecar.node.mdns_link import MdnsLink
from fabstir_sidecar.node.sdk_messages import SdkMessages
from fabstir_sidecar.node.state import NodeState
from fabstir_sidecar.node.upkeep import BootstrapResult, ConnectionUpkeep
from fabstir_sidecar.protocols.message import MessageHandler
from fabstir_sidecar.protocols.status import HostStatus
from fabstir_sidecar.rpc.limits import RpcLimits
from fabstir_sidecar.rpc.server import RequestHandler, serve_requests
from fabstir_sidecar.wire.messages import PeerInfo

__all__ = ["BootstrapResult", "DiscoveryManager", "NodeState"]

log = logging.getLogger(__name__)


class DiscoveryManager:
    """A Fabstir P2P node backed by a p2pd daemon (spawned, or attached via ``control_addr``).

    ``DiscoveryManager(config)`` or ``DiscoveryManager(listen=[...], bootstrap=[...], ...)``:
    keyword options are those of :class:`NodeConfig` and are layered over the environment.
    """

    def __init__(
        self,
        config: NodeConfig | None = None,
        *,
        finder: FinderConfig | None = None,
        **options: Any,
    ) -> None:
        if config is None:
            config = NodeConfig.load(**options)
        elif options:
            config = dataclasses.replace(config, **options)
        self._config = config
        self._state = NodeState.NEW
        self._stack: contextlib.AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._daemon: Daemon | None = None
        self._control: DaemonControl | None = None
        self._handlers: HandlerServer | None = None
        self._messages = SdkMessages(config)
        self._peer_id: PeerId | None = None
        self._restart_hooks: list[Callable[[], Awaitable[None]]] = []
        self._start_hooks: list[Callable[[], Awaitable[None]]] = []
        self._finder_config = finder
        self._discovery: Discovery | None = None
        self._upkeep: ConnectionUpkeep | None = None
        self._mdns = MdnsLink(config, self._require_control)

    # ------------------------------------------------------------------ lifecycle

    @property
    def config(self) -> NodeConfig:
        return self._config

    @property
    def state(self) -> NodeState:
        failed = self._state is NodeState.RUNNING and self.daemon_failure is not None
        return NodeState.FAILED if failed else self._state

    @property
    def daemon_failure(self) -> str | None:
        """Why the daemon is gone for good (it kept dying, or restarting it failed), else None."""
        return self._daemon.availability.failure if self._daemon else None

    async def wait_daemon_failure(self) -> str:
        """Wait until the daemon is gone for good (``state`` FAILED); returns why."""
        assert self._daemon is not None, "the node is not started"
        return await self._daemon.availability.wait_failed()

    def is_running(self) -> bool:
        """True while started and not stopped, and the daemon is currently usable."""
        return (
            self._state is NodeState.RUNNING
            and self._daemon is not None
            and self._daemon.availability.available
        )

    async def __aenter__(self) -> DiscoveryManager:
        if self._state is NodeState.CLOSED:
            raise NodeClosedError()  # as httpx: a closed node is never reopened
        if self._state is NodeState.NEW:
            await self.create_node()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def create_node(
        self, listen: Sequence[str] | None = None, bootstrap: Sequence[str] | None = None
    ) -> str:
        """Start the daemon (or attach), register protocols, dial bootstrap peers.

        Returns this node's peer ID. Bootstrap peers that cannot be reached are logged and
        listed in ``bootstrap_results``; they do not fail the start.
        """
        if self._state is NodeState.CLOSED:
            raise NodeClosedError()
        if self._state is not NodeState.NEW:
            raise NodeStateError("create_node() was already called on this node")
        given = {"listen": listen, "bootstrap": bootstrap}
        changes: dict[str, Any] = {k: tuple(v) for k, v in given.items() if v is not None}
        if changes:
            self._config = dataclasses.replace(self._config, **changes)
        self._state = NodeState.STARTING
        self._stack = contextlib.AsyncExitStack()
        try:
            await self._start(self._stack)
        except BaseException:
            self._state = NodeState.CLOSED
            await self._stack.aclose()  # each cleanup step shields itself
            raise
        self._state = NodeState.RUNNING
        assert self._peer_id is not None
        return self._peer_id

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        cfg = self._config
        self._mdns = MdnsLink(cfg, self._require_control)
        runtime = RuntimeDir()
        stack.callback(runtime.close)
        self._tg = tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tg.cancel_scope.cancel)  # runs before the task group exits

        daemon, control_addr = launch_daemon(cfg, runtime, self._after_daemon_restart)
        self._daemon = daemon
        self._control = DaemonControl(
            control_addr, gate=daemon.availability.check, request_timeout=cfg.connection_timeout
        )
        stack.push_async_callback(daemon.stop)  # before start: a half-started daemon stops too
        await daemon.start(tg)

        handler_addr = handler_address(cfg, daemon, control_addr, runtime)
        self._handlers = HandlerServer(self._control, handler_addr)
        await tg.start(self._handlers.serve)
        if cfg.control_addr is not None:
            stack.push_async_callback(self._unregister_handlers_quietly)
        await self._handlers.add(cfg.message_protocol, self._messages.service.handle_stream)

        self._peer_id = PeerId((await self._control.identify())[0])
        peer_cache = PeerCache.in_dir(cfg.data_dir)
        stack.callback(peer_cache.save)
        self._upkeep = ConnectionUpkeep(cfg, self._require_control, peer_cache, self.is_running)
        self._discovery = Discovery(
            self,
            settings=self._finder_config,
            peer_cache=peer_cache,
            mdns=self._mdns.live_peers,
        )
        await self._discovery.start()
        for hook in self._start_hooks:
            await hook()
        await self._upkeep.connect_bootstrap()
        tg.start_soon(self._upkeep.run)
        if cfg.enable_mdns:
            await self._mdns.start(tg, self._peer_id, self.get_addrs)
        if len(peer_cache):
            tg.start_soon(self._upkeep.reconnect_cached)
        log.info(
            "node started",
            extra={"peer_id": self._peer_id, "attached": cfg.control_addr is not None},
        )

    async def _unregister_handlers_quietly(self) -> None:
        if self._handlers is not None:
            with anyio.CancelScope(shield=True), contextlib.suppress(FabstirError):
                await self._handlers.unregister_all()

    async def stop(self) -> None:
        """Stop the node: unregister, stop the daemon we started, remove sockets. Idempotent."""
        if self._state is NodeState.CLOSED or self._stack is None:
            self._state = NodeState.CLOSED
            return
        self._state = NodeState.CLOSED
        try:
            await self._messages.linger()
        finally:
            # Not shielded as a whole: the task group's cancel scope must exit where it was
            # entered. Each step that must survive cancellation shields itself.
            await self._stack.aclose()
        log.info("node stopped", extra={"peer_id": self._peer_id})

    async def _after_daemon_restart(self) -> None:
        """The daemon forgot everything: re-register handlers, re-dial bootstrap and peers."""
        assert self._handlers is not None and self._upkeep is not None
        await self._handlers.register_all()
        results = await self._upkeep.connect_bootstrap()
        await self._upkeep.redial_known()
        with contextlib.suppress(FabstirError):  # a wildcard listen may have a new port now
            self._mdns.update_addrs(await self.get_addrs())
        for hook in list(self._restart_hooks):
            try:
                await hook()
            except Exception:
                log.exception("daemon-restart hook failed; node keeps serving")
        log.info(
            "node re-initialised after daemon restart",
            extra={"bootstrap_ok": sum(r.ok for r in results)},
        )

    def on_start(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` inside ``create_node()`` once daemon, handlers and discovery are up,
        before any bootstrap peer is dialed: what it registers (``node.on_start(host.start)``)
        is served from the first connection, so no peer takes the host for a non-host. A hook
        that raises fails the start. Only before ``create_node()``."""
        if self._state is not NodeState.NEW:
            raise NodeStateError("on_start() hooks must be added before create_node()")
        self._start_hooks.append(hook)

    def on_daemon_restart(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` after each daemon restart, once handlers and connections are back
        (e.g. a host re-provides its DHT records, which the new daemon does not have)."""
        self._restart_hooks.append(hook)

    def _require_control(self) -> DaemonControl:
        if self._state is NodeState.CLOSED:
            raise NodeClosedError()
        if self._control is None or self._state is NodeState.NEW:
            raise NodeNotStartedError()
        return self._control

    # ------------------------------------------------ the node interface (roles)

    @property
    def peer_id(self) -> PeerId:
        self._require_control()
        assert self._peer_id is not None
        return self._peer_id

    @property
    def control(self) -> DaemonControl:
        """The daemon adapter, for protocol layers built on this node."""
        return self._require_control()

    @property
    def bootstrap_peers(self) -> tuple[PeerId, ...]:
        return tuple(split_peer_multiaddr(a, name="bootstrap")[1] for a in self._config.bootstrap)

    async def serve(self, protocol: str, handler: RequestHandler, limits: RpcLimits) -> None:
        """Answer framed requests of ``protocol`` (the rpc layer applies ``limits``)."""
        await self.add_stream_handler(protocol, serve_requests(handler, limits), limits)

    def spawn(self, work: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run ``work(*args)`` in the node's task group: it is cancelled when the node stops."""
        self._require_control()
        assert self._tg is not None
        self._tg.start_soon(work, *args)

    def set_local_host(self, host: PeerInfo | None) -> None:
        self.discovery.set_local_host(host)

    async def add_stream_handler(
        self, protocol: str, handler: StreamHandler, limits: RpcLimits | None = None
    ) -> None:
        """Serve a raw stream protocol on this node, with ``limits``' concurrency caps
        (framed protocols: :meth:`serve`)."""
        self._require_control()
        assert self._handlers is not None
        caps = limits or RpcLimits()
        await self._handlers.add(
            protocol,
            handler,
            max_concurrent=caps.max_concurrent,
            max_per_peer=caps.max_per_peer,
            min_share=caps.min_share,
            counters=caps.counters,
        )

    # ------------------------------------------------------------ the SDK's API

    @property
    def bootstrap_results(self) -> list[BootstrapResult]:
        """Whether each bootstrap peer answered, and why not (latest dial of each)."""
        return list(self._upkeep.results) if self._upkeep is not None else []

    @property
    def daemon_pid(self) -> int | None:
        """The pid of the p2pd this node spawned, as a process or in a container (the pid on
        the engine's host); None when attached or not running."""
        pid: int | None = getattr(self._daemon, "pid", None)
        return pid

    @property
    def metrics_addr(self) -> str | None:
        """host:port of the spawned p2pd's metrics endpoint (node/reachability.py reads it)."""
        spawned = self._daemon if isinstance(self._daemon, SpawnedDaemon) else None
        return spawned.spec.metrics_addr if spawned else self._config.metrics_addr

    @property
    def restarts(self) -> int:
        """How many times the daemon was restarted (or came back, when attached)."""
        return self._daemon.restarts if self._daemon else 0

    async def get_addrs(self) -> list[str]:
        """Full multiaddrs of this node, each ending in ``/p2p/<peer id>``."""
        peer_id, addrs = await self._require_control().identify()
        return [f"{a}/p2p/{peer_id}" for a in addrs]

    async def connect_to_peer(self, multiaddr: str) -> str:
        """Dial ``/ip4/.../tcp/N/p2p/<id>`` (any transport p2pd speaks); returns the peer ID."""
        self._require_control()
        assert self._upkeep is not None
        return await self._upkeep.connect_to(multiaddr)

    async def disconnect_peer(self, peer_id: str) -> None:
        await self._require_control().disconnect(peer_id)
        if self._upkeep is not None:
            self._upkeep.forget(peer_id)

    async def get_connected_peers(self) -> list[str]:
        peers = await self._require_control().list_peers()
        return sorted({p.peer_id for p in peers})

    def on_message(self, handler: MessageHandler) -> Callable[[], None]:
        """Call ``handler(sender_peer_id, message)`` for each SDK message; returns unsubscribe.

        ``handler`` may be sync or async. An exception in it is logged; the node keeps going.
        """
        return self._messages.subscribe(handler)

    async def send_message(self, peer_id: str, message: Any) -> None:
        """Send one SDK message (``<prefix>/message``). ``peer_id`` may also be a full
        multiaddr ending in ``/p2p/<id>``, which is dialed first."""
        await self._messages.send(self._require_control(), peer_id, message, self.connect_to_peer)

    @property
    def message_stats(self) -> dict[str, int]:
        return self._messages.stats

    # --------------------------------------------------------------- discovery

    @property
    def discovery(self) -> Discovery:
        """Host discovery of this node (candidates, status cache, peer cache)."""
        self._require_control()
        assert self._discovery is not None
        return self._discovery

    async def find_hosts(self, criteria: HostCriteria | None = None) -> list[HostStatus]:
        """Every host matching ``criteria``, best first (NoMatchingHostError if none)."""
        return await self.discovery.find_hosts(criteria)

    async def find_host(self, criteria: HostCriteria | None = None) -> HostStatus:
        """The best host for ``criteria`` (docs/discovery.md)."""
        return await self.discovery.find_host(criteria)

    async def wait_for_mdns_peer(self, timeout: float) -> bool:
        """Wait until mDNS found at least one peer (False on timeout or if mDNS is off)."""
        return await self._mdns.wait_for_peer(timeout)

    @property
    def mdns_active(self) -> bool:
        return self._mdns.active

    @property
    def mdns_service(self) -> MdnsService | None:
        """The running mDNS service (None when mDNS is off or no interface qualifies)."""
        return self._mdns.service
