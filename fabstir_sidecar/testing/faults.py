"""Faults a test host can be told to show at the protocol level: busy, slow.

Process-level faults (SIGKILL, SIGSTOP, ...) are in :mod:`.netnode`; these act inside the
host's Python side, through the public :class:`~fabstir_sidecar.HostService`:

* busy: every job is rejected with reason ``busy`` and the status record reports
  ``active_jobs == max_jobs``, as a host at capacity does;
* slow: jobs wait ``job_delay`` seconds before the first token (or the whole answer) and
  status answers wait ``status_delay`` seconds, so clients hit their timeouts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, Callable

import anyio

from fabstir_sidecar.backend import Backend, Completion, StreamEnd, TokenStream
from fabstir_sidecar.host.service import HostConfig, HostService
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.protocols.job import JobEvent
from fabstir_sidecar.wire.codes import Rejection
from fabstir_sidecar.wire.messages import Host, JobRequest


@dataclasses.dataclass(slots=True)
class Faults:
    """The protocol-level faults of one host; change them at any time."""

    busy: bool = False
    job_delay: float = 0.0
    status_delay: float = 0.0

    def clear(self) -> None:
        self.busy = False
        self.job_delay = 0.0
        self.status_delay = 0.0


class FaultyBackend:
    """Wrap a backend; delay each job by ``faults.job_delay`` before it produces anything."""

    def __init__(self, inner: Backend, faults: Faults) -> None:
        self.inner = inner
        self.faults = faults

    @property
    def name(self) -> str:
        return self.inner.name

    def stream(self, request: JobRequest) -> TokenStream:
        if self.faults.job_delay <= 0:
            return self.inner.stream(request)
        return TokenStream(self._delayed(request, self.faults.job_delay))

    async def _delayed(
        self, request: JobRequest, delay: float
    ) -> AsyncGenerator[str | StreamEnd, None]:
        await anyio.sleep(delay)
        async with self.inner.stream(request) as tokens:
            async for text in tokens:
                yield text
        completion = tokens.completion
        yield StreamEnd(completion.tokens_used, completion.finish_reason)

    async def complete(self, request: JobRequest) -> Completion:
        if self.faults.job_delay > 0:
            await anyio.sleep(self.faults.job_delay)
        return await self.inner.complete(request)

    async def aclose(self) -> None:
        """The inner backend belongs to the test: not closed here."""


class FaultableHost(HostService):
    """A :class:`HostService` that honours :class:`Faults` (busy admission, slow status)."""

    def __init__(
        self,
        node: DiscoveryManager,
        config: HostConfig,
        backend: Backend,
        *,
        faults: Faults,
        on_job: Callable[[JobEvent], None] | None = None,
    ) -> None:
        super().__init__(node, config, backend, on_job=on_job)
        self.faults = faults

    def try_admit(self, model: str, peer: str, protocol: str) -> Rejection | None:
        if not self.faults.busy:
            return super().try_admit(model, peer, protocol)
        # Look full to the host's own admission, so the rejection is exactly the one a host
        # at capacity gives (and a model it does not serve is still refused as such).
        # Internals: HostService counts its job slots in ``_slots`` (a FairShare).
        self._slots.total += self.config.max_jobs
        try:
            return super().try_admit(model, peer, protocol)
        finally:
            self._slots.total -= self.config.max_jobs

    async def status_record(self) -> Host:
        if self.faults.status_delay > 0:
            await anyio.sleep(self.faults.status_delay)
        record = await super().status_record()
        if self.faults.busy:
            record = dataclasses.replace(record, active_jobs=record.max_jobs)
        return record
