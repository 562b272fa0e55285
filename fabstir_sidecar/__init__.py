"""fabstir-sidecar: libp2p networking for the Fabstir LLM marketplace, through p2pd.

The public API is re-exported here; everything else is an implementation detail.
"""

from .config import ENV_VARS, NodeConfig
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
    JobRejectedError,
    MalformedMessageError,
    MessageTooLargeError,
    NodeClosedError,
    NodeNotStartedError,
    NodeStateError,
    PeerError,
    PeerUnreachableError,
    ProtocolError,
    ProtocolNotSupportedError,
    RemoteError,
    RetryExhaustedError,
    StreamClosedError,
)
from .node import BootstrapResult, DiscoveryManager, NodeState

__version__ = "0.1.0"

__all__ = [
    "ENV_VARS",
    "BootstrapResult",
    "ConfigError",
    "ControlError",
    "DaemonError",
    "DaemonIntegrityError",
    "DaemonNotFoundError",
    "DaemonStartError",
    "DaemonUnavailableError",
    "DiscoveryManager",
    "FabstirError",
    "FabstirTimeoutError",
    "InvalidMultiaddrError",
    "JobRejectedError",
    "MalformedMessageError",
    "MessageTooLargeError",
    "NodeClosedError",
    "NodeConfig",
    "NodeNotStartedError",
    "NodeState",
    "NodeStateError",
    "PeerError",
    "PeerUnreachableError",
    "ProtocolError",
    "ProtocolNotSupportedError",
    "RemoteError",
    "RetryExhaustedError",
    "StreamClosedError",
    "__version__",
]
