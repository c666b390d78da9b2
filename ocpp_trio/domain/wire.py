"""Small readers for wire JSON, used by the station's machines.

The machines read messages as their wire JSON so that one code path serves 2.0.1 and 2.1 (whose
generated classes differ) and, where the fields agree, 1.6.  The payloads were validated by the
codec already, so these readers only narrow types; a value of an unexpected type reads as
absent.  They read a payload as it came from the peer and the same payload encoded again
(``message.to_json()``) alike: where decoding changes a value (a date-time, a draft-06 integer
written ``1.0``) they read its wire form as the codec does.  This is the JSON boundary: ``Any``
stops here.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ocpp_trio.messages._check import parse_datetime

__all__ = [
    "Json",
    "as_bool",
    "as_float",
    "as_int",
    "as_list",
    "as_map",
    "as_str",
    "as_time",
    "as_word",
]

#: a wire JSON object
Json = Mapping[str, Any]

_EMPTY: Json = {}


def as_map(value: object) -> Json:
    """``value`` if it is a JSON object, else an empty mapping."""
    if type(value) is dict:  # what JSON gives (a cheaper test than an ABC's)
        return value
    return value if isinstance(value, Mapping) else _EMPTY


def as_list(value: object) -> Sequence[Any]:
    """``value`` if it is a JSON array, else an empty sequence."""
    return value if isinstance(value, list | tuple) else ()


def as_str(value: object) -> str | None:
    """``value`` if it is a string, else ``None``."""
    return value if isinstance(value, str) else None


#: the shared copies of :func:`as_word`, bounded: a station may send words of its own
_WORDS: dict[str, str] = {}
_WORDS_KEPT: Final = 4096


def as_word(value: object) -> str | None:
    """:func:`as_str` for a value from a small vocabulary (an OCPP enumeration, a unit): one
    shared copy of the string, so that the thousands of records that keep it (a long
    transaction's samples) do not each hold their own.

    Not :func:`sys.intern`, which on some Python versions keeps what it interns for good: the
    first :data:`_WORDS_KEPT` distinct words are shared, any further word is kept as it came.
    """
    if not isinstance(value, str):
        return None
    word = _WORDS.get(value)
    if word is None:
        if len(_WORDS) >= _WORDS_KEPT:
            return value
        _WORDS[value] = word = value
    return word


def as_int(value: object) -> int | None:
    """``value`` if it is an integer (not a boolean), else ``None``.  A float without a
    fractional part is the integer it writes (JSON schema draft-06, like the codec)."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_float(value: object) -> float | None:
    """``value`` as a float if it is a number or a numeric string, else ``None`` (also for an
    integer too large for a float)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | str):
        try:
            return float(value)
        except (ValueError, OverflowError):
            return None
    return None


def as_bool(value: object, default: bool = False) -> bool:
    """``value`` if it is a boolean, else ``default``."""
    return value if isinstance(value, bool) else default


def as_time(value: object) -> datetime.datetime | None:
    """A wire date-time (RFC 3339 text, read as the codec does) as an aware datetime; other
    ISO 8601 text is read too, naive input as UTC."""
    if isinstance(value, datetime.datetime):
        parsed = value
    elif isinstance(value, str):
        rfc3339 = parse_datetime(value)
        if rfc3339 is not None:
            return rfc3339
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed
