"""Running a job on the best matching host, with failover before the first token.

HTTP_API.md section 1: the chosen host rejecting the job (busy, model not served), being
unreachable or failing before its first token sends the job to the next-ranked match, at
most ``MAX_HOSTS`` hosts in all. After the first token there is no failover.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar, cast

import anyio

from fabstir_sidecar.client import FabstirClient
from fabstir_sidecar.core.errors import (
    DaemonUnavailableError,
    FabstirError,
    FabstirTimeoutError,
    NodeStateError,
    PeerUnreachableError,
    ProtocolError,
    ProtocolNotSupportedError,
    StreamClosedError,
)
from fabstir_sidecar.gateway.chat import JobSpec
from fabstir_sidecar.gateway.criteria import Selection, explain, no_match
from fabstir_sidecar.gateway.errors import ApiError, busy, from_library, is_busy, root_cause
from fabstir_sidecar.gateway.stats import GatewayStats
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.protocols.status import HostStatus
from fabstir_sidecar.wire.messages import JobResult

MAX_HOSTS = 3
# A host resets streams beyond its per-peer cap without reading them (PROTOCOL.md section 2;
# the project's default RpcLimits.max_per_peer is 32), and the gateway is one peer for all
# its callers: jobs beyond this many per host wait here for a turn instead of being reset.
MAX_JOBS_PER_HOST = 32
T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class OpenStream:
    """A streamed job that produced its first frame: ``first`` is the first token, or None
    when the host answered its result at once (then ``result`` is set)."""

    peer_id: str
    first: str | None
    tokens: AsyncGenerator[str, None]
    result: Callable[[], JobResult | None]
    release: Callable[[], None]  # gives the host's turn back (call once, when done)


def _may_fail_over(exc: FabstirError) -> bool:
    cause = root_cause(exc)
    if isinstance(cause, FabstirTimeoutError | DaemonUnavailableError | NodeStateError):
        return False  # waited a whole job timeout / our own node is down: answer now
    # Before the first token: a host that cannot be reached or breaks off is not the last word.
    lost = PeerUnreachableError | ProtocolNotSupportedError | ProtocolError | StreamClosedError
    return isinstance(cause, lost)


def _send(job: Callable[..., R], peer: str, spec: JobSpec) -> R:
    """``FabstirClient.run_job`` or ``stream_job`` (the same parameters) for ``spec``."""
    return job(
        peer,
        spec.model,
        spec.prompt,
        max_tokens=spec.max_tokens,
        temperature=spec.temperature,
        job_id=spec.request_id,
        messages=spec.messages,
    )


class Runner:
    def __init__(self, node: DiscoveryManager, client: FabstirClient, stats: GatewayStats):
        self.node = node
        self.client = client
        self.stats = stats
        self._turns: dict[str, anyio.CapacityLimiter] = {}  # per host peer id

    async def _take_turn(self, peer: str) -> Callable[[], None]:
        limiter = self._turns.get(peer)
        if limiter is None:
            limiter = self._turns[peer] = anyio.CapacityLimiter(MAX_JOBS_PER_HOST)
        token = object()
        await limiter.acquire_on_behalf_of(token)
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            limiter.release_on_behalf_of(token)
            if limiter.borrowed_tokens == 0 and limiter.statistics().tasks_waiting == 0:
                self._turns.pop(peer, None)

        return release

    async def select(self, selection: Selection) -> list[str]:
        """Peer ids of the best matches, best first (at most ``MAX_HOSTS``)."""
        discovery = self.node.discovery
        pinned = selection.peer_id
        if pinned is not None:
            try:
                status = await discovery.status_of(pinned)
            except FabstirError as exc:
                err = from_library(exc, peer_id=pinned)
                if err.status == 502:
                    err.code = "peer_unreachable"
                raise err from None
            if selection.failures(status):
                raise no_match(selection, explain(selection, [status], 1)).with_host(pinned)
            return [pinned]
        return [c.host.peer_id for c in (await self.ranked(selection))[:MAX_HOSTS]]

    async def ranked(self, selection: Selection) -> list[HostStatus]:
        """The hosts that match, best first; none is a no-match error that explains why."""
        discovery = self.node.discovery
        try:
            report = await discovery.match(selection.host_criteria())
        except FabstirError as exc:
            raise from_library(exc) from None
        if not report.ranked:
            seen = discovery.last_lookup.candidates
            raise no_match(selection, explain(selection, report.answers, seen))
        return report.ranked

    async def _on_hosts(
        self, selection: Selection, attempt: Callable[[str, Callable[[], None]], Awaitable[T]]
    ) -> tuple[str, T]:
        """``attempt(peer, release)`` on each host in turn; it owns ``release`` on success."""
        hosts = await self.select(selection)
        failures: list[tuple[str, FabstirError]] = []
        for i, peer in enumerate(hosts):
            if i:
                self.stats.failovers += 1
            release = await self._take_turn(peer)
            try:
                return peer, await attempt(peer, release)
            except FabstirError as exc:
                release()
                if not _may_fail_over(exc):
                    raise from_library(exc, peer_id=peer) from None
                failures.append((peer, exc))
            except BaseException:
                release()
                raise
        raise self._all_failed(failures)

    @staticmethod
    def _all_failed(failures: list[tuple[str, FabstirError]]) -> ApiError:
        if all(is_busy(exc) for _, exc in failures):
            only = failures[0][0] if len(failures) == 1 else None
            return busy(
                "host_busy", f"every matching host is busy ({len(failures)} tried)"
            ).with_host(only)
        peer, exc = next((p, e) for p, e in reversed(failures) if not is_busy(e))
        err = from_library(exc, peer_id=peer)
        if len(failures) > 1:
            err.message = f"{len(failures)} hosts tried, the last failure: {err.message}"
        return err

    async def complete(self, selection: Selection, spec: JobSpec) -> tuple[str, JobResult]:
        async def attempt(peer: str, release: Callable[[], None]) -> JobResult:
            result = await _send(self.client.run_job, peer, spec)
            release()
            return result

        return await self._on_hosts(selection, attempt)

    async def stream(self, selection: Selection, spec: JobSpec) -> OpenStream:
        async def attempt(peer: str, release: Callable[[], None]) -> OpenStream:
            job = _send(self.client.stream_job, peer, spec)
            tokens = cast(AsyncGenerator[str, None], aiter(job))
            try:
                first: str | None = await anext(tokens)
            except StopAsyncIteration:
                first = None
            return OpenStream(peer, first, tokens, lambda: job.result, release)

        _, opened = await self._on_hosts(selection, attempt)
        return opened
