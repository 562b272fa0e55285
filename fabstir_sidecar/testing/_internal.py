"""The only imports of this package from outside the public API (kept in one place).

* ``find_p2pd``: where ``fabstir-sidecar daemon install`` put p2pd (for ``p2pd_binary``).
* ``StreamEnd``: the end marker of a :class:`~fabstir_sidecar.TokenStream` source, needed to
  wrap a backend's stream (a slow host delays the first token).
* ``JobRequest``: the type a backend receives; ``JobEvent``: what a host reports about each
  job (``NetworkNode.events``).
"""

from __future__ import annotations

from fabstir_sidecar.host.backends.base import StreamEnd
from fabstir_sidecar.p2pd.binary import find_p2pd
from fabstir_sidecar.protocols.job import JobEvent
from fabstir_sidecar.wire.messages import JobRequest

__all__ = ["JobEvent", "JobRequest", "StreamEnd", "find_p2pd"]
