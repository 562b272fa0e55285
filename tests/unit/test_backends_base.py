"""Unit tests for backends.base (TokenStream) and the pure parts of OpenAIBackend."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest

from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.host.backends import (
    BackendError,
    Completion,
    OpenAIBackend,
    StreamEnd,
    TokenStream,
)


class Source:
    """A TokenStream source that records whether it was closed."""

    def __init__(self, items: list[str | StreamEnd], error: Exception | None = None) -> None:
        self.items = items
        self.error = error
        self.closed = False

    async def gen(self) -> AsyncGenerator[str | StreamEnd, None]:
        try:
            for item in self.items:
                yield item
            if self.error is not None:
                raise self.error
        finally:
            self.closed = True


@pytest.mark.anyio
async def test_tokens_then_completion_with_concatenated_text() -> None:
    source = Source(["a", "b", " c", StreamEnd(tokens_used=3, finish_reason="length")])
    stream = TokenStream(source.gen())
    assert not stream.done
    with pytest.raises(RuntimeError, match="exhausted"):
        _ = stream.completion
    assert [t async for t in stream] == ["a", "b", " c"]
    assert stream.done
    assert stream.completion == Completion("ab c", 3, "length")
    assert source.closed
    assert [t async for t in stream] == []  # stays exhausted


@pytest.mark.anyio
async def test_collect() -> None:
    stream = TokenStream(Source(["x", StreamEnd(1, "stop")]).gen())
    assert await stream.collect() == Completion("x", 1, "stop")


@pytest.mark.anyio
async def test_early_exit_closes_the_source() -> None:
    source = Source(["a", "b", StreamEnd(2, "stop")])
    async with TokenStream(source.gen()) as stream:
        async for _ in stream:
            break
    assert source.closed
    assert [t async for t in stream] == []
    with pytest.raises(RuntimeError):
        _ = stream.completion


@pytest.mark.anyio
async def test_source_error_propagates_and_leaves_no_completion() -> None:
    stream = TokenStream(Source(["a"], error=BackendError("down")).gen())
    got: list[str] = []
    with pytest.raises(BackendError, match="down"):
        async for token in stream:
            got.append(token)
    assert got == ["a"]
    with pytest.raises(RuntimeError):
        _ = stream.completion


@pytest.mark.anyio
async def test_source_without_stream_end_is_a_backend_error() -> None:
    stream = TokenStream(Source(["a"]).gen())
    with pytest.raises(BackendError, match="without reporting its end"):
        await stream.collect()


# ------------------------------------------------------------------ OpenAIBackend (no I/O)


@pytest.mark.parametrize(
    ("base_url", "timeout"),
    [("ftp://host/v1", 1.0), ("not a url", 1.0), ("http:///v1", 1.0), ("http://h/v1", 0.0)],
)
def test_openai_backend_rejects_bad_configuration(base_url: str, timeout: float) -> None:
    with pytest.raises(ConfigError):
        OpenAIBackend(base_url, timeout=timeout)


@pytest.mark.anyio
async def test_openai_backend_url_strips_slash_and_hides_password() -> None:
    async with OpenAIBackend("http://user:secret@127.0.0.1:8080/v1/") as backend:
        assert backend.name == "openai"
        assert backend.url == "http://user:***@127.0.0.1:8080/v1/chat/completions"
        assert "secret" not in repr(backend)
