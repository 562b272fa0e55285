"""The gateway's only imports of package internals (not in the top-level public API).

Kept in one place so the package refactor (issue 9) has one line per name to update.
"""

from __future__ import annotations

from ..client import JOB_DURATION_BUCKETS
from ..config import parse_peer_id
from ..wire.messages import ChatMessage

__all__ = ["JOB_DURATION_BUCKETS", "ChatMessage", "parse_peer_id"]
