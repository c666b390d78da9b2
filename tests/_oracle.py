"""Shared helpers for the message-layer property tests.

Everything here is independent of the generated message code: schemas are read from disk,
validity is decided by ``jsonschema`` (the *oracle*), valid payloads are built by walking the
schema, and mutations are derived from the schema keywords.  The tests then check that the codec
agrees with the oracle.

* **Our schemas** (``schemas/``) are what the codec must enforce.
* **Official schemas** are the upstream files shipped in the ``ocpp`` distribution; they differ
  from ours only by ``schemas/overrides.json``.
"""

from __future__ import annotations

import copy
import decimal
import functools
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import ocpp
from jsonschema import Draft4Validator, Draft6Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from rfc3339_validator import validate_rfc3339

from ocpp_trio import ErrorCode, Version

ROOT = Path(__file__).resolve().parent.parent
OUR_SCHEMAS = ROOT / "schemas"
UPSTREAM_SCHEMAS = Path(ocpp.__file__).resolve().parent

FOLDER = {Version.V16: "v1_6", Version.V201: "v2_0_1", Version.V21: "v2_1"}
UPSTREAM_FOLDER = {Version.V16: "v16", Version.V201: "v201", Version.V21: "v21"}
SEND_ONLY = frozenset({"NotifyPeriodicEventStream"})

#: override keywords that only narrow the official schema (bounds); see ``generation_schema``
NARROWING_KEYWORDS = frozenset({"minimum", "maximum"})


# --------------------------------------------------------------------------------------------
# which schemas exist


@dataclass(frozen=True, order=True)
class SchemaId:
    """One (version, action, direction) payload schema."""

    version: Version
    action: str
    kind: str  # "request", "response" or "send"

    @property
    def name(self) -> str:
        """Our file stem: ``<Action>Request`` / ``<Action>Response`` / the SEND name."""
        if self.kind == "send":
            return self.action
        return self.action + self.kind.capitalize()

    @property
    def upstream_name(self) -> str:
        """The upstream file stem (1.6 requests are ``<Action>.json`` upstream)."""
        if self.version is Version.V16 and self.kind == "request":
            return self.action
        return self.name

    def __str__(self) -> str:
        return f"{self.version.value}:{self.name}"


def all_schema_ids() -> list[SchemaId]:
    """Every payload schema of every version, from our ``schemas/`` folder."""
    out = []
    for version, folder in FOLDER.items():
        for path in sorted((OUR_SCHEMAS / folder).glob("*.json")):
            stem = path.stem
            if stem in SEND_ONLY:
                out.append(SchemaId(version, stem, "send"))
            elif stem.endswith("Request"):
                out.append(SchemaId(version, stem.removesuffix("Request"), "request"))
            elif stem.endswith("Response"):
                out.append(SchemaId(version, stem.removesuffix("Response"), "response"))
            else:  # pragma: no cover - would be a gen_schemas.py bug
                raise AssertionError(f"unexpected schema file {path.name}")
    return out


# --------------------------------------------------------------------------------------------
# loading


def _load(path: Path, *, decimal: bool) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8-sig")
    doc: dict[str, Any] = json.loads(text, parse_float=Decimal if decimal else float)
    # ids are URNs; dropping them keeps "#/definitions/..." refs local and resolvable
    doc.pop("$id", None)
    doc.pop("id", None)
    return doc


@functools.cache
def _our_schema(sid: SchemaId, decimal: bool) -> dict[str, Any]:
    return _load(OUR_SCHEMAS / FOLDER[sid.version] / f"{sid.name}.json", decimal=decimal)


@functools.cache
def _official_schema(sid: SchemaId, decimal: bool) -> dict[str, Any]:
    path = UPSTREAM_SCHEMAS / UPSTREAM_FOLDER[sid.version] / "schemas" / f"{sid.upstream_name}.json"
    return _load(path, decimal=decimal)


def our_schema(sid: SchemaId) -> dict[str, Any]:
    """Our schema (floats parsed as float); a deep copy, free to modify."""
    return copy.deepcopy(_our_schema(sid, False))


def official_schema(sid: SchemaId) -> dict[str, Any]:
    """The upstream schema (floats parsed as float); a deep copy, free to modify."""
    return copy.deepcopy(_official_schema(sid, False))


@functools.cache
def _override_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = json.loads(
        (OUR_SCHEMAS / "overrides.json").read_text(encoding="utf-8")
    )["rules"]
    return rules


def _pointer(node: Any, pointer: str) -> Any:
    for part in pointer.strip("/").split("/"):
        if part:
            node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def generation_schema(sid: SchemaId) -> dict[str, Any]:
    """The schema hypothesis-jsonschema generates round-trip payloads from.

    It is the official schema **intersected with** our overrides: of the rules in
    ``schemas/overrides.json``, those that only narrow (extra ``minimum``/``maximum`` bounds) are
    applied, so everything generated is valid against both the official schema and ours.  The
    widening rules (a longer ``maxLength``, extra enum values) are left out, so the official
    schema still accepts every generated payload.  The round-trip test checks both schemas
    explicitly anyway.

    For speed only (2 CI cores, ~390 schemas), arrays are generated with at most 2 items (or
    their ``minItems``) and ``customData`` with at most 2 vendor keys; these are further
    narrowings, never widenings.
    """
    doc = official_schema(sid)
    for rule in _override_rules():
        if rule["version"] != sid.version.value or "set" not in rule:
            continue
        if not set(rule["set"]) <= NARROWING_KEYWORDS:
            continue
        if "file" in rule and rule["file"] != sid.name:
            continue
        base: Any = doc
        if "definition" in rule:
            base = doc.get("definitions", {}).get(rule["definition"])
            if base is None:
                continue
        try:
            target = _pointer(base, rule.get("path", ""))
        except (KeyError, IndexError):
            continue
        target.update(rule["set"])

    def cap(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "array":
                node["maxItems"] = max(min(node.get("maxItems", 2), 2), node.get("minItems", 0))
            for value in node.values():
                cap(value)
        elif isinstance(node, list):
            for value in node:
                cap(value)

    cap(doc)
    custom = doc.get("definitions", {}).get("CustomDataType")
    if custom is not None:
        custom["maxProperties"] = 3
    return doc


# --------------------------------------------------------------------------------------------
# the oracle


def _is_integer_draft6(checker: Any, instance: Any) -> bool:
    # draft-06 counts 1.0 as an integer; the oracle parses floats as Decimal, so extend that
    # rule to integral Decimals.
    if isinstance(instance, bool):
        return False
    if isinstance(instance, int):
        return True
    if isinstance(instance, Decimal):
        return instance.is_finite() and instance == instance.to_integral_value()
    if isinstance(instance, float):
        return instance.is_integer()
    return False


_Draft6Decimal = jsonschema.validators.extend(
    Draft6Validator,
    type_checker=Draft6Validator.TYPE_CHECKER.redefine("integer", _is_integer_draft6),
)

#: the formats our schemas use: date-time (checked with rfc3339-validator, as jsonschema does)
#: and, in 1.6, uri (jsonschema's own checker: rfc3986-validator here)
FORMAT_CHECKER = FormatChecker(formats=())


@FORMAT_CHECKER.checks("date-time")
def _check_date_time(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    return bool(validate_rfc3339(instance.upper()))


FORMAT_CHECKER.checkers["uri"] = FormatChecker().checkers["uri"]


def _validator_class(schema: Mapping[str, Any]) -> type[Any]:
    if "draft-04" in schema.get("$schema", ""):
        return Draft4Validator
    return _Draft6Decimal


@functools.cache
def our_validator(sid: SchemaId) -> Any:
    """jsonschema on our copy, decimal-aware, date-time checked with rfc3339-validator."""
    schema = _our_schema(sid, True)
    return _validator_class(schema)(schema, format_checker=FORMAT_CHECKER)


@functools.cache
def official_validator(sid: SchemaId) -> Any:
    """jsonschema on the upstream file, decimal-aware, with every installed format checker."""
    schema = _official_schema(sid, True)
    cls = _validator_class(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def as_wire(payload: Any) -> Any:
    """``payload`` as a decimal-aware JSON parser sees it on the wire."""
    return json.loads(json.dumps(payload), parse_float=Decimal)


def oracle_errors(validator: Any, payload: Any) -> list[ValidationError]:
    """The oracle's errors for ``payload`` (empty when valid)."""
    with decimal.localcontext() as ctx:
        # exact multipleOf for any JSON number: the quotient of 1e308 / 0.1 has 309 digits
        ctx.prec = 1000
        return list(validator.iter_errors(as_wire(payload)))


def code_for(error: ValidationError) -> ErrorCode:
    """The OCPP error code the project's contract assigns to one jsonschema error."""
    keyword = error.validator
    if keyword == "type":
        return (
            ErrorCode.FORMAT_VIOLATION
            if not error.absolute_path
            else (ErrorCode.TYPE_CONSTRAINT_VIOLATION)
        )
    if keyword in ("required", "minItems", "maxItems"):
        return ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION
    if keyword == "additionalProperties":
        return ErrorCode.FORMAT_VIOLATION
    if keyword in ("enum", "maxLength", "minLength", "minimum", "maximum", "multipleOf", "format"):
        return ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    raise AssertionError(f"no code for jsonschema keyword {keyword!r}")  # pragma: no cover


def expected_code(errors: list[ValidationError]) -> ErrorCode:
    """The code for a payload with one fault (a type error wins over what it also breaks)."""
    assert errors
    typed = [e for e in errors if e.validator == "type"]
    return code_for(typed[0] if typed else errors[0])


def fmt_path(path: tuple[str | int, ...] | list[str | int]) -> str:
    """``("meterValue", 0, "value")`` -> ``"meterValue[0].value"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


# --------------------------------------------------------------------------------------------
# the codec, imported late so that this module loads before the generated code exists


def decode(sid: SchemaId, payload: Any) -> Any:
    from ocpp_trio.messages import decode_request, decode_response

    if sid.kind == "response":
        return decode_response(sid.version, sid.action, payload)
    return decode_request(sid.version, sid.action, payload)


def encode(message: Any) -> dict[str, Any]:
    from ocpp_trio.messages import encode as _encode

    return _encode(message)


# --------------------------------------------------------------------------------------------
# walking schemas


def resolve(root: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow local ``$ref``s."""
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = _pointer(root, ref[1:])
    return node


def normalise(root: Mapping[str, Any], node: Mapping[str, Any], value: Any) -> Any:
    """A comparable form of ``value``: date-times become instants, numbers exact values.

    Booleans stay distinct from numbers (``True == 1`` in Python).
    """
    node = resolve(root, node)
    if isinstance(value, dict):
        props = node.get("properties", {})
        return {
            k: normalise(root, props[k], v) if k in props else normalise(root, {}, v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        items = node.get("items", {})
        return tuple(normalise(root, items, v) for v in value)
    if isinstance(value, bool) or value is None:
        return ("const", value)
    if isinstance(value, int | float | Decimal):
        return ("number", Decimal(repr(value)) if isinstance(value, float) else Decimal(value))
    if isinstance(value, str) and node.get("format") == "date-time":
        return ("instant", parse_rfc3339(value))
    return value


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 date-time (upper-cased: ``t``/``z`` are allowed) into an aware datetime.

    Aware datetimes compare by instant, with no overflow for offsets near year 1 or 9999.
    """
    result = datetime.fromisoformat(text.upper())
    assert result.tzinfo is not None, text
    return result


# --------------------------------------------------------------------------------------------
# building valid payloads


GOOD_DATE_TIME = "2024-01-02T03:04:05Z"
GOOD_DATE_TIME_FULL = "2024-02-29T23:59:59.123+02:00"


def _int_bounds(node: Mapping[str, Any]) -> tuple[int | None, int | None]:
    lo = node.get("minimum")
    hi = node.get("maximum")
    return (
        None if lo is None else math.ceil(lo),
        None if hi is None else math.floor(hi),
    )


def build(root: Mapping[str, Any], node: Mapping[str, Any], *, full: bool) -> Any:
    """A valid value for ``node``.

    ``full=False``: required properties only, arrays at ``minItems``, values at the low end.
    ``full=True``: every property, up to 3 items per array, strings at ``maxLength``, values
    at the high end, vendor keys in ``customData``, so that every field can be mutated.
    """
    node = resolve(root, node)
    kind = node.get("type")
    if "enum" in node:
        return node["enum"][-1 if full else 0]
    if kind == "object":
        props = node.get("properties", {})
        keys = list(props) if full else list(node.get("required", []))
        out = {k: build(root, props[k], full=full) for k in keys}
        if full and node.get("additionalProperties", True) is not False and "vendorId" in props:
            out["vendorExtra"] = {"nested": [1, 2.5, True, None, "x"]}
        return out
    if kind == "array":
        lo = node.get("minItems", 0)
        hi = node.get("maxItems", 3)
        n = max(lo, min(3, hi)) if full else lo
        return [build(root, node.get("items", {}), full=full) for _ in range(n)]
    if kind == "string":
        fmt = node.get("format")
        if fmt == "date-time":
            return GOOD_DATE_TIME_FULL if full else GOOD_DATE_TIME
        if fmt == "uri":
            return "https://example.com/firmware.bin"
        lo = node.get("minLength", 0)
        hi = node.get("maxLength")
        n = (hi if hi is not None else 12) if full else max(lo, 1)
        if hi is not None:
            n = min(n, hi)
        return "x" * n
    if kind == "integer":
        lo, hi = _int_bounds(node)
        if full:
            return hi if hi is not None else (lo + 7 if lo is not None else 7)
        return lo if lo is not None else (min(0, hi) if hi is not None else 0)
    if kind == "number":
        lo, hi = node.get("minimum"), node.get("maximum")
        if full:
            return float(hi) if hi is not None else 21.4
        return float(lo) if lo is not None else 0.5
    if kind == "boolean":
        return full
    if kind is None:
        # untyped (2.x DataTransfer.data): anything goes
        return {"any": [1, "two", 3.5, None, {"deep": True}]} if full else "x"
    raise AssertionError(f"cannot build {node!r}")  # pragma: no cover


# --------------------------------------------------------------------------------------------
# mutations

_DROP = object()

BAD_DATE_TIMES = (
    "2024-13-01T00:00:00Z",
    "yesterday",
    "2024-01-01",
    "2024-01-01T00:00:00",
    "2024-02-30T00:00:00Z",
    "2024-01-01T24:00:00Z",
    "2024-01-01 00:00:00Z",
    "2024-01-01T00:00Z",
    "2024-01-01T00:00:00+0100",
    "20240101T000000Z",
    "2024-01-01T00:00:00,5Z",
    "2024-01-01T00:00:00.Z",
    "",
)
#: valid RFC 3339 that a naive parser may get wrong
EDGE_DATE_TIMES = (
    "2024-01-01t00:00:00z",
    "2024-01-01T00:00:00.1234567Z",
    "2024-01-01T00:00:00-00:00",
    "2024-01-01T00:00:00+23:59",
    "2024-02-29T12:00:00Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
)

BAD_URIS = ("not a uri", "firmware.bin", "/relative/path", "http://exa mple.com/", "")
EDGE_URIS = ("ftp://ftp.example.com/fw.bin", "urn:isbn:0451450523", "https://[::1]:8080/a?b#c")


@dataclass(frozen=True)
class Mutation:
    """One change to a valid payload."""

    kind: str
    #: where the change is (the dropped or added key included); the error must name it
    path: tuple[str | int, ...]
    new: Any = field(default=None, compare=False)  # the new value, or _DROP

    def apply(self, payload: Any) -> Any:
        out = copy.deepcopy(payload)
        if not self.path:
            return copy.deepcopy(self.new)
        parent = out
        for part in self.path[:-1]:
            parent = parent[part]
        if self.new is _DROP:
            del parent[self.path[-1]]
        else:
            parent[self.path[-1]] = copy.deepcopy(self.new)
        return out

    def __str__(self) -> str:
        shown = "<drop>" if self.new is _DROP else repr(self.new)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f"{self.kind} at {fmt_path(self.path) or '<payload>'} -> {shown}"


def mutations(
    root: Mapping[str, Any],
    payload: Any,
    version: Version,
    *,
    node: Mapping[str, Any] | None = None,
    path: tuple[str | int, ...] = (),
) -> Iterator[Mutation]:
    """Every single-fault mutation of ``payload`` the schema suggests (valid ones included)."""
    node = resolve(root, root if node is None else node)
    kind = node.get("type")
    here = path

    def wrong(kind_name: str, *values: Any) -> Iterator[Mutation]:
        for v in values:
            yield Mutation(kind_name, here, v)

    if kind == "object":
        if not isinstance(payload, dict):  # pragma: no cover
            return
        yield from wrong("not-an-object", "x", [], 5, None, True)
        props = node.get("properties", {})
        for key in node.get("required", []):
            if key in payload:
                yield Mutation("drop-required", (*here, key), _DROP)
        for key in props:
            if key in payload and key not in node.get("required", []):
                yield Mutation("drop-optional", (*here, key), _DROP)
        yield Mutation("extra-key", (*here, "unexpectedKey"), "surprise")
        for key, value in payload.items():
            if key in props:
                yield from mutations(root, value, version, node=props[key], path=(*here, key))
        return
    if kind == "array":
        yield from wrong("not-an-array", "x", {}, 5)
        items = node.get("items", {})
        if "maxItems" in node and payload:
            over = [payload[0]] * (node["maxItems"] + 1)
            yield Mutation("too-many-items", here, over)
        if node.get("minItems", 0) > 0:
            yield Mutation("too-few-items", here, payload[: node["minItems"] - 1])
        if "minItems" not in node:
            yield Mutation("empty-array", here, [])
        for i, value in enumerate(payload):
            yield from mutations(root, value, version, node=items, path=(*here, i))
        return
    if kind == "string":
        yield from wrong("string-wrong-type", 5, 1.5, True, None, ["x"], {"x": 1})
        if "enum" in node:
            yield Mutation("bad-enum", here, "NotAnEnumValue")
            yield Mutation("enum-wrong-case", here, node["enum"][0].lower())
        if "maxLength" in node:
            yield Mutation("too-long", here, "y" * (node["maxLength"] + 1))
            yield Mutation("max-length", here, "y" * node["maxLength"])
            yield Mutation("non-ascii-at-max", here, "é" * node["maxLength"])
        if node.get("format") == "uri":
            for bad in BAD_URIS:
                yield Mutation("bad-uri", here, bad)
            for edge in EDGE_URIS:
                yield Mutation("edge-uri", here, edge)
        if node.get("format") == "date-time":
            for bad in BAD_DATE_TIMES:
                yield Mutation("bad-date-time", here, bad)
            for edge in EDGE_DATE_TIMES:
                yield Mutation("edge-date-time", here, edge)
        return
    if kind in ("integer", "number"):
        yield from wrong("number-wrong-type", "abc", "5", True, False, None, [1])
        lo, hi = node.get("minimum"), node.get("maximum")
        if lo is not None:
            yield Mutation(
                "below-minimum", here, math.ceil(lo) - 1 if kind == "integer" else lo - 0.5
            )
            yield Mutation("at-minimum", here, int(lo) if kind == "integer" else float(lo))
        if hi is not None:
            yield Mutation(
                "above-maximum", here, math.floor(hi) + 1 if kind == "integer" else hi + 0.5
            )
            yield Mutation("at-maximum", here, int(hi) if kind == "integer" else float(hi))
        if kind == "integer":
            base = payload if isinstance(payload, int) else 0
            # draft-04 (1.6) rejects 1.0 for an integer, draft-06 (2.x) accepts it
            yield Mutation("integral-float-for-integer", here, float(base))
            yield Mutation("float-for-integer", here, base + 0.5)
            yield Mutation("big-integer", here, 2**70)
        else:
            yield Mutation("int-for-number", here, 3)
            if "multipleOf" in node:
                yield Mutation("multiple-of-ok", here, 21.4)
                yield Mutation("multiple-of-ok", here, 0.3)
                yield Mutation("multiple-of-bad", here, 21.45)
                yield Mutation("multiple-of-bad", here, 0.30000000000000004)
            else:
                yield Mutation("tiny-float", here, 1e-300)
        return
    if kind == "boolean":
        yield from wrong("bool-wrong-type", "true", 1, 0, None)
        return
    if kind is None:
        # null is left out: the codec drops "data": null (pinned by test_data_transfer_null_data)
        yield from wrong("untyped-any", 5, "x", [1, {"a": None}], {"b": [True]}, "", 0.5)


#: what kind of fault each mutation kind is, independent of the oracle (None: still valid)
MUTATION_CODE: dict[str, ErrorCode | None] = {
    "not-an-object": ErrorCode.TYPE_CONSTRAINT_VIOLATION,  # FORMAT at the top level
    "drop-required": ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
    "drop-optional": None,
    "extra-key": ErrorCode.FORMAT_VIOLATION,  # None where additionalProperties is open
    "not-an-array": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "too-many-items": ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
    "too-few-items": ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
    "empty-array": None,
    "string-wrong-type": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "bad-enum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "enum-wrong-case": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,  # None when the enum has it
    "too-long": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "max-length": None,
    "non-ascii-at-max": None,  # maxLength counts characters, not bytes
    "bad-date-time": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "edge-date-time": None,
    "bad-uri": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "edge-uri": None,
    "number-wrong-type": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "below-minimum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "at-minimum": None,
    "above-maximum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "at-maximum": None,
    "integral-float-for-integer": ErrorCode.TYPE_CONSTRAINT_VIOLATION,  # 1.6 only
    "float-for-integer": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "big-integer": None,  # out of range where a maximum exists
    "int-for-number": None,
    "multiple-of-ok": None,
    "multiple-of-bad": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "tiny-float": None,
    "bool-wrong-type": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "untyped-any": None,
}


def walk_values(
    root: Mapping[str, Any],
    node: Mapping[str, Any],
    value: Any,
    fn: Callable[[Mapping[str, Any], Any], Any],
) -> Any:
    """Rebuild ``value`` bottom-up, replacing each leaf by ``fn(schema_node, leaf)``."""
    node = resolve(root, node)
    if isinstance(value, dict):
        props = node.get("properties", {})
        return {k: walk_values(root, props.get(k, {}), v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [walk_values(root, node.get("items", {}), v, fn) for v in value]
    return fn(node, value)


def decimal_multiples(root: Mapping[str, Any], payload: Any) -> Any:
    """Round numbers under ``multipleOf: 0.1`` to one decimal place.

    hypothesis-jsonschema generates ``k * 0.1`` and keeps what the *float* check accepts, so
    it may produce ``0.30000000000000004`` (not a multiple of 0.1 on the wire) and never
    ``0.3`` (which the float check wrongly rejects).  Rounding yields the decimal values a
    station sends.
    """

    def fix(node: Mapping[str, Any], leaf: Any) -> Any:
        step = node.get("multipleOf")
        if step is None or isinstance(leaf, bool) or not isinstance(leaf, int | float):
            return leaf
        places = -Decimal(repr(step)).as_tuple().exponent
        assert isinstance(places, int)
        return round(float(leaf), places)

    return walk_values(root, root, payload, fix)


def weight(sid: SchemaId) -> int:
    """A rough size of a schema: object schemas reachable, counted twice under each array."""
    root = _our_schema(sid, False)

    def count(node: Mapping[str, Any]) -> int:
        node = resolve(root, node)
        kind = node.get("type")
        if kind == "array":
            return 2 * count(node.get("items", {}))
        if kind == "object":
            return 1 + sum(count(v) for v in node.get("properties", {}).values())
        return 0

    return count(root)


# --------------------------------------------------------------------------------------------
# hypothesis-jsonschema 0.23.1 against current hypothesis


def _install_many_more_shim() -> None:
    """Give ``hypothesis.internal.conjecture.utils.many`` back its ``more()`` method.

    hypothesis-jsonschema 0.23.1 (the latest release) drives object generation with
    ``while elements.more():``; newer hypothesis replaced that method with an iterator protocol,
    so every object schema fails with ``AttributeError: 'many' object has no attribute 'more'``.
    This implements ``more()`` on top of the new internals (one element per call, the same
    spans and choices as the iterator).  It does nothing on a hypothesis that still has it.
    """
    from hypothesis.internal.conjecture import utils as cu

    if hasattr(cu.many, "more"):
        return

    def more(self: Any) -> bool:
        if self._depth is None:  # what __enter__ does
            self._depth = self.data.depth
        self._finish_element()
        if not self._decide():
            self._closed = True
            return False
        self.count += 1
        self._in_element = True
        self._rejected = False
        return True

    cu.many.more = more


_install_many_more_shim()
