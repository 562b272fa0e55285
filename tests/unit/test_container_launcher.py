"""Pure parts of the container support: p2pd's argv in a container, leftover detection, the
key archive, handler addresses chosen from the control address, and the new configuration."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from fabstir_sidecar import ConfigError, NodeConfig
from fabstir_sidecar.core.multiaddr import tcp_host_port
from fabstir_sidecar.daemon.container import (
    CONTROL_PORT,
    KEY_PATH,
    LABEL,
    OWNER_LABEL,
    _key_archive,
    container_argv,
    container_listen,
    is_leftover,
)
from fabstir_sidecar.daemon.handlers import handler_addr_for
from fabstir_sidecar.daemon.process import DaemonSpec


def spec(**changes: object) -> DaemonSpec:
    values: dict[str, object] = {
        "binary": Path("p2pd"),
        "control_socket": Path("/run/unused.sock"),
        "listen": ("/ip4/127.0.0.1/tcp/0",),
    }
    values.update(changes)
    return DaemonSpec(**values)  # type: ignore[arg-type]


def test_container_argv_listens_for_control_on_tcp_and_keeps_our_flags() -> None:
    argv = container_argv(spec(identity_file=Path("/home/me/node.key"), dht_mode="server"))
    assert argv[argv.index("-listen") + 1] == f"/ip4/0.0.0.0/tcp/{CONTROL_PORT}"
    assert argv[argv.index("-bootstrapPeers") + 1] == ""  # never the public list
    assert argv[argv.index("-id") + 1] == KEY_PATH  # the copy in the container
    assert argv[argv.index("-hostAddrs") + 1] == "/ip4/0.0.0.0/tcp/0"
    assert "-dhtServer" in argv and "p2pd" not in argv  # the image's entrypoint is p2pd


def test_no_identity_means_no_key_flag() -> None:
    assert "-id" not in container_argv(spec())


def test_container_listen_maps_loopback_only() -> None:
    assert container_listen(
        ("/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/0", "/ip4/10.0.0.5/udp/4001/quic-v1")
    ) == ("/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/0", "/ip4/10.0.0.5/udp/4001/quic-v1")


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({LABEL: "p2pd", OWNER_LABEL: "box/123"}, True),  # dead owner on this machine
        ({LABEL: "p2pd", OWNER_LABEL: "box/456"}, False),  # owner alive
        ({LABEL: "p2pd", OWNER_LABEL: "other/123"}, False),  # another machine's
        ({LABEL: "p2pd"}, False),  # no owner: not ours to judge
        ({OWNER_LABEL: "box/123"}, False),  # not a p2pd container of ours
        ({LABEL: "p2pd", OWNER_LABEL: "box/x"}, False),
    ],
)
def test_is_leftover(labels: dict[str, str], expected: bool) -> None:
    assert is_leftover(labels, host="box", alive=lambda pid: pid == 456) is expected


def test_key_archive_is_readable_by_the_image_user_only() -> None:
    with tarfile.open(fileobj=io.BytesIO(_key_archive(b"secret")), mode="r") as tar:
        (member,) = tar.getmembers()
        assert "/" + member.name == KEY_PATH
        assert (member.mode, member.uid, member.gid) == (0o400, 10001, 10001)
        extracted = tar.extractfile(member)
        assert extracted is not None and extracted.read() == b"secret"


def test_tcp_host_port() -> None:
    assert tcp_host_port("/ip4/127.0.0.1/tcp/5000") == ("127.0.0.1", 5000)
    assert tcp_host_port("/ip6/::1/tcp/5") == ("::1", 5)
    assert tcp_host_port("/unix/tmp/p2pd.sock") is None
    assert tcp_host_port("/ip4/1.2.3.4/udp/5") is None
    assert tcp_host_port("nonsense") is None


def test_handler_addr_follows_the_control_address() -> None:
    assert handler_addr_for("/unix/tmp/p2pd.sock") is None  # keep the private unix socket
    assert handler_addr_for("/ip4/127.0.0.1/tcp/5000") == "/ip4/127.0.0.1/tcp/0"
    assert handler_addr_for("/ip6/::1/tcp/5000") == "/ip6/::1/tcp/0"


def test_config_daemon_fields() -> None:
    cfg = NodeConfig.load(
        env={
            "P2P_DAEMON": "docker",
            "P2P_DAEMON_IMAGE": "registry.example/p2pd:1",
            "P2P_HANDLER_ADDR": "/unix/run/p2pd/handlers.sock",
        }
    )
    assert (cfg.daemon, cfg.daemon_image) == ("docker", "registry.example/p2pd:1")
    assert cfg.handler_addr == "/unix/run/p2pd/handlers.sock"
    assert NodeConfig().daemon == "process"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"P2P_DAEMON": "podman"}, "P2P_DAEMON"),
        ({"P2P_DAEMON_IMAGE": "two words"}, "P2P_DAEMON_IMAGE"),
        ({"P2P_HANDLER_ADDR": "/ip4/1.2.3.4/udp/5"}, "P2P_HANDLER_ADDR"),
        ({"P2P_DAEMON": "docker", "P2P_DAEMON_ADDR": "/ip4/127.0.0.1/tcp/5000"}, "P2P_DAEMON"),
    ],
)
def test_config_daemon_errors_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        NodeConfig.load(env=env)
