"""The error hierarchy of ocpp-trio, and the OCPP-J error codes with each version's spelling.

This module is sans-IO (it must not import trio); the two errors that are also trio exceptions,
``CallTimeoutError`` and ``ConnectionLostError``, live in ``_trio_errors``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from ocpp_trio._version import Version

__all__ = [
    "CallError",
    "ErrorCode",
    "LocalProtocolError",
    "MessageValidationError",
    "OCPPError",
    "RemoteProtocolError",
    "StateError",
]


class ErrorCode(enum.Enum):
    """OCPP-J RPC error codes, independent of how a version spells them.

    Use :meth:`wire` to get the spelling for a version and :meth:`parse` to read any spelling
    (both spellings of the two codes whose names changed are accepted in every version).
    """

    NOT_IMPLEMENTED = "NotImplemented"
    NOT_SUPPORTED = "NotSupported"
    INTERNAL_ERROR = "InternalError"
    PROTOCOL_ERROR = "ProtocolError"
    SECURITY_ERROR = "SecurityError"
    FORMAT_VIOLATION = "FormatViolation"
    PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"
    OCCURRENCE_CONSTRAINT_VIOLATION = "OccurrenceConstraintViolation"
    TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"
    GENERIC_ERROR = "GenericError"
    MESSAGE_TYPE_NOT_SUPPORTED = "MessageTypeNotSupported"
    RPC_FRAMEWORK_ERROR = "RpcFrameworkError"

    def wire(self, version: Version) -> str:
        """The spelling of this code on the wire for ``version``.

        1.6 keeps the typos its errata declared permanent (``FormationViolation``,
        ``OccurenceConstraintViolation``). 1.6 has no ``MessageTypeNotSupported`` or
        ``RpcFrameworkError``; they map to ``GenericError`` there.
        """
        if version is Version.V16:
            return _WIRE_1_6.get(self, self.value)
        return self.value

    @classmethod
    def parse(cls, text: str) -> ErrorCode | None:
        """Read an error code in any version's spelling; ``None`` if it is not an OCPP code."""
        return _PARSE.get(text)


_WIRE_1_6: dict[ErrorCode, str] = {
    ErrorCode.FORMAT_VIOLATION: "FormationViolation",
    ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION: "OccurenceConstraintViolation",
    ErrorCode.MESSAGE_TYPE_NOT_SUPPORTED: "GenericError",
    ErrorCode.RPC_FRAMEWORK_ERROR: "GenericError",
}
_PARSE: dict[str, ErrorCode] = {c.value: c for c in ErrorCode} | {
    "FormationViolation": ErrorCode.FORMAT_VIOLATION,
    "OccurenceConstraintViolation": ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
}


class OCPPError(Exception):
    """Base class of every error ocpp-trio raises on purpose."""


class LocalProtocolError(OCPPError):
    """We tried to do something the protocol forbids (nothing was sent)."""


class StateError(LocalProtocolError):
    """The station's state forbids this now: offline, not yet accepted, Rejected, or a CALL
    the Pending allow-list does not contain.  Nothing was sent."""


class RemoteProtocolError(OCPPError):
    """The peer broke the protocol; ``code`` is what to answer it with."""

    def __init__(
        self, code: ErrorCode, description: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.details: dict[str, Any] = dict(details or {})


class MessageValidationError(RemoteProtocolError, ValueError):
    """A payload or a constructed message breaks its schema.

    Attributes:
        code: the OCPP error code the violation maps to.
        path: where, as wire names and indexes (``meterValue[0].sampledValue[2].value``) when
            decoding; as Python attribute names when constructing. ``""`` is the payload itself.
        value: the offending value.
        problem: what is wrong with it, e.g. ``"is not a number"``.
        version: the OCPP version of the schema, when known.
    """

    def __init__(
        self,
        code: ErrorCode,
        path: str,
        value: Any,
        problem: str,
        version: Version | None = None,
    ) -> None:
        self.path = path
        self.value = value
        self.problem = problem
        self.version = version
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        where = path or "payload"
        super().__init__(code, f"{where}: {shown} {problem}", {"path": path} if path else {})

    @property
    def wire_code(self) -> str:
        """The error code spelled as the message's version spells it (2.x when unknown)."""
        return self.code.wire(self.version or Version.V201)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.path, self.value, self.problem, self.version))


class CallError(OCPPError):
    """A CALLERROR: raised by ``call()`` when the peer answers with one, and raisable by a
    handler to answer a station's CALL with a chosen code."""

    def __init__(
        self,
        code: ErrorCode | str,
        description: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code.value if isinstance(code, ErrorCode) else code}: {description}")
        #: the code as an ErrorCode, or the raw string when the peer sent a non-OCPP code
        self.code = code
        self.description = description
        self.details: dict[str, Any] = dict(details or {})
