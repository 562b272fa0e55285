"""Hosts and clients on loopback: status, jobs (streamed or not), rejections, errors,
inference, discovery, retries across a host restart, and an OpenAI-compatible backend.

The hosts are built with the package's own pytest plugin (``fabstir_network``, HostSpec);
only the spoofing host, which needs a hook before it starts, is assembled by hand."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import pytest

from fabstir_sidecar import __version__
from fabstir_sidecar.backend import Backend, Completion
from fabstir_sidecar.client import FabstirClient, RetryConfig
from fabstir_sidecar.core.errors import (
    HostBusyError,
    JobRejectedError,
    MalformedMessageError,
    PeerUnreachableError,
    RemoteError,
    RetryExhaustedError,
)
from fabstir_sidecar.host.backends.echo import EchoBackend
from fabstir_sidecar.host.backends.openai import OpenAIBackend
from fabstir_sidecar.host.service import BUSY, HostConfig, HostService
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.protocols.job import JobEvent
from fabstir_sidecar.protocols.status import request_status
from fabstir_sidecar.testing import HostSpec, NetworkFactory, NetworkNode
from fabstir_sidecar.wire.messages import Host, JobRequest
from tests.integration import test_openai_backend as openai_fakes
from tests.integration.helpers import make_node

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

LLAMA = "llama-3.2-1b-instruct"
MISTRAL = "mistral-7b"
TEST_DEADLINE = 30.0
FAST_RETRY = RetryConfig(attempts=3, initial_backoff_s=0.05, max_backoff_s=0.1)


@dataclass
class RunningHost:
    node: DiscoveryManager
    service: HostService
    events: list[JobEvent] = field(default_factory=list)

    @property
    def peer_id(self) -> str:
        return self.node.peer_id

    async def addr(self) -> str:
        """A full multiaddr of the host, ending in /p2p/<peer id>."""
        return (await self.node.get_addrs())[0]


@contextlib.asynccontextmanager
async def running_host(
    p2pd_path: str,
    config: HostConfig,
    backend: Backend | None = None,
    *,
    before_start: Callable[[HostService], None] | None = None,
    **node_options: Any,
) -> AsyncIterator[RunningHost]:
    async with make_node(p2pd_path, **node_options) as node:
        events: list[JobEvent] = []
        service = HostService(node, config, backend or EchoBackend(), on_job=events.append)
        if before_start is not None:
            before_start(service)
        await service.start()
        yield RunningHost(node, service, events)


def config_b(**changes: Any) -> HostConfig:
    values: dict[str, Any] = {"models": (LLAMA,), "reputation": 50}
    values.update(changes)
    return HostConfig(**values)


def spec_a(**changes: Any) -> HostSpec:
    values: dict[str, Any] = {
        "name": "a",
        "models": (LLAMA, MISTRAL),
        "reputation": 90,
        "location": "us",
        "max_jobs": 2,
    }
    values.update(changes)
    return HostSpec(**values)


def spec_b(**changes: Any) -> HostSpec:
    values: dict[str, Any] = {"name": "b", "models": (LLAMA,), "reputation": 50}
    values.update(changes)
    return HostSpec(**values)


def host_service(host: NetworkNode) -> HostService:
    assert host.service is not None
    return host.service


@dataclass
class Cluster:
    a: NetworkNode
    b: NetworkNode
    client_node: DiscoveryManager
    client: FabstirClient
    addr_a: str
    addr_b: str


async def cluster(
    fabstir_network: NetworkFactory,
    *,
    retry: RetryConfig = FAST_RETRY,
    backend_a: Backend | None = None,
) -> Cluster:
    """Hosts A and B, no bootstrap node, and a client that knows neither of them yet."""
    net = await fabstir_network(hosts=[spec_b(), spec_a(backend=backend_a)], bootstrap=False)
    client_node = (await net.add_client_node(bootstrap=())).node
    client = FabstirClient(client_node, retry=retry, job_timeout=10.0)
    a, b = net.host("a"), net.host("b")
    return Cluster(a, b, client_node, client, a.address, b.address)


class SignallingEcho(EchoBackend):
    """EchoBackend that sets ``started`` once a job is running on it."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.started = anyio.Event()

    async def complete(self, request: JobRequest) -> Completion:
        self.started.set()
        return await super().complete(request)


# ------------------------------------------------------------------------ status


async def test_status_returns_the_typed_host_record_and_latency(
    fabstir_network: NetworkFactory,
) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        c = await cluster(fabstir_network)
        answer = await c.client.get_status(c.addr_a)
        host = answer.host
        assert isinstance(host, Host)
        assert host.peer_id == c.a.peer_id
        assert host.models == (LLAMA, MISTRAL)
        assert host.reputation == 90
        assert host.location == "US"
        assert host.active_jobs == 0
        assert host.max_jobs == 2
        assert host.version == __version__
        assert host.api_url is None
        assert host.addrs and all(x.endswith(f"/p2p/{c.a.peer_id}") for x in host.addrs)
        assert answer.latency_ms > 0

        # Host B's own record.
        other = await c.client.get_status(c.addr_b)
        assert other.host.peer_id == c.b.peer_id
        assert other.host.models == (LLAMA,)
        assert other.host.reputation == 50
        assert other.host.location is None
        assert other.latency_ms > 0

        # uptime_s is whole seconds: it grows. By peer ID, now that we are connected.
        first = host.uptime_s
        with anyio.fail_after(5):
            while True:
                later = (await c.client.get_status(c.a.peer_id)).host.uptime_s
                if later > first:
                    break
                await anyio.sleep(0.1)


# -------------------------------------------------------------------------- jobs


async def test_run_job_returns_the_echo_result(fabstir_network: NetworkFactory) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        c = await cluster(fabstir_network)
        result = await c.client.run_job(c.addr_a, LLAMA, "hello p2p world", job_id="job-1")
        assert result.job_id == "job-1"
        assert result.content == "echo: hello p2p world"
        assert result.finish_reason == "stop"
        assert result.tokens_used == 4
        assert host_service(c.a).stats.results == 1
        # The host saw the client's authenticated peer ID.
        assert [(e.peer_id, e.job_id, e.model, e.outcome) for e in c.a.events] == [
            (c.client_node.peer_id, "job-1", LLAMA, "result")
        ]
        # Host B serves the same model.
        result_b = await c.client.run_job(c.addr_b, LLAMA, "hi")
        assert result_b.content == "echo: hi"
        assert host_service(c.a).active_jobs == 0 and host_service(c.b).active_jobs == 0


async def test_stream_job_yields_tokens_in_order(fabstir_network: NetworkFactory) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        c = await cluster(fabstir_network)
        stream = c.client.stream_job(c.addr_a, MISTRAL, "one two three four", job_id="s-1")
        assert stream.result is None
        tokens = [token async for token in stream]
        assert tokens == ["echo:", " one", " two", " three", " four"]
        assert stream.result is not None
        assert stream.result.job_id == "s-1"
        assert "".join(tokens) == stream.result.content == "echo: one two three four"
        assert stream.result.tokens_used == 5
        assert stream.result.finish_reason == "stop"


async def test_max_tokens_truncates_with_finish_reason_length(
    fabstir_network: NetworkFactory,
) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        c = await cluster(fabstir_network)
        result = await c.client.run_job(c.addr_a, LLAMA, "a b c d e f", max_tokens=3)
        assert result.content == "echo: a b"
        assert result.finish_reason == "length"
        assert result.tokens_used == 3

        stream = c.client.stream_job(c.addr_a, LLAMA, "a b c d e f", max_tokens=2)
        tokens = [t async for t in stream]
        assert tokens == ["echo:", " a"]
        assert stream.result is not None
        assert stream.result.finish_reason == "length"
        assert stream.result.content == "echo: a"


async def test_model_not_served_is_rejected_and_not_retried(
    fabstir_network: NetworkFactory,
) -> None:
    slow_retry = RetryConfig(attempts=5, initial_backoff_s=2.0, max_backoff_s=2.0)
    with anyio.fail_after(TEST_DEADLINE):
        c = await cluster(fabstir_network, retry=slow_retry)
        await c.client.get_status(c.addr_b)  # connected: the timing below is the job's
        started = time.monotonic()
        with pytest.raises(JobRejectedError) as info:
            await c.client.run_job(c.addr_b, MISTRAL, "hi", job_id="rej-1")
        assert time.monotonic() - started < 2.0  # no backoff slept
        assert info.value.peer_id == c.b.peer_id
        assert MISTRAL in info.value.reason
        assert host_service(c.b).stats.rejected == 1
        assert [(e.job_id, e.outcome) for e in c.b.events] == [("rej-1", "rejected")]

        # Streamed: rejected before any token, not retried either.
        with pytest.raises(JobRejectedError):
            async for _ in c.client.stream_job(c.addr_b, "gpt-9", "hi"):
                pytest.fail("a rejected job yields no token")
        assert host_service(c.b).stats.rejected == 2
        assert host_service(c.b).active_jobs == 0


async def test_busy_host_rejects_a_concurrent_job(fabstir_network: NetworkFactory) -> None:
    backend = SignallingEcho(delay=0.2)
    with anyio.fail_after(TEST_DEADLINE):
        net = await fabstir_network(hosts=[spec_a(max_jobs=1, backend=backend)], bootstrap=False)
        host = net.hosts[0]
        client_node = (await net.add_client_node(bootstrap=())).node
        # busy answers are retried up to busy_attempts: three here, so they run out.
        # No pacing: a paced client would queue the second job behind the first itself.
        retry = replace(FAST_RETRY, busy_attempts=3)
        client = FabstirClient(client_node, retry=retry, job_timeout=10.0, pacing=False)
        addr = host.address
        slow: list[str] = []

        async def slow_job() -> None:
            result = await client.run_job(addr, LLAMA, "w1 w2 w3 w4 w5")  # ~1.2 s
            slow.append(result.content)

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow_job)
            await backend.started.wait()
            assert host_service(host).active_jobs == 1
            status = await client.get_status(addr)
            assert status.host.active_jobs == 1
            # Busy means "not run": retried (with backoff) until the attempts are spent.
            with pytest.raises(RetryExhaustedError) as info:
                await client.run_job(addr, LLAMA, "second")
            busy = info.value.failures
            assert busy and all(isinstance(e, HostBusyError) for e in busy)
            assert all(e.code == BUSY for e in busy)  # type: ignore[attr-defined]
            # The inference protocol shares the admission: error code busy there.
            with pytest.raises(RetryExhaustedError) as inf:
                await client.infer(addr, LLAMA, "third")
            assert all(isinstance(e, HostBusyError) for e in inf.value.failures)
            assert all(e.retry_after is not None for e in inf.value.failures)  # type: ignore[attr-defined]
        assert slow == ["echo: w1 w2 w3 w4 w5"]
        assert host_service(host).active_jobs == 0
        assert host_service(host).stats.rejected == len(busy) + len(inf.value.failures)
        # Capacity is back.
        assert (await client.run_job(addr, LLAMA, "after")).content == "echo: after"


async def test_backend_failure_is_internal_and_the_host_lives_on(
    fabstir_network: NetworkFactory,
) -> None:
    slow_retry = RetryConfig(attempts=5, initial_backoff_s=2.0, max_backoff_s=2.0)
    with anyio.fail_after(TEST_DEADLINE):
        c = await cluster(fabstir_network, retry=slow_retry, backend_a=EchoBackend(fail_on="boom"))
        await c.client.get_status(c.addr_a)
        started = time.monotonic()
        with pytest.raises(RemoteError) as info:
            await c.client.run_job(c.addr_a, LLAMA, "please boom now", job_id="f-1")
        assert time.monotonic() - started < 2.0  # not retried
        assert not isinstance(info.value, JobRejectedError)
        assert info.value.code == "internal"
        assert "boom" in info.value.remote_message
        assert host_service(c.a).stats.errors == 1
        assert host_service(c.a).active_jobs == 0

        with pytest.raises(RemoteError) as streamed:
            async for _ in c.client.stream_job(c.addr_a, LLAMA, "boom"):
                pytest.fail("a failed job yields no token")
        assert streamed.value.code == "internal"
        assert host_service(c.a).stats.errors == 2

        result = await c.client.run_job(c.addr_a, LLAMA, "all good")
        assert result.content == "echo: all good"
        assert host_service(c.a).stats.results == 1
        assert [e.outcome for e in c.a.events] == ["error", "error", "result"]


# --------------------------------------------------------------------- inference


async def test_inference_protocol(fabstir_network: NetworkFactory) -> None:
    slow_retry = RetryConfig(attempts=5, initial_backoff_s=2.0, max_backoff_s=2.0)
    with anyio.fail_after(TEST_DEADLINE):
        c = await cluster(fabstir_network, retry=slow_retry)
        response = await c.client.infer(
            c.addr_a, MISTRAL, "hi there", max_tokens=64, request_id="req-1"
        )
        assert response.request_id == "req-1"
        assert response.model_used == MISTRAL
        assert response.content == "echo: hi there"
        assert response.tokens_used == 3
        assert response.finish_reason == "stop"

        truncated = await c.client.infer(c.addr_a, LLAMA, "a b c d", max_tokens=2)
        assert truncated.content == "echo: a"
        assert truncated.finish_reason == "length"

        # A model not served: error/bad_request, never retried.
        started = time.monotonic()
        with pytest.raises(RemoteError) as info:
            await c.client.infer(c.addr_b, MISTRAL, "hi", request_id="req-2")
        assert time.monotonic() - started < 2.0  # not retried
        assert info.value.code == "bad_request"
        assert host_service(c.b).stats.rejected == 1
        assert [(e.job_id, e.outcome) for e in c.b.events] == [("req-2", "rejected")]


# --------------------------------------------------------------------- discovery


async def test_discovery_lists_the_host_itself_first(fabstir_network: NetworkFactory) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        c = await cluster(fabstir_network)
        # Host A learns about host B by asking its status (A's peer cache).
        _, b_addrs = await c.b.node.control.identify()
        await c.a.node.discovery.status_of(c.b.peer_id, b_addrs)
        peers = await c.client.ask_discovery(c.addr_a)
        assert [p.peer_id for p in peers] == [c.a.peer_id, c.b.peer_id]
        me = peers[0]
        assert me.models == (LLAMA, MISTRAL)
        assert me.addrs and all(x.endswith(f"/p2p/{c.a.peer_id}") for x in me.addrs)
        assert c.addr_a in me.addrs
        assert peers[1].models == (LLAMA,)

        only_mistral = await c.client.ask_discovery(c.a.peer_id, models=[MISTRAL])
        assert only_mistral[0].peer_id == c.a.peer_id
        limited = await c.client.ask_discovery(c.a.peer_id, limit=1)
        assert [p.peer_id for p in limited] == [c.a.peer_id]

        # Host B lists itself first, then the hosts among its connected peers (A dialed it;
        # the client is connected too but is no host).
        from_b = await c.client.ask_discovery(c.addr_b)
        assert [p.peer_id for p in from_b] == [c.b.peer_id, c.a.peer_id]


async def test_status_record_describing_another_peer_is_discarded(p2pd_path: str) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            running_host(p2pd_path, config_b()) as honest,
            make_node(p2pd_path) as client_node,
        ):

            def spoof(service: HostService) -> None:
                real = service.status_record

                async def claims_to_be_honest() -> Host:
                    return replace(await real(), peer_id=honest.peer_id)

                service.status_record = claims_to_be_honest  # type: ignore[method-assign]

            async with running_host(p2pd_path, config_b(), before_start=spoof) as liar:
                peer = await client_node.connect_to_peer(await liar.addr())
                with pytest.raises(MalformedMessageError, match="another peer"):
                    await request_status(client_node.control, peer, timeout=5.0)
                # Through the client too, and not retried (a protocol error).
                client = FabstirClient(client_node, retry=FAST_RETRY)
                with pytest.raises(MalformedMessageError):
                    await client.get_status(peer)


# ----------------------------------------------------------------------- retries


async def test_job_retries_across_a_host_restart(fabstir_network: NetworkFactory) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        net = await fabstir_network(hosts=[spec_b()], bootstrap=False)
        host = net.hosts[0]
        client_node = (await net.add_client_node(bootstrap=())).node
        # go-libp2p puts an address that refused a dial in "dial backoff" for ~5 s: every
        # re-dial before then fails at once, even with the host back up. The retries must
        # outlast that window (attempts=6 with max_backoff_s=1.0 waits only ~4 s in all).
        client = FabstirClient(
            client_node,
            retry=RetryConfig(
                attempts=10, initial_backoff_s=0.2, max_backoff_s=1.0, max_total_s=20.0
            ),
            job_timeout=5.0,
        )
        peer_id, addr = host.peer_id, host.address
        assert (await client.run_job(addr, LLAMA, "before")).content == "echo: before"
        await host.stop()  # the host is gone completely (daemon stopped)

        async def restart_host() -> None:
            await anyio.sleep(0.5)
            await host.restart()  # same identity key, same port

        async with anyio.create_task_group() as tg:
            tg.start_soon(restart_host)
            started = time.monotonic()
            result = await client.run_job(addr, LLAMA, "after restart")
        assert (host.peer_id, host.address) == (peer_id, addr)
        assert result.content == "echo: after restart"
        assert time.monotonic() - started >= 0.4  # it did have to wait for the host
        assert [e.outcome for e in host.events] == ["result", "result"]
        assert host_service(host).stats.results == 1  # the second incarnation's own count


async def test_host_down_for_good_exhausts_the_retries(fabstir_network: NetworkFactory) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        net = await fabstir_network(hosts=[spec_b()], bootstrap=False)
        gone = net.hosts[0]
        client_node = (await net.add_client_node(bootstrap=())).node
        addr = gone.address
        gone_id = gone.peer_id
        client = FabstirClient(client_node, retry=FAST_RETRY, job_timeout=5.0)
        assert (await client.run_job(addr, LLAMA, "x")).content == "echo: x"
        await gone.stop()
        started = time.monotonic()
        with pytest.raises(RetryExhaustedError) as info:
            await client.run_job(addr, LLAMA, "y", job_id="lost-1")
        assert time.monotonic() - started < 10.0
        exc = info.value
        assert len(exc.failures) == 3
        assert all(isinstance(f, PeerUnreachableError) for f in exc.failures), exc.failures
        message = str(exc)
        assert "lost-1" in message
        assert "after 3 attempts" in message
        for n, failure in enumerate(exc.failures, start=1):
            assert f"#{n}: {type(failure).__name__}" in message

        # The same by peer ID (no address to re-dial) and for status.
        with pytest.raises(RetryExhaustedError) as by_id:
            await client.get_status(gone_id)
        assert len(by_id.value.failures) == 3


# ------------------------------------------------------------ OpenAI backend e2e

# The fake OpenAI-compatible server (ThreadingHTTPServer in a thread) of the backend's own
# tests, reused: its ``fake`` fixture is registered here as ``fake_openai``.
fake_openai = openai_fakes.fake


async def test_openai_backend_end_to_end(
    fabstir_network: NetworkFactory, fake_openai: openai_fakes.FakeOpenAI
) -> None:
    fake = fake_openai
    expected = "".join(openai_fakes.TOKENS)
    backend = OpenAIBackend(fake.url, timeout=5.0, model_map={LLAMA: "local-llama"})
    try:
        with anyio.fail_after(TEST_DEADLINE):
            net = await fabstir_network(hosts=[spec_b(backend=backend)], bootstrap=False)
            host = net.hosts[0]
            client_node = (await net.add_client_node(bootstrap=())).node
            client = FabstirClient(client_node, retry=FAST_RETRY, job_timeout=10.0)
            addr = host.address

            result = await client.run_job(addr, LLAMA, "hello there", max_tokens=32)
            assert result.content == expected
            assert result.tokens_used == fake.usage
            assert result.finish_reason == "stop"
            sent = fake.requests[-1]
            assert sent.path == "/v1/chat/completions"
            assert sent.body["model"] == "local-llama"
            assert sent.body["stream"] is False
            assert sent.body["max_tokens"] == 32
            assert sent.body["messages"] == [{"role": "user", "content": "hello there"}]

            stream = client.stream_job(addr, LLAMA, "stream me")
            tokens = [t async for t in stream]
            assert tokens == openai_fakes.TOKENS
            assert stream.result is not None
            assert stream.result.content == expected
            assert fake.requests[-1].body["stream"] is True

            # Server 500: error/internal with the server's message; not retried.
            fake.mode = "error500"
            with pytest.raises(RemoteError) as info:
                await client.run_job(addr, LLAMA, "please fail")
            assert info.value.code == "internal"
            assert "500" in info.value.remote_message
            assert "is not loaded" in info.value.remote_message
            with pytest.raises(RemoteError) as streamed:
                async for _ in client.stream_job(addr, LLAMA, "fail again"):
                    pytest.fail("no token before the server's 500")
            assert streamed.value.code == "internal"

            # A stream cut short by the server: the tokens so far, then error/internal.
            fake.mode = "truncated"
            got: list[str] = []
            with pytest.raises(RemoteError) as cut:
                async for token in client.stream_job(addr, LLAMA, "cut me"):
                    got.append(token)
            assert got == openai_fakes.TOKENS[:2]
            assert cut.value.code == "internal"
            assert host_service(host).stats.errors == 3
            assert host_service(host).active_jobs == 0

            # The host lives on.
            fake.mode = "ok"
            again = await client.run_job(addr, LLAMA, "still here")
            assert again.content == expected
            assert (await client.get_status(addr)).host.peer_id == host.peer_id
            assert host_service(host).stats.results == 3
    finally:
        await backend.aclose()
