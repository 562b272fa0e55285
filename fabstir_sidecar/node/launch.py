"""Which daemon a node runs on: a p2pd it spawns (a process or a container, supervised) or
one it attaches to; and where the node listens for the streams that daemon forwards."""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from fabstir_sidecar.core.settings import NodeConfig
from fabstir_sidecar.daemon.binary import find_p2pd
from fabstir_sidecar.daemon.handlers import handler_addr_for
from fabstir_sidecar.daemon.identity import load_or_create_identity, new_identity_key
from fabstir_sidecar.daemon.process import DaemonSpec
from fabstir_sidecar.daemon.runtime_dir import RuntimeDir
from fabstir_sidecar.daemon.supervisor import AttachedDaemon, Daemon, SpawnedDaemon

__all__ = ["handler_address", "launch_daemon", "metrics_addr"]

log = logging.getLogger(__name__)


def metrics_addr(cfg: NodeConfig) -> str | None:
    """Where p2pd serves its metrics: ``cfg.metrics_addr``, else a free loopback port when a
    NAT feature is on (the node reads its reachability there), else nowhere."""
    if cfg.metrics_addr is not None:
        return cfg.metrics_addr
    if not (
        cfg.relay_client or cfg.enable_autonat or cfg.enable_hole_punching or cfg.enable_nat_portmap
    ):
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def launch_daemon(
    cfg: NodeConfig, runtime: RuntimeDir, on_restarted: Callable[[], Awaitable[None]]
) -> tuple[Daemon, str]:
    """The daemon for ``cfg`` (not started yet) and its control multiaddr.

    With ``control_addr`` set the node attaches to that daemon; otherwise it spawns p2pd with
    its control socket in the node's private runtime directory, and an ephemeral identity
    key (in memory only) unless ``identity_file`` names a persistent one.
    """
    if cfg.control_addr is not None:
        attached = AttachedDaemon(
            cfg.control_addr, on_restarted=on_restarted, start_timeout=cfg.daemon_start_timeout
        )
        return attached, cfg.control_addr
    control_socket = runtime.file("p2pd.sock")
    if cfg.identity_file is not None:
        load_or_create_identity(cfg.identity_file)
    # Without a persistent identity: an ephemeral key, never written to disk (daemon/process).
    key = None if cfg.identity_file is not None else new_identity_key()[0]
    if not cfg.relay_service:
        log.warning(
            "relay_service is off, but p2pd 1.1.12 relays circuits for other peers whatever "
            "-relayService says (docs/nat.md)"
        )
    spec = DaemonSpec(
        # A container brings its own p2pd: no host binary is looked up for it.
        binary=find_p2pd(cfg.p2pd_path) if cfg.daemon == "process" else Path("p2pd"),
        control_socket=control_socket,
        listen=cfg.listen,
        announce=cfg.announce,
        identity_file=cfg.identity_file,
        identity_key=key,
        enable_dht=cfg.enable_dht,
        dht_mode=cfg.dht_mode,
        conn_low=cfg.min_connections,
        conn_high=cfg.max_connections,
        relay_service=cfg.relay_service,
        relay_client=cfg.relay_client,
        relays=cfg.relay_addrs,  # the bootstrap nodes unless relays are given
        autonat_service=cfg.enable_autonat or cfg.enable_hole_punching,
        nat_portmap=cfg.enable_nat_portmap,
        force_reachability=cfg.force_reachability,
        metrics_addr=metrics_addr(cfg),
    )
    if cfg.daemon == "docker":
        from fabstir_sidecar.daemon.container import ContainerDaemon  # the `docker` extra

        container = ContainerDaemon(
            spec,
            image=cfg.daemon_image,
            start_timeout=max(cfg.daemon_start_timeout, 30.0),  # + the container's start
            stop_grace=cfg.daemon_stop_grace,
            restart=cfg.restart_daemon,
            on_restarted=on_restarted,
        )
        return container, container.control_addr
    daemon = SpawnedDaemon(
        spec,
        start_timeout=cfg.daemon_start_timeout,
        stop_grace=cfg.daemon_stop_grace,
        restart=cfg.restart_daemon,
        on_restarted=on_restarted,
    )
    return daemon, f"/unix{control_socket}"


def handler_address(
    cfg: NodeConfig, daemon: Daemon, control_addr: str, runtime: RuntimeDir
) -> Path | str:
    """Where the node listens for the streams p2pd forwards, as the daemon reaches it: the
    configured address, the container's, one that routes to a TCP daemon, or a private unix
    socket next to a local one."""
    return (
        cfg.handler_addr
        or getattr(daemon, "handler_addr", None)
        or handler_addr_for(control_addr)
        or runtime.file("handlers.sock")
    )
