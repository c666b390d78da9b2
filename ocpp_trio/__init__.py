"""ocpp-trio: a trio-native OCPP-J 1.6 / 2.0.1 / 2.1 library for the central-system side.

The typed messages live in :mod:`ocpp_trio.messages` (``v1_6``, ``v2_0_1``, ``v2_1``); everything
an application needs to serve stations is re-exported here.  The names of the PostgreSQL store
and the cluster (``open_postgres_store``, ``serve_cluster``, ...) need the optional dependency
(``pip install 'ocpp-trio[postgres]'``): they are imported on first use, so that
``import ocpp_trio`` works without it.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ocpp_trio.client.charge_point import ChargePoint
from ocpp_trio.client.config import (
    BootInfo,
    ChargePointConfig,
    ChargePointState,
    ChargePointStatistics,
    QueuedMessage,
    RetryBackOff,
)
from ocpp_trio.client.entry import open_charge_point, serve_charge_point, start_charge_point
from ocpp_trio.client.handlers import ChargePointRouter
from ocpp_trio.client.simulator import Simulator, SimulatorConfig, SimulatorTotals
from ocpp_trio.csms.admin import AdminConfig, AdminInfo, serve_admin
from ocpp_trio.csms.core import (
    CSMS,
    CSMSConfig,
    CSMSStatistics,
    DuplicatePolicy,
    open_csms,
    serve_csms,
    start_csms,
)
from ocpp_trio.csms.ledger import Ledger, LedgerConfig
from ocpp_trio.csms.metrics import csms_collector
from ocpp_trio.csms.recovery import RecoveryAction, RecoveryConfig, RecoveryFailed, ResetKind
from ocpp_trio.domain.credentials import (
    AtomicCredentialStore,
    CredentialStore,
    InMemoryCredentialStore,
    SecurityProfile,
    StationCredentials,
    authorization_key_bytes,
    hash_password,
)
from ocpp_trio.domain.device_model import (
    OCPP16_COMPONENT,
    ComponentRef,
    DeviceModel,
    DeviceVariable,
    GetVariable,
    SetVariable,
    VariableAttribute,
    VariableCharacteristics,
    VariableRef,
    VariableResult,
)
from ocpp_trio.domain.events import (
    AvailabilityRequested,
    ConnectorStatusChanged,
    DeviceModelUpdated,
    FirmwareStatusChanged,
    LogStatusChanged,
    MachineEvent,
    MonitoringEvent,
    RebootRequired,
    ReportCompleted,
    ReservationChanged,
    SecurityEvent,
    TransactionChanged,
    TransactionEnded,
    TransactionStarted,
    TransactionUpdated,
)
from ocpp_trio.domain.evse import (
    ConnectorStatus,
    Evse,
    RequestedAvailability,
    Reservation,
    ReservationState,
)
from ocpp_trio.domain.ledger import LedgerEntry, LedgerPage, LedgerQuery
from ocpp_trio.domain.redaction import redact_message
from ocpp_trio.domain.reports import Report, ReportPart, ReportStatus
from ocpp_trio.domain.snapshot import StationSnapshot
from ocpp_trio.domain.transactions import (
    RemoteStart,
    Sample,
    Transaction,
    TransactionEventRecord,
    TransactionIdAllocator,
    TransactionIdCounter,
)
from ocpp_trio.errors import (
    CallError,
    CallTimeoutError,
    CertificateRequestError,
    ChargePointError,
    ConnectFailedError,
    ConnectionLostError,
    CSMSError,
    ErrorCode,
    IncompatibleSecuritySettings,
    LocalProtocolError,
    MessageValidationError,
    OCPPError,
    RemoteProtocolError,
    ReportError,
    ReportIncompleteError,
    ReportTimeoutError,
    RequestRejectedError,
    SecurityConfigError,
    SecuritySettingsConflict,
    StaleEpochError,
    StateError,
    StationOfflineError,
    StoreError,
    TransactionTimeoutError,
    UnreadableRecordError,
)
from ocpp_trio.protocol.supervisor import (
    EarlyBootPolicy,
    RegistrationStatus,
    StationState,
    SupervisorConfig,
)
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.events import (
    Accepted,
    BootAnswered,
    Connected,
    Disconnected,
    DisconnectReason,
    Exchange,
    MachinesStatistics,
    StationEvent,
    Subscription,
)
from ocpp_trio.runtime.handlers import Router, boot_response, handles, heartbeat_response
from ocpp_trio.runtime.machines import MachinesConfig, StationMachines
from ocpp_trio.runtime.peer import CSMSView
from ocpp_trio.runtime.station import CallHook, Station, StationConfig, StationStatistics
from ocpp_trio.runtime.station_ops import ConfigurationResult
from ocpp_trio.security.auth import (
    AuthenticatorStatistics,
    PasswordChangeObserver,
    RotationOutcome,
    RotationResult,
    StationAuthenticator,
    certificate_subject,
    generate_password,
    rotate_password,
    send_password_change,
    server_ssl_context,
)
from ocpp_trio.security.certificates import CertificateBinding, CertificatePolicy
from ocpp_trio.security.config import StationsConfig, build_security, load_stations_file
from ocpp_trio.security.settings import update_station_security
from ocpp_trio.security.throttle import LoginLimits
from ocpp_trio.store.base import JournalEntry, Registration, Store, StoredStation
from ocpp_trio.store.memory import MemoryStore
from ocpp_trio.store.sqlite import SQLiteCredentialStore, SQLiteStore, open_sqlite_store
from ocpp_trio.store.writer import StoreWriterStatistics
from ocpp_trio.transport.base import (
    CloseReason,
    ConnectionInfo,
    Transport,
    memory_transport_pair,
)
from ocpp_trio.transport.connect import Connector, websocket_connector
from ocpp_trio.transport.server import (
    ConnectionRequest,
    Rejection,
    ServerConfig,
    StationConnection,
    select_client_preference,
    select_newest,
    serve_ocpp_websocket,
)

if TYPE_CHECKING:  # for the type checker; at run time they come from __getattr__ below
    from ocpp_trio.csms.cluster import (
        ClusterConfig,
        ClusterEvent,
        ClusterNode,
        ClusterStatistics,
        serve_cluster,
    )
    from ocpp_trio.store.postgres import PostgresStore, open_postgres_store

#: the public names that need psycopg, and the module each comes from
_POSTGRES = {
    "ClusterConfig": "ocpp_trio.csms.cluster",
    "ClusterEvent": "ocpp_trio.csms.cluster",
    "ClusterNode": "ocpp_trio.csms.cluster",
    "ClusterStatistics": "ocpp_trio.csms.cluster",
    "serve_cluster": "ocpp_trio.csms.cluster",
    "PostgresStore": "ocpp_trio.store.postgres",
    "open_postgres_store": "ocpp_trio.store.postgres",
}

if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any name from here

    def __getattr__(name: str) -> Any:
        """The PostgreSQL names, imported on first use (``ImportError`` naming the extra when
        psycopg is missing)."""
        module = _POSTGRES.get(name)
        if module is None:
            raise AttributeError(f"module 'ocpp_trio' has no attribute {name!r}")
        value = getattr(import_module(module), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_POSTGRES})


__all__ = [
    "CSMS",
    "OCPP16_COMPONENT",
    "Accepted",
    "AdminConfig",
    "AdminInfo",
    "AtomicCredentialStore",
    "AuthenticatorStatistics",
    "AvailabilityRequested",
    "BootAnswered",
    "BootInfo",
    "CSMSConfig",
    "CSMSError",
    "CSMSStatistics",
    "CSMSView",
    "CallError",
    "CallHook",
    "CallTimeoutError",
    "CertificateBinding",
    "CertificatePolicy",
    "CertificateRequestError",
    "ChargePoint",
    "ChargePointConfig",
    "ChargePointError",
    "ChargePointRouter",
    "ChargePointState",
    "ChargePointStatistics",
    "CloseReason",
    "ClusterConfig",
    "ClusterEvent",
    "ClusterNode",
    "ClusterStatistics",
    "ComponentRef",
    "ConfigurationResult",
    "ConnectFailedError",
    "Connected",
    "ConnectionInfo",
    "ConnectionLostError",
    "ConnectionRequest",
    "Connector",
    "ConnectorStatus",
    "ConnectorStatusChanged",
    "CredentialStore",
    "DeviceModel",
    "DeviceModelUpdated",
    "DeviceVariable",
    "DisconnectReason",
    "Disconnected",
    "DuplicatePolicy",
    "EarlyBootPolicy",
    "ErrorCode",
    "Evse",
    "Exchange",
    "FirmwareStatusChanged",
    "GetVariable",
    "InMemoryCredentialStore",
    "IncompatibleSecuritySettings",
    "JournalEntry",
    "Ledger",
    "LedgerConfig",
    "LedgerEntry",
    "LedgerPage",
    "LedgerQuery",
    "LocalProtocolError",
    "LogStatusChanged",
    "LoginLimits",
    "MachineEvent",
    "MachinesConfig",
    "MachinesStatistics",
    "MemoryStore",
    "MessageValidationError",
    "MonitoringEvent",
    "OCPPError",
    "PasswordChangeObserver",
    "PostgresStore",
    "QueuedMessage",
    "RebootRequired",
    "RecoveryAction",
    "RecoveryConfig",
    "RecoveryFailed",
    "Registration",
    "RegistrationStatus",
    "Rejection",
    "RemoteProtocolError",
    "RemoteStart",
    "Report",
    "ReportCompleted",
    "ReportError",
    "ReportIncompleteError",
    "ReportPart",
    "ReportStatus",
    "ReportTimeoutError",
    "RequestRejectedError",
    "RequestedAvailability",
    "Reservation",
    "ReservationChanged",
    "ReservationState",
    "ResetKind",
    "RetryBackOff",
    "RotationOutcome",
    "RotationResult",
    "Router",
    "SQLiteCredentialStore",
    "SQLiteStore",
    "Sample",
    "SecurityConfigError",
    "SecurityEvent",
    "SecurityProfile",
    "SecuritySettingsConflict",
    "ServerConfig",
    "SetVariable",
    "Simulator",
    "SimulatorConfig",
    "SimulatorTotals",
    "StaleEpochError",
    "StateError",
    "Station",
    "StationAuthenticator",
    "StationConfig",
    "StationConnection",
    "StationCredentials",
    "StationEvent",
    "StationMachines",
    "StationOfflineError",
    "StationSnapshot",
    "StationState",
    "StationStatistics",
    "StationsConfig",
    "Store",
    "StoreError",
    "StoreWriterStatistics",
    "StoredStation",
    "Subscription",
    "SupervisorConfig",
    "Transaction",
    "TransactionChanged",
    "TransactionEnded",
    "TransactionEventRecord",
    "TransactionIdAllocator",
    "TransactionIdCounter",
    "TransactionStarted",
    "TransactionTimeoutError",
    "TransactionUpdated",
    "Transport",
    "UnreadableRecordError",
    "VariableAttribute",
    "VariableCharacteristics",
    "VariableRef",
    "VariableResult",
    "Version",
    "authorization_key_bytes",
    "boot_response",
    "build_security",
    "certificate_subject",
    "csms_collector",
    "generate_password",
    "handles",
    "hash_password",
    "heartbeat_response",
    "load_stations_file",
    "memory_transport_pair",
    "open_charge_point",
    "open_csms",
    "open_postgres_store",
    "open_sqlite_store",
    "redact_message",
    "rotate_password",
    "select_client_preference",
    "select_newest",
    "send_password_change",
    "serve_admin",
    "serve_charge_point",
    "serve_cluster",
    "serve_csms",
    "serve_ocpp_websocket",
    "server_ssl_context",
    "start_charge_point",
    "start_csms",
    "update_station_security",
    "websocket_connector",
]
