"""A module-scoped loopback network for the gateway tests, run in a blocking portal.

A bootstrap node, three echo hosts (two serve ``m1``; one slow host for stream tests), a
gateway node that knows only the bootstrap node, and the gateway served by uvicorn on a
free port. Tests call it from their own thread with the official ``openai`` client and
httpx, or run async bodies in the network's loop with ``net.run``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal

from fabstir_sidecar import (
    DiscoveryManager,
    EchoBackend,
    FabstirError,
    HostConfig,
    HostCriteria,
    HostService,
)
from fabstir_sidecar.gateway import GatewaySettings, create_app, serve_gateway
from tests.integration.helpers import make_node
from tests.integration.running_net import PortalNet, RunningHost

M1, M2, SLOW = "m1", "m2", "m-slow"
TOKEN = "s3cret-token"


@dataclass
class Net(PortalNet):
    p2pd_path: str
    boot: DiscoveryManager
    boot_addr: str
    hosts: dict[str, RunningHost]
    gw_node: DiscoveryManager
    url: str
    auth_url: str  # the same node behind a second app that requires TOKEN

    def node(self, **options: Any) -> DiscoveryManager:
        return make_node(self.p2pd_path, **options)


async def start_host(
    stack: contextlib.AsyncExitStack,
    p2pd_path: str,
    name: str,
    config: HostConfig,
    backend: EchoBackend,
    **options: Any,
) -> RunningHost:
    node = make_node(p2pd_path, **options)
    service = HostService(node, config, backend)
    node.on_start(service.start)
    await stack.enter_async_context(node)
    return RunningHost(name, node, service)


@contextlib.asynccontextmanager
async def gateway_client(
    node: DiscoveryManager,
    *,
    settings: GatewaySettings | None = None,
    host: HostService | None = None,
    timeout: float = 30.0,
) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway app on ``node``, served on loopback, and an httpx client to it."""
    app = create_app(node, settings=settings, host=host)
    async with serve_gateway(app) as url, httpx.AsyncClient(base_url=url, timeout=timeout) as c:
        yield c


async def wait_for_hosts(node: DiscoveryManager, peers: set[str], timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while True:
            with contextlib.suppress(FabstirError):
                report = await node.discovery.match(HostCriteria())
                if peers <= {c.host.peer_id for c in report.answers}:
                    return
            await anyio.sleep(0.1)


@contextlib.asynccontextmanager
async def network(p2pd_path: str, portal: BlockingPortal) -> AsyncIterator[Net]:
    async with contextlib.AsyncExitStack() as stack:
        boot = await stack.enter_async_context(make_node(p2pd_path))
        boot_addr = (await boot.get_addrs())[0]
        specs = {
            "a": (HostConfig(models=(M1,), reputation=90, location="US"), EchoBackend()),
            "b": (HostConfig(models=(M1, M2), reputation=50, location="DE"), EchoBackend()),
            "slow": (HostConfig(models=(SLOW,), max_jobs=1), EchoBackend(delay=0.2)),
        }
        hosts = {}
        for name, (config, backend) in specs.items():
            hosts[name] = await start_host(
                stack, p2pd_path, name, config, backend, bootstrap=(boot_addr,)
            )
        gw_node = await stack.enter_async_context(make_node(p2pd_path, bootstrap=(boot_addr,)))
        await wait_for_hosts(gw_node, {h.peer_id for h in hosts.values()})
        url = await stack.enter_async_context(
            serve_gateway(create_app(gw_node, settings=GatewaySettings(job_timeout=30)))
        )
        auth_url = await stack.enter_async_context(
            serve_gateway(create_app(gw_node, settings=GatewaySettings(token=TOKEN)))
        )
        yield Net(portal, p2pd_path, boot, boot_addr, hosts, gw_node, url, auth_url)


@contextlib.contextmanager
def running_network(p2pd_path: str) -> Iterator[Net]:
    with start_blocking_portal("asyncio") as portal:
        cm = portal.wrap_async_context_manager(network(p2pd_path, portal))
        with cm as net:
            yield net
