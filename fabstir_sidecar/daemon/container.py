"""p2pd in a Docker container, supervised like a local process (the optional ``docker`` extra).

``ContainerDaemon`` has the interface of ``SpawnedDaemon``: ``start(task_group)``, ``stop()``,
``availability``, ``restarts``, ``pid`` and the ``on_restarted`` hook. It is how a node gets a
daemon where the linux/amd64 p2pd cannot run natively (``P2P_DAEMON=docker``).

* The container runs the p2pd-only image (``fabstir-p2pd:local``, daemon/Dockerfile) with the
  node's own flags (``build_argv``: never the public bootstrap list), its control socket on
  TCP port 5000 published on the host's loopback only, and the node's key copied in (owned by
  the image's user, mode 0400) so that the peer id is the node's.
* Each container gets a bridge network of its own: its control port and the node's handler
  listener are reachable from the host and that container only, not from every container on
  the engine's default bridge. Inbound streams: the daemon dials the node's handler listener
  on that network's gateway address, the host side of the bridge (``handler_addr``).
* Supervision: when the container exits unexpectedly it is started again (same container:
  same key, same published port), with backoff and the same give-up rule as a process, then
  ``on_restarted`` runs. ``stop()`` removes it on every exit path, shielded from cancellation.
* Everything it creates (container, network) carries the label ``io.fabstir.sidecar=p2pd``
  and the owner ``<hostname>/<pid>``; what a process that no longer exists left behind (a
  crashed or SIGKILLed node) is removed when the next node on this machine starts.

The Docker SDK is blocking; each call runs in a worker thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import socket
import tarfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar, Unpack

import anyio
import anyio.abc
import anyio.to_thread

from fabstir_sidecar.core.errors import DaemonStartError, DaemonUnavailableError
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.daemon.process import DaemonSpec, build_argv
from fabstir_sidecar.daemon.runtime_dir import pid_alive
from fabstir_sidecar.daemon.supervisor import SupervisedDaemon, Supervision, restart_attempts

log = logging.getLogger(__name__)

LABEL: Final = "io.fabstir.sidecar"
OWNER_LABEL: Final = "io.fabstir.sidecar.owner"
CONTROL_PORT: Final = 5000
KEY_PATH: Final = "/p2pd-identity.key"
IMAGE_USER: Final = 10001  # daemon/Dockerfile: USER 10001:10001

T = TypeVar("T")


# ---------------------------------------------------------------- pure helpers


def container_listen(listen: tuple[str, ...]) -> tuple[str, ...]:
    """Loopback listen addresses mean "this node only": in a container that is its interfaces."""
    return tuple(
        a.replace("/ip4/127.0.0.1/", "/ip4/0.0.0.0/", 1).replace("/ip6/::1/", "/ip6/::/", 1)
        for a in listen
    )


def _has_key(spec: DaemonSpec) -> bool:
    return spec.identity_file is not None or spec.identity_key is not None


def container_argv(spec: DaemonSpec) -> list[str]:
    """p2pd's arguments in the container (the image's entrypoint is the binary)."""
    inner = dataclasses.replace(
        spec,
        listen=container_listen(spec.listen),
        identity_file=Path(KEY_PATH) if _has_key(spec) else None,
        identity_key=None,  # copied into the container at KEY_PATH instead
    )
    argv = build_argv(inner)[1:]
    argv[argv.index("-listen") + 1] = f"/ip4/0.0.0.0/tcp/{CONTROL_PORT}"
    return argv


def owner() -> str:
    return f"{socket.gethostname()}/{os.getpid()}"


def is_leftover(labels: Mapping[str, str], *, host: str, alive: Callable[[int], bool]) -> bool:
    """A container of ours whose owning process, on this machine, no longer exists."""
    if labels.get(LABEL) != "p2pd":
        return False
    owner_host, _, pid = labels.get(OWNER_LABEL, "").rpartition("/")
    return owner_host == host and pid.isdigit() and not alive(int(pid))


def _key_archive(key: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(KEY_PATH.lstrip("/"))
        info.size, info.mode, info.uid, info.gid = len(key), 0o400, IMAGE_USER, IMAGE_USER
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(key))
    return buffer.getvalue()


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------- the launcher


class ContainerDaemon(SupervisedDaemon):
    what = "p2pd container"

    def __init__(self, spec: DaemonSpec, *, image: str, **options: Unpack[Supervision]) -> None:
        super().__init__(spec, **options)
        self.image = image
        self._host_port = _free_loopback_port()
        self.control_addr = f"/ip4/127.0.0.1/tcp/{self._host_port}"
        self.handler_addr: str | None = None
        self._probe = DaemonControl(self.control_addr, request_timeout=2.0)
        self._client: Any = None
        self._network: Any = None
        self._container: Any = None
        self._pid: int | None = None
        self._removed = False

    @property
    def pid(self) -> int | None:
        """p2pd's pid as the engine's host sees it (the container's init process)."""
        return self._pid

    @property
    def container_id(self) -> str | None:
        return str(self._container.id) if self._container is not None else None

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        await _thread(self._create_and_start)
        try:
            await self._wait_ready()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.stop()
            raise
        self.availability.up()
        task_group.start_soon(self._watch)

    # -- blocking parts (worker threads) ---------------------------------------------

    def _docker(self) -> Any:
        try:
            import docker  # the optional extra: pip install 'fabstir-sidecar[docker]'
        except ImportError as exc:
            raise DaemonStartError(
                "P2P_DAEMON=docker needs the Docker SDK: pip install 'fabstir-sidecar[docker]'"
            ) from exc
        try:
            client = docker.from_env()
            client.ping()
        except docker.errors.DockerException as exc:
            raise DaemonStartError(f"no Docker engine reachable: {exc}") from exc
        return client

    def _create_and_start(self) -> None:
        import docker.errors

        self._client = client = self._docker()
        self.remove_leftovers(client)
        key = (
            self.spec.identity_file.read_bytes()
            if self.spec.identity_file
            else self.spec.identity_key
        )
        name = f"fabstir-p2pd-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        labels = {LABEL: "p2pd", OWNER_LABEL: owner()}
        try:
            self._network = client.networks.create(name, driver="bridge", labels=labels)
            self._container = client.containers.create(
                self.image,
                command=container_argv(self.spec),
                name=name,
                labels=labels,
                network=name,
                ports={f"{CONTROL_PORT}/tcp": ("127.0.0.1", self._host_port)},
                user=f"{IMAGE_USER}:{IMAGE_USER}",
                detach=True,
            )
        except docker.errors.ImageNotFound as exc:
            raise DaemonStartError(
                f"image {self.image} not found: build it with `python3 daemon/build_images.py`"
            ) from exc
        except docker.errors.DockerException as exc:
            raise DaemonStartError(f"cannot create the p2pd container or network: {exc}") from exc
        try:
            if key is not None:
                self._container.put_archive("/", _key_archive(key))
            self._container.start()
            self._refresh()
        except docker.errors.DockerException as exc:
            raise DaemonStartError(f"cannot start the p2pd container: {exc}") from exc

    def _refresh(self) -> None:
        self._container.reload()
        state = self._container.attrs["State"]
        self._pid = int(state.get("Pid") or 0) or None
        networks = self._container.attrs["NetworkSettings"].get("Networks") or {}
        gateway = (networks.get(self._network.name) or {}).get("Gateway")
        self.handler_addr = f"/ip4/{gateway}/tcp/0" if gateway else None

    def _status(self) -> str:
        self._container.reload()
        return str(self._container.status)

    def _logs_tail(self) -> str:
        with contextlib.suppress(Exception):
            lines = self._container.logs(tail=3).decode("utf-8", "replace").strip().splitlines()
            return "; ".join(lines) or "no output"
        return "no output"

    def _wait_exit(self) -> int | None:
        import docker.errors

        try:
            return int(self._container.wait()["StatusCode"])
        except (docker.errors.DockerException, OSError):
            return None  # removed, or the engine went away: either way it is not running

    def _remove(self) -> None:
        if self._removed:
            return
        self._removed = True
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.stop(timeout=max(0, int(self._stop_grace)))
            with contextlib.suppress(Exception):
                self._container.remove(force=True, v=True)
            log.info("p2pd container removed", extra={"container": self.container_id})
        if self._network is not None:
            with contextlib.suppress(Exception):
                self._network.remove()

    @staticmethod
    def remove_leftovers(client: Any) -> int:
        """Remove containers, then networks, left by crashed nodes of this machine; returns
        how many things were removed."""
        removed = 0
        host = socket.gethostname()
        ours = {"label": f"{LABEL}=p2pd"}
        for container in client.containers.list(all=True, filters=ours):
            if is_leftover(container.labels, host=host, alive=pid_alive):
                with contextlib.suppress(Exception):
                    container.remove(force=True, v=True)
                    removed += 1
                    log.warning("removed a leftover p2pd container", extra={"id": container.id})
        for network in client.networks.list(filters=ours):
            if is_leftover(network.attrs.get("Labels") or {}, host=host, alive=pid_alive):
                with contextlib.suppress(Exception):
                    network.remove()
                    removed += 1
        return removed

    # -- async supervision -------------------------------------------------------------

    async def _wait_ready(self) -> None:
        delay = 0.02
        with anyio.move_on_after(self._start_timeout) as scope:
            while True:
                try:
                    await self._probe.identify()
                    return
                except DaemonUnavailableError:
                    pass
                if await _thread(self._status) not in ("created", "running"):
                    reason = await _thread(self._logs_tail)
                    raise DaemonStartError(f"the p2pd container exited: {reason}")
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.25)
        if scope.cancelled_caught:
            reason = await _thread(self._logs_tail)
            raise DaemonStartError(
                f"p2pd container not ready within {self._start_timeout:.1f}s ({reason})"
            )

    async def _wait_died(self) -> str | None:
        code = await anyio.to_thread.run_sync(self._wait_exit, abandon_on_cancel=True)
        if self._stopping:
            return None
        return f"p2pd container exited with code {code}: {await _thread(self._logs_tail)}"

    async def _start_again(self) -> None:
        async for attempt in restart_attempts():
            with attempt:
                await _thread(self._start_container_again)
                await self._wait_ready()

    def _start_container_again(self) -> None:
        import docker.errors

        try:
            self._container.start()
            self._refresh()
        except docker.errors.DockerException as exc:
            raise DaemonStartError(f"cannot start the p2pd container again: {exc}") from exc

    async def stop(self) -> None:
        self._stopping = True
        self.availability.down("node is stopping", permanent=True)
        with anyio.CancelScope(shield=True):
            await _thread(self._remove)
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()


async def _thread(func: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(func)
