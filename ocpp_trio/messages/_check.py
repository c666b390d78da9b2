"""Runtime helpers that the generated message modules call.

The generated ``from_json`` methods do the common checks inline (JSON types, required and
unexpected keys, lengths, bounds) and call into this module only for the less common ones
(date-time, URI, ``multipleOf``) and to build errors, which happens off the fast path.  The
generated ``__attrs_post_init__`` methods use the ``check_*`` functions, which raise with the
Python attribute name as the path.

Nothing here imports trio; the module is part of the sans-IO codec.
"""

from __future__ import annotations

import decimal
import importlib
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any, TypeVar

from ocpp_trio.errors import ErrorCode, MessageValidationError
from ocpp_trio.protocol.version import Version

__all__ = [
    "array_error",
    "bad_datetime",
    "bad_uri",
    "check_datetime",
    "check_enum",
    "check_extra",
    "check_integer",
    "check_items",
    "check_number",
    "check_str",
    "format_datetime",
    "integer6",
    "is_multiple",
    "is_uri",
    "locate",
    "missing",
    "not_allowed",
    "not_finite",
    "not_in_enum",
    "not_multiple",
    "not_object",
    "number_error",
    "parse_datetime",
    "prefixed",
    "setters",
    "string_error",
    "to_datetime",
    "too_big",
    "too_few",
    "too_long",
    "too_many",
    "too_short",
    "too_small",
    "wrong_type",
]

_Err = MessageValidationError
_TYPE = ErrorCode.TYPE_CONSTRAINT_VIOLATION
_PROPERTY = ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
_OCCURRENCE = ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION
_FORMAT = ErrorCode.FORMAT_VIOLATION

T = TypeVar("T")

# --------------------------------------------------------------------------------------------
# paths


def join(prefix: str, sub: str) -> str:
    """``join("meterValue[0]", "timestamp")`` -> ``"meterValue[0].timestamp"``."""
    if not prefix:
        return sub
    if not sub:
        return prefix
    if sub[0] == "[":
        return prefix + sub
    return prefix + "." + sub


def prefixed(error: MessageValidationError, prefix: str) -> MessageValidationError:
    """The same error, located under ``prefix`` (errors are raised relative to their object)."""
    return _Err(error.code, join(prefix, error.path), error.value, error.problem, error.version)


def locate(
    error: MessageValidationError,
    path: str,
    items: Iterable[Any],
    decode: Callable[[Any], object],
) -> MessageValidationError:
    """Locate ``error``, raised while decoding one of ``items``, at its index.

    Array items are decoded without building a path for each of them; when one fails, the
    items are decoded again one by one (decoding is pure, so the first to fail is the same one)
    to find the index.  This keeps the success path free of string formatting.
    """
    for i, item in enumerate(items):
        try:
            decode(item)
        except MessageValidationError as e:
            return prefixed(e, f"{path}[{i}]")
    return prefixed(error, path)  # pragma: no cover - decoding is deterministic


def setters(cls: type, *names: str) -> tuple[Callable[[object, object], None], ...]:
    """The slot setters of attributes of a slotted (attrs) class.

    Decoding builds objects with ``object.__new__`` and sets each slot through its descriptor:
    the values were checked already, so the construction checks are not run a second time, and
    this is the fastest way CPython offers to fill a frozen slotted instance.
    """
    out = []
    for name in names:
        descriptor = cls.__dict__[name]
        out.append(descriptor.__set__)
    return tuple(out)


# --------------------------------------------------------------------------------------------
# decode errors (raised by the generated from_json; paths are wire names)

_ARTICLE = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
}


def not_object(value: object, top: bool, version: Version) -> MessageValidationError:
    """``value`` should be a JSON object: a payload (FormatViolation) or a nested one."""
    return _Err(_FORMAT if top else _TYPE, "", value, "is not an object", version)


def missing(key: str, version: Version) -> MessageValidationError:
    """A required property is absent; the path is the missing key."""
    return _Err(_OCCURRENCE, key, key, "is a required property", version)


def not_allowed(data: Mapping[str, Any], allowed: Collection[str], version: Version) -> _Err:
    """``data`` has a key its schema does not declare (``additionalProperties: false``)."""
    key = next(k for k in data if k not in allowed)
    return _Err(_FORMAT, key, key, "is not an allowed property", version)


def wrong_type(path: str, value: object, expected: str, version: Version) -> MessageValidationError:
    """The JSON type of ``value`` is not ``expected`` (a JSON schema type name)."""
    return _Err(_TYPE, path, value, f"is not {_ARTICLE[expected]}", version)


def not_finite(path: str, value: object, version: Version) -> MessageValidationError:
    """NaN or an infinity: JSON has no such numbers."""
    return _Err(_PROPERTY, path, value, "is not a finite number", version)


def not_in_enum(
    path: str, value: object, members: Mapping[str, Any], version: Version
) -> MessageValidationError:
    """``value`` is not one of the enum's wire values (or not even a string)."""
    if not isinstance(value, str):
        return wrong_type(path, value, "string", version)
    return _Err(_PROPERTY, path, value, f"is not one of {list(members)!r}", version)


def too_long(path: str, value: object, limit: int, version: Version) -> MessageValidationError:
    return _Err(_PROPERTY, path, value, f"is longer than {limit} characters", version)


def too_short(path: str, value: object, limit: int, version: Version) -> MessageValidationError:
    return _Err(_PROPERTY, path, value, f"is shorter than {limit} characters", version)


def too_small(path: str, value: object, limit: float, version: Version) -> MessageValidationError:
    return _Err(_PROPERTY, path, value, f"is less than the minimum of {limit!r}", version)


def too_big(path: str, value: object, limit: float, version: Version) -> MessageValidationError:
    return _Err(_PROPERTY, path, value, f"is greater than the maximum of {limit!r}", version)


def not_multiple(path: str, value: object, step: str, version: Version) -> MessageValidationError:
    return _Err(_PROPERTY, path, value, f"is not a multiple of {step}", version)


def too_few(path: str, value: object, limit: int, version: Version) -> MessageValidationError:
    return _Err(_OCCURRENCE, path, value, f"has fewer than {limit} items", version)


def too_many(path: str, value: object, limit: int, version: Version) -> MessageValidationError:
    return _Err(_OCCURRENCE, path, value, f"has more than {limit} items", version)


def bad_datetime(path: str, value: object, version: Version) -> MessageValidationError:
    """``value`` is not an RFC 3339 date-time (or not a string at all)."""
    if not isinstance(value, str):
        return wrong_type(path, value, "string", version)
    return _Err(_PROPERTY, path, value, "is not an RFC 3339 date-time", version)


def bad_uri(path: str, value: object, version: Version) -> MessageValidationError:
    return _Err(_PROPERTY, path, value, "is not a URI", version)


def string_error(
    path: str,
    value: object,
    min_length: int | None,
    max_length: int | None,
    uri: bool,
    version: Version,
) -> MessageValidationError:
    """The error for a string value that failed its checks (the first constraint it breaks)."""
    return _first_error(lambda: check_str(value, path, min_length, max_length, uri, version))


def number_error(
    path: str,
    value: object,
    kind: str,
    minimum: float | None,
    maximum: float | None,
    multiple_of: str | None,
    version: Version,
) -> MessageValidationError:
    """The error for an integer or number value that failed its checks."""
    if kind == "integer":
        return _first_error(lambda: check_integer(value, path, minimum, maximum, version))
    return _first_error(lambda: check_number(value, path, minimum, maximum, multiple_of, version))


def array_error(
    path: str, value: object, min_items: int | None, max_items: int | None, version: Version
) -> MessageValidationError:
    """The error for an array value that failed its checks (not a list, or its length)."""
    if type(value) is not list:
        return wrong_type(path, value, "array", version)
    return _first_error(lambda: check_items(value, path, min_items, max_items, version))


def _first_error(check: Callable[[], object]) -> MessageValidationError:
    try:
        check()
    except MessageValidationError as e:
        return e
    raise AssertionError("a failed check passed on a second look")  # pragma: no cover


def integer6(path: str, value: object, version: Version) -> int:
    """A draft-06 integer that is not an ``int``: a float without a fractional part is one."""
    if type(value) is float and value.is_integer():
        return int(value)
    raise wrong_type(path, value, "integer", version)


def to_datetime(path: str, value: object, version: Version) -> datetime:
    """The aware ``datetime`` of an RFC 3339 string, or the error."""
    result = parse_datetime(value)
    if result is None:
        raise bad_datetime(path, value, version)
    return result


# --------------------------------------------------------------------------------------------
# date-time

#: RFC 3339 ``date-time`` (section 5.6), ``T``/``Z`` in either case, seconds up to 60 (a leap
#: second); ranges of the fields are checked here, the day of the month by ``datetime``.
_RFC3339 = re.compile(
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])[Tt](?:[01]\d|2[0-3]):[0-5]\d:"
    r"(?:[0-5]\d|60)(?:\.\d+)?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)",
    re.ASCII,
)
_fromisoformat = datetime.fromisoformat
_match_rfc3339 = _RFC3339.fullmatch


def parse_datetime(value: object) -> datetime | None:
    """Parse an RFC 3339 date-time into an aware ``datetime``; ``None`` if it is not one.

    More than six fraction digits are truncated to microseconds.  A leap second (``:60``),
    which ``datetime`` cannot represent, becomes ``:59.999999`` of the same minute.
    """
    if not isinstance(value, str) or _match_rfc3339(value) is None:
        return None
    try:
        return _fromisoformat(value)
    except ValueError:
        pass
    text = value.upper()  # lowercase t/z are valid RFC 3339 but not ISO 8601 for Python
    if text[17:19] == "60":
        end = 19
        if end < len(text) and text[end] == ".":
            end += 1
            while text[end].isdigit():
                end += 1
        text = text[:17] + "59.999999" + text[end:]
    try:
        return _fromisoformat(text)
    except ValueError:  # e.g. February 30th, year 0
        return None


def format_datetime(value: datetime) -> str:
    """RFC 3339 text: ``Z`` for UTC, milliseconds when they are exact, else microseconds."""
    us = value.microsecond
    if us == 0:
        text = value.isoformat(timespec="seconds")
    elif us % 1000 == 0:
        text = value.isoformat(timespec="milliseconds")
    else:
        text = value.isoformat(timespec="microseconds")
    if text.endswith("+00:00"):
        return text[:-6] + "Z"
    return text


# --------------------------------------------------------------------------------------------
# multipleOf, URI

_DECIMAL = decimal.Context(prec=60, traps=[decimal.InvalidOperation, decimal.DivisionByZero])
_STEPS: dict[str, decimal.Decimal] = {}


def is_multiple(value: float, step: str) -> bool:
    """Whether ``value`` is a multiple of ``step``, decided in decimal (``21.4`` is a multiple
    of ``0.1``, although not in binary floating point).

    A float is taken as the shortest decimal that reads back as the same float (its ``repr``),
    which is what the JSON text said.
    """
    d = _STEPS.get(step)
    if d is None:
        d = _STEPS[step] = decimal.Decimal(step)
    x = decimal.Decimal(repr(value)) if isinstance(value, float) else decimal.Decimal(value)
    try:
        return not _DECIMAL.remainder(x, d)
    except decimal.InvalidOperation:  # the quotient has too many digits: go exact
        return Fraction(x) % Fraction(d) == 0


_uri_checker: Callable[[str], bool] | None = None


def _load_uri_checker() -> Callable[[str], bool]:
    # The same choice as jsonschema's format checker: rfc3987 if installed, else
    # rfc3986-validator (installed with jsonschema[format-nongpl]), else no check at all.
    try:
        rfc3987: Any = importlib.import_module("rfc3987")
    except ImportError:
        pass
    else:

        def check_3987(text: str) -> bool:
            try:
                rfc3987.parse(text, rule="URI")
            except ValueError:
                return False
            return True

        return check_3987
    try:
        rfc3986: Any = importlib.import_module("rfc3986_validator")
    except ImportError:  # pragma: no cover - depends on the environment
        return lambda text: True
    return lambda text: bool(rfc3986.validate_rfc3986(text, rule="URI"))


def is_uri(value: str) -> bool:
    """Whether ``value`` is a URI, as jsonschema's ``uri`` format checker decides here."""
    global _uri_checker
    if _uri_checker is None:
        _uri_checker = _load_uri_checker()
    return _uri_checker(value)


# --------------------------------------------------------------------------------------------
# construction checks (raised by the generated __attrs_post_init__; paths are attribute names)


def check_str(
    value: object,
    name: str,
    min_length: int | None,
    max_length: int | None,
    uri: bool,
    version: Version,
) -> None:
    """Check a string's length (in code points) and, for ``format: uri``, its syntax."""
    if not isinstance(value, str):
        raise wrong_type(name, value, "string", version)
    if max_length is not None and len(value) > max_length:
        raise too_long(name, value, max_length, version)
    if min_length is not None and len(value) < min_length:
        raise too_short(name, value, min_length, version)
    if uri and not is_uri(value):
        raise bad_uri(name, value, version)


def check_number(
    value: object,
    name: str,
    minimum: float | None,
    maximum: float | None,
    multiple_of: str | None,
    version: Version,
) -> None:
    """Check a number against its bounds; floats must be finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise wrong_type(name, value, "number", version)
    if isinstance(value, float) and value - value != 0:  # NaN or an infinity
        raise not_finite(name, value, version)
    if minimum is not None and value < minimum:
        raise too_small(name, value, minimum, version)
    if maximum is not None and value > maximum:
        raise too_big(name, value, maximum, version)
    if multiple_of is not None and not is_multiple(value, multiple_of):
        raise not_multiple(name, value, multiple_of, version)


def check_integer(
    value: object,
    name: str,
    minimum: float | None,
    maximum: float | None,
    version: Version,
) -> None:
    """Check an integer against its bounds (a bool is not an integer)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_type(name, value, "integer", version)
    if minimum is not None and value < minimum:
        raise too_small(name, value, minimum, version)
    if maximum is not None and value > maximum:
        raise too_big(name, value, maximum, version)


def check_enum(value: object, members: Mapping[str, T], name: str, version: Version) -> T:
    """The enum member for ``value`` (a member, or a str equal to a member's value)."""
    member = members.get(value) if isinstance(value, str) else None
    if member is None:
        raise not_in_enum(name, value, members, version)
    return member


def check_datetime(value: datetime, name: str, version: Version) -> None:
    """A date-time must be timezone-aware, with an offset RFC 3339 can write."""
    if not isinstance(value, datetime):
        raise _Err(_TYPE, name, value, "is not a datetime", version)
    offset = value.utcoffset()
    if offset is None:
        raise _Err(_PROPERTY, name, value, "is not timezone-aware", version)
    if offset % timedelta(minutes=1):
        raise _Err(_PROPERTY, name, value, "has an offset of a fraction of a minute", version)


def check_items(
    value: Iterable[T],
    name: str,
    min_items: int | None,
    max_items: int | None,
    version: Version,
    each: Callable[[T, str], Any] | None = None,
) -> tuple[Any, ...]:
    """Check an array's length and each item; returns it as a tuple (items as ``each`` returns
    them, e.g. enum members for strings)."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise wrong_type(name, value, "array", version)
    items = tuple(value)
    if min_items is not None and len(items) < min_items:
        raise too_few(name, value, min_items, version)
    if max_items is not None and len(items) > max_items:
        raise too_many(name, value, max_items, version)
    if each is not None:
        out = [each(x, f"{name}[{i}]") for i, x in enumerate(items)]
        return tuple(x if r is None else r for x, r in zip(items, out, strict=True))
    return items


def check_extra(extra: Mapping[str, Any], declared: Collection[str], version: Version) -> None:
    """The vendor keys of an open object must not shadow its declared properties."""
    for key in extra:
        if key in declared or not isinstance(key, str):
            raise _Err(_PROPERTY, f"extra[{key!r}]", key, "is not an allowed extra key", version)
