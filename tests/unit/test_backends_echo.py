"""Unit tests for fabstir_sidecar.host.backends.echo (EchoBackend)."""

from __future__ import annotations

import time

import anyio
import pytest

from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.host.backends import Backend, BackendError, Completion, EchoBackend
from fabstir_sidecar.wire.messages import JobRequest

pytestmark = pytest.mark.anyio


def job(prompt: str, *, max_tokens: int | None = None, stream: bool = True) -> JobRequest:
    return JobRequest(
        job_id="j1", model="echo", prompt=prompt, max_tokens=max_tokens, stream=stream
    )


async def run_stream(backend: Backend, request: JobRequest) -> tuple[list[str], Completion]:
    async with backend.stream(request) as stream:
        tokens = [token async for token in stream]
    return tokens, stream.completion


# ------------------------------------------------------------------ content


async def test_content_is_echo_prefix_plus_normalised_prompt() -> None:
    backend: Backend = EchoBackend()
    assert backend.name == "echo"
    request = job("  hello \t world\n\n foo  ")

    tokens, streamed = await run_stream(backend, request)
    assert tokens == ["echo:", " hello", " world", " foo"]
    assert streamed == Completion("echo: hello world foo", tokens_used=4, finish_reason="stop")
    assert "".join(tokens) == streamed.text

    assert await backend.complete(request) == streamed


async def test_empty_or_blank_prompt_is_just_the_prefix() -> None:
    backend = EchoBackend()
    for prompt in ("", "   \n\t "):
        tokens, completion = await run_stream(backend, job(prompt))
        assert tokens == ["echo:"]
        assert completion == Completion("echo:", 1, "stop")
        assert await backend.complete(job(prompt)) == completion


@pytest.mark.parametrize(
    ("max_tokens", "text", "finish_reason"),
    [
        (None, "echo: a b c", "stop"),
        (10, "echo: a b c", "stop"),
        (4, "echo: a b c", "stop"),  # exactly enough: not truncated
        (3, "echo: a b", "length"),
        (1, "echo:", "length"),
        (0, "", "length"),
    ],
)
async def test_max_tokens_truncates_and_sets_finish_reason(
    max_tokens: int | None, text: str, finish_reason: str
) -> None:
    backend = EchoBackend()
    request = job("a b c", max_tokens=max_tokens)
    tokens, streamed = await run_stream(backend, request)
    expected = Completion(text, len(tokens), finish_reason)
    assert streamed == expected
    assert "".join(tokens) == text
    assert len(text.split()) == len(tokens)
    assert await backend.complete(request) == expected


async def test_unicode_words_and_whitespace() -> None:
    # U+3000 (ideographic space) and U+00A0 (no-break space) are whitespace to str.split().
    prompt = "héllo\u3000世界 🙂\u00a0naïve  Ω"
    tokens, completion = await run_stream(EchoBackend(), job(prompt))
    assert tokens == ["echo:", " héllo", " 世界", " 🙂", " naïve", " Ω"]
    assert completion.text == "echo: héllo 世界 🙂 naïve Ω"
    assert completion.tokens_used == 6


async def test_long_prompt_streams_quickly() -> None:
    words = [f"w{i}" for i in range(1000)]
    start = time.perf_counter()
    tokens, completion = await run_stream(EchoBackend(), job(" ".join(words)))
    assert time.perf_counter() - start < 1.0
    assert completion.tokens_used == len(tokens) == 1001
    assert completion.text == "echo: " + " ".join(words)


# ------------------------------------------------------------------ delay


async def test_delay_paces_the_stream() -> None:
    backend = EchoBackend(delay=0.05)
    start = time.perf_counter()
    seen: list[tuple[str, float]] = []
    async with backend.stream(job("a b")) as stream:
        async for token in stream:
            seen.append((token, time.perf_counter() - start))
    assert [t for t, _ in seen] == ["echo:", " a", " b"]
    # one delay before each token
    assert seen[0][1] >= 0.045
    assert seen[-1][1] >= 3 * 0.045
    assert stream.completion.tokens_used == 3


async def test_delay_makes_complete_take_as_long_as_the_stream() -> None:
    start = time.perf_counter()
    completion = await EchoBackend(delay=0.05).complete(job("a b"))
    assert time.perf_counter() - start >= 3 * 0.045
    assert completion.text == "echo: a b"


async def test_delay_lets_a_deadline_cancel_the_stream() -> None:
    backend = EchoBackend(delay=0.2)
    received: list[str] = []
    stream = backend.stream(job("a b c d e"))
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.3):
            async for token in stream:
                received.append(token)
    await stream.aclose()
    assert received == ["echo:"]
    with pytest.raises(RuntimeError):
        _ = stream.completion


def test_negative_or_nan_delay_is_a_config_error() -> None:
    for delay in (-1.0, float("nan")):
        with pytest.raises(ConfigError):
            EchoBackend(delay=delay)


# ------------------------------------------------------------------ fail_on


async def test_fail_on_raises_backend_error_when_iterated() -> None:
    backend = EchoBackend(fail_on="boom")
    stream = backend.stream(job("please boom now"))  # lazy: nothing raised yet
    with pytest.raises(BackendError, match="boom"):
        async for _ in stream:
            pass
    with pytest.raises(RuntimeError):
        _ = stream.completion
    with pytest.raises(BackendError, match="boom"):
        await backend.complete(job("boom"))


async def test_fail_on_leaves_other_prompts_alone() -> None:
    backend = EchoBackend(fail_on="boom")
    assert (await backend.complete(job("fine"))).text == "echo: fine"
    _, completion = await run_stream(backend, job("also fine"))
    assert completion.text == "echo: also fine"


async def test_backend_is_an_async_context_manager() -> None:
    async with EchoBackend() as backend:
        assert (await backend.complete(job("x"))).text == "echo: x"
    await backend.aclose()  # idempotent
