"""The pytest plugin with ``--fabstir-daemon docker``: a user's test suite whose nodes all run
their p2pd in containers (the Docker SDK launcher) serves a job, and every container and
network is removed afterwards."""

from __future__ import annotations

import docker
import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.containers,
    pytest.mark.timeout(300),
    pytest.mark.usefixtures("docker_engine"),
]

pytest_plugins = ["pytester"]

USER_TESTS = """
import pytest
from fabstir_sidecar import FabstirClient, RetryConfig
from fabstir_sidecar.testing import HostSpec

pytestmark = pytest.mark.anyio

@pytest.fixture
def anyio_backend():
    return "asyncio"

async def test_jobs_on_container_daemons(fabstir_network):
    net = await fabstir_network(hosts=[HostSpec(models=["m"])], bootstrap=False)
    host = net.hosts[0]
    client_node = (await net.add_client_node(bootstrap=())).node
    assert client_node.config.daemon == "docker"
    client = FabstirClient(client_node, retry=RetryConfig(attempts=20, max_total_s=60))
    result = await client.run_job(host.address, "m", "in a container")
    assert result.content == "echo: in a container"
    assert host.node.daemon_pid is not None  # the containerised p2pd, for fault injection
"""


def launcher_leftovers() -> list[str]:
    """Containers and networks the launcher made (any owner) that are still there."""
    client = docker.from_env()
    try:
        labelled = {"label": "io.fabstir.sidecar=p2pd"}
        found = client.containers.list(all=True, filters=labelled)
        return [c.name for c in found] + [n.name for n in client.networks.list(filters=labelled)]
    finally:
        client.close()


def test_a_user_suite_runs_on_container_daemons(pytester: pytest.Pytester, p2pd_path: str) -> None:
    before = set(launcher_leftovers())
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--fabstir-daemon", "docker", "--fabstir-p2pd", p2pd_path
    )
    result.assert_outcomes(passed=1)
    assert set(launcher_leftovers()) <= before  # every container and network removed
