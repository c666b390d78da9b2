"""ocpp-trio: a trio-native OCPP-J 1.6 / 2.0.1 / 2.1 library for the central-system side.

The typed messages live in :mod:`ocpp_trio.messages` (``v1_6``, ``v2_0_1``, ``v2_1``); everything
an application needs to serve stations is re-exported here.
"""

from ocpp_trio._csms import (
    CSMS,
    CSMSConfig,
    CSMSError,
    CSMSStatistics,
    DuplicatePolicy,
    open_csms,
    serve_csms,
    start_csms,
)
from ocpp_trio._errors import (
    CallError,
    ErrorCode,
    LocalProtocolError,
    MessageValidationError,
    OCPPError,
    RemoteProtocolError,
    StateError,
)
from ocpp_trio._events import (
    Accepted,
    BootAnswered,
    Connected,
    Disconnected,
    DisconnectReason,
    Exchange,
    StationEvent,
    Subscription,
)
from ocpp_trio._handlers import Router, boot_response, handles, heartbeat_response
from ocpp_trio._server import (
    ConnectionRequest,
    Rejection,
    ServerConfig,
    StationConnection,
    select_client_preference,
    select_newest,
    serve_ocpp_websocket,
)
from ocpp_trio._station import Station, StationConfig, StationStatistics
from ocpp_trio._supervisor import (
    EarlyBootPolicy,
    RegistrationStatus,
    StationState,
    SupervisorConfig,
)
from ocpp_trio._transport import (
    CloseReason,
    ConnectionInfo,
    Transport,
    memory_transport_pair,
)
from ocpp_trio._trio_errors import CallTimeoutError, ConnectionLostError
from ocpp_trio._version import Version

__all__ = [
    "CSMS",
    "Accepted",
    "BootAnswered",
    "CSMSConfig",
    "CSMSError",
    "CSMSStatistics",
    "CallError",
    "CallTimeoutError",
    "CloseReason",
    "Connected",
    "ConnectionInfo",
    "ConnectionLostError",
    "ConnectionRequest",
    "DisconnectReason",
    "Disconnected",
    "DuplicatePolicy",
    "EarlyBootPolicy",
    "ErrorCode",
    "Exchange",
    "LocalProtocolError",
    "MessageValidationError",
    "OCPPError",
    "RegistrationStatus",
    "Rejection",
    "RemoteProtocolError",
    "Router",
    "ServerConfig",
    "StateError",
    "Station",
    "StationConfig",
    "StationConnection",
    "StationEvent",
    "StationState",
    "StationStatistics",
    "Subscription",
    "SupervisorConfig",
    "Transport",
    "Version",
    "boot_response",
    "handles",
    "heartbeat_response",
    "memory_transport_pair",
    "open_csms",
    "select_client_preference",
    "select_newest",
    "serve_csms",
    "serve_ocpp_websocket",
    "start_csms",
]
