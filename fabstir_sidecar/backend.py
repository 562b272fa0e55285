"""What a host needs from an LLM backend, and the stream type backends return.

A backend turns a :class:`~fabstir_sidecar.wire.messages.JobRequest` into text, either at
once (:meth:`Backend.complete`) or token by token (:meth:`Backend.stream`). Every failure of
the backend itself surfaces as :class:`BackendError`, which the host answers with an
``error`` frame of code ``internal``.

A streamed job also needs what is only known at its end (tokens used, finish reason), so
:meth:`Backend.stream` returns a :class:`TokenStream`: iterate it for the token texts, then
read :attr:`TokenStream.completion`::

    async with backend.stream(request) as tokens:
        async for text in tokens:
            await send_token(text)
    result = tokens.completion  # text == "".join(all tokens)
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol, Self

from fabstir_sidecar.core.errors import BackendError
from fabstir_sidecar.wire.messages import JobRequest

__all__ = ["AsyncClosing", "Backend", "BackendError", "Completion", "StreamEnd", "TokenStream"]


class AsyncClosing:
    """``async with`` support for a class whose ``aclose()`` releases its resources."""

    __slots__ = ()

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished generation: its full text, how many tokens it used and why it stopped."""

    text: str
    tokens_used: int
    finish_reason: str  # "stop" | "length" | whatever the backend reports


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last item a :class:`TokenStream` source yields, after all token texts."""

    tokens_used: int
    finish_reason: str


class TokenStream(AsyncClosing):
    """An async iterator of token texts; :attr:`completion` is available once it is exhausted.

    ``source`` is an async generator that yields the token texts (``str``) and then exactly
    one :class:`StreamEnd`. The stream collects the texts, so ``completion.text`` is always
    their concatenation. Nothing runs before the first iteration, so a backend's errors
    (:class:`BackendError`) are raised by the ``async for``, not by ``Backend.stream()``.

    Leaving an ``async with`` block (or calling :meth:`aclose`) releases the backend's
    resources (e.g. the HTTP response) when the consumer stops early.
    """

    __slots__ = ("_closed", "_completion", "_pieces", "_source")

    def __init__(self, source: AsyncGenerator[str | StreamEnd, None]) -> None:
        self._source = source
        self._pieces: list[str] = []
        self._completion: Completion | None = None
        self._closed = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        if self._closed:
            raise StopAsyncIteration
        try:
            item = await anext(self._source)
        except StopAsyncIteration:
            self._closed = True
            raise BackendError("backend stream ended without reporting its end") from None
        except BaseException:
            self._closed = True
            raise
        if isinstance(item, StreamEnd):
            self._completion = Completion(
                text="".join(self._pieces),
                tokens_used=item.tokens_used,
                finish_reason=item.finish_reason,
            )
            await self.aclose()
            raise StopAsyncIteration
        self._pieces.append(item)
        return item

    @property
    def done(self) -> bool:
        """True once the stream was exhausted successfully (``completion`` is available)."""
        return self._completion is not None

    @property
    def completion(self) -> Completion:
        """The full result; raises RuntimeError unless the stream was iterated to its end."""
        if self._completion is None:
            raise RuntimeError("TokenStream.completion read before the stream was exhausted")
        return self._completion

    async def collect(self) -> Completion:
        """Consume the remaining tokens and return the completion."""
        async for _ in self:
            pass
        return self.completion

    async def aclose(self) -> None:
        """Stop the stream early and release the backend's resources (idempotent)."""
        self._closed = True
        await self._source.aclose()


class Backend(Protocol):
    """An LLM backend a host serves jobs with (see :mod:`.echo`, :mod:`.openai`)."""

    @property
    def name(self) -> str:
        """A short identifier for logs (e.g. ``"echo"``, ``"openai"``)."""
        ...

    def stream(self, request: JobRequest) -> TokenStream:
        """The generation of ``request``, token by token (lazy: starts when iterated)."""
        ...

    async def complete(self, request: JobRequest) -> Completion:
        """The whole generation of ``request`` at once."""
        ...

    async def aclose(self) -> None:
        """Release the backend's resources (connections); idempotent."""
        ...
