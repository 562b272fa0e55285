"""p2pd stderr lines -> Python log records (pure parsing + emit)."""

from __future__ import annotations

import logging

import pytest

from fabstir_sidecar.daemon.logbridge import LOGGER_PREFIX, DaemonLogLine, emit, parse_log_line

TS = "2026-11-24T13:43:18.123Z"


def zap(level: str, logger: str, message: str, fields: str | None = None) -> str:
    parts = [TS, level, logger, "go-libp2p-daemon/daemon.go:198", message]
    if fields is not None:
        parts.append(fields)
    return "\t".join(parts)


@pytest.mark.parametrize(
    ("zap_level", "py_level"),
    [
        ("DEBUG", logging.DEBUG),
        ("INFO", logging.INFO),
        ("WARN", logging.WARNING),
        ("ERROR", logging.ERROR),
        ("DPANIC", logging.CRITICAL),
        ("PANIC", logging.CRITICAL),
        ("FATAL", logging.CRITICAL),
    ],
)
def test_zap_levels(zap_level: str, py_level: int) -> None:
    parsed = parse_log_line(zap(zap_level, "p2pd", "something happened") + "\n")
    assert parsed.level == py_level
    assert parsed.logger == "p2pd"
    assert parsed.message == "something happened"
    assert parsed.caller == "go-libp2p-daemon/daemon.go:198"
    assert parsed.fields == {}
    assert parsed.fatal_startup is False


def test_zap_lowercase_level() -> None:
    assert parse_log_line(zap("warn", "swarm2", "x")).level == logging.WARNING


def test_zap_fields_and_logger_name() -> None:
    parsed = parse_log_line(
        zap("ERROR", "net/identify", "error accepting connection", '{"error": "boom", "n": 3}')
    )
    assert parsed.level == logging.ERROR
    assert parsed.logger == "net/identify"
    assert parsed.message == "error accepting connection"
    assert parsed.fields == {"error": "boom", "n": 3}


def test_zap_non_json_fields_kept_raw() -> None:
    parsed = parse_log_line(zap("INFO", "dht", "msg", "not json {"))
    assert parsed.fields == {"raw": "not json {"}


def test_zap_non_object_json_fields() -> None:
    parsed = parse_log_line(zap("INFO", "dht", "msg", "[1, 2]"))
    assert parsed.fields == {"value": [1, 2]}


def test_go_std_log_fatal_line() -> None:
    line = (
        "2026/11/24 13:43:18 failed to listen on any addresses: "
        "[listen tcp4 127.0.0.1:4001: bind: address already in use]"
    )
    parsed = parse_log_line(line)
    assert parsed.fatal_startup is True
    assert parsed.level == logging.ERROR
    assert parsed.logger == "p2pd"
    assert parsed.message.startswith("failed to listen on any addresses")
    assert "address already in use" in parsed.message


def test_go_std_log_with_microseconds() -> None:
    parsed = parse_log_line("2026/11/24 13:43:18.123456 boom")
    assert parsed.fatal_startup is True
    assert parsed.message == "boom"


@pytest.mark.parametrize(
    "line", ["Control socket: /unix/tmp/x.sock", "garbage \x00 line", "", "  Peer ID: 12D3"]
)
def test_garbage_is_info_verbatim(line: str) -> None:
    parsed = parse_log_line(line)
    assert parsed.level == logging.INFO
    assert parsed.logger == "p2pd"
    assert parsed.message == line
    assert parsed.fatal_startup is False


def test_emit_logs_on_prefixed_logger_with_fields(caplog: pytest.LogCaptureFixture) -> None:
    parsed = parse_log_line(zap("WARN", "net/identify", "slow peer", '{"peer": "abc"}'))
    with caplog.at_level(logging.DEBUG, logger=LOGGER_PREFIX):
        emit(parsed, pid=4242)
    (record,) = caplog.records
    assert record.name == f"{LOGGER_PREFIX}.net_identify"
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "slow peer"
    assert record.p2pd_pid == 4242  # type: ignore[attr-defined]
    assert record.p2pd_fields == {"peer": "abc"}  # type: ignore[attr-defined]
    assert record.p2pd_caller == "go-libp2p-daemon/daemon.go:198"  # type: ignore[attr-defined]


CLOSED = parse_log_line(
    zap(
        "ERROR",
        "p2pd",
        "error accepting connection",
        '{"error": "accept unix /tmp/x.sock: use of closed network connection"}',
    )
)


def _emitted_level(
    caplog: pytest.LogCaptureFixture, line: DaemonLogLine, *, quiet_shutdown: bool
) -> int:
    with caplog.at_level(logging.DEBUG, logger=LOGGER_PREFIX):
        emit(line, pid=1, quiet_shutdown=quiet_shutdown)
    (record,) = caplog.records
    return record.levelno


@pytest.mark.parametrize(
    ("line", "quiet_shutdown", "level"),
    [
        pytest.param(CLOSED, True, logging.DEBUG, id="closed-connection-demoted-on-shutdown"),
        pytest.param(CLOSED, False, logging.ERROR, id="closed-connection-an-error-otherwise"),
        pytest.param(
            parse_log_line(zap("ERROR", "p2pd", "disk on fire", '{"error": "EIO"}')),
            True,
            logging.ERROR,
            id="other-errors-kept-on-shutdown",
        ),
        pytest.param(
            DaemonLogLine(logging.ERROR, "p2pd", "read: use of closed network connection"),
            True,
            logging.DEBUG,
            id="match-in-the-message-text-too",
        ),
    ],
)
def test_emit_quiet_shutdown_levels(
    caplog: pytest.LogCaptureFixture, line: DaemonLogLine, quiet_shutdown: bool, level: int
) -> None:
    assert _emitted_level(caplog, line, quiet_shutdown=quiet_shutdown) == level


def test_emit_quiet_shutdown_demoted_error_hidden_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER_PREFIX):
        emit(CLOSED, pid=1, quiet_shutdown=True)
    assert caplog.records == []


def test_emit_sanitises_logger_names(caplog: pytest.LogCaptureFixture) -> None:
    line = DaemonLogLine(logging.WARNING, "a.b c/d", "x")
    with caplog.at_level(logging.DEBUG, logger=LOGGER_PREFIX):
        emit(line, pid=1)
    (record,) = caplog.records
    assert record.name == f"{LOGGER_PREFIX}.a_b_c_d"
