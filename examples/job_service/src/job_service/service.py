"""Find the best host for a model and run a job there, failing over to the next one.

"Best" is this service's own policy: the highest reputation among the hosts that match,
then the lowest measured latency. A host that cannot be reached, answers ``busy`` or dies
during the job is skipped and the next one is tried.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field

from fabstir_sidecar import (
    DiscoveryManager,
    FabstirClient,
    FabstirError,
    HostCriteria,
    HostStatus,
    JobRejectedError,
    RetryConfig,
    RetryExhaustedError,
)


@dataclass(frozen=True)
class Answer:
    host: str  # peer ID of the host that answered
    text: str
    skipped: tuple[str, ...] = ()  # hosts tried before, in order


@dataclass
class NoHostAvailableError(Exception):
    model: str
    failures: list[tuple[str, str]] = field(default_factory=list)  # (peer ID, why)

    def __str__(self) -> str:
        tried = "; ".join(f"{peer[:12]}…: {why}" for peer, why in self.failures)
        return f"no host could run a {self.model!r} job ({tried or 'none matched'})"


@dataclass
class JobService:
    node: DiscoveryManager
    _: KW_ONLY
    min_reputation: int | None = None
    location: str | None = None
    job_timeout: float = 30.0
    client: FabstirClient = field(init=False)

    def __post_init__(self) -> None:
        # Failover is ours: one attempt per host, then the next host.
        self.client = FabstirClient(
            self.node, retry=RetryConfig.none(), job_timeout=self.job_timeout
        )

    async def candidates(self, model: str) -> list[HostStatus]:
        criteria = HostCriteria(
            required_models=(model,), min_reputation=self.min_reputation, location=self.location
        )
        hosts = await self.node.find_hosts(criteria)  # NoMatchingHostError if none
        return sorted(hosts, key=lambda s: (-s.host.reputation, s.latency_ms))

    async def ask(self, model: str, prompt: str) -> Answer:
        failures: list[tuple[str, str]] = []
        for status in await self.candidates(model):
            peer = status.host.peer_id
            try:
                result = await self.client.run_job(peer, model, prompt)
            except JobRejectedError as exc:  # busy, or the model just went away
                failures.append((peer, f"rejected: {exc}"))
            except RetryExhaustedError as exc:  # unreachable, stream broke, timed out
                failures.append((peer, f"failed: {exc}"))
            except FabstirError as exc:
                failures.append((peer, f"error: {exc}"))
            else:
                return Answer(peer, result.content, tuple(p for p, _ in failures))
        raise NoHostAvailableError(model, failures)
