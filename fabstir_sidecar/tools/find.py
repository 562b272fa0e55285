"""The one-shot find: start a temporary node, search once, stop it, all within one deadline.

What the ``find`` command does, for any caller that has no long-running node: a search that
cannot reach any of its bootstrap peers fails at once (instead of returning "no match"), and
with mDNS on it first gives the local network a moment to answer.
"""

from __future__ import annotations

from typing import Final

import anyio

from fabstir_sidecar.core.errors import FabstirError, FabstirTimeoutError
from fabstir_sidecar.core.settings import NodeConfig
from fabstir_sidecar.discovery.matching import HostCriteria
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.protocols.status import HostStatus

__all__ = ["DEFAULT_FIND_TIMEOUT", "MDNS_WAIT", "find_once"]

DEFAULT_FIND_TIMEOUT: Final = 15.0
MDNS_WAIT: Final = 2.0
"""Seconds (at most a quarter of the timeout) to wait for a first mDNS peer: answers take up
to a second after the node starts."""


async def find_once(
    config: NodeConfig, criteria: HostCriteria, *, timeout: float = DEFAULT_FIND_TIMEOUT
) -> list[HostStatus]:
    """The matching hosts, best first, found by a node started for this search only.

    ``timeout`` (seconds) covers start, search and stop. Raises
    :class:`~fabstir_sidecar.core.errors.NoMatchingHostError` when nothing matched,
    :class:`~fabstir_sidecar.core.errors.FabstirTimeoutError` past the deadline, and
    :class:`~fabstir_sidecar.core.errors.FabstirError` when bootstrap peers were given but
    none was reachable.
    """
    try:
        with anyio.fail_after(timeout):
            async with DiscoveryManager(config) as node:
                results = node.bootstrap_results
                if config.bootstrap and not any(r.ok for r in results):
                    reasons = "; ".join(f"{r.address}: {r.error}" for r in results)
                    raise FabstirError(f"no bootstrap peer reachable ({reasons})")
                if node.mdns_active:
                    await node.wait_for_mdns_peer(min(MDNS_WAIT, timeout / 4))
                return await node.find_hosts(criteria)
    except TimeoutError:
        raise FabstirTimeoutError(f"search did not finish within {timeout:.1f}s") from None
