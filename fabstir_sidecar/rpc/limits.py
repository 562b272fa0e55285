"""Per-protocol limits of the request/response layer (sizes, deadlines, caps).

Two levels of capacity (docs/protocol.md, admission):

* soft: a well-formed request over ``soft_concurrent`` (or refused by the host's own job
  admission) is read and answered ``busy`` with ``retry_after_ms``;
* hard: beyond ``max_concurrent`` streams of the protocol, or ``max_per_peer`` of one peer,
  or their fair share under contention, streams are reset without being read. Streams that
  have not yet sent a full request get ``request_timeout`` and a share of the cap of their
  own (``max_pending`` / ``max_pending_per_peer``), so that streams which send nothing
  (slowloris) cannot fill the cap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fabstir_sidecar.core.admission import AdmissionCounters
from fabstir_sidecar.wire.json_codec import MAX_MESSAGE_SIZE

DEFAULT_MAX_CONCURRENT = 2048
DEFAULT_MAX_PER_PEER = 1024


@dataclass(frozen=True, slots=True)
class RpcLimits:
    """Per-protocol policy (py-libp2p's request_response config object, in spirit)."""

    max_size: int = MAX_MESSAGE_SIZE
    read_timeout: float = 30.0
    """Deadline for the request frame to arrive (also bounded by ``request_timeout``)."""
    total_timeout: float = 30.0
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    """Hard cap of streams of this protocol: beyond it, streams are reset unread."""
    max_per_peer: int = DEFAULT_MAX_PER_PEER
    """Hard cap of one peer's streams of this protocol (and its fair share under contention)."""
    min_share: int = 64
    """Under contention a peer is never cut below this many streams by fair share."""
    request_timeout: float = 5.0
    """A stream that has not sent its full request within this many seconds is cut."""
    max_pending: int | None = None
    """Streams still waiting for their request; default: half of ``max_concurrent``."""
    max_pending_per_peer: int | None = None
    """One peer's streams waiting for their request; default: ``max_per_peer`` // 2."""
    soft_concurrent: int | None = 256
    """Requests handled at once; more are answered ``error`` code ``busy`` (None: no cap)."""
    busy_retry_ms: int = 50
    """``retry_after_ms`` of those ``busy`` answers."""
    write_timeout: float = 10.0
    """A reader that stops reading loses its stream after a write blocks this long."""
    close_linger: float = 0.2
    """After the last frame, wait up to this long for the requester to close first."""
    counters: AdmissionCounters | None = field(default=None, compare=False)
    """Where to count accepted / busy / reset / timeout requests (None: nowhere)."""

    @property
    def first_read_timeout(self) -> float:
        return min(self.read_timeout, self.request_timeout)

    @property
    def pending_cap(self) -> int:
        return self.max_pending or max(1, self.max_concurrent // 2)

    @property
    def pending_per_peer(self) -> int:
        return self.max_pending_per_peer or max(1, self.max_per_peer // 2)
