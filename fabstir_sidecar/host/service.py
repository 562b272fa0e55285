"""The host role: declare models and capacity, answer status, admit and run jobs.

A ``HostService`` sits on a running node (any ``NodeInterface``) and registers the framed protocols
(job, status, inference) on it, each through the rpc layer with its own limits. Discovery is
not registered here: ``Discovery.start`` serves it on every node, and the host declares
itself with ``node.set_local_host`` so that those answers list it. With the DHT on, the host also
provides its model keys in the background (``_provide_forever``).
Job admission is here (stream-level caps are the rpc layer's): a model not served is
rejected ``model_not_served``; over ``max_jobs`` concurrent jobs, or over a peer's share of
them, ``busy`` with ``retry_after_ms`` (``core/admission.RetryEstimator``); a
stopping host answers ``shutting_down`` and drains its jobs (:meth:`HostService.stop`). A
backend failure is an ``error/internal`` answer and the host lives on.

Fair share of job slots (``core/admission.FairShare``): one peer never holds the last
``max_jobs // 8`` slots (at least one when ``max_jobs`` > 2), and under contention no peer
holds more than its fair share, so a peer that hogs slots cannot lock the others out.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
from tenacity import AsyncRetrying, retry_if_result, wait_exponential

from fabstir_sidecar._version import __version__
from fabstir_sidecar.backend import Backend
from fabstir_sidecar.core.admission import AdmissionCounters, FairShare, RetryEstimator
from fabstir_sidecar.core.circuit import with_circuits
from fabstir_sidecar.core.errors import ConfigError, FabstirError
from fabstir_sidecar.node_interface import NodeInterface
from fabstir_sidecar.protocols import ids
from fabstir_sidecar.protocols.inference import inference_handler
from fabstir_sidecar.protocols.job import JobEvent, job_handler
from fabstir_sidecar.protocols.status import status_handler
from fabstir_sidecar.rpc.limits import DEFAULT_MAX_CONCURRENT, RpcLimits
from fabstir_sidecar.wire.codes import (
    REJECTED_BUSY,
    REJECTED_MODEL_NOT_SERVED,
    REJECTED_SHUTTING_DOWN,
    Rejection,
)
from fabstir_sidecar.wire.keys import ANY_HOST_KEY, model_cid
from fabstir_sidecar.wire.messages import Host, PeerInfo

log = logging.getLogger(__name__)

_LABELS = {ids.JOB: "job", ids.INFERENCE: "inference"}
"""Protocol ids as ``HostStats.admissions`` labels them (the metrics endpoint reads those)."""

BUSY = "busy"


@dataclass(frozen=True, slots=True)
class HostConfig:
    models: tuple[str, ...]
    reputation: int = 0
    location: str | None = None
    max_jobs: int = 4
    api_url: str | None = None
    version: str = __version__
    job_timeout: float = 300.0  # one deadline for a whole job: read, generate, write
    max_streams: int | None = None
    """Hard cap of job streams (reset unread beyond); default max(2048, 4 x max_jobs)."""
    write_timeout: float = 10.0
    """A requester that stops reading loses its job (and slot) after a write blocks this long."""
    drain_timeout: float = 30.0
    """``stop()`` waits up to this long for jobs in flight to finish."""

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("models", self.models, "a host must serve at least one model")
        if self.reputation < 0:
            raise ConfigError("reputation", self.reputation, "must be >= 0")
        if self.max_jobs < 1:
            raise ConfigError("max_jobs", self.max_jobs, "must be >= 1")
        if self.max_streams is not None and self.max_streams < self.max_jobs:
            raise ConfigError("max_streams", self.max_streams, "must be >= max_jobs")
        for name in ("write_timeout", "drain_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(name, getattr(self, name), "must be a number of seconds > 0")
        if self.location is not None and not (
            len(self.location) == 2 and self.location.isascii() and self.location.isalpha()
        ):
            raise ConfigError("location", self.location, "expected an ISO 3166-1 alpha-2 code")
        if self.location is not None:
            object.__setattr__(self, "location", self.location.upper())


@dataclass(slots=True)
class HostStats:
    results: int = 0
    rejected: int = 0
    errors: int = 0
    # (protocol, decision) -> count; decision: admitted, busy, model_not_served
    admissions: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass(slots=True)
class _AddrCache:
    addrs: list[str] = field(default_factory=list)
    fetched_at: float = -1e9


class HostService:
    """Serve jobs on ``node`` with ``backend``. Use ``await host.start()`` once the node runs."""

    ADDR_TTL = 5.0

    def __init__(
        self,
        node: NodeInterface,
        config: HostConfig,
        backend: Backend,
        *,
        on_job: Callable[[JobEvent], None] | None = None,
    ) -> None:
        self.node = node
        self.config = config
        self.backend = backend
        self._on_job = on_job
        self._models = frozenset(config.models)
        reserve = max(1, config.max_jobs // 8) if config.max_jobs > 2 else 0
        self._slots = FairShare(config.max_jobs, config.max_jobs - reserve)
        self._estimate = RetryEstimator()
        self._stopping = False
        self._drained = anyio.Event()
        self.admission = AdmissionCounters()
        """Admission counters by protocol (accepted, busy, shutting_down, reset, timeout)."""
        self._started_at = time.monotonic()
        self._addrs = _AddrCache()
        self.stats = HostStats()
        self.provide_rounds = 0
        self.advertised = anyio.Event()  # set after the first round where every key was provided
        self._reprovide = anyio.Event()  # set after a daemon restart: provide again now

    @property
    def active_jobs(self) -> int:
        return self._slots.total

    @property
    def stopping(self) -> bool:
        return self._stopping

    def limits(self) -> tuple[RpcLimits, RpcLimits]:
        """The rpc limits of (status, job and inference)."""
        cfg = self.config
        timeout = self.node.config.connection_timeout
        small = RpcLimits(read_timeout=timeout, total_timeout=timeout, counters=self.admission)
        streams = cfg.max_streams or max(DEFAULT_MAX_CONCURRENT, cfg.max_jobs * 4)
        jobs = RpcLimits(
            read_timeout=timeout,
            total_timeout=cfg.job_timeout,
            max_concurrent=streams,
            max_per_peer=max(1, streams // 2),
            soft_concurrent=None,  # job admission (try_admit) answers busy
            write_timeout=cfg.write_timeout,
            counters=self.admission,
        )
        return small, jobs

    async def start(self) -> None:
        small, jobs = self.limits()
        self._started_at = time.monotonic()
        await self._current_addrs()
        for protocol, handler, limits in (
            (ids.STATUS, status_handler(self.status_record), small),
            (ids.JOB, job_handler(self), jobs),
            (ids.INFERENCE, inference_handler(self), jobs),
        ):
            await self.node.serve(protocol, handler, limits)
        self._set_local_host()
        self.node.on_daemon_restart(self._after_daemon_restart)
        if self.node.config.enable_dht:
            self.node.spawn(self._provide_forever)
        log.info(
            "host serving",
            extra={"models": list(self.config.models), "max_jobs": self.config.max_jobs},
        )

    # -- JobHost -------------------------------------------------------------

    def try_admit(self, model: str, peer: str, protocol: str) -> Rejection | None:
        """Reserve a job slot for ``peer``; or say why not (counted by ``protocol``)."""
        rejection = self._admit(model, peer, protocol)
        decision = "admitted" if rejection is None else rejection.code
        key = (_LABELS.get(protocol, protocol), decision)
        self.stats.admissions[key] = self.stats.admissions.get(key, 0) + 1
        return rejection

    def _admit(self, model: str, peer: str, protocol: str) -> Rejection | None:
        if model not in self._models:
            served = ", ".join(sorted(self._models))
            return Rejection(
                REJECTED_MODEL_NOT_SERVED, f"model {model!r} not served (serving: {served})"
            )
        if self._stopping:
            self.admission.shutting_down[protocol] += 1
            return Rejection(REJECTED_SHUTTING_DOWN, "host is shutting down")
        why = self._slots.refusal(peer)
        if why is not None:
            self.admission.busy[protocol] += 1
            wait = round(self._estimate.busy(self.config.max_jobs) * 1000)
            detail = "all job slots taken" if why == "full" else "over this peer's share of slots"
            return Rejection(REJECTED_BUSY, f"{BUSY}: {detail}", retry_after_ms=wait)
        self._slots.take(peer)
        return None

    def release(self, peer: str, seconds: float) -> None:
        """Free ``peer``'s slot after a job that held it ``seconds``."""
        self._slots.release(peer)
        self._estimate.job_done(seconds)
        if self._stopping and self._slots.total == 0:
            self._drained.set()

    async def stop(self, *, drain_timeout: float | None = None) -> bool:
        """Stop admitting jobs (``shutting_down``) and wait for those in flight.

        True if every job finished within the drain deadline (``HostConfig.drain_timeout``).
        The node keeps serving status meanwhile; stop the node afterwards. Idempotent.
        """
        self._stopping = True
        with contextlib.suppress(FabstirError):  # a node that never started
            self.node.set_local_host(None)
        if self._slots.total == 0:
            return True
        with anyio.move_on_after(drain_timeout or self.config.drain_timeout):
            await self._drained.wait()
        drained = self._slots.total == 0
        log.info("host stopped", extra={"drained": drained, "left": self._slots.total})
        return drained

    def report(self, event: JobEvent) -> None:
        if event.outcome == "result":
            self.stats.results += 1
        elif event.outcome == "rejected":
            self.stats.rejected += 1
        else:
            self.stats.errors += 1
        if self._on_job is not None:
            try:
                self._on_job(event)
            except Exception:
                log.exception("on_job callback failed")

    # -- status / discovery ------------------------------------------------

    async def _current_addrs(self) -> list[str]:
        now = time.monotonic()
        if now - self._addrs.fetched_at > self.ADDR_TTL:
            addrs = await self.node.get_addrs()
            if self.node.config.relay_client:  # reachable through its relays (core/circuit.py)
                addrs = with_circuits(addrs, self.node.config.relay_addrs, self.node.peer_id)
            self._addrs.addrs = addrs
            self._addrs.fetched_at = now
        return self._addrs.addrs

    async def status_record(self) -> Host:
        return Host(
            peer_id=self.node.peer_id,
            addrs=tuple(await self._current_addrs()),
            models=self.config.models,
            reputation=self.config.reputation,
            uptime_s=int(time.monotonic() - self._started_at),
            location=self.config.location,
            api_url=self.config.api_url,
            active_jobs=self._slots.total,
            max_jobs=self.config.max_jobs,
            version=self.config.version,
        )

    async def _has_peers(self) -> bool:
        try:
            return bool(await self.node.control.list_peers())
        except FabstirError:
            return False

    def _set_local_host(self) -> None:
        self.node.set_local_host(
            PeerInfo(
                peer_id=self.node.peer_id,
                addrs=tuple(self._addrs.addrs),
                models=self.config.models,
            )
        )

    async def _after_daemon_restart(self) -> None:
        """The new daemon has no provider records and may listen on new ports."""
        self._addrs.fetched_at = -1e9
        await self._current_addrs()
        self._set_local_host()
        self._reprovide.set()

    async def _provide_forever(self) -> None:
        """Announce each model's key and ``llm-inference`` in the DHT; re-provide on an interval.

        PROVIDE blocks for seconds on small networks, so this runs in the background, never on
        the start-up or request path; a failed round is retried sooner than the interval.
        """
        keys = [*self.config.models, ANY_HOST_KEY]
        # A PROVIDE sent while the routing table is empty blocks until its timeout: wait for
        # a first connection and for identify to fill the table.
        while True:
            if await self._has_peers():
                break
            await anyio.sleep(0.25)
        await anyio.sleep(0.5)
        while True:
            # A round with failures is retried, backing off from 0.5 s to 60 s.
            retrying = AsyncRetrying(
                wait=wait_exponential(multiplier=0.5, min=0.5, max=60.0),
                retry=retry_if_result(bool),
                sleep=anyio.sleep,
            )
            async for attempt in retrying:
                with attempt:
                    failures = await self._provide_round(keys)
                if attempt.retry_state.outcome is None or not attempt.retry_state.outcome.failed:
                    attempt.retry_state.set_result(failures)
            self.advertised.set()
            with anyio.move_on_after(self.node.config.provide_interval):
                await self._reprovide.wait()  # or at once after a daemon restart
            self._reprovide = anyio.Event()

    async def _provide_round(self, keys: list[str]) -> int:
        """Provide every key once, concurrently; the number that failed."""
        failures = 0

        async def provide(key: str) -> None:
            nonlocal failures
            try:
                await self.node.control.dht_provide(model_cid(key), timeout=15.0)
            except FabstirError as exc:
                failures += 1
                log.info("DHT provide failed", extra={"key": key, "error": str(exc)})

        async with anyio.create_task_group() as tg:
            for key in keys:
                tg.start_soon(provide, key)
        self.provide_rounds += 1
        return failures
