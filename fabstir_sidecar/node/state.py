"""The lifecycle states of a node (``DiscoveryManager.state``)."""

from __future__ import annotations

import enum

__all__ = ["NodeState"]


class NodeState(enum.Enum):
    """new → starting → running → closed, never reopened. ``FAILED``: started, but its daemon
    is gone for good (it kept dying, or restarting it failed; ``daemon_failure`` says why):
    the node serves nothing any more, ``stop()`` still cleans up."""

    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"
    CLOSED = "closed"
