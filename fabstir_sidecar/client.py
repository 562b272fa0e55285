"""The client role: status, jobs (streamed or not), discovery and inference, with retries.

Retries (tenacity) follow the error tree (``core/errors.py``), with exponential backoff and
jitter, bounded in attempts and in total time, honouring a host's ``retry_after``:

* status and discovery are idempotent: every :class:`RetryableError` is retried (the peer
  could not be dialed, the stream broke, a deadline passed, the daemon was restarting);
* a job (or an inference) is retried only when it cannot have run: nothing reached the host
  (:class:`NotSentError`), or the host answered ``busy`` / ``shutting_down``
  (:class:`HostBusyError`). Once its request went out, a broken exchange is a
  :class:`JobOutcomeUnknownError` and the job is never sent again.

Never retried: bad input, rejections, protocol errors. When every attempt failed,
``RetryExhaustedError`` says how many were made and why each failed. ``busy`` answers count
against ``RetryConfig.busy_attempts``, not ``attempts``. Pacing (``rpc/pacing.py``): jobs to
one host stay within a window (callers queue locally) capped by its advertised ``max_jobs``,
so that a ``gather`` of 1,000 jobs does not overflow a host.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict, TypeVar, Unpack

import anyio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from fabstir_sidecar.core.errors import (
    ConfigError,
    FabstirError,
    HostBusyError,
    NotSentError,
    RetryableError,
    RetryExhaustedError,
)
from fabstir_sidecar.core.jobstats import JOB_DURATION_BUCKETS, ClientStats, job_outcome
from fabstir_sidecar.node_interface import NodeInterface
from fabstir_sidecar.protocols.discovery import request_discovery
from fabstir_sidecar.protocols.inference import request_inference
from fabstir_sidecar.protocols.job import job_frames, run_job_once
from fabstir_sidecar.protocols.status import HostStatus, request_status
from fabstir_sidecar.rpc.pacing import Pacer, Pacers
from fabstir_sidecar.wire.messages import (
    ChatMessage,
    InferenceRequest,
    InferenceResponse,
    JobRequest,
    JobResult,
    JobToken,
    PeerInfo,
)

__all__ = [
    "DEFAULT_JOB_TIMEOUT",
    "JOB_DURATION_BUCKETS",
    "ClientStats",
    "FabstirClient",
    "JobStream",
    "RetryConfig",
]

T = TypeVar("T")

IDEMPOTENT: tuple[type[FabstirError], ...] = (RetryableError,)
"""What status and discovery requests retry: any retryable failure."""
NOT_RUN: tuple[type[FabstirError], ...] = (NotSentError,)
"""What jobs retry: failures after which the job cannot have run (busy answers included)."""
DEFAULT_JOB_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """How a client retries (see the module doc for what is retried)."""

    attempts: int = 3
    max_total_s: float = 60.0
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    busy_attempts: int = 100
    """Tries while the host answers ``busy`` / ``shutting_down`` (within ``max_total_s``)."""

    def __post_init__(self) -> None:
        for name in ("attempts", "busy_attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(name, value, "expected an integer")
            if value < 1:
                raise ConfigError(name, value, "must be >= 1")
        for name in ("max_total_s", "initial_backoff_s", "max_backoff_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(name, value, "must be a number of seconds >= 0")
        if self.initial_backoff_s > self.max_backoff_s:
            raise ConfigError(
                "initial_backoff_s", self.initial_backoff_s, "must be <= max_backoff_s"
            )

    @classmethod
    def none(cls) -> RetryConfig:
        return cls(attempts=1, busy_attempts=1)


class JobOptions(TypedDict, total=False):
    """The optional fields of a job (docs/protocol.md §6.1)."""

    max_tokens: int | None
    temperature: float | None
    job_id: str | None  # generated when absent (1-128 characters)
    messages: Sequence[ChatMessage] | None  # the chat the prompt was rendered from


class FabstirClient:
    """Talk to hosts through ``node``. ``peer`` arguments are a peer ID or a full multiaddr."""

    def __init__(
        self,
        node: NodeInterface,
        *,
        retry: RetryConfig | None = None,
        request_timeout: float | None = None,
        job_timeout: float = DEFAULT_JOB_TIMEOUT,
        pacing: bool = True,
    ) -> None:
        self.node = node
        self.retry = retry or RetryConfig()
        self.request_timeout = request_timeout or node.config.connection_timeout
        self.job_timeout = job_timeout
        self.stats = ClientStats()
        self.pacers = Pacers(enabled=pacing, on_first_use=self._learn_capacity)
        """The in-flight window per host peer id (``rpc/pacing.py``)."""

    def _learn_capacity(self, peer_id: str) -> None:
        async def learn() -> None:  # a failure leaves pacing to learn from busy answers
            with contextlib.suppress(FabstirError):
                await self._status(peer_id)

        with contextlib.suppress(FabstirError):  # not running: the attempt will say so
            self.node.spawn(learn)

    async def _resolve(self, peer: str) -> str:
        """A multiaddr is (re)dialed on every attempt: after a host restart its address holds."""
        if peer.startswith("/"):
            return await self.node.connect_to_peer(peer)
        return peer

    def _wait(self) -> Callable[[RetryCallState], float]:
        policy = self.retry
        # jitter scaled to the policy: tenacity's default (up to 1 s) would swamp small
        # backoffs, making every wait jump to max_backoff_s.
        backoff = wait_exponential_jitter(
            multiplier=policy.initial_backoff_s,
            max=policy.max_backoff_s,
            jitter=policy.initial_backoff_s,
        )

        def wait(state: RetryCallState) -> float:
            delay = backoff(state)
            exc = state.outcome.exception() if state.outcome is not None else None
            if isinstance(exc, RetryableError) and exc.retry_after is not None:
                # The host's own estimate, with jitter so that many waiting clients spread.
                delay = max(delay, exc.retry_after * random.uniform(1.0, 1.25))
            return float(delay)

        return wait

    async def _retrying(
        self,
        operation: str,
        attempt: Callable[[], Awaitable[T]],
        retry_on: tuple[type[FabstirError], ...] = IDEMPOTENT,
    ) -> T:
        failures: list[BaseException] = []
        policy = self.retry
        late = stop_after_delay(policy.max_total_s)

        def stop(state: RetryCallState) -> bool:
            busy = sum(isinstance(f, HostBusyError) for f in failures)
            return (
                busy >= policy.busy_attempts
                or len(failures) - busy >= policy.attempts
                or late(state)
            )

        retrying = AsyncRetrying(
            stop=stop,
            wait=self._wait(),
            retry=retry_if_exception_type(retry_on),
            sleep=anyio.sleep,
            reraise=True,
        )
        try:
            async for try_ in retrying:
                with try_:
                    try:
                        return await attempt()
                    except retry_on as exc:
                        failures.append(exc)
                        raise
        except retry_on as exc:
            raise RetryExhaustedError(operation, failures) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def get_status(self, peer: str) -> HostStatus:
        """The host's own record plus the measured round trip (ms)."""

        async def once() -> HostStatus:
            return await self._status(await self._resolve(peer))

        return await self._retrying(f"status of {peer}", once)

    async def _status(self, peer_id: str) -> HostStatus:
        status = await request_status(self.node.control, peer_id, timeout=self.request_timeout)
        if peer_id in self.pacers:
            self.pacers[peer_id].advertise(status.host.max_jobs, status.host.active_jobs)
        return status

    async def ask_discovery(
        self, peer: str, models: Sequence[str] | None = None, limit: int | None = None
    ) -> list[PeerInfo]:
        async def once() -> list[PeerInfo]:
            return await request_discovery(
                self.node.control,
                await self._resolve(peer),
                models=models,
                limit=limit,
                timeout=self.request_timeout,
            )

        return await self._retrying(f"discovery from {peer}", once)

    @staticmethod
    def _job(model: str, prompt: str, stream: bool, options: JobOptions) -> JobRequest:
        messages = options.get("messages")
        return JobRequest(
            job_id=options.get("job_id") or uuid.uuid4().hex,
            model=model,
            prompt=prompt,
            max_tokens=options.get("max_tokens"),
            temperature=options.get("temperature"),
            stream=stream,
            messages=None if messages is None else tuple(messages),
        )

    async def run_job(
        self, peer: str, model: str, prompt: str, **options: Unpack[JobOptions]
    ) -> JobResult:
        """One job, its whole result at once (``options``: see :class:`JobOptions`)."""
        request = self._job(model, prompt, False, options)

        async def once() -> JobResult:
            peer_id = await self._resolve(peer)
            async with self.pacers.slot(peer_id):
                return await run_job_once(
                    self.node.control, peer_id, request, timeout=self.job_timeout
                )

        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            return await self._retrying(f"job {request.job_id} on {peer}", once, NOT_RUN)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self.stats.record(job_outcome(failure), time.perf_counter() - started)

    def stream_job(
        self, peer: str, model: str, prompt: str, **options: Unpack[JobOptions]
    ) -> JobStream:
        """``async for token in client.stream_job(...)``; then ``.result`` holds the result."""
        request = self._job(model, prompt, True, options)
        return JobStream(self, peer, request)

    async def infer(
        self,
        peer: str,
        model: str,
        prompt: str,
        *,
        max_tokens: int = 256,
        temperature: float = 0.7,
        request_id: str | None = None,
    ) -> InferenceResponse:
        """fabstir-llm-node's ``/fabstir/inference/1.0.0``."""
        request = InferenceRequest(
            request_id=request_id or uuid.uuid4().hex,
            model=model,
            prompt=prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            stream=False,
        )

        async def once() -> InferenceResponse:
            peer_id = await self._resolve(peer)
            async with self.pacers.slot(peer_id):
                return await request_inference(
                    self.node.control, peer_id, request, timeout=self.job_timeout
                )

        return await self._retrying(f"inference {request.request_id} on {peer}", once, NOT_RUN)


class JobStream:
    """Async iterator of a streamed job's tokens; ``result`` is set once it is exhausted."""

    def __init__(self, client: FabstirClient, peer: str, request: JobRequest) -> None:
        self._client = client
        self._peer = peer
        self.request = request
        self.result: JobResult | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        return self._tokens()

    async def _tokens(self) -> AsyncIterator[str]:
        client = self._client
        Frames = AsyncGenerator[JobToken | JobResult, None]

        async def open_and_first() -> tuple[Frames, JobToken | JobResult, Pacer | None]:
            peer_id = await client._resolve(self._peer)
            pacer = client.pacers.get(peer_id)
            if pacer is not None:
                await pacer.acquire()
            frames = job_frames(
                client.node.control, peer_id, self.request, timeout=client.job_timeout
            )
            try:
                return frames, await anext(frames), pacer
            except BaseException as exc:
                await frames.aclose()
                if pacer is not None:
                    pacer.release("busy" if isinstance(exc, HostBusyError) else "failed")
                raise

        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            # Retried only while the job cannot have run (see the module doc).
            frames, frame, pacer = await client._retrying(
                f"job {self.request.job_id} on {self._peer}", open_and_first, NOT_RUN
            )
            outcome: Literal["ok", "failed"] = "failed"
            try:
                while isinstance(frame, JobToken):
                    client.stats.tokens_streamed += 1
                    yield frame.text
                    frame = await anext(frames)
                self.result = frame
                outcome = "ok"
            finally:
                await frames.aclose()
                if pacer is not None:
                    pacer.release(outcome)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            client.stats.record(job_outcome(failure), time.perf_counter() - started)
