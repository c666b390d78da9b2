"""JSON text <-> Python values for OCPP-J frames: orjson, with the ``json`` module as the referee.

Parsing and writing a frame is on the path of every message, so both go through orjson (a C
parser and serialiser, several times faster than the ``json`` module).  The two modules do not
accept quite the same documents, though, and the frame layer's documented behaviour was built
on the ``json`` module.  So orjson only does the work where it is known to agree; everywhere
else the ``json`` module decides, and the result is exactly what it would be with the ``json``
module alone (strict: ``NaN`` and the infinities are never JSON):

:func:`loads`
    * An integer outside 64 bits is read by orjson as a *float*, silently rounded; a document
      with a run of 19 or more digits (every such integer has one) is therefore parsed by the
      ``json`` module, which keeps the exact ``int``.
    * A document orjson refuses is parsed again by the ``json`` module, which accepts a few
      that orjson does not (a lone surrogate escape such as ``"\\ud800"``, a number too large
      for a float such as ``1e400``) and refuses the rest with its own error.
:func:`dumps`
    * orjson writes ``NaN`` and the infinities as ``null``; output that contains ``null`` is
      written again by the ``json`` module, which refuses them (``ValueError``).
    * orjson refuses integers outside 64 bits, dict keys that are not strings, strings with a
      lone surrogate and nesting deeper than 254 levels, and is told to refuse datetimes and
      dataclasses; all of these are left to the ``json`` module, which writes or refuses them
      as before.

The only visible difference is the spelling of some floats (``0.00001`` rather than ``1e-05``):
both are the shortest text that reads back as the same float.  orjson also writes two types
the ``json`` module refuses: a :class:`uuid.UUID` (as its string) and a plain
:class:`enum.Enum` member (as its value).
"""

from __future__ import annotations

import json
from typing import Any, Final, NoReturn

import orjson

__all__ = ["dumps", "encodable", "loads"]

# orjson reads an integer outside [-2**63, 2**64) as a float: any such literal has 19 or more
# digits in a row.  Mapping every digit to b"0" and every other byte to b" " turns the search
# for such a run into one substring search (about 1 ns a byte, far cheaper than a regex).
_DIGITS_TO_ZERO: Final = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_LONG_RUN: Final = b"0" * 19
_OPTIONS: Final = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def loads(text: str | bytes) -> Any:
    """The value of one JSON document (``bytes`` must be UTF-8).

    Raises:
        ValueError: the text is not a JSON document, including ``NaN``/``Infinity``, nesting
            too deep to parse, an integer beyond the ``json`` module's digit limit and, for
            ``bytes``, invalid UTF-8 (:class:`UnicodeDecodeError`).
    """
    if len(text) >= len(_LONG_RUN):
        raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        if _LONG_RUN in raw.translate(_DIGITS_TO_ZERO):
            return _json_loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _json_loads(text)


def _json_loads(text: str | bytes) -> Any:
    if not isinstance(text, str):
        text = text.decode("utf-8")  # strict; never sniffed as UTF-16/32
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def dumps(value: Any) -> str:
    """Compact JSON text (no spaces, non-ASCII characters as they are), always UTF-8 encodable.

    A string holding a lone surrogate cannot be written as UTF-8: the text then uses ``\\u``
    escapes for every non-ASCII character.

    Raises:
        TypeError: a value JSON cannot express (not a JSON type).
        ValueError: ``NaN`` or an infinity, or a reference cycle.
        RecursionError: nesting too deep for the ``json`` module.
    """
    try:
        out = orjson.dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return _json_dumps(value)
    if b"null" in out:  # perhaps a NaN or an infinity, which orjson writes as null
        return _json_dumps(value)
    return out.decode("utf-8")


def _json_dumps(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if not encodable(text):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text


def encodable(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8: the ``json`` module reads a lone surrogate
    escape (``"\\ud800"``) into a string that cannot."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
