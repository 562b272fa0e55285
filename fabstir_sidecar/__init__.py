"""fabstir-sidecar: libp2p networking for the Fabstir LLM marketplace, through p2pd.

The public API is re-exported here; everything else is an implementation detail.
"""

from fabstir_sidecar._version import __version__
from fabstir_sidecar.backend import Backend, Completion, TokenStream
from fabstir_sidecar.client import FabstirClient, JobStream, RetryConfig
from fabstir_sidecar.core.errors import (
    BackendError,
    BadRequestError,
    ConfigError,
    ConnectionLostError,
    ControlError,
    DaemonError,
    DaemonIntegrityError,
    DaemonNotFoundError,
    DaemonStartError,
    DaemonUnavailableError,
    FabstirError,
    FabstirTimeoutError,
    FailedError,
    FrameTooLargeError,
    HostBusyError,
    InvalidInputError,
    InvalidMultiaddrError,
    InvalidPeerIdError,
    JobOutcomeUnknownError,
    JobRejectedError,
    MalformedMessageError,
    MessageTooLargeError,
    NodeClosedError,
    NodeNotStartedError,
    NodeStateError,
    NoMatchingHostError,
    NotSentError,
    PeerUnreachableError,
    ProtocolError,
    ProtocolNotSupportedError,
    RemoteError,
    RetryableError,
    RetryExhaustedError,
    SetupError,
    StreamClosedError,
)
from fabstir_sidecar.core.settings import ENV_VARS, NodeConfig
from fabstir_sidecar.discovery.config import FinderConfig
from fabstir_sidecar.discovery.matching import HostCriteria
from fabstir_sidecar.host.backends.echo import EchoBackend
from fabstir_sidecar.host.backends.openai import OpenAIBackend
from fabstir_sidecar.host.service import HostConfig, HostService
from fabstir_sidecar.node.manager import BootstrapResult, DiscoveryManager, NodeState
from fabstir_sidecar.protocols.status import HostStatus
from fabstir_sidecar.wire.messages import Host, JobResult, PeerInfo

__all__ = [
    "ENV_VARS",
    "Backend",
    "BackendError",
    "BadRequestError",
    "BootstrapResult",
    "Completion",
    "ConfigError",
    "ConnectionLostError",
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
    "FailedError",
    "FinderConfig",
    "FrameTooLargeError",
    "Host",
    "HostBusyError",
    "HostConfig",
    "HostCriteria",
    "HostService",
    "HostStatus",
    "InvalidInputError",
    "InvalidMultiaddrError",
    "InvalidPeerIdError",
    "JobOutcomeUnknownError",
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
    "NotSentError",
    "OpenAIBackend",
    "PeerInfo",
    "PeerUnreachableError",
    "ProtocolError",
    "ProtocolNotSupportedError",
    "RemoteError",
    "RetryConfig",
    "RetryExhaustedError",
    "RetryableError",
    "SetupError",
    "StreamClosedError",
    "TokenStream",
    "__version__",
]
