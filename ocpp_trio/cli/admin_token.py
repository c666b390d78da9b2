"""The bearer token of ``ocpp-trio serve``'s admin API: given, or generated once and kept.

Where the token comes from, first found wins:

1. ``--admin-token TOKEN`` (visible in the process list: prefer the next two);
2. the environment variable ``OCPP_TRIO_ADMIN_TOKEN``;
3. ``--admin-token-file FILE``, or by default ``<db>.admin-token`` beside the database: read
   when it exists; otherwise a new token is generated, written there (created with mode 0600,
   never overwritten) and shown once in the log.

With ``--db :memory:`` (or a PostgreSQL URL) and none of these, a token is generated for this
run only and shown.
"""

from __future__ import annotations

import os
import stat
from typing import Final

import attrs

from ocpp_trio.csms.admin import generate_token

__all__ = ["ENV_VAR", "AdminToken", "resolve_admin_token"]

#: the environment variable holding the admin token
ENV_VAR: Final = "OCPP_TRIO_ADMIN_TOKEN"
_MIN_LENGTH: Final = 16


@attrs.frozen(kw_only=True)
class AdminToken:
    """A resolved token: the value, and what to tell the operator (``None``: nothing new).

    Attributes:
        token: the bearer token.
        announce: a log line to show once (a token generated now), else ``None``.
        warning: a problem worth a warning (e.g. a token file others can read).
    """

    token: str = attrs.field(repr=False)
    announce: str | None = attrs.field(default=None, repr=False)
    warning: str | None = None


def _checked(token: str, where: str) -> str:
    token = token.strip()
    if len(token) < _MIN_LENGTH or not token.isprintable() or " " in token:
        raise ValueError(f"{where}: an admin token is at least {_MIN_LENGTH} printable characters")
    return token


def resolve_admin_token(
    given: str | None,
    token_file: str | None,
    db: str,
    *,
    environ: dict[str, str] | None = None,
) -> AdminToken:
    """Find or make the admin token (see the module docs).

    Raises:
        ValueError: a given token is too short or not printable.
        OSError: the token file cannot be read or created.
    """
    env = os.environ if environ is None else environ
    if given:
        return AdminToken(token=_checked(given, "--admin-token"))
    if env.get(ENV_VAR):
        return AdminToken(token=_checked(env[ENV_VAR], ENV_VAR))
    # no file beside a database that is not a file (":memory:", a PostgreSQL URL)
    path = token_file or (None if db == ":memory:" or "://" in db else f"{db}.admin-token")
    if path is None:
        token = generate_token()
        return AdminToken(token=token, announce=f"admin API token (this run only): {token}")
    try:
        with open(path, encoding="utf-8") as file:
            found = _checked(file.read(), path)
    except FileNotFoundError:
        token = generate_token()
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(token + "\n")
        return AdminToken(
            token=token,
            announce=f"admin API token (saved in {path}, shown only this once): {token}",
        )
    mode = os.stat(path).st_mode
    warning = None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warning = f"{path}: the admin token file is readable by others (chmod 600 it)"
    return AdminToken(token=found, warning=warning)
