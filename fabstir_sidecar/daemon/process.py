"""Spawn one p2pd process, wait until it is really ready, bridge its logs, stop it.

The only module that starts subprocesses (besides ``pip`` in binary.py). Rules it keeps:

* our flags only: ``-bootstrapPeers`` is always passed (empty included) so p2pd never falls
  back to the public IPFS bootstrap list, and ``-b`` is never passed (bootstrapping is done
  from Python, so one unreachable peer is reported instead of killing the daemon);
* readiness is a real control round trip (the caller's ``ready_check``), not a sleep;
* stop = SIGTERM, then SIGKILL after a grace period, always under a shielded cancel scope so
  Ctrl-C or a crashing task cannot skip it; the control socket is removed afterwards;
* a fixed TCP port another process listens on is refused before p2pd starts ("port already
  in use", :func:`check_tcp_ports_free`), never silently shared: go-libp2p binds with
  ``SO_REUSEPORT``, which TCP hole punching needs (it dials from the listen port), so a
  second p2pd would otherwise share the port's connections with the first;
* on Linux the child gets ``PR_SET_PDEATHSIG`` (through util-linux ``setpriv``) so that even a
  SIGKILLed Python process does not leave an orphan daemon behind.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import anyio
import anyio.abc

from fabstir_sidecar.core.errors import DaemonStartError, DaemonUnavailableError
from fabstir_sidecar.core.multiaddr import tcp_listen_port
from fabstir_sidecar.daemon import logbridge
from fabstir_sidecar.daemon.runtime_dir import remove_socket

log = logging.getLogger(__name__)

DhtMode = Literal["auto", "server", "client"]


@dataclass(frozen=True, slots=True)
class DaemonSpec:
    """Everything needed to launch one p2pd; pure data, turned into argv by ``build_argv``."""

    binary: Path
    control_socket: Path
    listen: tuple[str, ...]
    bootstrap: tuple[str, ...] = ()
    announce: tuple[str, ...] = ()
    identity_file: Path | None = None
    identity_key: bytes | None = field(default=None, repr=False)
    """An ephemeral key (marshalled, as ``identity_file`` would hold it) used when there is no
    ``identity_file``: handed to p2pd without ever being written to disk (:class:`_KeyHandoff`)."""
    enable_dht: bool = True
    dht_mode: DhtMode = "auto"
    conn_low: int = 0
    conn_high: int = 10
    # NAT traversal (docs/nat.md). p2pd's defaults: relay service on, everything else off.
    relay_service: bool = True
    relay_client: bool = False
    relays: tuple[str, ...] = ()
    """Trusted relays of the relay client; empty: the bootstrap peers."""
    autonat_service: bool = False
    """``-autonat``: the AutoNAT service and DCUtR hole punching (one flag in p2pd)."""
    nat_portmap: bool = False
    force_reachability: Literal["auto", "public", "private"] = "auto"
    metrics_addr: str | None = None
    extra_args: tuple[str, ...] = ()

    def with_listen(self, listen: tuple[str, ...]) -> DaemonSpec:
        return replace(self, listen=listen)


def build_argv(spec: DaemonSpec, identity_path: str | None = None) -> list[str]:
    """p2pd's argv; ``identity_path`` is where the child reads ``spec.identity_key``."""
    argv = [
        str(spec.binary),
        "-listen",
        f"/unix{spec.control_socket}",
        "-bootstrapPeers",
        ",".join(spec.bootstrap),
        "-connManager",
        "-connLo",
        str(spec.conn_low),
        "-connHi",
        str(spec.conn_high),
    ]
    if spec.listen:
        argv += ["-hostAddrs", ",".join(spec.listen)]
    else:
        argv.append("-noListenAddrs")
    if spec.announce:
        argv += ["-announceAddrs", ",".join(spec.announce)]
    if spec.identity_file is not None:
        argv += ["-id", str(spec.identity_file)]
    elif identity_path is not None:
        argv += ["-id", identity_path]
    if spec.enable_dht:
        argv.append({"auto": "-dht", "server": "-dhtServer", "client": "-dhtClient"}[spec.dht_mode])
    argv += _nat_args(spec)
    argv += list(spec.extra_args)
    return argv


def check_tcp_ports_free(listen: Sequence[str]) -> None:
    """Refuse fixed TCP listen ports that a socket already listens on (DaemonStartError).

    Our probe binds without ``SO_REUSEPORT`` (with ``SO_REUSEADDR``, so a port in TIME_WAIT
    is free): Linux then refuses it exactly when something listens there. Port 0 and non-TCP
    addresses are not checked; the window between the probe and p2pd's bind is tiny.
    """
    for addr in listen:
        target = tcp_listen_port(addr)
        if target is None:
            continue
        host, port = target
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                # Anything else (an address of another network namespace p2pd is spawned
                # into, say) is p2pd's own to report.
                if exc.errno == errno.EADDRINUSE:
                    raise DaemonStartError(
                        f"port already in use ({addr}): address already in use"
                    ) from exc


def daemon_environment() -> dict[str, str]:
    """The environment p2pd runs with: ours (go-libp2p keeps ``SO_REUSEPORT`` on, which TCP
    hole punching needs; :func:`check_tcp_ports_free` refuses a taken port instead)."""
    return dict(os.environ)


def _nat_args(spec: DaemonSpec) -> list[str]:
    """Relay, AutoNAT, hole punching, port mapping, reachability and metrics flags.

    ``-relayService=false`` is passed when asked, but p2pd 1.1.12 relays for others anyway
    (measured, as with ``-relay=false``, which also breaks ``-autoRelay``: not passed);
    ``-autoRelay`` needs a DHT flag, which NodeConfig checks. With
    ``-relayDiscovery`` on (p2pd's default) go-libp2p waits for 4 relay candidates or 3
    minutes before its first reservation; off, the trusted relays are static relays and the
    reservation is made within a second (measured, docs/nat.md).
    """
    args = [] if spec.relay_service else ["-relayService=false"]
    if spec.relay_client:
        args.append("-autoRelay")
        relays = spec.relays or spec.bootstrap
        if relays:
            args += ["-trustedRelays", ",".join(relays), "-relayDiscovery=false"]
    if spec.autonat_service:
        args.append("-autonat")
    if spec.nat_portmap:
        args.append("-natPortMap")
    if spec.force_reachability != "auto":
        args.append(f"-forceReachability{spec.force_reachability.capitalize()}")
    if spec.metrics_addr is not None:
        args += ["-metricsAddr", spec.metrics_addr]
    return args


def _death_signal_prefix() -> list[str]:
    """``setpriv --pdeathsig TERM --``: the kernel signals p2pd if our process dies."""
    if not sys.platform.startswith("linux"):
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


class _KeyHandoff:
    """Gives p2pd's ``-id`` an ephemeral key that never outlives us, even after a SIGKILL.

    On Linux, a memfd (memory only) passed to the child and read as ``/dev/fd/N``. Elsewhere,
    a 0600 file beside the control socket. Either is closed or removed as soon as p2pd is
    ready: it reads ``-id`` once, before it opens its control socket.
    """

    def __init__(self, key: bytes, directory: Path) -> None:
        self._fd: int | None = None
        self._file: Path | None = None
        self.pass_fds: tuple[int, ...] = ()
        if hasattr(os, "memfd_create"):
            self._fd = os.memfd_create("fabstir-identity", os.MFD_CLOEXEC)
            os.write(self._fd, key)  # a 68-byte write to a memfd is never short
            self.pass_fds = (self._fd,)
            self.path = f"/dev/fd/{self._fd}"
        else:  # pragma: no cover - not Linux
            self._file = directory / "identity.key"
            fd = os.open(self._file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(key)
            self.path = str(self._file)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._file is not None:
            self._file.unlink(missing_ok=True)
            self._file = None


class DaemonProcess:
    """One run of p2pd. Not restartable: the supervisor makes a new one for a restart."""

    def __init__(self, spec: DaemonSpec) -> None:
        self.spec = spec
        self._proc: anyio.abc.Process | None = None
        self._exited = anyio.Event()
        self._stopping = False
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._fatal_lines: list[str] = []
        self.returncode: int | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and not self._exited.is_set()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def failure_reason(self) -> str:
        """The daemon's own words about why it stopped (fatal line, else last log lines)."""
        if self._fatal_lines:
            return self._fatal_lines[-1]
        if self._stderr_tail:
            return self._stderr_tail[-1]
        return "no output"

    async def wait_exited(self) -> int | None:
        await self._exited.wait()
        return self.returncode

    async def start(
        self,
        task_group: anyio.abc.TaskGroup,
        *,
        ready_check: Callable[[], Awaitable[object]],
        timeout: float,
    ) -> None:
        """Spawn p2pd and return once ``ready_check`` succeeds against its control socket."""
        remove_socket(self.spec.control_socket)  # a SIGKILLed predecessor leaves it behind
        check_tcp_ports_free(self.spec.listen)
        key = self.spec.identity_key
        handoff = None if key is None else _KeyHandoff(key, self.spec.control_socket.parent)
        try:
            argv = _death_signal_prefix() + build_argv(
                self.spec, None if handoff is None else handoff.path
            )
            log.debug("spawning p2pd", extra={"argv": argv})
            try:
                self._proc = await anyio.open_process(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,  # Ctrl-C in a terminal reaches us, not p2pd
                    env=daemon_environment(),
                    pass_fds=() if handoff is None else handoff.pass_fds,
                )
            except OSError as exc:
                raise DaemonStartError(f"cannot execute {self.spec.binary}: {exc}") from exc
            task_group.start_soon(self._pump_stdout)
            task_group.start_soon(self._pump_stderr_and_wait)
            try:
                await self._wait_ready(ready_check, timeout)
            except BaseException:
                await self.stop(grace=1.0)
                raise
        finally:
            if handoff is not None:  # p2pd read -id at start, before it answered us
                handoff.close()
        log.info(
            "p2pd ready",
            extra={"p2pd_pid": self.pid, "control": str(self.spec.control_socket)},
        )

    async def _wait_ready(
        self, ready_check: Callable[[], Awaitable[object]], timeout: float
    ) -> None:
        delay = 0.002
        with anyio.move_on_after(timeout) as scope:
            while True:
                if self._exited.is_set():
                    await self._raise_exited()
                if self.spec.control_socket.exists():
                    try:
                        await ready_check()
                        return
                    except (DaemonUnavailableError, OSError):
                        pass
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.05)
        if scope.cancelled_caught:
            raise DaemonStartError(
                f"not ready within {timeout:.1f}s (last output: {self.failure_reason()})"
            )

    async def _raise_exited(self) -> None:
        # _exited is set only after stderr reached EOF and the exit code was collected,
        # so the daemon's last words are already in failure_reason().
        reason = self.failure_reason()
        if "address already in use" in reason:
            listen = ", ".join(self.spec.listen)
            reason = f"port already in use ({listen}): {reason}"
        raise DaemonStartError(reason, returncode=self.returncode)

    async def _pump_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for line in _lines(self._proc.stdout):
            log.debug("p2pd stdout: %s", line, extra={"p2pd_pid": self.pid})

    async def _pump_stderr_and_wait(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stderr is not None
        try:
            async for line in _lines(proc.stderr):
                parsed = logbridge.parse_log_line(line)
                self._stderr_tail.append(parsed.message)
                if parsed.fatal_startup:
                    self._fatal_lines.append(parsed.message)
                logbridge.emit(parsed, pid=proc.pid, quiet_shutdown=self._stopping)
            self.returncode = await proc.wait()
        finally:
            self._exited.set()
        if not self._stopping:
            log.error(
                "p2pd exited unexpectedly",
                extra={
                    "p2pd_pid": proc.pid,
                    "returncode": self.returncode,
                    "reason": self.failure_reason(),
                },
            )

    async def stop(self, grace: float) -> None:
        """SIGTERM, wait ``grace`` seconds, SIGKILL; remove the control socket. Idempotent."""
        self._stopping = True
        proc = self._proc
        with anyio.CancelScope(shield=True):
            if proc is not None and proc.returncode is None:
                try:
                    proc.terminate()
                    with anyio.move_on_after(grace):
                        await proc.wait()
                    if proc.returncode is None:
                        log.warning(
                            "p2pd ignored SIGTERM, killing it", extra={"p2pd_pid": proc.pid}
                        )
                        proc.kill()
                        with anyio.move_on_after(5):
                            await proc.wait()
                except ProcessLookupError:
                    pass
            if proc is not None:
                self.returncode = proc.returncode
                # Closing the pipes ends the pump tasks even if the daemon's
                # grandchildren (none expected) still hold them open.
                for stream in (proc.stdout, proc.stderr):
                    if stream is not None:
                        await stream.aclose()
            remove_socket(self.spec.control_socket)


async def _lines(stream: anyio.abc.ByteReceiveStream) -> collections.abc.AsyncIterator[str]:
    """Yield decoded lines; a partial last line is yielded at EOF. Long lines are split."""
    buffer = b""
    while True:
        try:
            chunk = await stream.receive(65536)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            yield raw.decode("utf-8", "replace")
        if len(buffer) > 1 << 16:
            yield buffer.decode("utf-8", "replace")
            buffer = b""
    if buffer:
        yield buffer.decode("utf-8", "replace")
