"""ocpp-trio: a trio-native OCPP-J 1.6 / 2.0.1 / 2.1 library for the central-system side."""

from ocpp_trio._errors import (
    CallError,
    ErrorCode,
    LocalProtocolError,
    MessageValidationError,
    OCPPError,
    RemoteProtocolError,
    StateError,
)
from ocpp_trio._trio_errors import CallTimeoutError, ConnectionLostError
from ocpp_trio._version import Version

__all__ = [
    "CallError",
    "CallTimeoutError",
    "ConnectionLostError",
    "ErrorCode",
    "LocalProtocolError",
    "MessageValidationError",
    "OCPPError",
    "RemoteProtocolError",
    "StateError",
    "Version",
]
