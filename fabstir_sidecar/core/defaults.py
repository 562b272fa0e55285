"""Defaults every layer shares, defined once (the wire contract's numbers among them)."""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_JOB_TIMEOUT", "DEFAULT_TIMEOUT", "MAX_MESSAGE_SIZE"]

MAX_MESSAGE_SIZE: Final = 1_048_576
"""Largest message or frame body, in bytes (1 MiB, docs/protocol.md §2-4)."""
DEFAULT_TIMEOUT: Final = 30.0
"""Seconds for a dial, a control request or a read (``P2P_CONNECTION_TIMEOUT``)."""
DEFAULT_JOB_TIMEOUT: Final = 300.0
"""Seconds one job may take, end to end."""
