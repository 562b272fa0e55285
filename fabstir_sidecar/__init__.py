"""fabstir-sidecar: libp2p networking for the Fabstir LLM marketplace, through p2pd.

The public API is re-exported here; everything else is an implementation detail.
"""

from fabstir_sidecar._version import __version__
from fabstir_sidecar.backend import Backend, Completion, StreamEnd, TokenStream
from fabstir_sidecar.client import FabstirClient, JobOptions, JobStream, RetryConfig
from fabstir_sidecar.core.admission import AdmissionCounters
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
from fabstir_sidecar.core.multiaddr import PeerAddrs
from fabstir_sidecar.core.peer_id import PeerId
from fabstir_sidecar.core.settings import ENV_VARS, NodeConfig
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.daemon.stream import DaemonStream
from fabstir_sidecar.discovery.config import FinderConfig, LookupStats
from fabstir_sidecar.discovery.matching import HostCriteria, MatchReport
from fabstir_sidecar.discovery.mdns import MdnsService
from fabstir_sidecar.discovery.peer_cache import CachedPeer, PeerCache
from fabstir_sidecar.discovery.service import Discovery
from fabstir_sidecar.host.backends.echo import EchoBackend
from fabstir_sidecar.host.backends.openai import OpenAIBackend
from fabstir_sidecar.host.service import HostConfig, HostService, HostStats
from fabstir_sidecar.node.manager import DiscoveryManager, NodeState
from fabstir_sidecar.node.upkeep import BootstrapResult
from fabstir_sidecar.node_interface import NodeInterface
from fabstir_sidecar.protocols.job import JobEvent
from fabstir_sidecar.protocols.status import HostStatus
from fabstir_sidecar.rpc.exchange import Exchange, FrameBatch
from fabstir_sidecar.rpc.limits import RpcLimits
from fabstir_sidecar.tools.roles import role_config
from fabstir_sidecar.wire.codes import Rejection
from fabstir_sidecar.wire.messages import (
    ChatMessage,
    Host,
    InferenceResponse,
    JobRequest,
    JobResult,
    PeerInfo,
)

__all__ = [
    "ENV_VARS",
    "AdmissionCounters",
    "Backend",
    "BackendError",
    "BadRequestError",
    "BootstrapResult",
    "CachedPeer",
    "ChatMessage",
    "Completion",
    "ConfigError",
    "ConnectionLostError",
    "ControlError",
    "DaemonControl",
    "DaemonError",
    "DaemonIntegrityError",
    "DaemonNotFoundError",
    "DaemonStartError",
    "DaemonStream",
    "DaemonUnavailableError",
    "Discovery",
    "DiscoveryManager",
    "EchoBackend",
    "Exchange",
    "FabstirClient",
    "FabstirError",
    "FabstirTimeoutError",
    "FailedError",
    "FinderConfig",
    "FrameBatch",
    "FrameTooLargeError",
    "Host",
    "HostBusyError",
    "HostConfig",
    "HostCriteria",
    "HostService",
    "HostStats",
    "HostStatus",
    "InferenceResponse",
    "InvalidInputError",
    "InvalidMultiaddrError",
    "InvalidPeerIdError",
    "JobEvent",
    "JobOptions",
    "JobOutcomeUnknownError",
    "JobRejectedError",
    "JobRequest",
    "JobResult",
    "JobStream",
    "LookupStats",
    "MalformedMessageError",
    "MatchReport",
    "MdnsService",
    "MessageTooLargeError",
    "NoMatchingHostError",
    "NodeClosedError",
    "NodeConfig",
    "NodeInterface",
    "NodeNotStartedError",
    "NodeState",
    "NodeStateError",
    "NotSentError",
    "OpenAIBackend",
    "PeerAddrs",
    "PeerCache",
    "PeerId",
    "PeerInfo",
    "PeerUnreachableError",
    "ProtocolError",
    "ProtocolNotSupportedError",
    "Rejection",
    "RemoteError",
    "RetryConfig",
    "RetryExhaustedError",
    "RetryableError",
    "RpcLimits",
    "SetupError",
    "StreamClosedError",
    "StreamEnd",
    "TokenStream",
    "__version__",
    "role_config",
]
