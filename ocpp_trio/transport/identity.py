"""The station identity in an upgrade request, and the rules each OCPP version adds to it."""

from __future__ import annotations

import re
import unicodedata
import urllib.parse

from ocpp_trio.errors import InvalidIdentityError
from ocpp_trio.protocol.version import Version

__all__ = ["MAX_IDENTITY_LENGTH_V2", "check_identity_for_version", "identity_from_path"]

#: Longest identity on 2.x, where it is an identifierString[48].
MAX_IDENTITY_LENGTH_V2 = 48
#: OCPP 2.x identifierString: letters, digits and ``*-_=:+|@.`` -- less ``:``, which would
#: break the Basic-auth username (2.0.1 "might not", 2.1 SHALL NOT).
_IDENTIFIER_STRING = re.compile(r"[A-Za-z0-9*\-_=+|@.]+")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def identity_from_path(path: str, *, path_prefix: str = "/", max_length: int = 128) -> str:
    """The station identity in an upgrade request target: its last non-empty path segment.

    The query string is ignored. The segment is percent-decoded as strict UTF-8; the result must
    be non-empty, not only whitespace, free of control characters and ``/``, and at most
    ``max_length`` characters. The rules particular to 2.x are :func:`check_identity_for_version`.

    Raises:
        InvalidIdentityError: 404 when the path is outside ``path_prefix`` or has no segment,
            400 when the segment is malformed.
    """
    path = path.partition("?")[0].partition("#")[0]
    prefix = path_prefix if path_prefix.endswith("/") else path_prefix + "/"
    if not (path + "/").startswith(prefix):
        raise InvalidIdentityError(404, f"path must start with {prefix!r}")
    segments = [segment for segment in path[len(prefix) :].split("/") if segment]
    if not segments:
        raise InvalidIdentityError(404, "no station identity in the path")
    raw = segments[-1]
    if _BAD_PERCENT.search(raw):
        raise InvalidIdentityError(400, "invalid percent-encoding in the station identity")
    try:
        identity = urllib.parse.unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InvalidIdentityError(400, "station identity is not valid UTF-8") from None
    if not identity.strip():
        raise InvalidIdentityError(400, "station identity is blank")
    if "/" in identity or any(unicodedata.category(c) == "Cc" for c in identity):
        raise InvalidIdentityError(400, "station identity contains '/' or control characters")
    if len(identity) > max_length:
        raise InvalidIdentityError(400, f"station identity is longer than {max_length} characters")
    return identity


def check_identity_for_version(identity: str, version: Version) -> None:
    """Check the rules the version adds.  1.6 adds none; on 2.x the identity is an
    ``identifierString`` of at most 48 characters: ASCII letters, digits and ``* - _ = + | @ .``
    (the type also allows ``:``, which the identity may not contain: it would end the Basic-auth
    username).

    Raises:
        InvalidIdentityError: (400) the identity breaks a rule of ``version``.
    """
    if version is Version.V16:
        return
    if len(identity) > MAX_IDENTITY_LENGTH_V2:
        raise InvalidIdentityError(
            400, f"OCPP {version} station identity is longer than {MAX_IDENTITY_LENGTH_V2}"
        )
    if ":" in identity:
        raise InvalidIdentityError(400, f"OCPP {version} station identity must not contain ':'")
    if not _IDENTIFIER_STRING.fullmatch(identity):
        raise InvalidIdentityError(
            400,
            f"OCPP {version} station identity may only contain letters, digits and "
            "* - _ = + | @ . (identifierString)",
        )
