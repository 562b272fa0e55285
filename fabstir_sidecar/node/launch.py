"""Which daemon a node runs on: a p2pd it spawns (supervised) or one it attaches to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fabstir_sidecar.core.settings import NodeConfig
from fabstir_sidecar.daemon.binary import find_p2pd
from fabstir_sidecar.daemon.identity import load_or_create_identity, new_identity_key
from fabstir_sidecar.daemon.process import DaemonSpec
from fabstir_sidecar.daemon.runtime_dir import RuntimeDir
from fabstir_sidecar.daemon.supervisor import AttachedDaemon, Daemon, SpawnedDaemon

__all__ = ["launch_daemon"]


def launch_daemon(
    cfg: NodeConfig, runtime: RuntimeDir, on_restarted: Callable[[], Awaitable[None]]
) -> tuple[Daemon, str]:
    """The daemon for ``cfg`` (not started yet) and its control multiaddr.

    With ``control_addr`` set the node attaches to that daemon; otherwise it spawns p2pd with
    its control socket in the node's private runtime directory, and an ephemeral identity
    key (in memory only) unless ``identity_file`` names a persistent one.
    """
    if cfg.control_addr is not None:
        return AttachedDaemon(cfg.control_addr, on_restarted=on_restarted), cfg.control_addr
    control_socket = runtime.file("p2pd.sock")
    if cfg.identity_file is not None:
        load_or_create_identity(cfg.identity_file)
    # Without a persistent identity: an ephemeral key, never written to disk (daemon/process).
    key = None if cfg.identity_file is not None else new_identity_key()[0]
    spec = DaemonSpec(
        binary=find_p2pd(cfg.p2pd_path),
        control_socket=control_socket,
        listen=cfg.listen,
        announce=cfg.announce,
        identity_file=cfg.identity_file,
        identity_key=key,
        enable_dht=cfg.enable_dht,
        dht_mode=cfg.dht_mode,
        conn_low=cfg.min_connections,
        conn_high=cfg.max_connections,
    )
    daemon = SpawnedDaemon(
        spec,
        start_timeout=cfg.daemon_start_timeout,
        stop_grace=cfg.daemon_stop_grace,
        restart=cfg.restart_daemon,
        on_restarted=on_restarted,
    )
    return daemon, f"/unix{control_socket}"
