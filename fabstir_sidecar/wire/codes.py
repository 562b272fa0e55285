"""The machine-readable codes of docs/protocol.md §6.1: ``error`` codes and ``job_rejected`` codes.

Peers may send codes not listed here; messages accept any non-empty code as is. Every name
here is public.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

ERROR_BAD_REQUEST: Final = "bad_request"
ERROR_TOO_LARGE: Final = "too_large"
ERROR_INTERNAL: Final = "internal"
ERROR_TIMEOUT: Final = "timeout"
ERROR_BUSY: Final = "busy"
ERROR_CODES: Final = frozenset(
    {ERROR_BAD_REQUEST, ERROR_TOO_LARGE, ERROR_INTERNAL, ERROR_TIMEOUT, ERROR_BUSY}
)

REJECTED_MODEL_NOT_SERVED: Final = "model_not_served"
REJECTED_BUSY: Final = "busy"
"""A ``busy`` rejection SHOULD carry ``retry_after_ms``, the host's estimate of a free slot."""
REJECTED_SHUTTING_DOWN: Final = "shutting_down"
REJECTED_CODES: Final = frozenset(
    {REJECTED_MODEL_NOT_SERVED, REJECTED_BUSY, REJECTED_SHUTTING_DOWN}
)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a host refuses a job without running it: the code as data, the reason as text."""

    code: str  # normally one of REJECTED_CODES
    reason: str
    retry_after_ms: int | None = None
