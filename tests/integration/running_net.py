"""What the multi-host integration networks share: a host that runs, and a network whose
test bodies run in its event loop (through a blocking portal) under a deadline."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from fabstir_sidecar import DiscoveryManager, HostService

T = TypeVar("T")


@dataclass
class RunningHost:
    name: str
    node: DiscoveryManager
    service: HostService

    @property
    def peer_id(self) -> str:
        return self.node.peer_id


@dataclass
class PortalNet:
    portal: BlockingPortal
    DEADLINE: ClassVar[float] = 60.0

    def run(self, body: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """Run ``body`` in the network's event loop, under a deadline (DEADLINE by default)."""
        limit = self.DEADLINE if timeout is None else timeout

        async def guarded() -> T:
            with anyio.fail_after(limit):
                return await body()

        return self.portal.call(guarded)
