"""HTTP errors of the gateway in OpenAI's shape (HTTP_API.md section 1), and the mapping
from the library's exception tree to them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from fabstir_sidecar.core.errors import (
    DaemonUnavailableError,
    FabstirError,
    FabstirTimeoutError,
    HostBusyError,
    InvalidMultiaddrError,
    JobOutcomeUnknownError,
    JobRejectedError,
    MessageTooLargeError,
    NodeStateError,
    PeerUnreachableError,
    ProtocolError,
    ProtocolNotSupportedError,
    RetryExhaustedError,
)

TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    502: "api_error",
    503: "service_unavailable",
    504: "api_error",
}
BUSY_REASON = "busy"  # what a HostService answers when every slot is taken
DEFAULT_RETRY_AFTER_S = 1


class ApiError(Exception):
    """An HTTP error answer: status, ``code`` (the contract's), message, extra headers and
    ``extra`` fields merged into the ``error`` object (e.g. the no-match explanation)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def error_object(self) -> dict[str, Any]:
        return {
            "type": TYPES.get(self.status, "api_error"),
            "code": self.code,
            "message": self.message,
            **self.extra,
        }

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.error_object()}, self.status, headers=self.headers)

    def with_host(self, peer_id: str | None) -> ApiError:
        if peer_id is not None:
            self.headers["X-Fabstir-Host"] = peer_id
        return self


def bad_request(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


def busy(code: str, message: str, retry_after_s: int = DEFAULT_RETRY_AFTER_S) -> ApiError:
    return ApiError(503, code, message, headers={"Retry-After": str(max(retry_after_s, 1))})


def root_cause(exc: BaseException) -> BaseException:
    """A RetryExhaustedError stands for its last failure, a JobOutcomeUnknownError for what
    broke the exchange."""
    while True:
        if isinstance(exc, RetryExhaustedError) and exc.failures:
            exc = exc.failures[-1]
        elif isinstance(exc, JobOutcomeUnknownError):
            exc = exc.cause
        else:
            return exc


def is_busy(exc: BaseException) -> bool:
    return isinstance(root_cause(exc), HostBusyError)


def retry_after_s(exc: BaseException) -> int:
    """Whole seconds for ``Retry-After``: the host's own estimate when it gave one."""
    cause = root_cause(exc)
    hint = cause.retry_after if isinstance(cause, HostBusyError) else None
    return DEFAULT_RETRY_AFTER_S if hint is None else max(1, math.ceil(hint))


def from_library(exc: FabstirError, *, peer_id: str | None = None) -> ApiError:
    """The contract's answer to a library error that happened while serving a request."""
    cause = root_cause(exc)
    text = " ".join(str(cause).split())
    err: ApiError
    if is_busy(cause):
        err = busy("host_busy", f"host {peer_id} is busy", retry_after_s(cause))
    elif isinstance(cause, JobRejectedError):
        err = ApiError(404, "model_not_found", text)
    elif isinstance(cause, InvalidMultiaddrError):
        err = ApiError(422, "invalid_multiaddr", text)
    elif isinstance(cause, FabstirTimeoutError):
        err = ApiError(504, "host_timeout", text)
    elif isinstance(cause, DaemonUnavailableError | NodeStateError):
        err = busy("daemon_unavailable", text)
    elif isinstance(cause, PeerUnreachableError | ProtocolNotSupportedError):
        err = ApiError(502, "peer_unreachable", text)
    elif isinstance(cause, MessageTooLargeError):
        err = ApiError(413, "request_too_large", text)
    elif isinstance(cause, ProtocolError):
        err = ApiError(502, "host_failed", text)
    else:
        err = ApiError(502, "host_failed", text)
    return err.with_host(peer_id)
