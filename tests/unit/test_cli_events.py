"""The CLI's non-blocking stdout writer (cli/events.py) against real pipes."""

from __future__ import annotations

import fcntl
import os
import time

from fabstir_sidecar.cli.events import StdoutWriter

F_SETPIPE_SZ = 1031


def test_lines_arrive_in_order() -> None:
    read_end, write_end = os.pipe()
    writer = StdoutWriter(write_end)
    for i in range(100):
        writer.write_line(f"line {i}")
    writer.close()
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        assert reader.read().splitlines() == [f"line {i}" for i in range(100)]
    assert writer.dropped == 0


def test_a_stalled_reader_costs_dropped_lines_never_a_blocked_caller() -> None:
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
    writer = StdoutWriter(write_end, max_pending=10)
    started = time.monotonic()
    for i in range(1000):
        writer.write_line(f"event {i} " + "x" * 100)
    assert time.monotonic() - started < 1.0
    writer.close(timeout=0.1)
    assert writer.dropped > 900
    os.close(read_end)
    os.close(write_end)


def test_a_closed_reader_stops_the_output_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    writer = StdoutWriter(write_end)
    writer.write_line("first")
    deadline = time.monotonic() + 5
    while not writer.closed_by_reader and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.closed_by_reader
    writer.write_line("second")
    writer.close()
    assert writer.dropped == 1
    os.close(write_end)
