"""Real Fabstir networks for tests: a pytest plugin plus plain context managers.

Installed with the package, the pytest plugin (:mod:`.plugin`, entry point ``pytest11``)
provides the ``fabstir_network`` factory fixture and the smaller ``p2pd_binary``,
``fabstir_node`` and ``fabstir_host`` fixtures. Outside pytest::

    async with start_network(hosts=[HostSpec(models=["m"])]) as net:   # async code
        ...
    with network_sync(hosts=[HostSpec(models=["m"])]) as net:           # sync code
        ...

See docs/testing.md. Nothing here imports pytest.
"""

from fabstir_sidecar.testing.faults import Faults, FaultyBackend
from fabstir_sidecar.testing.netnode import NetworkNode
from fabstir_sidecar.testing.network import FabstirNetwork, NetworkFactory, start_network
from fabstir_sidecar.testing.spec import HostSpec
from fabstir_sidecar.testing.sync import SyncClient, SyncNetwork, SyncNode, network_sync

__all__ = [
    "FabstirNetwork",
    "Faults",
    "FaultyBackend",
    "HostSpec",
    "NetworkFactory",
    "NetworkNode",
    "SyncClient",
    "SyncNetwork",
    "SyncNode",
    "network_sync",
    "start_network",
]
