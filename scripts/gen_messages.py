"""Generate the typed message modules from the facts-only schemas.

Reads ``schemas/<version>/*.json`` and ``schemas/directions.json`` and writes
``ocpp_trio/messages/v1_6.py``, ``v2_0_1.py`` and ``v2_1.py``: ``enum.StrEnum`` enums, frozen
attrs datatypes and payload classes, each with a generated one-pass ``from_json`` (check and
build) and ``to_json``, and the ``ACTIONS`` registry.  The output is formatted by ruff and is
deterministic.  ``--check`` exits non-zero (naming the file) when a committed module differs
from a fresh run; without arguments the modules are written.

Names: 2.x enums and datatypes keep their schema definition names.  1.6 has no definitions;
its inline objects and enums are named from ``NAMES_1_6`` (the 1.6 specification's type names,
keyed by where they occur) or, failing that, ``<Action><Field>``; structurally identical inline
types share one class.  The same name defined differently fails the run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import keyword
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
OUT = ROOT / "ocpp_trio" / "messages"

#: version -> (schema folder and module name, Version member)
VERSIONS: dict[str, tuple[str, str]] = {
    "1.6": ("v1_6", "V16"),
    "2.0.1": ("v2_0_1", "V201"),
    "2.1": ("v2_1", "V21"),
}
EXPECTED_ACTIONS = {"1.6": 39, "2.0.1": 64, "2.1": 91}
SEND_ONLY = frozenset({"NotifyPeriodicEventStream"})
DIRECTIONS = {
    "station->csms": "STATION_TO_CSMS",
    "csms->station": "CSMS_TO_STATION",
    "both": "BOTH",
}

#: 1.6 inline types, by where they occur (``<File>.<property>``, ``[]`` for array items), named
#: as the 1.6 specification names them.  Types found nowhere here are named ``<Action><Field>``
#: unless they are structurally identical to a type named here.
NAMES_1_6: dict[str, str] = {
    "AuthorizeResponse.idTagInfo": "IdTagInfo",
    "AuthorizeResponse.idTagInfo.status": "AuthorizationStatus",
    "BootNotificationResponse.status": "RegistrationStatus",
    "CancelReservationResponse.status": "CancelReservationStatus",
    "ChangeAvailabilityRequest.type": "AvailabilityType",
    "ChangeAvailabilityResponse.status": "AvailabilityStatus",
    "ChangeConfigurationResponse.status": "ConfigurationStatus",
    "ClearCacheResponse.status": "ClearCacheStatus",
    "ClearChargingProfileRequest.chargingProfilePurpose": "ChargingProfilePurposeType",
    "ClearChargingProfileResponse.status": "ClearChargingProfileStatus",
    "DataTransferResponse.status": "DataTransferStatus",
    "DiagnosticsStatusNotificationRequest.status": "DiagnosticsStatus",
    "FirmwareStatusNotificationRequest.status": "FirmwareStatus",
    "GetCompositeScheduleRequest.chargingRateUnit": "ChargingRateUnitType",
    "GetCompositeScheduleResponse.status": "GetCompositeScheduleStatus",
    "GetCompositeScheduleResponse.chargingSchedule": "ChargingSchedule",
    "GetCompositeScheduleResponse.chargingSchedule.chargingRateUnit": "ChargingRateUnitType",
    "GetCompositeScheduleResponse.chargingSchedule.chargingSchedulePeriod[]": (
        "ChargingSchedulePeriod"
    ),
    "GetConfigurationResponse.configurationKey[]": "KeyValue",
    "MeterValuesRequest.meterValue[]": "MeterValue",
    "MeterValuesRequest.meterValue[].sampledValue[]": "SampledValue",
    "MeterValuesRequest.meterValue[].sampledValue[].context": "ReadingContext",
    "MeterValuesRequest.meterValue[].sampledValue[].format": "ValueFormat",
    "MeterValuesRequest.meterValue[].sampledValue[].measurand": "Measurand",
    "MeterValuesRequest.meterValue[].sampledValue[].phase": "Phase",
    "MeterValuesRequest.meterValue[].sampledValue[].location": "Location",
    "MeterValuesRequest.meterValue[].sampledValue[].unit": "UnitOfMeasure",
    "RemoteStartTransactionRequest.chargingProfile": "ChargingProfile",
    "RemoteStartTransactionRequest.chargingProfile.chargingProfilePurpose": (
        "ChargingProfilePurposeType"
    ),
    "RemoteStartTransactionRequest.chargingProfile.chargingProfileKind": "ChargingProfileKindType",
    "RemoteStartTransactionRequest.chargingProfile.recurrencyKind": "RecurrencyKindType",
    "RemoteStartTransactionRequest.chargingProfile.chargingSchedule": "ChargingSchedule",
    "RemoteStartTransactionResponse.status": "RemoteStartStopStatus",
    "RemoteStopTransactionResponse.status": "RemoteStartStopStatus",
    "ReserveNowResponse.status": "ReservationStatus",
    "ResetRequest.type": "ResetType",
    "ResetResponse.status": "ResetStatus",
    "SendLocalListRequest.localAuthorizationList[]": "AuthorizationData",
    "SendLocalListRequest.updateType": "UpdateType",
    "SendLocalListResponse.status": "UpdateStatus",
    "SetChargingProfileRequest.csChargingProfiles": "ChargingProfile",
    "SetChargingProfileResponse.status": "ChargingProfileStatus",
    "StartTransactionResponse.idTagInfo": "IdTagInfo",
    "StatusNotificationRequest.errorCode": "ChargePointErrorCode",
    "StatusNotificationRequest.status": "ChargePointStatus",
    "StopTransactionRequest.reason": "Reason",
    # MeterValues.json (as distributed) has minItems 1 on sampledValue, StopTransaction.json
    # does not: the two MeterValue shapes differ, so the transaction one gets its own name.
    "StopTransactionRequest.transactionData[]": "TransactionData",
    "StopTransactionResponse.idTagInfo": "IdTagInfo",
    "TriggerMessageRequest.requestedMessage": "MessageTrigger",
    "TriggerMessageResponse.status": "TriggerMessageStatus",
    "UnlockConnectorResponse.status": "UnlockStatus",
}

#: schema keywords the generator understands; anything else fails the run
KNOWN_KEYWORDS = frozenset(
    {
        "$schema",
        "$ref",
        "type",
        "properties",
        "required",
        "additionalProperties",
        "definitions",
        "enum",
        "items",
        "maxLength",
        "minLength",
        "minimum",
        "maximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "format",
        "default",
    }
)

#: names used inside generated class bodies, which a field must not shadow
RESERVED = frozenset(
    {
        *("attrs", "builtins", "enum", "Any", "ClassVar", "Self", "Version"),
        *("str", "int", "float", "bool", "tuple", "dict", "to_json", "from_json", "extra"),
    }
)


class GenError(Exception):
    """The schemas cannot be turned into code as they are (a message says why)."""


# --------------------------------------------------------------------------------------------
# names


def snake(name: str) -> str:
    """``connectorId`` -> ``connector_id``; ``iso15118CertificateHashData`` ->
    ``iso15118_certificate_hash_data``; Python keywords get a trailing ``_``."""
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", name)
    # an acronym ends where a capitalised word starts, unless it is a plural ("EMAIDs")
    s = re.sub(r"([A-Z])([A-Z](?!s(?:[A-Z_\d]|$))[a-z])", r"\1_\2", s)
    s = re.sub(r"(\d)([A-Z][a-z])", r"\1_\2", s)
    s = re.sub(r"(\d)([A-Z]{2,})", r"\1_\2", s)
    s = re.sub(r"[^0-9a-zA-Z]+", "_", s)
    s = re.sub(r"_+", "_", s).strip("_").lower()
    if not s:
        raise GenError(f"cannot make a Python name of {name!r}")
    if s[0].isdigit():
        s = "f_" + s
    if keyword.iskeyword(s) or keyword.issoftkeyword(s):
        s += "_"
    return s


def member_name(value: str) -> str:
    """An enum member name: ``Energy.Active.Import.Register`` -> ``ENERGY_ACTIVE_IMPORT_REGISTER``,
    ``L1-N`` -> ``L1_N``; a leading digit gets a ``V_`` prefix."""
    if not value:
        raise GenError("an enum has an empty value")
    s = snake(value).rstrip("_").upper()
    if s.startswith("F_") and value[0].isdigit():
        s = "V_" + s[2:]
    return s


def natural(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key comparing digit runs as numbers (the order ruff's RUF022 expects)."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in re.findall(r"\d+|\D+", name)
    )


def cap(name: str) -> str:
    return name[:1].upper() + name[1:]


# --------------------------------------------------------------------------------------------
# the intermediate representation


@dataclass(frozen=True)
class Scalar:
    kind: str  # string, integer, number, boolean, any
    fmt: str | None = None  # date-time, uri
    min_length: int | None = None
    max_length: int | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    multiple_of: str | None = None


@dataclass(frozen=True)
class EnumRef:
    name: str


@dataclass(frozen=True)
class ObjRef:
    name: str


@dataclass(frozen=True)
class Array:
    item: Scalar | EnumRef | ObjRef
    min_items: int | None
    max_items: int | None


TypeIR = Scalar | EnumRef | ObjRef | Array


@dataclass(frozen=True)
class Field:
    wire: str
    py: str
    type: TypeIR
    required: bool


@dataclass
class ClassIR:
    name: str
    kind: str  # datatype, request, response, send
    fields: list[Field]
    open: bool  # no additionalProperties: false -> vendor keys kept in ``extra``
    draft4: bool
    action: str | None = None


@dataclass
class EnumIR:
    name: str
    values: list[str]
    members: list[str] = field(default_factory=list)


@dataclass
class ModuleIR:
    version: str
    enums: dict[str, EnumIR] = field(default_factory=dict)
    classes: dict[str, ClassIR] = field(default_factory=dict)
    #: action -> (request class, response class or None, direction)
    actions: dict[str, tuple[str, str | None, str]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# reading schemas


def load_folder(folder: Path) -> dict[str, dict[str, Any]]:
    """``{file stem: schema}`` for every ``*.json`` in ``folder``, sorted by name."""
    files = sorted(folder.glob("*.json"))
    if not files:
        raise GenError(f"no schemas in {folder}")
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in files}


def folder_checksum(folder: Path) -> str:
    """sha256 over the sorted (file name, content) pairs of a schema folder."""
    h = hashlib.sha256()
    for p in sorted(folder.glob("*.json")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def canonical(node: object, draft4: bool) -> str:
    return ("draft4:" if draft4 else "draft6:") + json.dumps(node, sort_keys=True)


def is_object(node: Mapping[str, Any]) -> bool:
    return node.get("type") == "object"


class Builder:
    """Turns one version's schema files into a :class:`ModuleIR`."""

    def __init__(
        self,
        version: str,
        files: Mapping[str, dict[str, Any]],
        directions: Mapping[str, str],
        names: Mapping[str, str],
    ) -> None:
        self.version = version
        self.files = files
        self.directions = directions
        self.names = names
        self.ir = ModuleIR(version)
        #: definition name -> (canonical form, file it was first seen in)
        self.defs: dict[str, tuple[str, str]] = {}
        #: inline path -> class or enum name
        self.inline_names: dict[str, str] = {}
        #: name -> canonical form, for every named type (to catch one name, two shapes)
        self.shapes: dict[str, str] = {}

    # -- naming of inline types --------------------------------------------------------------

    def _inline_nodes(self) -> Iterator[tuple[str, str, str]]:
        """(file, path, shape) of every inline object or enum, in a stable order.

        Paths are ``<File>.<property>`` with ``[]`` for array items (``<File>#<Definition>.``
        inside definitions); shapes include the draft, which decides what an integer is.
        """

        def walk(file: str, path: str, node: object, draft4: bool) -> Iterator[Any]:
            if not isinstance(node, dict):
                return
            if is_object(node) or "enum" in node:
                yield file, path, canonical(node, draft4)
            for key, sub in node.get("properties", {}).items():
                yield from walk(file, f"{path}.{key}", sub, draft4)
            if "items" in node:
                yield from walk(file, f"{path}[]", node["items"], draft4)

        for file, doc in self.files.items():
            draft4 = "draft-04" in doc.get("$schema", "")
            for key, sub in doc.get("properties", {}).items():
                yield from walk(file, f"{file}.{key}", sub, draft4)
            for name, definition in doc.get("definitions", {}).items():
                for key, sub in definition.get("properties", {}).items():
                    yield from walk(file, f"{file}#{name}.{key}", sub, draft4)
                if "items" in definition:
                    yield from walk(file, f"{file}#{name}[]", definition["items"], draft4)

    def name_inline_types(self) -> None:
        """Name every inline type: from the table, else as a structurally identical named one,
        else ``<Action><Field>`` (``<File><Field>`` if that is taken by another shape)."""
        nodes = list(self._inline_nodes())
        by_shape: dict[str, set[str]] = {}
        used = set()
        for _file, path, shape in nodes:
            name = self.names.get(path)
            if name is None:
                continue
            used.add(path)
            self._claim(name, shape, path)
            by_shape.setdefault(shape, set()).add(name)
            self.inline_names[path] = name
        unused = sorted(set(self.names) - used)
        if unused:
            raise GenError(f"{self.version}: name table entries match nothing: {unused}")
        for file, path, shape in nodes:
            if path in self.inline_names:
                continue
            if shape in by_shape:
                self.inline_names[path] = min(by_shape[shape])
                continue
            action = file.removesuffix("Request").removesuffix("Response")
            last = re.sub(r"\[\]$", "", path.rsplit(".", 1)[-1])
            name = action + cap(last)
            if name in self.shapes and self.shapes[name] != shape:
                name = file + cap(last)
            self._claim(name, shape, path)
            by_shape.setdefault(shape, set()).add(name)
            self.inline_names[path] = name

    def _claim(self, name: str, shape: str, where: str) -> None:
        if name in self.shapes and self.shapes[name] != shape:
            raise GenError(f"{self.version}: {name!r} names two different types (at {where})")
        self.shapes[name] = shape

    # -- building ----------------------------------------------------------------------------

    def build(self) -> ModuleIR:
        for file, doc in self.files.items():
            draft4 = "draft-04" in doc.get("$schema", "")
            for name, node in doc.get("definitions", {}).items():
                shape = canonical(node, draft4)
                if name in self.defs and self.defs[name][0] != shape:
                    raise GenError(
                        f"{self.version}: definition {name!r} differs between "
                        f"{self.defs[name][1]}.json and {file}.json"
                    )
                self.defs.setdefault(name, (shape, file))
                self._claim(name, shape, f"{file}#{name}")
        self.name_inline_types()
        for file, doc in self.files.items():
            if file in SEND_ONLY:
                kind, action = "send", file
            elif file.endswith("Request"):
                kind, action = "request", file.removesuffix("Request")
            elif file.endswith("Response"):
                kind, action = "response", file.removesuffix("Response")
            else:
                raise GenError(f"{self.version}: unexpected schema file {file}.json")
            if not is_object(doc):
                raise GenError(f"{self.version}: {file}.json is not an object schema")
            self._claim(file, canonical(doc, False), file)
            self._object(file, file, doc, file, kind=kind, action=action)
            for name, node in doc.get("definitions", {}).items():
                self._named(file, name, node)
        self._registry()
        return self.ir

    def _registry(self) -> None:
        actions: dict[str, dict[str, str]] = {}
        for cls in self.ir.classes.values():
            if cls.action is not None:
                actions.setdefault(cls.action, {})[cls.kind] = cls.name
        for action in sorted(actions):
            kinds = actions[action]
            if action not in self.directions:
                raise GenError(f"{self.version}: no direction for action {action!r}")
            if "send" in kinds:
                self.ir.actions[action] = (kinds["send"], None, self.directions[action])
            elif set(kinds) == {"request", "response"}:
                self.ir.actions[action] = (
                    kinds["request"],
                    kinds["response"],
                    self.directions[action],
                )
            else:
                raise GenError(f"{self.version}: {action} lacks a request or a response")
        unknown = sorted(set(self.directions) - set(actions))
        if unknown:
            raise GenError(f"{self.version}: directions name unknown actions: {unknown}")
        for action, direction in self.directions.items():
            if direction not in DIRECTIONS:
                raise GenError(f"{self.version}: bad direction {direction!r} for {action}")

    def _named(self, file: str, name: str, node: dict[str, Any]) -> TypeIR:
        draft4 = "draft-04" in self.files[file].get("$schema", "")
        if "enum" in node:
            self._enum(name, node)
            return EnumRef(name)
        if is_object(node):
            if name not in self.ir.classes:
                self._object(file, name, node, f"{file}#{name}", kind="datatype", draft4=draft4)
            return ObjRef(name)
        return self._type(file, node, f"{file}#{name}", draft4)

    def _enum(self, name: str, node: dict[str, Any]) -> None:
        values = node["enum"]
        if node.get("type") != "string" or not all(isinstance(v, str) for v in values):
            raise GenError(f"{self.version}: enum {name} is not an enum of strings")
        if len(set(values)) != len(values):
            raise GenError(f"{self.version}: enum {name} repeats a value")
        existing = self.ir.enums.get(name)
        if existing is not None:
            if existing.values != values:  # pragma: no cover - caught by _claim
                raise GenError(f"{self.version}: enum {name} defined twice")
            return
        members = [member_name(v) for v in values]
        seen: dict[str, str] = {}
        for value, member in zip(values, members, strict=True):
            if member in seen:
                raise GenError(
                    f"{self.version}: enum {name}: {seen[member]!r} and {value!r} "
                    f"both become member {member}"
                )
            seen[member] = value
        self.ir.enums[name] = EnumIR(name, list(values), members)

    def _object(
        self,
        file: str,
        name: str,
        node: dict[str, Any],
        path: str,
        *,
        kind: str,
        action: str | None = None,
        draft4: bool | None = None,
    ) -> None:
        self._keywords(node, path)
        if draft4 is None:
            draft4 = "draft-04" in self.files[file].get("$schema", "")
        props = node.get("properties", {})
        required = node.get("required", [])
        missing = [r for r in required if r not in props]
        if missing:
            raise GenError(f"{self.version}: {path} requires undeclared {missing}")
        open_ = node.get("additionalProperties", True) is not False
        if node.get("additionalProperties", False) not in (True, False):
            raise GenError(f"{self.version}: {path}: additionalProperties must be a boolean")
        fields = []
        py_names: dict[str, str] = {}
        for wire, sub in props.items():
            py = snake(wire)
            if py in RESERVED or py.isupper() or py.startswith("_"):
                raise GenError(f"{self.version}: {path}.{wire} gives a reserved name {py!r}")
            if py in py_names:
                raise GenError(
                    f"{self.version}: {path}: {py_names[py]!r} and {wire!r} both become {py!r}"
                )
            py_names[py] = wire
            t = self._type(file, sub, f"{path}.{wire}", draft4)
            fields.append(Field(wire, py, t, wire in required))
        # vendor data last: it is the least interesting field when reading a repr
        fields.sort(key=lambda f: f.wire == "customData")
        self.ir.classes[name] = ClassIR(name, kind, fields, open_, draft4, action)

    def _keywords(self, node: Mapping[str, Any], path: str) -> None:
        unknown = set(node) - KNOWN_KEYWORDS
        if unknown:
            raise GenError(f"{self.version}: {path}: unsupported keywords {sorted(unknown)}")

    def _type(self, file: str, node: dict[str, Any], path: str, draft4: bool) -> TypeIR:
        self._keywords(node, path)
        if "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/definitions/") or len(node) != 1:
                raise GenError(f"{self.version}: {path}: unsupported $ref {node}")
            name = ref.removeprefix("#/definitions/")
            defs = self.files[file].get("definitions", {})
            if name not in defs:
                raise GenError(f"{self.version}: {path}: unresolved $ref {ref}")
            return self._named(file, name, defs[name])
        if "enum" in node:
            name = self.inline_names[path]
            self._enum(name, node)
            return EnumRef(name)
        kind = node.get("type")
        if kind == "object":
            name = self.inline_names[path]
            if name not in self.ir.classes:
                self._object(file, name, node, path, kind="datatype", draft4=draft4)
            return ObjRef(name)
        if kind == "array":
            item = self._type(file, node.get("items", {}), f"{path}[]", draft4)
            if isinstance(item, Array):
                raise GenError(f"{self.version}: {path}: arrays of arrays are not supported")
            return Array(item, node.get("minItems"), node.get("maxItems"))
        if kind is None:
            if set(node) - {"default"}:
                raise GenError(f"{self.version}: {path}: untyped node with constraints {node}")
            return Scalar("any")
        if kind not in ("string", "integer", "number", "boolean"):
            raise GenError(f"{self.version}: {path}: unsupported type {kind!r}")
        fmt = node.get("format")
        if fmt is not None and (kind != "string" or fmt not in ("date-time", "uri")):
            raise GenError(f"{self.version}: {path}: unsupported format {fmt!r}")
        multiple = node.get("multipleOf")
        return Scalar(
            kind,
            fmt,
            node.get("minLength"),
            node.get("maxLength"),
            node.get("minimum"),
            node.get("maximum"),
            None if multiple is None else repr(multiple),
        )


# --------------------------------------------------------------------------------------------
# code generation


def setter(cls: ClassIR, attr: str) -> str:
    """The module-level name bound to the slot setter of ``cls.attr`` (faster than setattr)."""
    return f"_s_{cls.name}_{attr}"


def shares_empty(cls: ClassIR) -> bool:
    """Whether ``from_json({})`` returns one shared instance of ``cls``, built at import.

    For the payloads whose fields are all optional (``HeartbeatRequest``, many responses),
    where an empty payload is common.  Sharing is safe because the classes are frozen; an open
    class is left out, since its ``extra`` dict could be changed in place.
    """
    return cls.kind != "datatype" and not cls.open and not any(f.required for f in cls.fields)


def empty(cls: ClassIR) -> str:
    """The module-level name of the shared empty instance of ``cls`` (see :func:`shares_empty`)."""
    return f"_EMPTY_{cls.name}"


def converts(t: Scalar | EnumRef, draft4: bool) -> bool:
    """Whether decoding changes the JSON value (enum member, datetime, draft-06 integer)."""
    if isinstance(t, EnumRef):
        return True
    return t.fmt == "date-time" or (t.kind == "integer" and not draft4)


def bound(value: float, kind: str) -> str:
    """A bound as Python source; integral float bounds of integer fields are written as ints."""
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return repr(int(value))
    return repr(value)


class Emitter:
    """Writes the source of one module from its :class:`ModuleIR`."""

    def __init__(self, ir: ModuleIR, header: list[str]) -> None:
        self.ir = ir
        self.header = header
        self.lines: list[str] = []

    def w(self, *lines: str) -> None:
        self.lines.extend(lines)

    # -- annotations and expressions -----------------------------------------------------------

    def annotation(self, t: TypeIR) -> str:
        if isinstance(t, Array):
            return f"tuple[{self.annotation(t.item)}, ...]"
        if isinstance(t, EnumRef | ObjRef):
            return t.name
        if t.kind == "string":
            return "_dt.datetime" if t.fmt == "date-time" else "str"
        return {"integer": "int", "number": "float", "boolean": "bool", "any": "Any"}[t.kind]

    def to_wire(self, t: TypeIR, expr: str) -> str:
        if isinstance(t, Array):
            inner = self.to_wire(t.item, "x")
            return f"list({expr})" if inner == "x" else f"[{inner} for x in {expr}]"
        if isinstance(t, EnumRef):
            return f"{expr}._value_"
        if isinstance(t, ObjRef):
            return f"{expr}.to_json()"
        if t.kind == "string" and t.fmt == "date-time":
            return f"_c.format_datetime({expr})"
        return expr

    # -- decode ----------------------------------------------------------------------------------

    def check(self, t: Scalar | EnumRef | ObjRef, var: str, path: str, draft4: bool) -> list[str]:
        """Statements that check the raw JSON value in ``var`` and rebind it to its Python value.

        ``path`` is a Python expression for the value's path (relative to the object).  Each
        check is one condition on the success path; when it fails, a helper works out which
        constraint was broken (in schema-keyword order) and builds the error.
        """
        if isinstance(t, EnumRef):
            return [
                "try:",
                f"    {var} = _E_{t.name}[{var}]",
                "except (KeyError, TypeError):",
                f"    raise _c.not_in_enum({path}, {var}, _E_{t.name}, _V) from None",
            ]
        if isinstance(t, ObjRef):
            return [f"{var} = {t.name}.from_json({var}, {path})"]
        lo = None if t.minimum is None else bound(t.minimum, t.kind)
        hi = None if t.maximum is None else bound(t.maximum, t.kind)
        step = None if t.multiple_of is None else repr(t.multiple_of)
        bounds = [f"{var} < {lo}"] if lo is not None else []
        bounds += [f"{var} > {hi}"] if hi is not None else []
        bounds += [f"not _c.is_multiple({var}, {step})"] if step is not None else []
        if t.kind == "string":
            out = []
            conds = [f"len({var}) > {t.max_length}"] if t.max_length is not None else []
            conds += [f"len({var}) < {t.min_length}"] if t.min_length is not None else []
            conds += [f"not _c.is_uri({var})"] if t.fmt == "uri" else []
            if conds or t.fmt != "date-time":
                out += [
                    f"if not isinstance({var}, str) or {' or '.join(conds)}:"
                    if conds
                    else f"if not isinstance({var}, str):",
                    f"    raise _c.string_error({path}, {var}, {t.min_length}, {t.max_length}, "
                    f"{t.fmt == 'uri'}, _V)",
                ]
            if t.fmt == "date-time":
                out += [f"{var} = _c.to_datetime({path}, {var}, _V)"]
            return out
        if t.kind == "boolean":
            return [
                f"if type({var}) is not bool:",
                f'    raise _c.wrong_type({path}, {var}, "boolean", _V)',
            ]
        if t.kind == "any":
            return []
        error = f"    raise _c.number_error({path}, {var}, {t.kind!r}, {lo}, {hi}, {step}, _V)"
        if t.kind == "integer":
            if draft4:
                return [f"if {' or '.join([f'type({var}) is not int', *bounds])}:", error]
            # draft-06: a float with no fractional part is an integer
            out = [f"if type({var}) is not int:", f"    {var} = _c.integer6({path}, {var}, _V)"]
            return out + ([f"if {' or '.join(bounds)}:", error] if bounds else [])
        # v - v is 0 for every finite number, NaN for NaN and the infinities
        conds = [f"(type({var}) is not float and type({var}) is not int)", f"{var} - {var} != 0"]
        return [f"if {' or '.join(conds + bounds)}:", error]

    def check_field(self, f: Field, draft4: bool) -> list[str]:
        """Statements that check ``v`` (the raw value of ``f``) and rebind it."""
        path = repr(f.wire)
        t = f.type
        if not isinstance(t, Array):
            return self.check(t, "v", path, draft4)
        conds = ["type(v) is not list"]
        conds += [f"len(v) < {t.min_items}"] if t.min_items is not None else []
        conds += [f"len(v) > {t.max_items}"] if t.max_items is not None else []
        out = [
            f"if {' or '.join(conds)}:",
            f"    raise _c.array_error({path}, v, {t.min_items}, {t.max_items}, _V)",
        ]
        item = t.item
        if isinstance(item, ObjRef):
            out += [
                "try:",
                f"    v = tuple([{item.name}.from_json(x) for x in v])",
                "except _Err as e:",
                f"    raise _c.locate(e, {path}, v, {item.name}.from_json) from None",
            ]
            return out
        item_path = "f" + repr(f.wire + "[{i}]")
        body = self.check(item, "x", item_path, draft4)
        if not body:
            return [*out, "v = tuple(v)"]
        if converts(item, draft4):
            acc = f"a_{f.py}"
            out += [f"{acc}: list[Any] = []", "for i, x in enumerate(v):"]
            out += ["    " + line for line in body]
            out += [f"    {acc}.append(x)", f"v = tuple({acc})"]
        else:
            out += ["for i, x in enumerate(v):"]
            out += ["    " + line for line in body]
            out += ["v = tuple(v)"]
        return out

    def from_json(self, cls: ClassIR) -> None:
        top = "True" if cls.kind != "datatype" else "False"
        keys = f"_K_{cls.name}"
        self.w(
            "",
            "    @classmethod",
            '    def from_json(cls, data: object, path: str = "") -> Self:',
            "        try:",
            "            if type(data) is not dict:",
            f"                raise _c.not_object(data, {top}, _V)",
        )
        if shares_empty(cls):
            # the frozen instance built once for "{}"; a subclass still gets its own type
            self.w(
                f"            if not data and cls is {cls.name}:",
                f"                return {empty(cls)}  # type: ignore[return-value]",
            )
        if not cls.open:
            if cls.fields:
                self.w(
                    f"            if not {keys}.issuperset(data):",
                    f"                raise _c.not_allowed(data, {keys}, _V)",
                )
            else:
                self.w("            if data:", "                raise _c.not_allowed(data, (), _V)")
        self.w("            self = _new(cls)")
        body: list[str] = []
        for f in cls.fields:
            wire = repr(f.wire)
            if f.required:
                body += [f"if {wire} not in data:", f"    raise _c.missing({wire}, _V)"]
                body += [f"v = data[{wire}]"]
                body += self.check_field(f, cls.draft4)
                body += [f"{setter(cls, f.py)}(self, v)"]
            else:
                body += [f"if {wire} in data:", f"    v = data[{wire}]"]
                body += ["    " + line for line in self.check_field(f, cls.draft4)]
                body += [
                    f"    {setter(cls, f.py)}(self, v)",
                    "else:",
                    f"    {setter(cls, f.py)}(self, None)",
                ]
        if cls.open:
            extra = f"{{k: x for k, x in data.items() if k not in {keys}}}"
            body += [f"{setter(cls, 'extra')}(self, {extra})"]
        self.w(*("            " + line for line in body))
        self.w(
            "            return self",
            "        except _Err as e:",
            "            if path:",
            "                raise _c.prefixed(e, path) from None",
            "            raise",
        )

    # -- construction checks and encode ------------------------------------------------------------

    def item_checker(self, t: Scalar | EnumRef | ObjRef) -> str | None:
        if isinstance(t, EnumRef):
            return f"lambda x, p: _c.check_enum(x, _E_{t.name}, p, _V)"
        if isinstance(t, ObjRef):
            return None
        args = self.scalar_check_args(t, "x", "p")
        return None if args is None else f"lambda x, p: {args}"

    def scalar_check_args(self, t: Scalar, expr: str, name: str) -> str | None:
        if t.kind == "string":
            if t.fmt == "date-time":
                return f"_c.check_datetime({expr}, {name}, _V)"
            if t.min_length is None and t.max_length is None and t.fmt is None:
                return None
            return (
                f"_c.check_str({expr}, {name}, {t.min_length}, {t.max_length}, "
                f"{t.fmt == 'uri'}, _V)"
            )
        lo = None if t.minimum is None else bound(t.minimum, t.kind)
        hi = None if t.maximum is None else bound(t.maximum, t.kind)
        if t.kind == "number":
            mult = None if t.multiple_of is None else repr(t.multiple_of)
            return f"_c.check_number({expr}, {name}, {lo}, {hi}, {mult}, _V)"
        if t.kind == "integer" and (lo is not None or hi is not None):
            return f"_c.check_integer({expr}, {name}, {lo}, {hi}, _V)"
        return None

    def post_init(self, cls: ClassIR) -> None:
        body: list[str] = []
        for f in cls.fields:
            t = f.type
            attr = f"self.{f.py}"
            name = repr(f.py)
            stmts: list[str]
            if isinstance(t, Array):
                each = self.item_checker(t.item)
                stmts = [
                    f"_set(self, {name}, _c.check_items({attr}, {name}, {t.min_items}, "
                    f"{t.max_items}, _V{'' if each is None else ', ' + each}))"
                ]
            elif isinstance(t, EnumRef):
                stmts = [f"_set(self, {name}, _c.check_enum({attr}, _E_{t.name}, {name}, _V))"]
            elif isinstance(t, ObjRef):
                stmts = []
            else:
                call = self.scalar_check_args(t, attr, name)
                stmts = [] if call is None else [call]
            if not stmts:
                continue
            if f.required:
                body += stmts
            else:
                body += [f"if {attr} is not None:"] + ["    " + s for s in stmts]
        if cls.open:
            body.append(f"_c.check_extra(self.extra, _K_{cls.name}, _V)")
        if body:
            self.w("", "    def __attrs_post_init__(self) -> None:")
            self.w(*("        " + line for line in body))

    def to_json(self, cls: ClassIR) -> None:
        required = [f for f in cls.fields if f.required]
        optional = [f for f in cls.fields if not f.required]
        self.w("", "    def to_json(self) -> dict[str, Any]:")
        if not optional and not cls.open:
            items = ", ".join(
                f"{f.wire!r}: {self.to_wire(f.type, 'self.' + f.py)}" for f in required
            )
            self.w(f"        return {{{items}}}")
            return
        items = ", ".join(f"{f.wire!r}: {self.to_wire(f.type, 'self.' + f.py)}" for f in required)
        self.w(f"        d: dict[str, Any] = {{{items}}}")
        for f in optional:
            self.w(
                f"        if self.{f.py} is not None:",
                f"            d[{f.wire!r}] = {self.to_wire(f.type, 'self.' + f.py)}",
            )
        if cls.open:
            self.w("        if self.extra:", "            d.update(self.extra)")
        self.w("        return d")

    # -- classes ---------------------------------------------------------------------------------

    def enum(self, e: EnumIR) -> None:
        self.w("", "", f"class {e.name}(enum.StrEnum):")
        for member, value in zip(e.members, e.values, strict=True):
            self.w(f"    {member} = {value!r}")
        self.w("", "", f"_E_{e.name}: dict[str, {e.name}] = {{m.value: m for m in {e.name}}}")

    def klass(self, cls: ClassIR) -> None:
        base = {"datatype": "Datatype", "response": "Response", "send": "Send"}.get(cls.kind)
        if cls.kind == "request":
            base = f"Request[{cls.action}Response]"
        if cls.fields:
            keys = ", ".join(repr(f.wire) for f in cls.fields)
            self.w("", "", f"_K_{cls.name} = frozenset({{{keys}}})")
        elif cls.open:
            self.w("", "", f"_K_{cls.name}: frozenset[str] = frozenset()")
        self.w("", "", "@attrs.frozen(kw_only=True)", f"class {cls.name}({base}):")
        self.w("    VERSION: ClassVar[Version] = _V")
        if cls.action is not None:
            self.w(f"    ACTION: ClassVar[str] = {cls.action!r}")
        if cls.kind == "request":
            resp = f"{cls.action}Response"
            # builtins.type: requests may have a field named "type" (annotations are resolved
            # in the class namespace by typing.get_type_hints)
            self.w(f"    RESPONSE: ClassVar[builtins.type[{resp}]] = {resp}")
        if cls.fields or cls.open:
            self.w("")
        for f in cls.fields:
            ann = self.annotation(f.type)
            unhashable = isinstance(f.type, Scalar) and f.type.kind == "any"
            if f.required:
                self.w(f"    {f.py}: {ann}" + (" = attrs.field(hash=False)" if unhashable else ""))
            elif unhashable:
                self.w(f"    {f.py}: {ann} = attrs.field(default=None, hash=False)")
            else:
                self.w(f"    {f.py}: {ann} | None = None")
        if cls.open:
            self.w("    extra: dict[str, Any] = attrs.field(factory=dict, hash=False)")
        self.post_init(cls)
        self.to_json(cls)
        self.from_json(cls)
        attrs_ = [f.py for f in cls.fields] + (["extra"] if cls.open else [])
        if attrs_:
            names = ", ".join(setter(cls, a) for a in attrs_)
            args = ", ".join(repr(a) for a in attrs_)
            self.w("", "", f"({names},) = _c.setters({cls.name}, {args})")
        if shares_empty(cls):
            self.w("", "", f"{empty(cls)} = {cls.name}()")

    def module(self) -> str:
        ir = self.ir
        member = VERSIONS[ir.version][1]
        self.w(*self.header)
        self.w(
            f'"""OCPP {ir.version} messages: enums, datatypes, payloads and the action registry.',
            "",
            "Generated; see docs/messages.md for how to use them.",
            '"""',
            "",
            "from __future__ import annotations",
            "",
            "import builtins",
            "import datetime as _dt",
            "import enum",
            "from collections.abc import Mapping",
            "from types import MappingProxyType",
            "from typing import Any, ClassVar, Self",
            "",
            "import attrs",
            "",
            "from ocpp_trio.errors import MessageValidationError as _Err",
            "from ocpp_trio.messages import _check as _c",
            "from ocpp_trio.messages._base import (",
            "    ActionSpec,",
            "    Datatype,",
            "    Direction,",
            "    Request,",
            "    Response,",
            *(["    Send,"] if any(c.kind == "send" for c in ir.classes.values()) else []),
            ")",
            "from ocpp_trio.protocol.version import Version",
            "",
        )
        public = ["ACTIONS", "VERSION", *sorted([*ir.enums, *ir.classes], key=natural)]
        self.w("__all__ = [", *(f"    {name!r}," for name in public), "]")
        self.w(
            "",
            f"VERSION = _V = Version.{member}",
            "_new = object.__new__",
            "_set = object.__setattr__",
        )
        for name in sorted(ir.enums):
            self.enum(ir.enums[name])
        order = {"datatype": 0, "response": 1, "request": 2, "send": 3}
        for cls in sorted(ir.classes.values(), key=lambda c: (order[c.kind], c.name)):
            self.klass(cls)
        self.w("", "", "ACTIONS: Mapping[str, ActionSpec] = MappingProxyType(", "    {")
        for action, (req, resp, direction) in ir.actions.items():
            self.w(
                f"        {action!r}: ActionSpec(",
                "            version=_V,",
                f"            action={action!r},",
                f"            request={req},",
                f"            response={resp},",
                f"            direction=Direction.{DIRECTIONS[direction]},",
                "        ),",
            )
        self.w("    }", ")")
        return "\n".join(self.lines) + "\n"


# --------------------------------------------------------------------------------------------
# driver


def ruff_format(text: str, filename: str, cwd: Path) -> str:
    """``text`` formatted by ruff with the project's configuration."""
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        raise GenError("ruff is needed to format the generated code (pip install ruff)")
    result = subprocess.run(
        [exe, "format", "--stdin-filename", filename, "-"],
        input=text,
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )
    if result.returncode != 0:
        raise GenError(f"ruff format failed on {filename}:\n{result.stderr}")
    return result.stdout


def generate_module(
    version: str,
    schema_dir: Path,
    directions: Mapping[str, str],
    *,
    names: Mapping[str, str] | None = None,
    expected_actions: int | None = None,
    root: Path = ROOT,
) -> str:
    """The formatted source of the module for ``version`` from the schemas in ``schema_dir``."""
    files = load_folder(schema_dir)
    if names is None:
        names = NAMES_1_6 if version == "1.6" else {}
    ir = Builder(version, files, directions, names).build()
    if expected_actions is not None and len(ir.actions) != expected_actions:
        raise GenError(f"{version}: expected {expected_actions} actions, found {len(ir.actions)}")
    folder, _ = VERSIONS[version]
    header = [
        f"# DO NOT EDIT: generated by scripts/gen_messages.py from schemas/{schema_dir.name}/.",
        "# Regenerate: python scripts/gen_schemas.py && python scripts/gen_messages.py",
        f"# schemas sha256: {folder_checksum(schema_dir)}",
        "# (sha256 over the sorted (file name, content) pairs of the folder's *.json)",
    ]
    text = Emitter(ir, header).module()
    return ruff_format(text, f"ocpp_trio/messages/{folder}.py", root)


def generate_all(root: Path = ROOT) -> dict[Path, str]:
    """Every generated module of the project at ``root``: ``{path: text}``."""
    schemas = root / "schemas"
    directions = json.loads((schemas / "directions.json").read_text(encoding="utf-8"))
    outputs = {}
    for version, (folder, _) in VERSIONS.items():
        outputs[root / "ocpp_trio" / "messages" / f"{folder}.py"] = generate_module(
            version,
            schemas / folder,
            directions["versions"].get(version, {}),
            expected_actions=EXPECTED_ACTIONS[version],
            root=root,
        )
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed modules differ")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    try:
        outputs = generate_all(root)
    except GenError as e:
        print(f"gen_messages.py: {e}", file=sys.stderr)
        return 2
    stale = [p for p, text in outputs.items() if not p.exists() or p.read_text("utf-8") != text]
    if args.check:
        for p in stale:
            print(f"stale: {p.relative_to(root)} (run python scripts/gen_messages.py)")
        return 1 if stale else 0
    for p in stale:
        p.write_text(outputs[p], encoding="utf-8", newline="\n")
    print(f"wrote {len(stale)} module(s), {len(outputs) - len(stale)} already up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
