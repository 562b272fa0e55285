"""The public API is pinned: ``fabstir_sidecar.__all__`` lists exactly what users may import,
and every type that appears in a public signature is itself exported."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterator
from typing import Any

import fabstir_sidecar

_PINNED_NAMES = """
__version__ AdmissionCounters Backend BackendError BadRequestError BootstrapResult
CachedPeer ChatMessage Completion ConfigError ConnectionLostError ControlError
DaemonControl DaemonError DaemonIntegrityError DaemonNotFoundError DaemonStartError
DaemonStream DaemonUnavailableError Discovery DiscoveryManager EchoBackend ENV_VARS
Exchange FabstirClient FabstirError FabstirTimeoutError FailedError FinderConfig
FrameBatch FrameTooLargeError Host HostBusyError HostConfig HostCriteria HostService
HostStats HostStatus InferenceResponse InvalidInputError InvalidMultiaddrError
InvalidPeerIdError JobEvent JobOptions JobOutcomeUnknownError JobRejectedError
JobRequest JobResult JobStream LookupStats MalformedMessageError MatchReport MdnsService
MessageTooLargeError NodeClosedError NodeConfig NodeInterface NodeNotStartedError
NodeState NodeStateError NoMatchingHostError NotSentError OpenAIBackend PeerAddrs
PeerCache PeerId PeerInfo PeerUnreachableError ProtocolError ProtocolNotSupportedError
Rejection RemoteError RetryableError RetryConfig RetryExhaustedError role_config
RpcLimits SetupError StreamClosedError StreamEnd TokenStream
"""
PINNED = frozenset(_PINNED_NAMES.split())


def test_all_is_pinned() -> None:
    assert set(fabstir_sidecar.__all__) == PINNED
    assert len(fabstir_sidecar.__all__) == len(PINNED)
    for name in fabstir_sidecar.__all__:
        assert hasattr(fabstir_sidecar, name), name


def _classes_in(hint: Any) -> Iterator[type]:
    if isinstance(hint, type):
        yield hint
    for arg in typing.get_args(hint):
        yield from _classes_in(arg)


def _public_hints(obj: Any) -> Iterator[tuple[str, Any]]:
    targets: list[tuple[str, Any]] = []
    if inspect.isclass(obj):
        for name, member in vars(obj).items():
            if name.startswith("_") and name != "__init__":
                continue
            if isinstance(member, property) and member.fget is not None:
                targets.append((f"{obj.__name__}.{name}", member.fget))
            elif inspect.isfunction(member) or isinstance(member, classmethod | staticmethod):
                targets.append((f"{obj.__name__}.{name}", getattr(member, "__func__", member)))
    elif inspect.isfunction(obj):
        targets.append((obj.__name__, obj))
    for where, func in targets:
        module = inspect.getmodule(func)
        namespace = dict(vars(module)) if module else {}
        try:
            hints = typing.get_type_hints(func, globalns=namespace)
        except NameError:  # a name only imported under TYPE_CHECKING
            continue
        for hint in hints.values():
            yield where, hint


def test_every_type_in_a_public_signature_is_exported() -> None:
    exported = {id(getattr(fabstir_sidecar, n)) for n in fabstir_sidecar.__all__}
    missing = set()
    for name in fabstir_sidecar.__all__:
        for where, hint in _public_hints(getattr(fabstir_sidecar, name)):
            for cls in _classes_in(hint):
                if cls.__module__.startswith("fabstir_sidecar") and id(cls) not in exported:
                    missing.add(f"{where}: {cls.__module__}.{cls.__qualname__}")
    assert not missing, "export these (or keep them out of public signatures):\n" + "\n".join(
        sorted(missing)
    )
