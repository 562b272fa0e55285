"""JobService against real Fabstir networks, built with fabstir-sidecar's pytest plugin."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from job_service import JobService, NoHostAvailableError

from fabstir_sidecar import NoMatchingHostError
from fabstir_sidecar.testing import HostSpec, NetworkFactory, SyncNetwork

pytestmark = pytest.mark.integration

HOSTS = [
    HostSpec(models=["llama-3"], reputation=95, location="DE", name="best"),
    HostSpec(models=["llama-3"], reputation=60, location="DE", name="second"),
    HostSpec(models=["llama-3"], reputation=80, location="US", name="american"),
    HostSpec(models=["mistral"], reputation=99, location="DE", name="other-model"),
]


async def test_the_most_reputable_matching_host_answers(fabstir_network: NetworkFactory) -> None:
    net = await fabstir_network(hosts=HOSTS)
    service = JobService((await net.client(connect=False)).node, location="DE")
    answer = await service.ask("llama-3", "hello world")
    assert answer.host == net.host("best").peer_id
    assert answer.text == "echo: hello world"
    assert answer.skipped == ()


async def test_a_host_killed_during_the_job_is_replaced(fabstir_network: NetworkFactory) -> None:
    net = await fabstir_network(hosts=HOSTS)
    best, second = net.host("best"), net.host("second")
    service = JobService((await net.client(connect=False)).node, location="DE")
    best.make_slow(2.0)  # the job is still running on it when it dies

    async def kill_soon() -> None:
        await anyio.sleep(0.5)
        await best.kill()

    async with anyio.create_task_group() as tg:
        tg.start_soon(kill_soon)
        answer = await service.ask("llama-3", "survive this")
    assert answer.host == second.peer_id
    assert answer.skipped == (best.peer_id,)
    assert answer.text == "echo: survive this"


async def test_a_busy_host_is_skipped(fabstir_network: NetworkFactory) -> None:
    net = await fabstir_network(hosts=HOSTS)
    net.host("best").make_busy()
    service = JobService((await net.client(connect=False)).node, location="DE")
    answer = await service.ask("llama-3", "x")
    assert answer.host == net.host("second").peer_id


async def test_every_host_down_is_a_clear_error(fabstir_network: NetworkFactory) -> None:
    net = await fabstir_network(hosts=HOSTS[:2])
    service = JobService((await net.client(connect=False)).node)
    await service.candidates("llama-3")  # both known and healthy ...
    for host in net.hosts:
        await host.kill()  # ... then gone
    with pytest.raises((NoHostAvailableError, NoMatchingHostError)):
        await service.ask("llama-3", "anyone?")


async def test_no_host_serves_the_model(fabstir_network: NetworkFactory) -> None:
    net = await fabstir_network(hosts=HOSTS)
    service = JobService((await net.client(connect=False)).node, min_reputation=99)
    with pytest.raises(NoMatchingHostError):
        await service.ask("llama-3", "x")


def test_from_synchronous_code(fabstir_network_sync: Callable[..., SyncNetwork]) -> None:
    net = fabstir_network_sync(hosts=HOSTS[:2])
    client = net.client(connect=False)
    service = JobService(client.node)
    answer = net.call(service.ask, "llama-3", "sync")
    assert answer.host == net.host("best").peer_id
