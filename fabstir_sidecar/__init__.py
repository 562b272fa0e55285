"""fabstir-sidecar: libp2p networking for the Fabstir LLM marketplace, through p2pd.

The public API is re-exported here; everything else is an implementation detail.
"""

from ._version import __version__
from .client import FabstirClient, JobStream, RetryPolicy
from .config import ENV_VARS, NodeConfig
from .discovery.matching import HostCriteria
from .discovery.service import FinderSettings
from .errors import (
    ConfigError,
    ControlError,
    DaemonError,
    DaemonIntegrityError,
    DaemonNotFoundError,
    DaemonStartError,
    DaemonUnavailableError,
    FabstirError,
    FabstirTimeoutError,
    InvalidMultiaddrError,
    InvalidPeerIdError,
    JobRejectedError,
    MalformedMessageError,
    MessageTooLargeError,
    NodeClosedError,
    NodeNotStartedError,
    NodeStateError,
    NoMatchingHostError,
    PeerError,
    PeerUnreachableError,
    ProtocolError,
    ProtocolNotSupportedError,
    RemoteError,
    RetryExhaustedError,
    StreamClosedError,
)
from .host.backends.base import Backend, BackendError, Completion, TokenStream
from .host.backends.echo import EchoBackend
from .host.backends.openai import OpenAIBackend
from .host.service import HostConfig, HostService
from .node import BootstrapResult, DiscoveryManager, NodeState
from .protocols.status import HostStatus
from .wire.messages import BadRequestError, Host, JobResult, PeerInfo

__all__ = [
    "ENV_VARS",
    "Backend",
    "BackendError",
    "BadRequestError",
    "BootstrapResult",
    "Completion",
    "ConfigError",
    "ControlError",
    "DaemonError",
    "DaemonIntegrityError",
    "DaemonNotFoundError",
    "DaemonStartError",
    "DaemonUnavailableError",
    "DiscoveryManager",
    "EchoBackend",
    "FabstirClient",
    "FabstirError",
    "FabstirTimeoutError",
    "FinderSettings",
    "Host",
    "HostConfig",
    "HostCriteria",
    "HostService",
    "HostStatus",
    "InvalidMultiaddrError",
    "InvalidPeerIdError",
    "JobRejectedError",
    "JobResult",
    "JobStream",
    "MalformedMessageError",
    "MessageTooLargeError",
    "NoMatchingHostError",
    "NodeClosedError",
    "NodeConfig",
    "NodeNotStartedError",
    "NodeState",
    "NodeStateError",
    "OpenAIBackend",
    "PeerError",
    "PeerInfo",
    "PeerUnreachableError",
    "ProtocolError",
    "ProtocolNotSupportedError",
    "RemoteError",
    "RetryExhaustedError",
    "RetryPolicy",
    "StreamClosedError",
    "TokenStream",
    "__version__",
]
