"""Keep a node's daemon usable: spawn/restart it (or watch an attached one), gate calls.

``Availability`` is the gate every control request passes: while the daemon is down, calls
raise ``DaemonUnavailableError`` at once instead of hanging on a dead socket.

``SpawnedDaemon`` owns a p2pd it started: when the process dies unexpectedly it restarts it
with the same identity (and, where it can, on the same ports, so peers that knew our address
reconnect), with exponential backoff via tenacity, then calls ``on_restarted`` so the node
re-registers its protocol handlers and reconnects to its bootstrap peers. That restart policy
is ``SupervisedDaemon``'s, shared with the container launcher (daemon/container.py).

``AttachedDaemon`` uses a daemon someone else runs: it probes it periodically; when it comes
back after an outage (restarted by its owner) the same ``on_restarted`` hook runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, Required, TypedDict, Unpack

import anyio
import anyio.abc
from multiaddr import Multiaddr
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from fabstir_sidecar.core.errors import DaemonStartError, DaemonUnavailableError, FabstirError
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.daemon.process import DaemonProcess, DaemonSpec

log = logging.getLogger(__name__)

OnRestarted = Callable[[], Awaitable[None]]


class Availability:
    def __init__(self) -> None:
        self._reason: str | None = "p2pd is not started"
        self._permanent = False
        self._failure: str | None = None
        self._failed: anyio.Event | None = None  # made on first wait (needs an event loop)

    @property
    def failure(self) -> str | None:
        """Why the daemon is gone for good (kept dying, or could not be restarted); None
        while it runs or is being restarted, and after a normal stop."""
        return self._failure

    def fail(self, reason: str) -> None:
        """The daemon is gone and will not come back: the node cannot serve any more."""
        self.down(reason, permanent=True)
        if self._failure is None:
            self._failure = reason
            if self._failed is not None:
                self._failed.set()

    async def wait_failed(self) -> str:
        """Wait until :meth:`fail` was called; returns its reason."""
        if self._failure is None:
            self._failed = self._failed or anyio.Event()
            await self._failed.wait()
        assert self._failure is not None
        return self._failure

    @property
    def available(self) -> bool:
        return self._reason is None

    @property
    def reason(self) -> str | None:
        return self._reason

    def up(self) -> None:
        if not self._permanent:
            self._reason = None

    def down(self, reason: str, *, permanent: bool = False) -> None:
        self._reason = reason
        self._permanent = self._permanent or permanent

    def check(self) -> None:
        if self._reason is not None:
            raise DaemonUnavailableError(self._reason)


class Daemon(Protocol):
    availability: Availability
    restarts: int

    async def start(self, task_group: anyio.abc.TaskGroup) -> None: ...
    async def stop(self) -> None: ...


def pin_listen_ports(configured: tuple[str, ...], actual: tuple[str, ...]) -> tuple[str, ...]:
    """Replace ``/tcp/0`` (or ``/udp/0``) in configured addresses by the port the daemon got.

    Only when exactly one actual address has the same shape, so wildcard hosts (0.0.0.0,
    which expand to one address per interface) keep their configured form.
    """
    pinned = []
    for conf in configured:
        shape = _shape(conf)
        matches = [a for a in actual if shape is not None and _shape(a) == shape]
        pinned.append(matches[0] if len(matches) == 1 and conf != matches[0] else conf)
    return tuple(pinned)


def _shape(addr: str) -> str | None:
    try:
        parts = str(Multiaddr(addr)).split("/")
    except Exception:
        return None
    for i, part in enumerate(parts[:-1]):
        if part in ("tcp", "udp"):
            parts[i + 1] = "0"
    return "/".join(parts)


class RestartBudget:
    """At most ``max_restarts`` restarts within ``window`` seconds: a daemon that keeps dying
    is not restarted forever."""

    def __init__(self, max_restarts: int = 5, window: float = 60.0) -> None:
        self.max_restarts = max_restarts
        self.window = window
        self._recent: list[float] = []

    def spend(self, died: str) -> str | None:
        """Record one more restart; instead the give-up reason when the budget is spent."""
        now = time.monotonic()
        self._recent = [t for t in self._recent if now - t < self.window]
        if len(self._recent) >= self.max_restarts:
            return f"{died}; gave up after {self.max_restarts} restarts within {self.window:.0f}s"
        self._recent.append(now)
        return None


def restart_attempts() -> AsyncRetrying:
    """The retry policy for starting a daemon again after it died (process or container)."""
    return AsyncRetrying(
        stop=stop_after_attempt(4),
        wait=wait_exponential_jitter(multiplier=0.1, max=2.0),
        retry=retry_if_exception_type(DaemonStartError),
        sleep=anyio.sleep,
        reraise=True,
    )


class Supervision(TypedDict, total=False):
    """How a :class:`SupervisedDaemon` is run (its keyword arguments)."""

    start_timeout: Required[float]
    stop_grace: Required[float]
    restart: Required[bool]
    on_restarted: Required[OnRestarted]
    max_restarts: int
    restart_window: float


class SupervisedDaemon:
    """A daemon we run ourselves (a process here, a container in daemon/container.py): when
    it dies unexpectedly it is started again within a :class:`RestartBudget`, then
    ``on_restarted`` runs; a subclass says how it waits for the death and how it restarts."""

    what = "p2pd"  # as log messages name it

    def __init__(
        self,
        spec: DaemonSpec,
        *,
        start_timeout: float,
        stop_grace: float,
        restart: bool,
        on_restarted: OnRestarted,
        max_restarts: int = 5,
        restart_window: float = 60.0,
    ) -> None:
        self.spec = spec
        self.availability = Availability()
        self.restarts = 0
        self._start_timeout = start_timeout
        self._stop_grace = stop_grace
        self._restart = restart
        self._on_restarted = on_restarted
        self._budget = RestartBudget(max_restarts, restart_window)
        self._stopping = False

    @property
    def pid(self) -> int | None:
        raise NotImplementedError

    async def _wait_died(self) -> str | None:
        """Wait until the daemon exits: why it died, or None when we stopped it."""
        raise NotImplementedError

    async def _start_again(self) -> None:
        """Start the daemon again after it died (raises ``DaemonStartError``)."""
        raise NotImplementedError

    async def _watch(self) -> None:
        while (died := await self._wait_died()) is not None:
            if not self._restart:
                self.availability.fail(f"{died}; restart is disabled")
                log.error("%s died and restart is disabled", self.what, extra={"reason": died})
                return
            reason = self._budget.spend(died)
            if reason is not None:
                self.availability.fail(reason)
                log.error("p2pd keeps dying, not restarting it again", extra={"reason": reason})
                return
            self.availability.down(f"{died}; restarting it")
            try:
                await self._start_again()
            except DaemonStartError as exc:
                self.availability.fail(f"{died}; restart failed: {exc.reason}")
                log.error("%s could not be restarted", self.what, extra={"error": str(exc)})
                return
            self.restarts += 1
            self.availability.up()
            log.warning(
                "%s restarted", self.what, extra={"p2pd_pid": self.pid, "restarts": self.restarts}
            )
            try:
                await self._on_restarted()
            except FabstirError as exc:
                log.error("re-initialising after a p2pd restart failed", extra={"error": str(exc)})


class SpawnedDaemon(SupervisedDaemon):
    def __init__(self, spec: DaemonSpec, **options: Unpack[Supervision]) -> None:
        super().__init__(spec, **options)
        self._probe = DaemonControl(f"/unix{spec.control_socket}", request_timeout=2.0)
        self._proc: DaemonProcess | None = None
        self._restart_spec = spec
        self._tg: anyio.abc.TaskGroup | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        self._tg = task_group
        self._proc = await self._spawn(self.spec)
        _, actual = await self._probe.identify()
        self._restart_spec = self.spec.with_listen(pin_listen_ports(self.spec.listen, actual))
        self.availability.up()
        task_group.start_soon(self._watch)

    async def _spawn(self, spec: DaemonSpec) -> DaemonProcess:
        assert self._tg is not None
        proc = DaemonProcess(spec)
        await proc.start(self._tg, ready_check=self._probe.identify, timeout=self._start_timeout)
        return proc

    async def _wait_died(self) -> str | None:
        proc = self._proc
        assert proc is not None
        returncode = await proc.wait_exited()
        if self._stopping or proc.stopping:
            return None
        return f"p2pd (pid {proc.pid}) exited with code {returncode}: {proc.failure_reason()}"

    async def _start_again(self) -> None:
        specs = [self._restart_spec, self.spec]
        attempt_no = 0
        async for attempt in restart_attempts():
            with attempt:
                # First try the ports we had (peers know them); then what was configured.
                spec = specs[min(attempt_no, 1)]
                attempt_no += 1
                self._proc = await self._spawn(spec)

    async def stop(self) -> None:
        self._stopping = True
        self.availability.down("node is stopping", permanent=True)
        if self._proc is not None:
            await self._proc.stop(self._stop_grace)


class AttachedDaemon:
    """A daemon we did not start: never stopped by us; probed every ``interval`` seconds.

    ``start`` waits up to ``start_timeout`` seconds for a daemon that is still starting (a
    sidecar container started beside ours), then fails with ``DaemonStartError``.
    """

    def __init__(
        self,
        control_addr: str,
        *,
        on_restarted: OnRestarted,
        interval: float = 2.0,
        start_timeout: float = 0.0,
    ) -> None:
        self.availability = Availability()
        self.restarts = 0
        self._probe = DaemonControl(control_addr, request_timeout=max(1.0, interval))
        self._on_restarted = on_restarted
        self._interval = interval
        self._start_timeout = start_timeout
        self._peer_id: str | None = None

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        deadline = anyio.current_time() + self._start_timeout
        delay = 0.05
        while True:
            try:
                self._peer_id, _ = await self._probe.identify()
                break
            except DaemonUnavailableError as exc:
                if anyio.current_time() + delay > deadline:
                    waited = f" (waited {self._start_timeout:.0f}s)" if self._start_timeout else ""
                    raise DaemonStartError(f"cannot attach to p2pd{waited}: {exc}") from exc
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.5)
        self.availability.up()
        task_group.start_soon(self._monitor)

    async def _monitor(self) -> None:
        while True:
            await anyio.sleep(self._interval)
            try:
                peer_id, _ = await self._probe.identify()
            except FabstirError as exc:
                if self.availability.available:
                    log.error("attached p2pd is unreachable", extra={"error": str(exc)})
                self.availability.down(f"attached p2pd is unreachable: {exc}")
                continue
            if not self.availability.available:
                if peer_id != self._peer_id:
                    log.warning(
                        "attached p2pd came back with another peer ID",
                        extra={"old": self._peer_id, "new": peer_id},
                    )
                    self._peer_id = peer_id
                self.availability.up()
                self.restarts += 1
                try:
                    await self._on_restarted()
                except FabstirError as exc:
                    log.error(
                        "re-initialising after the attached p2pd came back failed",
                        extra={"error": str(exc)},
                    )

    async def stop(self) -> None:
        self.availability.down("node is stopping", permanent=True)
