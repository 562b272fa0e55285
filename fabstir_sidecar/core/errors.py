"""One exception tree for everything fabstir_sidecar raises.

Every error a user can see derives from :class:`FabstirError`. Failures of the
daemon, of p2pclient or of anyio are translated into this tree at the boundary
where they happen (``daemon/control.py``, ``daemon/process.py``), so callers write
one ``except FabstirError`` and never see a library's private exception.

Tree::

    FabstirError
    ├── ConfigError (ValueError)              bad option / environment variable
    │   ├── InvalidMultiaddrError             a multiaddr that does not parse
    │   └── InvalidPeerIdError                a string that is not a libp2p peer ID
    ├── NodeStateError
    │   ├── NodeNotStartedError               call before create_node()
    │   └── NodeClosedError                   call after stop(); no reopen
    ├── DaemonError
    │   ├── DaemonNotFoundError               no p2pd binary; says how to install it
    │   ├── DaemonIntegrityError              binary present but sha256 mismatch
    │   ├── DaemonStartError                  p2pd exited or never got ready (its reason)
    │   ├── DaemonUnavailableError            p2pd died / is restarting: fail fast
    │   └── ControlError                      the daemon refused a control request
    ├── PeerError
    │   ├── PeerUnreachableError              dial failed, no addresses, connection refused
    │   └── ProtocolNotSupportedError         peer does not speak the protocol
    ├── ProtocolError                         the peer broke the wire protocol
    │   ├── MessageTooLargeError              over the size cap (1 MiB)
    │   ├── MalformedMessageError             not UTF-8 / not JSON / wrong shape
    │   │   └── BadRequestError (wire/messages.py)  valid JSON, wrong fields or types
    │   ├── StreamClosedError                 the stream ended before a complete message
    │   └── RemoteError                       the peer answered with an error frame
    │       └── JobRejectedError              a host rejected a job (model, busy, ...)
    ├── NoMatchingHostError                   find_host: no candidate met the criteria
    ├── BackendError (host/backends/base.py)  a host's LLM backend failed
    ├── FabstirTimeoutError (TimeoutError)    a deadline passed
    └── RetryExhaustedError                   every retry of a transient failure failed
"""

from __future__ import annotations

from collections.abc import Sequence

INSTALL_HINT = "fabstir-sidecar daemon install"


class FabstirError(Exception):
    """Base class of every error raised by fabstir_sidecar."""


# --------------------------------------------------------------------------- config


class ConfigError(FabstirError, ValueError):
    """An option, CLI flag or environment variable has an invalid value.

    ``name`` is the option or variable (e.g. ``P2P_MAX_CONNECTIONS``), ``value`` the
    offending value as given.
    """

    def __init__(self, name: str, value: object, reason: str) -> None:
        self.name = name
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {name}={value!r}: {reason}")


class InvalidMultiaddrError(ConfigError):
    """A string is not a valid multiaddr (or lacks a required part such as /p2p/)."""


class InvalidPeerIdError(ConfigError):
    """A string that is not a libp2p peer ID."""


# ----------------------------------------------------------------------- node state


class NodeStateError(FabstirError):
    """The node is not in a state that allows the call."""


class NodeNotStartedError(NodeStateError):
    def __init__(self, what: str = "this call") -> None:
        super().__init__(
            f"node is not started: call create_node() (or use 'async with') before {what}"
        )


class NodeClosedError(NodeStateError):
    def __init__(self) -> None:
        super().__init__("node is stopped; a stopped node cannot be restarted, create a new one")


# --------------------------------------------------------------------------- daemon


class DaemonError(FabstirError):
    """Something about the p2pd daemon process or its control socket."""


class DaemonNotFoundError(DaemonError):
    def __init__(self, searched: Sequence[str]) -> None:
        self.searched = list(searched)
        where = "; ".join(self.searched) if self.searched else "nowhere"
        super().__init__(
            f"p2pd binary not found (looked in: {where}). Install it with: {INSTALL_HINT}"
        )


class DaemonIntegrityError(DaemonError):
    def __init__(self, path: str, expected: str, actual: str) -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"p2pd binary at {path} has sha256 {actual}, expected {expected}. "
            f"Reinstall it with: {INSTALL_HINT} --force"
        )


class DaemonStartError(DaemonError):
    """p2pd exited before it was ready, or did not get ready in time.

    ``reason`` is the daemon's own last words (e.g. "address already in use").
    """

    def __init__(self, reason: str, *, returncode: int | None = None) -> None:
        self.reason = reason
        self.returncode = returncode
        code = f" (exit code {returncode})" if returncode is not None else ""
        super().__init__(f"p2pd failed to start{code}: {reason}")


class DaemonUnavailableError(DaemonError):
    """The daemon is down (crashed, restarting or unreachable); the call failed fast."""


class ControlError(DaemonError):
    """The daemon answered a control request with an error we do not map more precisely."""


# ---------------------------------------------------------------------------- peers


class PeerError(FabstirError):
    """A problem reaching or talking to a specific peer."""

    def __init__(self, message: str, *, peer_id: str | None = None) -> None:
        self.peer_id = peer_id
        super().__init__(message)


class PeerUnreachableError(PeerError):
    """Could not dial the peer (no known address, connection refused, handshake failed)."""


class ProtocolNotSupportedError(PeerError):
    """The peer does not handle the requested protocol id."""

    def __init__(self, message: str, *, peer_id: str | None = None, protocol: str = "") -> None:
        self.protocol = protocol
        super().__init__(message, peer_id=peer_id)


# ------------------------------------------------------------------------- protocol


class ProtocolError(FabstirError):
    """A peer broke the wire protocol (or we would have, e.g. a message too large)."""


class MessageTooLargeError(ProtocolError):
    def __init__(self, size: int | None, limit: int) -> None:
        self.size = size
        self.limit = limit
        got = f"{size} bytes" if size is not None else "more bytes"
        super().__init__(f"message too large: {got}, limit is {limit} bytes")


class MalformedMessageError(ProtocolError):
    """Bytes that are not valid UTF-8 JSON of the expected shape."""


class StreamClosedError(ProtocolError):
    """The stream ended (EOF or reset) before a complete message arrived."""


class RemoteError(ProtocolError):
    """The peer answered with an ``error`` frame (``code`` is one of the spec's codes)."""

    def __init__(self, code: str, message: str, *, peer_id: str | None = None) -> None:
        self.code = code
        self.remote_message = message
        self.peer_id = peer_id
        super().__init__(f"remote error {code}: {message}")


class JobRejectedError(RemoteError):
    def __init__(self, reason: str, *, peer_id: str | None = None) -> None:
        super().__init__("rejected", reason, peer_id=peer_id)
        self.reason = reason
        self.args = (f"host {peer_id} rejected the job: {reason}",)


# ------------------------------------------------------------------------ discovery


class NoMatchingHostError(FabstirError):
    """No host matched. ``seen`` candidates were asked; ``excluded`` counts per criterion."""

    def __init__(self, seen: int, answered: int, excluded: dict[str, int]) -> None:
        self.seen = seen
        self.answered = answered
        self.excluded = dict(excluded)
        why = ", ".join(f"{name} excluded {n}" for name, n in self.excluded.items() if n)
        super().__init__(
            f"no host matched: {seen} candidates seen, {answered} answered status"
            + (f"; {why}" if why else "")
        )


# --------------------------------------------------------------------- time, retry


class FabstirTimeoutError(FabstirError, TimeoutError):
    """An operation did not finish within its deadline."""


class RetryExhaustedError(FabstirError):
    """Every attempt of a retried operation failed with a transient error.

    ``failures`` holds one exception per attempt, oldest first.
    """

    def __init__(self, operation: str, failures: Sequence[BaseException]) -> None:
        self.operation = operation
        self.failures = list(failures)
        reasons = "; ".join(
            f"#{i}: {type(exc).__name__}: {exc}" for i, exc in enumerate(self.failures, start=1)
        )
        super().__init__(f"{operation} failed after {len(self.failures)} attempts ({reasons})")
