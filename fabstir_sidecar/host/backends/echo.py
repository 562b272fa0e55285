"""A deterministic backend for demos and tests: it echoes the prompt back.

The content is ``"echo: "`` followed by the prompt's words joined by single spaces, cut to
``max_tokens`` words (``"echo:"`` counts as one). Output is always bounded, so that a large
request cannot be turned into far more work and traffic (amplification): a request without
``max_tokens`` gets ``default_max_tokens`` (4,096), and none gets more than
``max_tokens_limit`` (32,768). One word is one
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
DEFAULT_MAX_TOKENS = 4096
MAX_TOKENS_LIMIT = 32768


class EchoBackend(AsyncClosing):
    """Echo the prompt. ``delay``: seconds slept before each token (``complete()`` sleeps the
    same total). ``fail_on``: a prompt containing this substring raises BackendError (an
    empty string makes every job fail). ``default_max_tokens`` / ``max_tokens_limit``: the
    output bound of a request without ``max_tokens``, and the ceiling of any request.
    """

    def __init__(
        self,
        *,
        delay: float = 0.0,
        fail_on: str | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        max_tokens_limit: int = MAX_TOKENS_LIMIT,
    ) -> None:
        if not delay >= 0:  # also rejects NaN
            raise ConfigError("delay", delay, "must be a number of seconds >= 0")
        if not 1 <= default_max_tokens <= max_tokens_limit:
            raise ConfigError(
                "default_max_tokens", default_max_tokens, "must be >= 1 and <= max_tokens_limit"
            )
        self._delay = delay
        self._fail_on = fail_on
        self._default_max = default_max_tokens
        self._limit = max_tokens_limit

    @property
    def name(self) -> str:
        return "echo"

    def _words(self, request: JobRequest) -> tuple[list[str], str]:
        """The content's words and the finish reason; raises BackendError if asked to."""
        if self._fail_on is not None and self._fail_on in request.prompt:
            raise BackendError(f"echo backend: prompt contains {self._fail_on!r} (fail_on)")
        wanted = self._default_max if request.max_tokens is None else request.max_tokens
        bound = min(max(wanted, 0), self._limit)
        words = [_PREFIX, *request.prompt.split(maxsplit=bound)]
        if len(words) > bound:
            return words[:bound], "length"
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
