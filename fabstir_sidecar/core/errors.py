"""One exception tree for everything fabstir_sidecar raises, grouped by what the caller does.

Every error derives from :class:`FabstirError`. Failures of the daemon, of p2pclient or of
anyio are translated into this tree where they happen (the daemon layer), so callers write
``except FabstirError`` and never see a library's private exception. The first level says
what to do about it::

    FabstirError
    ├── InvalidInputError (ValueError)        FIX THE INPUT, then call again
    │   ├── ConfigError                       an option, CLI flag or environment variable
    │   │   ├── InvalidMultiaddrError         a multiaddr that does not parse
    │   │   └── InvalidPeerIdError            a string that is not a libp2p peer id
    │   └── MessageTooLargeError              what you asked to send is over the cap (not sent)
    ├── NodeStateError                        FIX THE CALLING CODE (call order)
    │   ├── NodeNotStartedError               call before create_node()
    │   └── NodeClosedError                   call after stop(); no reopen
    ├── SetupError                            FIX THE INSTALLATION or environment
    │   └── DaemonError                       p2pd: install, find, verify, start, ask
    │       ├── DaemonNotFoundError           no p2pd binary; says how to install it
    │       ├── DaemonIntegrityError          binary present but sha256 mismatch
    │       ├── DaemonStartError              p2pd exited or never got ready (its reason)
    │       └── ControlError                  the daemon refused a control request
    ├── RetryableError                        RETRY (after ``retry_after`` s when given)
    │   ├── NotSentError                      nothing reached the peer: any retry is safe
    │   │   ├── PeerUnreachableError          dial failed, no addresses, connection refused
    │   │   ├── DaemonUnavailableError        p2pd died / is restarting
    │   │   └── HostBusyError                 the host refused it for now (busy, shutting_down)
    │   └── ConnectionLostError               the exchange broke after the request went out:
    │       ├── StreamClosedError             retried only where the request is idempotent
    │       └── FabstirTimeoutError (TimeoutError)   (status, discovery), never for jobs
    └── FailedError                           GIVE UP on this attempt (or this peer)
        ├── JobOutcomeUnknownError            the job reached the host, no answer: it may have
        │                                     run; never re-sent automatically
        ├── ProtocolError                     the peer broke the wire protocol
        │   ├── FrameTooLargeError            the peer sent more than the cap
        │   └── MalformedMessageError         not UTF-8 / not JSON / wrong shape
        │       └── BadRequestError           valid JSON, wrong fields or types
        ├── ProtocolNotSupportedError         the peer does not speak the protocol
        ├── RemoteError                       the peer answered an ``error`` frame (``code``)
        │   └── JobRejectedError              a host rejected the job (``code``)
        ├── NoMatchingHostError               find_host: no candidate met the criteria
        ├── BackendError                      a host's LLM backend failed
        └── RetryExhaustedError               every retry of a retryable failure failed

Error codes travel as data (``RemoteError.code``, ``JobRejectedError.code``), never parsed
out of message text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

INSTALL_HINT = "fabstir-sidecar daemon install"


class FabstirError(Exception):
    """Base class of every error raised by fabstir_sidecar."""


# ---------------------------------------------------------------- fix the input


class InvalidInputError(FabstirError, ValueError):
    """The caller passed something unusable; nothing was sent anywhere."""


class ConfigError(InvalidInputError):
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


class _TooLarge(Exception):
    """``size`` (None: unknown, more than the limit) against ``limit`` bytes."""

    def __init__(self, size: int | None, limit: int) -> None:
        self.size = size
        self.limit = limit
        got = f"{size} bytes" if size is not None else "more bytes"
        super().__init__(f"message too large: {got}, limit is {limit} bytes")


class MessageTooLargeError(_TooLarge, InvalidInputError):
    """A message this node was asked to send is over the size cap; it was not sent."""


# ------------------------------------------------------------ fix the calling code


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


# ------------------------------------------------------------ fix the installation


class SetupError(FabstirError):
    """The installation or environment is wrong (binary, paths, daemon refusing requests)."""


class DaemonError(SetupError):
    """The p2pd daemon could not be installed, found, verified, started or asked."""


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


class ControlError(DaemonError):
    """The daemon answered a control request with an error we do not map more precisely."""


# --------------------------------------------------------------------- retry


class RetryableError(FabstirError):
    """Trying again may work. ``retry_after`` (seconds) is the peer's hint, when it gave one.

    ``peer_id`` names the peer involved, when there is one.
    """

    def __init__(
        self, message: str, *, peer_id: str | None = None, retry_after: float | None = None
    ) -> None:
        self.peer_id = peer_id
        self.retry_after = retry_after
        super().__init__(message)


class NotSentError(RetryableError):
    """Nothing of the request reached the peer: retrying is safe for every request."""


class PeerUnreachableError(NotSentError):
    """Could not dial the peer (no known address, connection refused, handshake failed)."""


class DaemonUnavailableError(NotSentError):
    """The daemon is down (crashed, restarting or unreachable); the call failed fast."""


class HostBusyError(NotSentError):
    """The host read the request and refused it for now, without running it.

    ``code`` is the host's reason code (``busy`` or ``shutting_down``); ``retry_after`` its
    estimate, in seconds, of when to try again (``None``: it gave none).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        peer_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.code = code
        self.remote_message = message
        hint = f", retry after {retry_after:.3f}s" if retry_after is not None else ""
        super().__init__(
            f"host {peer_id} is {code.replace('_', ' ')}: {message}{hint}",
            peer_id=peer_id,
            retry_after=retry_after,
        )


class ConnectionLostError(RetryableError):
    """The exchange broke after the request may have reached the peer.

    Safe to retry only when the request is idempotent (status, discovery); a job is not
    re-sent (see :class:`JobOutcomeUnknownError`).
    """


class StreamClosedError(ConnectionLostError):
    """The stream ended (EOF or reset) before a complete message arrived."""


class FabstirTimeoutError(ConnectionLostError, TimeoutError):
    """An operation did not finish within its deadline."""


# ------------------------------------------------------------------- give up


class FailedError(FabstirError):
    """This attempt failed for good: retrying the same request would fail the same way."""


class JobOutcomeUnknownError(FailedError):
    """A job request reached the host but no terminal answer came back: it may have run.

    It is never re-sent automatically (the host may have done the work, or be doing it);
    ``cause`` is what broke the exchange (a closed stream, a timeout).
    """

    def __init__(self, job_id: str, *, peer_id: str | None, cause: BaseException) -> None:
        self.job_id = job_id
        self.peer_id = peer_id
        self.cause = cause
        super().__init__(
            f"job {job_id} was sent to host {peer_id} but no answer came back "
            f"({type(cause).__name__}: {cause}); it may have run, so it was not sent again"
        )


class ProtocolError(FailedError):
    """A peer broke the wire protocol."""


class FrameTooLargeError(_TooLarge, ProtocolError):
    """A peer sent a message over the size cap (refused before its body was read)."""


class MalformedMessageError(ProtocolError):
    """Bytes that are not valid UTF-8 JSON of the expected shape."""


class BadRequestError(MalformedMessageError):
    """A decoded message has a missing field, a wrong type or an invalid value.

    ``field`` is the path of the offending field (e.g. ``status.host.reputation``);
    a responder answers it with an ``error`` frame of code ``bad_request``.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class ProtocolNotSupportedError(FailedError):
    """The peer does not handle the requested protocol id."""

    def __init__(self, message: str, *, peer_id: str | None = None, protocol: str = "") -> None:
        self.peer_id = peer_id
        self.protocol = protocol
        super().__init__(message)


class RemoteError(FailedError):
    """The peer answered with an ``error`` frame (``code`` is one of the spec's codes)."""

    def __init__(self, code: str, message: str, *, peer_id: str | None = None) -> None:
        self.code = code
        self.remote_message = message
        self.peer_id = peer_id
        super().__init__(f"remote error {code}: {message}")


class JobRejectedError(RemoteError):
    """A host rejected a job for good (``code``: ``model_not_served`` or its own code)."""

    def __init__(self, reason: str, *, peer_id: str | None = None, code: str = "rejected") -> None:
        super().__init__(code, reason, peer_id=peer_id)
        self.reason = reason
        self.args = (f"host {peer_id} rejected the job: {reason}",)


class NoMatchingHostError(FailedError):
    """No host matched. ``seen`` candidates were asked; ``excluded`` counts per criterion."""

    def __init__(self, seen: int, answered: int, excluded: Mapping[str, int]) -> None:
        self.seen = seen
        self.answered = answered
        self.excluded = dict(excluded)
        why = ", ".join(f"{name} excluded {n}" for name, n in self.excluded.items() if n)
        super().__init__(
            f"no host matched: {seen} candidates seen, {answered} answered status"
            + (f"; {why}" if why else "")
        )


class BackendError(FailedError):
    """A host's LLM backend failed (HTTP error, bad response, unreachable).

    The host answers it with an ``error`` frame of code ``internal``.
    """


class RetryExhaustedError(FailedError):
    """Every attempt of a retried operation failed with a retryable error.

    ``failures`` holds one exception per attempt, oldest first.
    """

    def __init__(self, operation: str, failures: Sequence[BaseException]) -> None:
        self.operation = operation
        self.failures = list(failures)
        reasons = "; ".join(
            f"#{i}: {type(exc).__name__}: {exc}" for i, exc in enumerate(self.failures, start=1)
        )
        super().__init__(f"{operation} failed after {len(self.failures)} attempts ({reasons})")
