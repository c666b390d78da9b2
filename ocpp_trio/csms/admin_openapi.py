"""The OpenAPI 3.1 description of the admin API: the one source of truth for its endpoints.

:func:`openapi_description` builds it as data. The admin API serves it at
``GET /openapi.json``, routes requests by its paths and methods (what is not in it is answered
404 or 405), refuses query parameters it does not list, and ``scripts/gen_admin_docs.py``
writes the endpoint reference of docs/howto-admin.md from it. A test drives the running API
with schemathesis against it.

Field names are camelCase everywhere, as in the OCPP payloads the API carries.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Final

__all__ = [
    "API_VERSION",
    "OPERATION_IDS",
    "PUBLIC_PATHS",
    "openapi_description",
]

#: the version of the API's description (changes when an answer or a request changes)
API_VERSION: Final = "1.0"
#: paths answered without the bearer token
PUBLIC_PATHS: Final = frozenset({"/openapi.json", "/health"})

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **more: Any) -> Schema:
    return {"type": [kind, "null"], **more}


_TIME: Final = {"type": "string", "format": "date-time"}
_NULLABLE_TIME: Final = {"type": ["string", "null"], "format": "date-time"}


def _object(
    properties: dict[str, Schema], required: tuple[str, ...] | None = None, **more: Any
) -> Schema:
    """A closed object (no other keys); every property required unless told otherwise."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
        "additionalProperties": False,
        **more,
    }


def _schemas() -> dict[str, Schema]:
    transaction_common = {
        "station": {"type": "string", "description": "the station identity"},
        "transactionId": {"type": "string"},
        "version": _ref("Version"),
        "state": {"type": "string", "enum": ["open", "ended"]},
        "evseId": _nullable("integer"),
        "connectorId": _nullable("integer"),
        "idToken": _nullable("string", description="the idToken (1.6: idTag) it started with"),
        "startedAt": _NULLABLE_TIME,
        "endedAt": _NULLABLE_TIME,
        "meterStartWh": _nullable("number"),
        "meterStopWh": _nullable("number"),
        "energyWh": _nullable("number", description="meter stop (or latest) minus start"),
        "stoppedReason": _nullable("string"),
        "remoteStartId": _nullable("integer"),
        "events": {"type": "integer", "description": "transaction messages received"},
        "missingSeqNos": {"type": "array", "items": {"type": "integer"}},
    }
    only_open_view = {
        "updatedAt": _NULLABLE_TIME,
        "chargingState": _nullable("string"),
        "offlineEvents": {"type": "integer", "description": "events sent while offline"},
    }
    only_ledger = {
        "stopIdToken": _nullable("string"),
        "provisional": {
            "type": "boolean",
            "description": "ended by the CSMS when the station rebooted; the station's own "
            "account replaces it",
        },
        "recordedAt": _TIME,
        "samples": {
            "description": "the meter samples (with `samples=true`), else how many",
            "oneOf": [
                {"type": "integer", "minimum": 0},
                {"type": "array", "items": _ref("Sample")},
            ],
        },
    }
    return {
        "Error": _object(
            {
                "error": {"type": "string", "description": "what went wrong"},
                "path": {"type": "string", "description": "the invalid payload field"},
                "code": {"type": "string", "description": "the OCPP error code for it"},
                "action": {"type": "string"},
                "callError": _ref("CallError"),
            },
            required=("error",),
        ),
        "CallError": _object(
            {
                "code": {"type": "string", "description": "the error code, as the station sent it"},
                "description": {"type": "string"},
                "details": {"description": "the error details (any JSON)"},
            }
        ),
        "Version": {"type": "string", "enum": ["1.6", "2.0.1", "2.1"]},
        "Index": _object({"endpoints": {"type": "array", "items": {"type": "string"}}}),
        "OpenApi": {"type": "object", "description": "this description"},
        "Health": _object(
            {
                "status": {"type": "string", "enum": ["ok"]},
                "stations": {"type": "integer", "minimum": 0, "description": "connected"},
                "node": _nullable("string", description="the node name in a cluster"),
                "store": _ref("StoreStatistics"),
            },
            required=("status",),
        ),
        "StoreStatistics": _object(
            {
                name: {"type": "integer", "minimum": 0}
                for name in (
                    "commits",
                    "writes",
                    "failures",
                    "stale",
                    "largestBatch",
                    "queued",
                    "committing",
                )
            },
            description="the store writer's counters",
        ),
        "Station": _object(
            {
                "identity": {"type": "string"},
                "connected": {"type": "boolean"},
                "version": _ref("Version"),
                "state": {
                    "type": "string",
                    "enum": [
                        "offline",
                        "connected",
                        "booting",
                        "pending",
                        "accepted",
                        "rejected",
                        "resumed",
                    ],
                },
                "status": {
                    "type": ["string", "null"],
                    "enum": ["Accepted", "Pending", "Rejected", None],
                    "description": "the answer to its last BootNotification",
                },
                "lastSeenAt": _NULLABLE_TIME,
                "connectedAt": _NULLABLE_TIME,
                "disconnectedAt": _NULLABLE_TIME,
                "openTransactions": {"type": "integer", "minimum": 0},
            },
            required=(
                "identity",
                "connected",
                "version",
                "state",
                "status",
                "lastSeenAt",
                "openTransactions",
            ),
            description="`connectedAt` and `disconnectedAt` only for stations that connected "
            "since the API started",
        ),
        "StationList": _object({"stations": {"type": "array", "items": _ref("Station")}}),
        "DeviceModel": _object(
            {
                "identity": {"type": "string"},
                "variables": {"type": "array", "items": _ref("DeviceVariable")},
            }
        ),
        "DeviceVariable": _object(
            {
                "component": _ref("Component"),
                "variable": _ref("Variable"),
                "attributes": {"type": "array", "items": _ref("VariableAttribute")},
                "characteristics": _ref("VariableCharacteristics"),
            },
            required=("component", "variable", "attributes"),
        ),
        "Component": _object(
            {
                "name": {"type": "string"},
                "instance": {"type": "string"},
                "evse": _object(
                    {"id": {"type": "integer"}, "connectorId": {"type": "integer"}},
                    required=("id",),
                ),
            },
            required=("name",),
        ),
        "Variable": _object(
            {"name": {"type": "string"}, "instance": {"type": "string"}}, required=("name",)
        ),
        "VariableAttribute": _object(
            {
                "type": {"type": "string"},
                "value": {"type": "string", "description": "never given for write-only ones"},
                "mutability": {"type": "string"},
                "persistent": {"type": "boolean"},
                "constant": {"type": "boolean"},
                "pendingValue": {"type": "string", "description": "applies after a reboot"},
            },
            required=("type",),
        ),
        "VariableCharacteristics": _object(
            {
                "dataType": {"type": "string"},
                "supportsMonitoring": {"type": "boolean"},
                "unit": {"type": "string"},
                "minLimit": {"type": "number"},
                "maxLimit": {"type": "number"},
                "valuesList": {"type": "string"},
            },
            required=("dataType", "supportsMonitoring"),
        ),
        "Transaction": _object(
            {**transaction_common, **only_open_view, **only_ledger},
            required=tuple(transaction_common),
            description="`updatedAt`, `chargingState` and `offlineEvents` in the view from "
            "memory; `stopIdToken`, `provisional`, `recordedAt` and `samples` from the ledger",
        ),
        "Sample": _object(
            {
                "timestamp": _TIME,
                "value": {"type": "number"},
                "measurand": {"type": "string"},
                "unit": {"type": "string"},
                "context": {"type": "string"},
                "phase": {"type": "string"},
                "location": {"type": "string"},
            },
            required=("timestamp", "value", "measurand", "unit"),
        ),
        "TransactionPage": _object(
            {
                "transactions": {"type": "array", "items": _ref("Transaction")},
                "nextCursor": _nullable(
                    "string", description="the `cursor` of the next page; null on the last"
                ),
            }
        ),
        "CallRequest": _object(
            {
                "action": {"type": "string", "minLength": 1, "examples": ["Reset"]},
                "payload": {
                    "type": "object",
                    "description": "the OCPP JSON of the station's version (default `{}`)",
                    "examples": [{"type": "Immediate"}],
                },
                "timeout": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "description": "seconds to wait for the answer, at most the CSMS's own",
                },
            },
            required=("action",),
        ),
        "CallResult": _object(
            {
                "action": {"type": "string"},
                "response": {
                    "type": "object",
                    "description": "the CALLRESULT payload (write-only values read `***`)",
                },
            }
        ),
        "RotateRequest": _object(
            {
                "timeout": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "description": "seconds to wait for the answer, at most the CSMS's own",
                }
            },
            required=(),
        ),
        "RotateResult": _object(
            {
                "outcome": {
                    "type": "string",
                    "enum": ["accepted", "pending", "rejected"],
                    "description": "accepted: only the new password is valid; pending: both "
                    "until the station uses the new one; rejected: the old one stays",
                },
                "status": _nullable("string", description="the station's answer"),
            }
        ),
        "SecuritySettings": _object(
            {
                "identity": {"type": "string"},
                "securityProfile": {"type": "integer", "enum": [1, 2, 3]},
                "passwordSet": {"type": "boolean", "description": "whether it has a password"},
                "pendingPassword": {
                    "type": "boolean",
                    "description": "whether a new password's adoption is uncertain",
                },
                "certificateCommonName": _nullable(
                    "string", description="profile 3: the subject CN (null: the identity)"
                ),
                "certificateCommonNames": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "profile 3: more CNs allowed",
                },
                "certificateOrganization": _nullable(
                    "string", description="profile 3: the subject O (null: the CSMS's)"
                ),
                "duplicateConnections": {
                    "type": ["string", "null"],
                    "enum": ["replace", "refuse", None],
                    "description": "null: the CSMS's policy",
                },
            },
            description="never a password or a hash",
        ),
        "SecurityChange": _object(
            {
                "securityProfile": {"type": "integer", "enum": [1, 2, 3]},
                "password": {
                    "type": "string",
                    "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]{16,40}$",
                    "description": "a new 2.x BasicAuthPassword: 16 to 40 characters, no "
                    "control characters (hashed; not sent to the station)",
                },
                "authorizationKey": {
                    "type": "string",
                    "pattern": "^([0-9a-fA-F]{2}){16,250}$",
                    "description": "a new 1.6 AuthorizationKey as hex (hashed; not sent)",
                },
                "dropPendingPassword": {
                    "type": "boolean",
                    "description": "true: forget a password change whose adoption is uncertain",
                },
                "certificateCommonName": _nullable("string", pattern="\\S"),
                "certificateCommonNames": {
                    "type": "array",
                    "items": {"type": "string", "pattern": "\\S"},
                },
                "certificateOrganization": _nullable("string", pattern="\\S"),
                "duplicateConnections": {
                    "type": ["string", "null"],
                    "enum": ["replace", "refuse", None],
                },
            },
            required=(),
            minProperties=1,
            # a password and a key at once: which one?
            **{"not": {"required": ["password", "authorizationKey"]}},
            description="the settings to change; the others stay (at most one of `password` "
            "and `authorizationKey`)",
        ),
    }


def _error(description: str, **headers: str) -> Schema:
    answer: Schema = {
        "description": description,
        "content": {"application/json": {"schema": _ref("Error")}},
    }
    if headers:
        answer["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return answer


def _dropped(description: str) -> Schema:
    """The 503 of an operation that talks to the station: it went away, or the API is busy."""
    return _error(
        f"{description}; or too many connections",
        **{"Retry-After": "seconds (too many connections)"},
    )


def _ok(description: str, schema: str) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema)}},
    }


_COMMON: Final = {
    "400": "#/components/responses/BadRequest",
    "403": "#/components/responses/Forbidden",
    "408": "#/components/responses/RequestTimeout",
    "413": "#/components/responses/TooLarge",
    "431": "#/components/responses/HeadTooLarge",
    "503": "#/components/responses/Busy",
}
_AUTHENTICATED: Final = {"401": "#/components/responses/Unauthorized"}
_WITH_BODY: Final = {"415": "#/components/responses/NotJson"}


def _responses() -> dict[str, Schema]:
    return {
        "BadRequest": _error("malformed request, or a query parameter that is not valid"),
        "Unauthorized": _error(
            "no valid bearer token",
            **{"WWW-Authenticate": 'Bearer realm="ocpp-trio admin"'},
        ),
        "Forbidden": _error("a `Host` that is not allowed, or a cross-site request from a browser"),
        "RequestTimeout": _error("the request was not received in time"),
        "TooLarge": _error("the request body is too large"),
        "NotJson": _error("a request body not sent as `application/json`"),
        "HeadTooLarge": _error("the request head is too large"),
        "Busy": _error("too many connections (from this address)", **{"Retry-After": "seconds"}),
        "UnknownStation": _error("the station has never connected (since the API started)"),
    }


_IDENTITY: Final = {
    "name": "identity",
    "in": "path",
    "required": True,
    "description": "the station identity, percent-encoded",
    "schema": {"type": "string", "minLength": 1},
}


def _query(name: str, description: str, schema: Schema) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _operation(
    operation_id: str,
    summary: str,
    description: str,
    responses: dict[str, Any],
    *,
    parameters: list[Schema] | None = None,
    body: tuple[str, bool] | None = None,
    public: bool = False,
    tag: str,
) -> Schema:
    common = dict(_COMMON)
    if not public:
        common.update(_AUTHENTICATED)
    if body is not None:
        common.update(_WITH_BODY)
    merged: dict[str, Any] = {
        status: {"$ref": ref} for status, ref in common.items() if status not in responses
    }
    merged.update(responses)
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "tags": [tag],
        "responses": dict(sorted(merged.items())),
    }
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        schema, required = body
        operation["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": _ref(schema)}},
        }
    if public:
        operation["security"] = []
    return operation


_CALL_DESCRIPTION: Final = (
    "Sends a CALL to the station and answers with its response. The payload is the OCPP JSON "
    "of the station's version, checked before anything is sent. A CALL that sets the "
    "station's Basic-auth password (SetVariables of `SecurityCtrlr.BasicAuthPassword`, 1.6 "
    "ChangeConfiguration of `AuthorizationKey`) is recorded before it is sent and settled by "
    "the answer (see [rotating passwords](security.md#rotating-passwords)); write-only values "
    "in answers read `***`."
)


def _paths() -> dict[str, Schema]:
    station = "stations"
    return {
        "/": {
            "get": _operation(
                "listEndpoints",
                "The endpoints",
                "Each endpoint as `METHOD /path`.",
                {"200": _ok("the endpoints", "Index")},
                tag="api",
            )
        },
        "/openapi.json": {
            "get": _operation(
                "getOpenApi",
                "This description",
                "The OpenAPI description of the API. It needs no token: it is the same for "
                "every server and holds nothing about the stations (the `Host` and `Origin` "
                "rules still apply).",
                {"200": _ok("the OpenAPI description", "OpenApi")},
                public=True,
                tag="api",
            )
        },
        "/health": {
            "get": _operation(
                "getHealth",
                "Health",
                "Answers while the CSMS serves. It needs no token: it is a load balancer's "
                'check (the `Host` and `Origin` rules still apply), answered `{"status": '
                '"ok"}` only; with the token it also says the connected stations, the node '
                "name of a shared store and the store writer's counters.",
                {"200": _ok("the CSMS serves", "Health")},
                public=True,
                tag="api",
            )
        },
        "/metrics": {
            "get": _operation(
                "getMetrics",
                "Prometheus metrics",
                "The metrics in Prometheus's text format (see [metrics](metrics.md)).",
                {
                    "200": {
                        "description": "the metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                tag="api",
            )
        },
        "/stations": {
            "get": _operation(
                "listStations",
                "Every station",
                "Every station seen since the API started, and every one connected.",
                {"200": _ok("the stations, by identity", "StationList")},
                tag=station,
            )
        },
        "/stations/{identity}": {
            "get": _operation(
                "getStation",
                "One station",
                "What the CSMS knows of one station.",
                {
                    "200": _ok("the station", "Station"),
                    "404": {"$ref": "#/components/responses/UnknownStation"},
                },
                parameters=[_IDENTITY],
                tag=station,
            )
        },
        "/stations/{identity}/device-model": {
            "get": _operation(
                "getDeviceModel",
                "The station's device model",
                "The device model the CSMS has learned (NotifyReport, GetVariables and "
                "SetVariables answers, 1.6 configuration keys); write-only attributes "
                "(passwords) without a value.",
                {
                    "200": _ok("the device model", "DeviceModel"),
                    "404": {"$ref": "#/components/responses/UnknownStation"},
                },
                parameters=[_IDENTITY],
                tag=station,
            )
        },
        "/stations/{identity}/call": {
            "post": _operation(
                "callStation",
                "Send a CALL",
                _CALL_DESCRIPTION,
                {
                    "200": _ok("the station answered", "CallResult"),
                    "400": _error(
                        "the body is not valid, the action is unknown in the station's "
                        "version or not one a CSMS sends, or the payload is invalid (`path` "
                        "and `code` name the field and the OCPP error code)"
                    ),
                    "404": {"$ref": "#/components/responses/UnknownStation"},
                    "409": _error(
                        "the station is not connected, or its registration state forbids "
                        "the CALL now (e.g. Pending)"
                    ),
                    "502": _error(
                        "the station answered with a CALLERROR (`callError`), or with an "
                        "invalid answer"
                    ),
                    "503": _dropped("the connection dropped before the answer"),
                    "504": _error("no answer in time"),
                },
                parameters=[_IDENTITY],
                body=("CallRequest", True),
                tag=station,
            )
        },
        "/stations/{identity}/rotate-password": {
            "post": _operation(
                "rotatePassword",
                "Give the station a new password",
                "Sends the station a new generated Basic-auth password, recorded before it "
                "is sent (needs the stations' credential store: `serve --stations`). The "
                "password is never shown.",
                {
                    "200": _ok("the station answered", "RotateResult"),
                    "404": {"$ref": "#/components/responses/UnknownStation"},
                    "409": _error(
                        "the station is not connected, has no password, its state forbids "
                        "the CALL, or the CSMS keeps no credentials"
                    ),
                    "502": _error("the station answered with a CALLERROR or an invalid answer"),
                    "503": _dropped("the connection dropped (both passwords stay valid)"),
                    "504": _error("no answer in time (both passwords stay valid)"),
                },
                parameters=[_IDENTITY],
                body=("RotateRequest", False),
                tag=station,
            )
        },
        "/stations/{identity}/security": {
            "get": _operation(
                "getSecuritySettings",
                "The station's security settings",
                "Its security profile, whether it has a password (never the password or its "
                "hash), its certificate names and its duplicate-connection policy.",
                {
                    "200": _ok("the settings", "SecuritySettings"),
                    "404": _error("the credential store has no record of the station"),
                    "409": _error("the CSMS keeps no credentials"),
                },
                parameters=[_IDENTITY],
                tag=station,
            ),
            "patch": _operation(
                "updateSecuritySettings",
                "Change the station's security settings",
                "Changes the settings given, together: one write to the credential store, "
                "and a connection attempt checked meanwhile sees the old settings or the new "
                "ones, never a mix. They apply from the station's next connection; a "
                "password given here is not sent to the station (see `rotate-password`).",
                {
                    "200": _ok("the settings as changed", "SecuritySettings"),
                    "400": _error("the body is not valid"),
                    "404": _error("the credential store has no record of the station"),
                    "409": _error(
                        "the settings would not fit together (profile 1 or 2 without a "
                        "password), or the CSMS keeps no credentials"
                    ),
                },
                parameters=[_IDENTITY],
                body=("SecurityChange", True),
                tag=station,
            ),
        },
        "/transactions": {
            "get": _operation(
                "listTransactions",
                "Transactions",
                "Open and recently finished transactions from memory; with `state=ended` "
                "and a store, every finished transaction from the "
                "[transaction ledger](ledger.md), oldest end first, a page at a time "
                "(the other parameters except `station` need `state=ended`).",
                {
                    "200": _ok("a page of transactions", "TransactionPage"),
                    "400": _error(
                        "a parameter that is not valid (named), or a ledger parameter "
                        "without `state=ended` or without a store"
                    ),
                },
                parameters=[
                    _query("station", "one station's", {"type": "string"}),
                    _query("state", "open or ended", {"type": "string", "enum": ["open", "ended"]}),
                    _query("idToken", "those started with this idToken", {"type": "string"}),
                    _query(
                        "since",
                        "those that ended at or after this time: ISO 8601 (`2024-05-01`, "
                        "`2024-05-01T12:00:00Z`; UTC when no offset is given)",
                        {"type": "string"},
                    ),
                    _query("until", "those that ended before this time", {"type": "string"}),
                    _query(
                        "limit",
                        "at most this many (default 100)",
                        {"type": "integer", "minimum": 1, "maximum": 1000},
                    ),
                    _query("cursor", "the previous page's `nextCursor`", {"type": "string"}),
                    _query("samples", "each with its meter samples", {"type": "boolean"}),
                ],
                tag="transactions",
            )
        },
    }


@functools.cache
def _description() -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ocpp-trio admin API",
            "version": API_VERSION,
            "description": "What a running CSMS knows about its stations and transactions, and "
            "a way to send any request to a station. Every request needs the bearer token "
            "(except `GET /openapi.json` and `GET /health`); every GET is also answered to "
            "HEAD (the same headers, no body); a method a path does not have is answered 405 "
            "with `Allow`.",
        },
        "tags": [
            {"name": "api", "description": "the API itself"},
            {"name": "stations", "description": "stations, and requests to them"},
            {"name": "transactions", "description": "transactions and the ledger"},
        ],
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the API's token (`serve --admin-token-file`, ...)",
                }
            },
            "schemas": _schemas(),
            "responses": _responses(),
        },
    }


def openapi_description() -> Schema:
    """The OpenAPI 3.1 description of the admin API (a fresh copy to change at will)."""
    return copy.deepcopy(_description())


def _operation_ids() -> frozenset[str]:
    return frozenset(
        operation["operationId"]
        for operations in _description()["paths"].values()
        for operation in operations.values()
    )


#: every operation's ``operationId``
OPERATION_IDS: Final = _operation_ids()
