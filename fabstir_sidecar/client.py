"""The client role: status, jobs (streamed or not), discovery and inference, with retries.

Retries (tenacity) cover transient failures only — the peer could not be dialed, the stream
broke, a deadline passed, the daemon was restarting — with exponential backoff and jitter,
bounded in attempts and in total time. Never retried: bad requests, rejections, too-large
messages, protocol errors. When every attempt failed, ``RetryExhaustedError`` says how many
were made and why each failed. A streamed job is only retried before its first token.
"""

from __future__ import annotations

import bisect
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from .errors import (
    DaemonUnavailableError,
    FabstirError,
    FabstirTimeoutError,
    JobRejectedError,
    PeerUnreachableError,
    RetryExhaustedError,
    StreamClosedError,
)
from .node import DiscoveryManager
from .protocols.discovery import request_discovery
from .protocols.inference import request_inference
from .protocols.job import job_frames, run_job_once
from .protocols.status import HostStatus, request_status
from .wire.messages import (
    ChatMessage,
    InferenceRequest,
    InferenceResponse,
    JobRequest,
    JobResult,
    JobToken,
    PeerInfo,
)

T = TypeVar("T")

TRANSIENT: tuple[type[FabstirError], ...] = (
    PeerUnreachableError,
    StreamClosedError,
    FabstirTimeoutError,
    DaemonUnavailableError,
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3
    max_total_s: float = 60.0
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0

    @classmethod
    def none(cls) -> RetryPolicy:
        return cls(attempts=1)


JOB_DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip


@dataclass(slots=True)
class ClientStats:
    """What this client's jobs did (read by the gateway's /metrics): outcome counts
    (``result``, ``rejected``, ``error``, ``cancelled``), tokens streamed, and job durations
    counted per upper bound of ``JOB_DURATION_BUCKETS`` (the last slot: above them all)."""

    jobs: dict[str, int] = field(default_factory=dict)
    tokens_streamed: int = 0
    duration_counts: list[int] = field(
        default_factory=lambda: [0] * (len(JOB_DURATION_BUCKETS) + 1)
    )
    duration_sum: float = 0.0

    def record(self, outcome: str, seconds: float) -> None:
        self.jobs[outcome] = self.jobs.get(outcome, 0) + 1
        self.duration_counts[bisect.bisect_left(JOB_DURATION_BUCKETS, seconds)] += 1
        self.duration_sum += seconds


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "result"
    if isinstance(exc, JobRejectedError):
        return "rejected"
    if isinstance(exc, FabstirError):
        return "error"
    return "cancelled"


class FabstirClient:
    """Talk to hosts through ``node``. ``peer`` arguments are a peer ID or a full multiaddr."""

    def __init__(
        self,
        node: DiscoveryManager,
        *,
        retry: RetryPolicy | None = None,
        request_timeout: float | None = None,
        job_timeout: float = 300.0,
    ) -> None:
        self.node = node
        self.retry = retry or RetryPolicy()
        self.request_timeout = request_timeout or node.config.connection_timeout
        self.job_timeout = job_timeout
        self.stats = ClientStats()

    async def _resolve(self, peer: str) -> str:
        """A multiaddr is (re)dialed on every attempt: after a host restart its address holds."""
        if peer.startswith("/"):
            return await self.node.connect_to_peer(peer)
        return peer

    async def _retrying(self, operation: str, attempt: Callable[[], Awaitable[T]]) -> T:
        failures: list[BaseException] = []
        policy = self.retry
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.max_total_s),
            # jitter scaled to the policy: tenacity's default (up to 1 s) would swamp small
            # backoffs, making every wait jump to max_backoff_s.
            wait=wait_exponential_jitter(
                multiplier=policy.initial_backoff_s,
                max=policy.max_backoff_s,
                jitter=policy.initial_backoff_s,
            ),
            retry=retry_if_exception_type(TRANSIENT),
            sleep=anyio.sleep,
            reraise=True,
        )
        try:
            async for try_ in retrying:
                with try_:
                    try:
                        return await attempt()
                    except TRANSIENT as exc:
                        failures.append(exc)
                        raise
        except TRANSIENT as exc:
            raise RetryExhaustedError(operation, failures) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def get_status(self, peer: str) -> HostStatus:
        """The host's own record plus the measured round trip (ms)."""

        async def once() -> HostStatus:
            return await request_status(
                self.node.control, await self._resolve(peer), timeout=self.request_timeout
            )

        return await self._retrying(f"status of {peer}", once)

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
    def _job(
        model: str,
        prompt: str,
        max_tokens: int | None,
        temperature: float | None,
        stream: bool,
        job_id: str | None,
        messages: Sequence[ChatMessage] | None = None,
    ) -> JobRequest:
        return JobRequest(
            job_id=job_id or uuid.uuid4().hex,
            model=model,
            prompt=prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            stream=stream,
            messages=None if messages is None else tuple(messages),
        )

    async def run_job(
        self,
        peer: str,
        model: str,
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        job_id: str | None = None,
        messages: Sequence[ChatMessage] | None = None,
    ) -> JobResult:
        """``messages``: the chat ``prompt`` was rendered from (PROTOCOL.md 3.1)."""
        request = self._job(model, prompt, max_tokens, temperature, False, job_id, messages)

        async def once() -> JobResult:
            return await run_job_once(
                self.node.control, await self._resolve(peer), request, timeout=self.job_timeout
            )

        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            return await self._retrying(f"job {request.job_id} on {peer}", once)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self.stats.record(_outcome(failure), time.perf_counter() - started)

    def stream_job(
        self,
        peer: str,
        model: str,
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        job_id: str | None = None,
        messages: Sequence[ChatMessage] | None = None,
    ) -> JobStream:
        """``async for token in client.stream_job(...)``; then ``.result`` holds the result."""
        request = self._job(model, prompt, max_tokens, temperature, True, job_id, messages)
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
            return await request_inference(
                self.node.control, await self._resolve(peer), request, timeout=self.job_timeout
            )

        return await self._retrying(f"inference {request.request_id} on {peer}", once)


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

        async def open_and_first() -> tuple[Frames, JobToken | JobResult]:
            peer_id = await client._resolve(self._peer)
            frames = job_frames(
                client.node.control, peer_id, self.request, timeout=client.job_timeout
            )
            try:
                return frames, await anext(frames)
            except BaseException:
                await frames.aclose()
                raise

        started = time.perf_counter()
        stats = client.stats
        failure: BaseException | None = None
        try:
            # Retry only until the first frame arrived: later, a retry would repeat tokens.
            frames, frame = await client._retrying(
                f"job {self.request.job_id} on {self._peer}", open_and_first
            )
            try:
                while isinstance(frame, JobToken):
                    stats.tokens_streamed += 1
                    yield frame.text
                    frame = await anext(frames)
                self.result = frame
            finally:
                await frames.aclose()
        except BaseException as exc:
            failure = exc
            raise
        finally:
            stats.record(_outcome(failure), time.perf_counter() - started)
