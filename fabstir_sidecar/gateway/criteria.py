"""Host selection criteria from headers and body, and the "why nothing matched" answer.

Pure (HTTP_API.md section 1): body field ``fabstir`` and ``X-Fabstir-*`` headers combine,
the body wins per criterion; a value that does not parse is 400 ``invalid_criteria``. The
explanation counts a host under every criterion it fails (the library's matcher counts the
first only), plus the candidates that never answered.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.core.peer_id import PeerId
from fabstir_sidecar.discovery.matching import HostCriteria
from fabstir_sidecar.gateway.errors import ApiError, bad_request
from fabstir_sidecar.protocols.status import HostStatus

HEADERS = {
    "min_reputation": "x-fabstir-min-reputation",
    "max_latency_ms": "x-fabstir-max-latency-ms",
    "min_uptime_s": "x-fabstir-min-uptime-s",
    "location": "x-fabstir-location",
    "peer_id": "x-fabstir-peer-id",
}
EXCLUSION_KEYS = (
    "model",
    "min_reputation",
    "max_latency_ms",
    "min_uptime_s",
    "location",
    "peer_id",
    "unreachable",
)
_WORDS = {
    "model": "do not serve the model",
    "min_reputation": "have a reputation below min_reputation",
    "max_latency_ms": "are slower than max_latency_ms",
    "min_uptime_s": "have less uptime than min_uptime_s",
    "location": "are in another location",
    "peer_id": "are not the pinned peer",
    "unreachable": "did not answer",
}


@dataclass(frozen=True, slots=True)
class Selection:
    models: tuple[str, ...] = ()
    min_reputation: int | None = None
    max_latency_ms: float | None = None
    min_uptime_s: int | None = None
    location: str | None = None
    peer_id: str | None = None

    def host_criteria(self) -> HostCriteria:
        return HostCriteria(**{lib: getattr(self, own) for _, own, lib in _LIBRARY_FIELDS})

    def failures(self, candidate: HostStatus) -> list[str]:
        """Every criterion ``candidate`` fails (names as in the explanation), each checked
        by the library's matcher on its own."""
        failed = [
            name
            for name, own, lib in _LIBRARY_FIELDS
            if HostCriteria(**{lib: getattr(self, own)}).failed(candidate)
        ]
        if self.peer_id is not None and candidate.host.peer_id != self.peer_id:
            failed.append("peer_id")
        return failed


_LIBRARY_FIELDS = (  # (the explanation's name, Selection's field, HostCriteria's field)
    ("model", "models", "required_models"),
    ("min_reputation", "min_reputation", "min_reputation"),
    ("max_latency_ms", "max_latency_ms", "max_latency"),
    ("min_uptime_s", "min_uptime_s", "min_uptime"),
    ("location", "location", "location"),
)


def _invalid(name: str, value: object, why: str) -> ApiError:
    return bad_request("invalid_criteria", f"criterion {name}={value!r}: {why}")


def _from_header(
    name: str, raw: object, from_header: bool, parse: Callable[[str], object], what: str
) -> object:
    """A header's text parsed as ``parse`` does; a JSON value as it is."""
    if not (from_header and isinstance(raw, str)):
        return raw
    try:
        return parse(raw.strip())
    except ValueError:
        raise _invalid(name, raw, f"expected {what}") from None


def _count(name: str, raw: object, from_header: bool) -> int:
    value = _from_header(name, raw, from_header, int, "an integer")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _invalid(name, raw, "expected an integer >= 0")
    return value


def _millis(name: str, raw: object, from_header: bool) -> float:
    value = _from_header(name, raw, from_header, float, "a number")
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _invalid(name, raw, "expected a number >= 0")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise _invalid(name, raw, "expected a finite number >= 0")
    return number


def _location(raw: object) -> str:
    if not isinstance(raw, str) or not (len(raw.strip()) == 2 and raw.strip().isalpha()):
        raise _invalid("location", raw, "expected an ISO 3166-1 alpha-2 code")
    return raw.strip().upper()


def _peer(raw: object) -> str:
    if not isinstance(raw, str):
        raise _invalid("peer_id", raw, "expected a peer id string")
    try:
        return PeerId.parse(raw.strip(), name="peer_id")
    except ConfigError as exc:
        raise _invalid("peer_id", raw, exc.reason) from None


_PARSERS: dict[str, Callable[[object, bool], object]] = {
    "min_reputation": lambda raw, h: _count("min_reputation", raw, h),
    "max_latency_ms": lambda raw, h: _millis("max_latency_ms", raw, h),
    "min_uptime_s": lambda raw, h: _count("min_uptime_s", raw, h),
    "location": lambda raw, h: _location(raw),
    "peer_id": lambda raw, h: _peer(raw),
}


def parse_selection(
    headers: Mapping[str, str], body: object = None, models: Sequence[str] = ()
) -> Selection:
    """Criteria from ``X-Fabstir-*`` headers and a body's ``fabstir`` object (it wins)."""
    if body is not None and not isinstance(body, dict):
        raise _invalid("fabstir", body, "expected an object")
    fields: dict[str, Any] = {}
    for name, header in HEADERS.items():
        raw_header = headers.get(header)
        if raw_header is not None:
            fields[name] = _PARSERS[name](raw_header, True)
    for name in HEADERS:
        if body is not None and body.get(name) is not None:
            fields[name] = _PARSERS[name](body[name], False)
    return Selection(models=tuple(models), **fields)


def explain(selection: Selection, answers: Iterable[HostStatus], hosts_seen: int) -> dict[str, Any]:
    """The ``fabstir`` object of a no-match error: candidates seen, exclusions per criterion."""
    excluded = dict.fromkeys(EXCLUSION_KEYS, 0)
    answered = 0
    for candidate in answers:
        answered += 1
        for name in selection.failures(candidate):
            excluded[name] += 1
    seen = max(hosts_seen, answered)
    excluded["unreachable"] = seen - answered
    return {"hosts_seen": seen, "excluded": excluded}


def no_match(selection: Selection, explanation: dict[str, Any]) -> ApiError:
    """404 ``model_not_found`` (a model was asked) or ``no_matching_host``, with the why."""
    seen, excluded = explanation["hosts_seen"], explanation["excluded"]
    reasons = [f"{n} {_WORDS[name]}" for name, n in excluded.items() if n]
    what = (
        f"no host serves model {', '.join(selection.models)!s} with the given criteria"
        if selection.models
        else "no host matches the given criteria"
    )
    detail = f"{seen} host{'s' if seen != 1 else ''} seen" + (
        f": {', '.join(reasons)}" if reasons else ""
    )
    code = "model_not_found" if selection.models else "no_matching_host"
    return ApiError(404, code, f"{what} ({detail})", extra={"fabstir": explanation})


def parse_query(items: Iterable[tuple[str, str]]) -> tuple[Selection, int]:
    """``GET /v1/hosts`` query: repeated ``model``, the criteria, ``limit`` (1-100, 20)."""
    models: list[str] = []
    fields: dict[str, Any] = {}
    limit = 20
    for name, value in items:
        if name == "model":
            if not value:
                raise bad_request("invalid_field", "model must not be empty")
            models.append(value)
        elif name == "limit":
            if not value.strip().isdigit() or not 1 <= int(value) <= 100:
                raise bad_request("invalid_field", f"limit={value!r}: expected 1-100")
            limit = int(value)
        elif name in _PARSERS:
            fields[name] = _PARSERS[name](value, True)
    return Selection(models=tuple(dict.fromkeys(models)), **fields), limit
