"""What this package takes from outside the top-level public API, or by names that are
changing (kept in one place, so a rename in the library is a change here only).

* ``find_p2pd``: where ``fabstir-sidecar daemon install`` put p2pd (for ``p2pd_binary``).
* ``StreamEnd``: the end marker of a :class:`~fabstir_sidecar.TokenStream` source, needed to
  wrap a backend's stream (a slow host delays the first token).
* ``JobRequest``: the type a backend receives; ``JobEvent``: what a host reports about each
  job (``NetworkNode.events``).
* ``RetryConfig``, ``FinderConfig``: the client's retry policy and discovery settings
  (``RetryPolicy`` and ``FinderSettings`` in this version of the library).
* ``Admission``: what ``HostService.try_admit`` returns (a rejection reason, or None).
"""

from __future__ import annotations

from fabstir_sidecar import FinderSettings as FinderConfig
from fabstir_sidecar import RetryPolicy as RetryConfig
from fabstir_sidecar.host.backends.base import StreamEnd
from fabstir_sidecar.p2pd.binary import find_p2pd
from fabstir_sidecar.protocols.job import JobEvent
from fabstir_sidecar.wire.messages import JobRequest

Admission = str | None

__all__ = [
    "Admission",
    "FinderConfig",
    "JobEvent",
    "JobRequest",
    "RetryConfig",
    "StreamEnd",
    "find_p2pd",
]
