"""Stdout for the long-running commands: written by a thread, never blocking the event loop.

``host --json`` used to write each event synchronously on the event loop: once the pipe to
a reader that stopped reading was full (64 KiB, about 400 job events), the next write
blocked the loop and the host stopped serving. Here lines go into a bounded queue that a
daemon thread writes to the stdout file descriptor (``os.write``, no Python buffer or lock
that interpreter shutdown could trip over). When the queue is full the line is dropped and
counted; when the reader is gone (``EPIPE``) writing stops for good. Each of these is logged
once, not per event, and the node keeps serving.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time

__all__ = ["StdoutWriter"]

log = logging.getLogger(__name__)

MAX_PENDING = 1024
"""Lines waiting for a slow reader before new ones are dropped."""


class StdoutWriter:
    """Non-blocking line writer to ``fd``. ``write_line`` may be called from any thread."""

    def __init__(self, fd: int, *, max_pending: int = MAX_PENDING) -> None:
        self._fd = fd
        self._queue: queue.Queue[bytes | None] = queue.Queue(max_pending)
        self._thread = threading.Thread(target=self._run, name="fabstir-stdout", daemon=True)
        self._lock = threading.Lock()
        self.dropped = 0
        self.closed_by_reader = False
        self._warned_full = False
        self._thread.start()

    def write_line(self, text: str) -> None:
        """Queue ``text`` and a newline; dropped (and counted) if the reader is behind."""
        if self.closed_by_reader:
            self._drop()
            return
        try:
            self._queue.put_nowait(text.encode("utf-8", "replace") + b"\n")
        except queue.Full:
            self._drop()
            if not self._warned_full:
                self._warned_full = True
                log.warning(
                    "stdout is not being read: dropping output lines until it is",
                    extra={"pending": self._queue.maxsize},
                )

    def _drop(self) -> None:
        with self._lock:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            line = self._queue.get()
            if line is None:
                return
            try:
                _write_all(self._fd, line)
            except OSError as exc:
                self.closed_by_reader = True
                log.warning(
                    "stdout is closed: no more output lines are written; the node keeps running",
                    extra={"error": exc.strerror or str(exc)},
                )
                self._discard_pending()
                return

    def _discard_pending(self) -> None:
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return
            if line is None:
                return
            self._drop()

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued (for at most ``timeout`` s), stop the thread, log the drops."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass  # the reader is stalled: the daemon thread is abandoned at exit
        else:
            self._thread.join(timeout)
        if self.dropped:
            log.warning("output lines dropped", extra={"dropped": self.dropped})


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:  # a non-blocking stdout someone handed us: wait, retry
            time.sleep(0.05)
            continue
        view = view[written:]
