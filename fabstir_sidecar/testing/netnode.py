"""One node of a test network, run in its own task so it can be stopped and started again.

A :class:`DiscoveryManager` must be started and stopped in the same task, so each
incarnation of a node lives in one task of the network's task group: it starts the node,
reports ready, and waits to be told to stop. ``restart()`` ends that task and starts a new
one with the same identity key (same peer ID) and, where the port is still free, the same
listen addresses, so peers that knew the node find it again.

Process faults act on the node's real p2pd (``DiscoveryManager.daemon_pid``): SIGKILL,
SIGTERM, SIGSTOP/SIGCONT. Protocol faults (busy, slow) are in :mod:`.faults`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.abc

from fabstir_sidecar.core.errors import DaemonStartError, FabstirError
from fabstir_sidecar.core.settings import NodeConfig
from fabstir_sidecar.discovery.config import FinderConfig
from fabstir_sidecar.host.service import HostService
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.protocols.job import JobEvent
from fabstir_sidecar.testing.faults import FaultableHost, Faults, FaultyBackend
from fabstir_sidecar.testing.spec import HostSpec

log = logging.getLogger(__name__)

Role = Literal["bootstrap", "host", "client"]
LOOPBACK = "/ip4/127.0.0.1/tcp/0"


def strip_p2p(addr: str) -> str:
    return addr.rpartition("/p2p/")[0] or addr


def process_state(pid: int) -> str | None:
    """The kernel's state letter of ``pid`` (``R``, ``S``, ``T`` stopped...); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def process_gone(pid: int) -> bool:
    """True if ``pid`` is no longer running (a zombie counts as gone)."""
    return process_state(pid) in (None, "Z", "X")


@dataclasses.dataclass(slots=True)
class _Incarnation:
    node: DiscoveryManager
    service: HostService | None
    stop_requested: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    stopped: anyio.Event = dataclasses.field(default_factory=anyio.Event)


class NetworkNode:
    """A bootstrap node, host or client of a :class:`~fabstir_sidecar.testing.FabstirNetwork`.

    ``node`` is the current :class:`DiscoveryManager` (a new object after ``restart()``);
    ``peer_id`` and ``addrs`` stay valid across restarts (same key, same ports if free).
    """

    def __init__(
        self,
        name: str,
        role: Role,
        *,
        task_group: anyio.abc.TaskGroup,
        workdir: Path,
        p2pd_path: str | None,
        bootstrap: Sequence[str] = (),
        spec: HostSpec | None = None,
        options: Mapping[str, Any] | None = None,
        network_options: Mapping[str, Any] | None = None,
        finder: FinderConfig | None = None,
    ) -> None:
        self.name = name
        self.role = role
        self.spec = spec
        self.faults = Faults()
        self.pids: list[int] = []  # every p2pd this node ran, for logs and leak reports
        self.errors: list[BaseException] = []  # failures after start (e.g. while stopping)
        self.events: list[JobEvent] = []  # every job a host answered, across restarts
        self._tg = task_group
        self._p2pd_path = p2pd_path
        self._identity = workdir / f"{name}.key"
        self._bootstrap = tuple(bootstrap)
        self._options = dict(options or {})
        self._network_options = dict(network_options or {})
        self._finder = finder
        self._listen: tuple[str, ...] = (LOOPBACK,)
        self._backend = spec.make_backend() if spec is not None else None
        self._current: _Incarnation | None = None
        self._paused = False
        self.peer_id = ""
        self.addrs: list[str] = []

    def __repr__(self) -> str:
        return f"<NetworkNode {self.name} {self.role} {self.peer_id or '(not started)'}>"

    # ------------------------------------------------------------------ state

    @property
    def node(self) -> DiscoveryManager:
        if self._current is None:
            raise RuntimeError(f"{self.name} is not running (stopped; call restart())")
        return self._current.node

    @property
    def service(self) -> HostService | None:
        """The host service of the current incarnation (None for bootstrap and client
        nodes): its ``stats``, ``active_jobs``, ``config``."""
        return self._current.service if self._current is not None else None

    @property
    def address(self) -> str:
        """The first full multiaddr (``.../p2p/<peer id>``)."""
        return self.addrs[0]

    @property
    def daemon_pid(self) -> int | None:
        return self._current.node.daemon_pid if self._current is not None else None

    @property
    def running(self) -> bool:
        """Started, not stopped, and its daemon usable (not killed, not restarting)."""
        return self._current is not None and self._current.node.is_running()

    @property
    def paused(self) -> bool:
        return self._paused

    def config(self, listen: Sequence[str] | None = None) -> NodeConfig:
        """The node's configuration: loopback only, explicit bootstrap, nothing from env;
        then the network's ``node_options``, the spec's, and this node's own."""
        values: dict[str, Any] = {
            "listen": tuple(listen or self._listen),
            "bootstrap": self._bootstrap,
            "enable_mdns": False,
            "enable_dht": False,
            "identity_file": self._identity,
            "p2pd_path": self._p2pd_path,
            "connection_timeout": 5.0,
            "daemon_stop_grace": 2.0,
            "message_linger": 0.0,
            "restart_daemon": self.spec.restart_daemon if self.spec else False,
        }
        values.update(self._network_options)
        if self.spec is not None:
            values.update(self.spec.node_options)
        values.update(self._options)
        return NodeConfig(**values)

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start an incarnation (in the network's task group); returns once it serves."""
        if self._current is not None:
            raise RuntimeError(f"{self.name} is already running")
        try:
            await self._tg.start(self._run, self.config())
        except DaemonStartError:
            if self._listen == (LOOPBACK,):
                raise
            # Our old port was taken meanwhile: a new port (peers learn it via bootstrap).
            await self._tg.start(self._run, self.config([LOOPBACK]))

    async def _run(self, config: NodeConfig, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        node = DiscoveryManager(config, finder=self._finder)
        service: HostService | None = None
        if self.spec is not None:
            assert self._backend is not None
            service = FaultableHost(
                node,
                self.spec.host_config(),
                FaultyBackend(self._backend, self.faults),
                faults=self.faults,
                on_job=self.events.append,
            )
            node.on_start(service.start)  # serves status before any peer can ask
        incarnation = _Incarnation(node, service)
        started = False
        try:
            async with node:
                self.peer_id = node.peer_id
                self.addrs = await node.get_addrs()
                self._listen = tuple(strip_p2p(a) for a in self.addrs) or (LOOPBACK,)
                if node.daemon_pid is not None:
                    self.pids.append(node.daemon_pid)
                self._current = incarnation
                started = True
                task_status.started()
                await incarnation.stop_requested.wait()
                await self._unpause()
        except Exception as exc:
            if not started:
                raise
            self.errors.append(exc)
            log.warning("test node %s failed while stopping: %r", self.name, exc)
        finally:
            if self._current is incarnation:
                self._current = None
            incarnation.stopped.set()

    async def stop(self) -> None:
        """Stop the node as a user would (its daemon too). Idempotent."""
        current = self._current
        if current is None:
            return
        await self._unpause()
        current.stop_requested.set()
        with anyio.CancelScope(shield=True):
            await current.stopped.wait()

    async def restart(self) -> None:
        """Stop (if running) and start again: same peer ID, same ports where free."""
        await self.stop()
        await self.start()

    async def join(self, seeds: Sequence[str]) -> None:
        """Dial ``seeds`` now and use them as bootstrap peers from the next start on."""
        self._bootstrap = tuple(seeds)
        for seed in seeds:
            await self.node.connect_to_peer(seed)

    # ----------------------------------------------------------- process faults

    def _signal(self, sig: signal.Signals) -> int:
        pid = self.daemon_pid
        if pid is None:
            raise RuntimeError(f"{self.name} has no running p2pd to send {sig.name} to")
        os.kill(pid, sig)
        return pid

    async def kill(self, *, timeout: float = 5.0) -> None:
        """SIGKILL the node's p2pd and wait until it is gone (the Python side stays)."""
        self._paused = False  # SIGKILL ends a stopped process too
        pid = self._signal(signal.SIGKILL)
        await self._wait_gone(pid, timeout)

    async def terminate(self, *, timeout: float = 5.0) -> None:
        """SIGTERM the node's p2pd (a clean daemon exit) and wait until it is gone."""
        await self._unpause()
        pid = self._signal(signal.SIGTERM)
        await self._wait_gone(pid, timeout)

    async def pause(self, *, timeout: float = 5.0) -> None:
        """SIGSTOP the node's p2pd and wait until the kernel has stopped it: connections
        stay open but nothing answers."""
        pid = self._signal(signal.SIGSTOP)
        self._paused = True
        with anyio.fail_after(timeout):
            while process_state(pid) not in ("T", "t", None):  # noqa: ASYNC110 (no event)
                await anyio.sleep(0.005)

    async def resume(self) -> None:
        """SIGCONT a paused p2pd."""
        await self._unpause()

    async def _unpause(self) -> None:
        if self._paused:
            self._paused = False
            with contextlib.suppress(RuntimeError, ProcessLookupError):
                self._signal(signal.SIGCONT)

    # Polling: a process's exit and the supervisor's state have no event to wait on.
    async def _wait_gone(self, pid: int, timeout: float) -> None:
        with anyio.fail_after(timeout):
            while not process_gone(pid) or (  # noqa: ASYNC110
                self._current is not None
                and self._current.node.daemon_pid == pid
                and self._current.node.is_running()
            ):
                await anyio.sleep(0.01)

    async def wait_running(self, timeout: float = 10.0) -> None:
        """Wait until the daemon is usable again (e.g. after the supervisor restarted it)."""
        with anyio.fail_after(timeout):
            while not self.running:  # noqa: ASYNC110 (see _wait_gone)
                await anyio.sleep(0.01)

    # ---------------------------------------------------------- protocol faults

    def make_busy(self, busy: bool = True) -> None:
        """Reject every job with reason ``busy``; status shows the host at capacity."""
        self._require_host()
        self.faults.busy = busy

    def make_slow(self, job_delay: float, *, status_delay: float = 0.0) -> None:
        """Delay each job's first output by ``job_delay`` s and status answers by
        ``status_delay`` s (0 restores normal speed)."""
        self._require_host()
        self.faults.job_delay = job_delay
        self.faults.status_delay = status_delay

    def clear_faults(self) -> None:
        self.faults.clear()

    def _require_host(self) -> None:
        if self.spec is None:
            raise RuntimeError(f"{self.name} is a {self.role} node, not a host")

    async def get_connected_peers(self) -> list[str]:
        try:
            return await self.node.get_connected_peers()
        except FabstirError:
            return []
