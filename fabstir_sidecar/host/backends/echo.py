"""A deterministic backend for demos and tests: it echoes the prompt back.

The content is ``"echo: "`` followed by the prompt's words joined by single spaces, cut to
``max_tokens`` words (``"echo:"`` counts as one) when the request sets it. One word is one
token: the stream yields ``"echo:"`` and then ``" word"`` for each word, so the tokens
concatenate to the content exactly.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import anyio
import anyio.lowlevel

from fabstir_sidecar.backend import AsyncClosing, BackendError, Completion, StreamEnd, TokenStream
from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.wire.messages import JobRequest

__all__ = ["EchoBackend"]

_PREFIX = "echo:"


class EchoBackend(AsyncClosing):
    """Echo the prompt. ``delay``: seconds slept before each token (``complete()`` sleeps the
    same total). ``fail_on``: a prompt containing this substring raises BackendError (an
    empty string makes every job fail).
    """

    def __init__(self, *, delay: float = 0.0, fail_on: str | None = None) -> None:
        if not delay >= 0:  # also rejects NaN
            raise ConfigError("delay", delay, "must be a number of seconds >= 0")
        self._delay = delay
        self._fail_on = fail_on

    @property
    def name(self) -> str:
        return "echo"

    def _words(self, request: JobRequest) -> tuple[list[str], str]:
        """The content's words and the finish reason; raises BackendError if asked to."""
        if self._fail_on is not None and self._fail_on in request.prompt:
            raise BackendError(f"echo backend: prompt contains {self._fail_on!r} (fail_on)")
        words = [_PREFIX, *request.prompt.split()]
        if request.max_tokens is not None and len(words) > request.max_tokens:
            return words[: max(request.max_tokens, 0)], "length"
        return words, "stop"

    async def _pause(self) -> None:
        # Even without a delay, give other tasks (and cancellation) a chance per token.
        if self._delay > 0:
            await anyio.sleep(self._delay)
        else:
            await anyio.lowlevel.checkpoint()

    async def _items(self, request: JobRequest) -> AsyncGenerator[str | StreamEnd, None]:
        words, finish_reason = self._words(request)
        for index, word in enumerate(words):
            await self._pause()
            yield word if index == 0 else " " + word
        yield StreamEnd(tokens_used=len(words), finish_reason=finish_reason)

    def stream(self, request: JobRequest) -> TokenStream:
        return TokenStream(self._items(request))

    async def complete(self, request: JobRequest) -> Completion:
        words, finish_reason = self._words(request)
        if self._delay > 0 and words:
            await anyio.sleep(self._delay * len(words))
        else:
            await anyio.lowlevel.checkpoint()
        return Completion(text=" ".join(words), tokens_used=len(words), finish_reason=finish_reason)

    async def aclose(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"EchoBackend(delay={self._delay!r}, fail_on={self._fail_on!r})"
