"""Backends by name: the spec forms, the errors, and where the API key comes from."""

from __future__ import annotations

import pytest

from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.host.backends.echo import EchoBackend
from fabstir_sidecar.host.backends.openai import OpenAIBackend
from fabstir_sidecar.tools.backends import BACKENDS, make_backend, parse_backend_spec


def test_echo() -> None:
    assert isinstance(make_backend("echo", env={}), EchoBackend)
    kind, url = parse_backend_spec("echo")
    assert kind is BACKENDS["echo"] and url is None


@pytest.mark.parametrize(
    "spec", ["http://127.0.0.1:8080/v1", "https://example.test/v1", "openai:http://h:1/v1"]
)
def test_openai_from_a_bare_url_or_openai_colon_url(spec: str) -> None:
    kind, url = parse_backend_spec(spec)
    assert kind is BACKENDS["openai"]
    assert url == spec.removeprefix("openai:")


@pytest.mark.anyio
async def test_openai_api_key_from_the_environment() -> None:
    # The key is sent as a Bearer token; an empty variable means no key.
    for env, expected in (({"OPENAI_API_KEY": "sk-1"}, "sk-1"), ({"OPENAI_API_KEY": ""}, None)):
        backend = make_backend("http://127.0.0.1:9/v1", env=env)
        assert isinstance(backend, OpenAIBackend)
        try:
            assert backend._api_key == expected
        finally:
            await backend.aclose()


@pytest.mark.parametrize("spec", ["", "gpt", "echo:http://x", "openai", "openai:", "ftp://x"])
def test_unknown_specs_are_config_errors_listing_the_forms(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_backend_spec(spec)
    assert info.value.name == "backend"
    for kind in BACKENDS.values():
        assert kind.usage in info.value.reason


def test_an_invalid_url_is_the_backends_config_error() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        make_backend("openai:http://", env={})
