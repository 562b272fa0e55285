"""DiscoveryManager: the node users hold — the TypeScript SDK's API in Python form.

It composes the lower layers and adds nothing they could do themselves::

    DiscoveryManager ─ config (NodeConfig)
                     ├ daemon  (p2pd/supervisor: SpawnedDaemon | AttachedDaemon)
                     ├ control (p2pd/control: DaemonControl, gated by daemon availability)
                     ├ handler server (p2pd/control: HandlerServer on a private unix socket)
                     └ protocols (protocols/message: MessageService, ...)

Lifecycle (as httpx clients): new → running → closed, never reopened. ``create_node`` and
``stop`` must run in the same task (anyio task groups are task-bound); ``async with`` does
that for you and guarantees cleanup on errors and cancellation (Ctrl-C included).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

from .config import NodeConfig, split_peer_multiaddr
from .discovery.matching import HostCriteria
from .discovery.mdns import MdnsService, mdns_interfaces
from .discovery.peer_cache import PeerCache
from .discovery.service import Discovery, FinderSettings
from .errors import (
    FabstirError,
    NodeClosedError,
    NodeNotStartedError,
    NodeStateError,
)
from .p2pd.binary import find_p2pd
from .p2pd.control import (
    DaemonControl,
    HandlerServer,
    StreamHandler,
    handler_addr_for,
    peer_id_to_bytes,
)
from .p2pd.identity import load_or_create_identity
from .p2pd.process import DaemonSpec
from .p2pd.runtime_dir import RuntimeDir
from .p2pd.supervisor import AttachedDaemon, Daemon, SpawnedDaemon
from .protocols.message import MessageHandler, MessageService, encode_message, send_message
from .protocols.status import HostStatus

log = logging.getLogger(__name__)


class NodeState(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    CLOSED = "closed"


@dataclasses.dataclass(frozen=True, slots=True)
class BootstrapResult:
    address: str
    peer_id: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class DiscoveryManager:
    """A Fabstir P2P node backed by a p2pd daemon (spawned, or attached via ``control_addr``).

    ``DiscoveryManager(config)`` or ``DiscoveryManager(listen=[...], bootstrap=[...], ...)``:
    keyword options are those of :class:`NodeConfig` and are layered over the environment.
    """

    def __init__(
        self,
        config: NodeConfig | None = None,
        *,
        finder: FinderSettings | None = None,
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
        self._messages = MessageService(
            max_size=config.max_message_size, timeout=config.connection_timeout
        )
        self._peer_id: str | None = None
        self._dialed: dict[str, list[str]] = {}  # peer -> addrs we were asked to connect to
        self._last_message_sent: float | None = None  # anyio clock, for stop()'s linger
        self._restart_hooks: list[Callable[[], Awaitable[None]]] = []
        self._start_hooks: list[Callable[[], Awaitable[None]]] = []
        self.bootstrap_results: list[BootstrapResult] = []
        self._finder_settings = finder
        self._discovery: Discovery | None = None
        self._mdns: MdnsService | None = None
        self._mdns_found = anyio.Event()

    # ------------------------------------------------------------------ lifecycle

    @property
    def config(self) -> NodeConfig:
        return self._config

    @property
    def state(self) -> NodeState:
        return self._state

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

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
        changes: dict[str, Any] = {}
        if listen is not None:
            changes["listen"] = tuple(listen)
        if bootstrap is not None:
            changes["bootstrap"] = tuple(bootstrap)
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
        runtime = RuntimeDir()
        stack.callback(runtime.close)
        self._tg = tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tg.cancel_scope.cancel)  # runs before the task group exits

        daemon: Daemon
        if cfg.control_addr is not None:
            control_addr = cfg.control_addr
            daemon = AttachedDaemon(
                control_addr,
                on_restarted=self._after_daemon_restart,
                start_timeout=cfg.daemon_start_timeout,
            )
        else:
            control_socket = runtime.file("p2pd.sock")
            control_addr = f"/unix{control_socket}"
            identity = cfg.identity_file or runtime.file("identity.key")
            load_or_create_identity(Path(identity))
            spec = DaemonSpec(
                binary=find_p2pd(cfg.p2pd_path) if cfg.daemon == "process" else Path("p2pd"),
                control_socket=control_socket,
                listen=cfg.listen,
                announce=cfg.announce,
                identity_file=Path(identity),
                enable_dht=cfg.enable_dht,
                dht_mode=cfg.dht_mode,
                conn_low=cfg.min_connections,
                conn_high=cfg.max_connections,
            )
            if cfg.daemon == "docker":
                from .p2pd.container import ContainerDaemon  # the optional `docker` extra

                daemon = container = ContainerDaemon(
                    spec,
                    image=cfg.daemon_image,
                    start_timeout=max(cfg.daemon_start_timeout, 30.0),  # + container start
                    stop_grace=cfg.daemon_stop_grace,
                    restart=cfg.restart_daemon,
                    on_restarted=self._after_daemon_restart,
                )
                control_addr = container.control_addr
            else:
                daemon = SpawnedDaemon(
                    spec,
                    start_timeout=cfg.daemon_start_timeout,
                    stop_grace=cfg.daemon_stop_grace,
                    restart=cfg.restart_daemon,
                    on_restarted=self._after_daemon_restart,
                )
        self._daemon = daemon
        self._control = DaemonControl(
            control_addr, gate=daemon.availability.check, request_timeout=cfg.connection_timeout
        )
        stack.push_async_callback(daemon.stop)  # before start: a half-started daemon stops too
        await daemon.start(tg)

        handler_addr = (
            cfg.handler_addr
            or getattr(daemon, "handler_addr", None)
            or handler_addr_for(control_addr)
            or runtime.file("handlers.sock")
        )
        self._handlers = HandlerServer(self._control, handler_addr)
        await tg.start(self._handlers.serve)
        if cfg.control_addr is not None:
            stack.push_async_callback(self._unregister_handlers_quietly)
        await self._handlers.add(cfg.message_protocol, self._messages.handle_stream)

        self._peer_id, _ = await self._control.identify()
        peer_cache = PeerCache.in_dir(cfg.data_dir)
        stack.callback(peer_cache.save)
        self._discovery = Discovery(self, settings=self._finder_settings, peer_cache=peer_cache)
        await self._discovery.start()
        for hook in self._start_hooks:
            await hook()
        self.bootstrap_results = await self._connect_bootstrap()
        tg.start_soon(self._maintain_connections)
        if cfg.enable_mdns:
            await self._start_mdns(tg)
        if len(peer_cache):
            tg.start_soon(self._reconnect_cached_peers)
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
            await self._linger_after_messages()
        finally:
            # Not shielded as a whole: the task group's cancel scope must exit where it was
            # entered. Each step that must survive cancellation shields itself.
            await self._stack.aclose()
        log.info("node stopped", extra={"peer_id": self._peer_id})

    async def _linger_after_messages(self) -> None:
        """Keep connections open until ``message_linger`` has passed since the last message
        sent (see ``NodeConfig.message_linger``). Cancellable: Ctrl-C does not wait."""
        if self._last_message_sent is None:
            return
        remaining = self._last_message_sent + self._config.message_linger - anyio.current_time()
        if remaining > 0:
            await anyio.sleep(remaining)

    async def _after_daemon_restart(self) -> None:
        """The daemon forgot everything: re-register handlers, re-dial bootstrap and peers."""
        assert self._handlers is not None
        await self._handlers.register_all()
        results = await self._connect_bootstrap()
        await self._redial_known()
        if self._mdns is not None:  # a wildcard listen address may have a new port now
            with contextlib.suppress(FabstirError):
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
        """Run ``hook`` inside ``create_node()``, once the daemon, the stream handlers and
        discovery are up and before any bootstrap peer is dialed.

        What it registers is served from the first connection on: a host started this way
        (``node.on_start(host_service.start)``) is never asked for its status before it
        serves it, which peers would take as "not a host" for a while. A hook that raises
        fails the start. Only before ``create_node()``.
        """
        if self._state is not NodeState.NEW:
            raise NodeStateError("on_start() hooks must be added before create_node()")
        self._start_hooks.append(hook)

    def on_daemon_restart(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` after each daemon restart, once handlers and connections are back
        (e.g. a host re-provides its DHT records, which the new daemon does not have)."""
        self._restart_hooks.append(hook)

    # ----------------------------------------------------------------- internals

    def _require_control(self) -> DaemonControl:
        if self._state is NodeState.CLOSED:
            raise NodeClosedError()
        if self._control is None or self._state is NodeState.NEW:
            raise NodeNotStartedError()
        return self._control

    async def _connect_bootstrap(
        self, addresses: Sequence[str] | None = None
    ) -> list[BootstrapResult]:
        """Dial bootstrap peers concurrently; each result says whether it worked and why not."""
        results: list[BootstrapResult] = []

        async def dial(address: str) -> None:
            addr, peer_id = split_peer_multiaddr(address, name="bootstrap")
            try:
                await self._require_control().connect(
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
            for address in self._config.bootstrap if addresses is None else addresses:
                tg.start_soon(dial, address)
        return results

    async def _start_mdns(self, tg: anyio.abc.TaskGroup) -> None:
        """libp2p mDNS on the interfaces of our listen addresses only (none for loopback)."""
        interfaces = mdns_interfaces(self._config.listen)
        if not interfaces:
            return
        self._mdns = MdnsService(
            peer_id=self.peer_id,
            addrs=await self.get_addrs(),
            interfaces=interfaces,
            on_peer=self._on_mdns_peer,
            on_peer_removed=self._on_mdns_peer_gone,
            query_interval=self._config.mdns_interval,
        )
        await tg.start(self._mdns.run)

    def _on_mdns_peer(self, peer_id: str, addrs: list[str]) -> None:
        assert self._discovery is not None and self._tg is not None
        bare = tuple(a.rpartition("/p2p/")[0] or a for a in addrs)
        self._discovery.mdns_peers[peer_id] = bare
        self._mdns_found.set()
        self._tg.start_soon(self._dial_mdns_peer, peer_id, bare)

    def _on_mdns_peer_gone(self, peer_id: str) -> None:
        assert self._discovery is not None
        self._discovery.forget_mdns_peer(peer_id)

    async def _dial_mdns_peer(self, peer_id: str, addrs: tuple[str, ...]) -> None:
        try:
            await self._require_control().connect(
                peer_id, addrs, timeout=self._config.connection_timeout
            )
        except FabstirError as exc:
            log.info("mDNS peer not reachable", extra={"peer": peer_id, "error": str(exc)})
        else:
            log.info("connected to mDNS peer", extra={"peer": peer_id})

    async def wait_for_mdns_peer(self, timeout: float) -> bool:
        """Wait until mDNS found at least one peer (False on timeout or if mDNS is off)."""
        if self._mdns is None:
            return False
        with anyio.move_on_after(timeout):
            await self._mdns_found.wait()
        return self._mdns_found.is_set()

    @property
    def mdns_active(self) -> bool:
        return self._mdns is not None

    @property
    def mdns_service(self) -> MdnsService | None:
        """The running mDNS service (None when mDNS is off or no interface qualifies)."""
        return self._mdns

    async def _reconnect_cached_peers(self) -> None:
        """After a restart, dial hosts we knew (the peer cache) without waiting for discovery."""
        assert self._discovery is not None
        limiter = anyio.CapacityLimiter(8)

        async def dial(peer_id: str, addrs: tuple[str, ...]) -> None:
            async with limiter:
                with contextlib.suppress(FabstirError):
                    await self._require_control().connect(peer_id, addrs, timeout=5.0)

        async with anyio.create_task_group() as tg:
            for cached in self._discovery.peer_cache.peers()[:32]:
                tg.start_soon(dial, cached.peer_id, cached.addrs)

    async def _maintain_connections(self, interval: float = 5.0) -> None:
        """Retry unreachable bootstrap peers with backoff; when the node has no connection
        left at all, dial every bootstrap peer, every peer given to ``connect_to_peer`` and
        the most recent cached hosts again."""
        backoff = 1.0
        next_retry = anyio.current_time() + backoff
        while True:
            await anyio.sleep(interval if self._config.bootstrap else max(interval, 30.0))
            if not self.is_running():
                continue
            try:
                connected = await self.get_connected_peers()
            except FabstirError:
                continue
            failed = [r for r in self.bootstrap_results if not r.ok]
            cached = self._discovery is not None and len(self._discovery.peer_cache) > 0
            if not connected and (self._config.bootstrap or self._dialed or cached):
                log.warning("no connections left, reconnecting to known peers")
                self.bootstrap_results = await self._connect_bootstrap()
                await self._redial_known()
                await self._reconnect_cached_peers()
            elif failed and anyio.current_time() >= next_retry:
                retried = await self._connect_bootstrap([r.address for r in failed])
                ok = {r.address for r in retried if r.ok}
                self.bootstrap_results = [
                    next((n for n in retried if n.address == r.address), r) if not r.ok else r
                    for r in self.bootstrap_results
                ]
                backoff = 1.0 if ok else min(backoff * 2, 60.0)
                next_retry = anyio.current_time() + backoff

    async def _redial_known(self) -> None:
        for peer_id, addrs in list(self._dialed.items()):
            with contextlib.suppress(FabstirError):
                await self._require_control().connect(
                    peer_id, addrs, timeout=self._config.connection_timeout
                )

    # ------------------------------------------------------------------- the API

    @property
    def peer_id(self) -> str:
        self._require_control()
        assert self._peer_id is not None
        return self._peer_id

    @property
    def control(self) -> DaemonControl:
        """The daemon adapter, for protocol layers built on this node."""
        return self._require_control()

    @property
    def daemon_pid(self) -> int | None:
        """The pid of the p2pd this node spawned, as a process or in a container (the pid on
        the engine's host); None when attached or not running."""
        pid: int | None = getattr(self._daemon, "pid", None)
        return pid

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
        addr, peer_id = split_peer_multiaddr(multiaddr, name="multiaddr")
        await self._require_control().connect(
            peer_id, [addr], timeout=self._config.connection_timeout
        )
        self._dialed.setdefault(peer_id, [])
        if addr not in self._dialed[peer_id]:
            self._dialed[peer_id].append(addr)
        return peer_id

    async def disconnect_peer(self, peer_id: str) -> None:
        await self._require_control().disconnect(peer_id)
        self._dialed.pop(peer_id, None)

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
        control = self._require_control()
        if peer_id.startswith("/"):
            # Refuse an oversized or unencodable message before dialing anyone.
            encode_message(message, max_size=self._config.max_message_size)
            peer_id = await self.connect_to_peer(peer_id)
        else:
            peer_id_to_bytes(peer_id)
        await send_message(
            control,
            peer_id,
            message,
            protocol=self._config.message_protocol,
            max_size=self._config.max_message_size,
            timeout=self._config.connection_timeout,
        )
        self._last_message_sent = anyio.current_time()

    async def add_stream_handler(
        self,
        protocol: str,
        handler: StreamHandler,
        *,
        max_concurrent: int = 256,
        max_per_peer: int = 64,
    ) -> None:
        """Serve another protocol on this node (used by the protocol layers)."""
        self._require_control()
        assert self._handlers is not None
        await self._handlers.add(
            protocol, handler, max_concurrent=max_concurrent, max_per_peer=max_per_peer
        )

    @property
    def task_group(self) -> anyio.abc.TaskGroup:
        """The node's task group, for background work that must end when the node stops."""
        self._require_control()
        assert self._tg is not None
        return self._tg

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
        """The best host for ``criteria`` (PROTOCOL.md section 6)."""
        return await self.discovery.find_host(criteria)

    @property
    def message_stats(self) -> dict[str, int]:
        return {"received": self._messages.received, "refused": self._messages.refused}
