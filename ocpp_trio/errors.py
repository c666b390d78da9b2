"""Every exception ocpp-trio raises on purpose, and the OCPP-J error codes in each version's
spelling.

The hierarchy, in one place::

    OCPPError
    ├── LocalProtocolError ─ StateError           we may not send this (nothing was sent)
    │                          └── StationOfflineError  ... to a station no node serves
    ├── RemoteProtocolError ─ MessageValidationError  the peer broke the protocol
    ├── CallError                                  a CALLERROR, received or to send
    ├── CallTimeoutError          (trio.TooSlowError)  no answer to our CALL in time
    ├── ConnectionLostError (trio.BrokenResourceError) the connection went away
    │   ├── TransportClosedError                   ... with the WebSocket close code
    │   └── ConnectFailedError                     ... before it was even open
    ├── RequestRejectedError                       a helper's request answered non-Accepted
    ├── ReportError ─ ReportIncompleteError, ReportTimeoutError (trio.TooSlowError)
    ├── TransactionTimeoutError   (trio.TooSlowError)
    ├── CSMSError, ChargePointError                a background task failed (group as cause)
    ├── StoreError ─ StaleEpochError, UnreadableRecordError
    └── SecuritySettingsConflict                   a compare-and-swap of security settings lost
    InvalidIdentityError (ValueError)              an upgrade path without a valid identity
    SecurityConfigError (ValueError)               a bad stations file or TLS option
    IncompatibleSecuritySettings (ValueError)      settings that do not fit together
    CertificateRequestError (ValueError)           a station's CSR the signer refuses

The sans-IO layers (``ocpp_trio.protocol``, ``ocpp_trio.domain``, ``ocpp_trio.messages``) import
this module and must not import trio, so the classes that are also trio exceptions are made on
first use (PEP 562 ``__getattr__``): importing them, or anything that does, is all it takes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ocpp_trio.protocol.version import Version

if TYPE_CHECKING:
    import trio

    from ocpp_trio.domain.reports import Report

__all__ = [
    "CSMSError",
    "CallError",
    "CallTimeoutError",
    "CertificateRequestError",
    "ChargePointError",
    "ConnectFailedError",
    "ConnectionLostError",
    "ErrorCode",
    "IncompatibleSecuritySettings",
    "InvalidIdentityError",
    "LocalProtocolError",
    "MessageValidationError",
    "OCPPError",
    "RemoteProtocolError",
    "ReportError",
    "ReportIncompleteError",
    "ReportTimeoutError",
    "RequestRejectedError",
    "SecurityConfigError",
    "SecuritySettingsConflict",
    "StaleEpochError",
    "StateError",
    "StationOfflineError",
    "StoreError",
    "TransactionTimeoutError",
    "TransportClosedError",
    "UnreadableRecordError",
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


class StationOfflineError(StateError):
    """The station is connected to no node of the CSMS (nothing was sent)."""


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


class RequestRejectedError(OCPPError):
    """The station answered a helper's request with a status other than Accepted."""

    def __init__(self, action: str, status: str, reason: str | None = None) -> None:
        detail = f" ({reason})" if reason else ""
        super().__init__(f"the station answered {action} with {status}{detail}")
        self.action = action
        self.status = status
        self.reason = reason


class ReportError(OCPPError):
    """A report did not complete; ``report`` is what was assembled."""

    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message)
        self.report = report


class ReportIncompleteError(ReportError):
    """The last part arrived but parts are missing (``missing``: their seqNos, including
    those of parts not kept because the report reached ``MachinesConfig.max_report_items``)."""

    def __init__(self, report: Report) -> None:
        missing = ", ".join(str(n) for n in report.missing)
        dropped = (
            f" ({report.dropped} part(s) not kept: MachinesConfig.max_report_items)"
            if report.dropped
            else ""
        )
        super().__init__(
            f"report {report.kind} #{report.request_id} is incomplete: seqNo {missing} "
            f"missing{dropped}",
            report,
        )
        self.missing = report.missing


class CSMSError(OCPPError):
    """A background task of the CSMS failed; the ``ExceptionGroup`` is the ``__cause__``."""


class ChargePointError(OCPPError):
    """A background task of a charge point failed; the ``ExceptionGroup`` is the
    ``__cause__``."""


class StoreError(OCPPError):
    """The store could not do what was asked (I/O error, closed, unknown schema, ...)."""


class StaleEpochError(StoreError):
    """A write was refused: another process claimed the station since this one did."""


class UnreadableRecordError(StoreError):
    """A station's stored record cannot be decoded; the claim itself took effect.

    Attributes:
        identity: the station.
        epoch: the epoch of the claim (writes made under it are accepted).
        last_seq: the highest journal ``seq`` stored (new entries must come after it).
    """

    def __init__(self, identity: str, epoch: int, last_seq: int, problem: str) -> None:
        super().__init__(f"station {identity!r}: stored state unreadable: {problem}")
        self.identity = identity
        self.epoch = epoch
        self.last_seq = last_seq


class InvalidIdentityError(ValueError):
    """The request path does not carry a valid station identity.

    Attributes:
        status_code: the HTTP status to refuse the upgrade with (404: no identity; 400: an
            identity that breaks the rules).
        problem: what is wrong, sent to the station as the response body.
    """

    def __init__(self, status_code: int, problem: str) -> None:
        super().__init__(problem)
        self.status_code = status_code
        self.problem = problem


class SecurityConfigError(ValueError):
    """The stations file or the TLS options are invalid; the message says where and why."""


class SecuritySettingsConflict(OCPPError):
    """A station's security settings are no longer the ones the caller expected (another
    change came first: ``update_station_security(..., expected=...)``)."""


class IncompatibleSecuritySettings(ValueError):
    """Security settings that are each valid but do not fit together (a profile 1 or 2
    station without a password)."""


class CertificateRequestError(ValueError):
    """A certificate signing request the CSMS's signer refuses (the message says why)."""


# -- the errors that are also trio exceptions --------------------------------------------------
# Declared for the type checker here, made for real by _make_trio_errors() on first use.

if TYPE_CHECKING:

    class CallTimeoutError(OCPPError, trio.TooSlowError):
        """The peer did not answer our CALL within the call timeout."""

    class ConnectionLostError(OCPPError, trio.BrokenResourceError):
        """The connection to the peer went away while we needed it."""

    class TransportClosedError(ConnectionLostError):
        close_code: int
        close_reason: str

        def __init__(self, code: int, reason: str = "") -> None: ...

    class ConnectFailedError(ConnectionLostError):
        status: int | None

        def __init__(self, message: str, status: int | None = None) -> None: ...

    class ReportTimeoutError(ReportError, trio.TooSlowError):
        def __init__(self, report: Report, why: str) -> None: ...

    class TransactionTimeoutError(OCPPError, trio.TooSlowError):
        """The awaited transaction did not come in time."""


def _make_trio_errors() -> dict[str, type[BaseException]]:
    import trio

    class CallTimeoutError(OCPPError, trio.TooSlowError):
        """The peer did not answer our CALL within the call timeout."""

    class ConnectionLostError(OCPPError, trio.BrokenResourceError):
        """The connection to the peer went away while we needed it."""

    class TransportClosedError(ConnectionLostError):
        """The transport is closed; raised by every send or receive after the close.

        Attributes:
            close_code: the WebSocket close code (1006 when no close handshake took place).
            close_reason: the reason text, ``""`` when none was given.
        """

        def __init__(self, code: int, reason: str = "") -> None:
            detail = f"{code} {reason}".rstrip()
            super().__init__(f"connection closed ({detail})")
            self.close_code = code
            self.close_reason = reason

        def __reduce__(self) -> tuple[Any, ...]:
            return (type(self), (self.close_code, self.close_reason))

    class ConnectFailedError(ConnectionLostError):
        """A connection attempt failed before the WebSocket was open: the address could not
        be reached, TLS failed, or the peer refused the upgrade (``status`` is its HTTP
        status)."""

        def __init__(self, message: str, status: int | None = None) -> None:
            super().__init__(message)
            self.status = status

        def __reduce__(self) -> tuple[Any, ...]:
            return (type(self), (str(self), self.status))

    class ReportTimeoutError(ReportError, trio.TooSlowError):
        """The report's parts stopped coming (expired), or the helper's timeout passed."""

        def __init__(self, report: Report, why: str) -> None:
            got = ", ".join(str(p.seq_no) for p in report.parts) or "none"
            super().__init__(
                f"report {report.kind} #{report.request_id} timed out ({why}); "
                f"parts received: {got}",
                report,
            )

    class TransactionTimeoutError(OCPPError, trio.TooSlowError):
        """The awaited transaction (start after a remote start, end after a remote stop) did
        not come in time."""

    made: dict[str, type[BaseException]] = {}
    for cls in (
        CallTimeoutError,
        ConnectionLostError,
        TransportClosedError,
        ConnectFailedError,
        ReportTimeoutError,
        TransactionTimeoutError,
    ):
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
        made[cls.__name__] = cls
    return made


_TRIO_ERRORS = frozenset(
    {
        "CallTimeoutError",
        "ConnectionLostError",
        "TransportClosedError",
        "ConnectFailedError",
        "ReportTimeoutError",
        "TransactionTimeoutError",
    }
)


def __getattr__(name: str) -> type[BaseException]:
    if name in _TRIO_ERRORS:
        made = _make_trio_errors()
        globals().update(made)
        return made[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
