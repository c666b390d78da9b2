"""``GET`` and ``PATCH /stations/{identity}/security``: the admin API's view of a station's
security settings, and changing them at once with
:func:`~ocpp_trio.security.settings.update_station_security`.

What is shown never holds a secret: for a password, whether there is one (and whether a
change of it is pending).  A change names only the settings it changes::

    {"securityProfile": 3, "certificateCommonNames": ["SN-1"], "duplicateConnections": "refuse"}

``password`` (a 2.x ``BasicAuthPassword``) or ``authorizationKey`` (a 1.6 key as hex) sets the
password the CSMS accepts (it is not sent to the station; a hash is not taken here: the API
never handles hashes);
``dropPendingPassword: true`` forgets a password change whose adoption was uncertain.
"""

from __future__ import annotations

from typing import Any, Final

from ocpp_trio.csms.admin_http import HttpError, parse_object
from ocpp_trio.domain.credentials import (
    CredentialStore,
    PasswordHashing,
    StationCredentials,
    authorization_key_bytes,
)
from ocpp_trio.errors import IncompatibleSecuritySettings
from ocpp_trio.security.rotation import check_password_text
from ocpp_trio.security.settings import update_station_security

__all__ = ["security_settings", "security_settings_json", "update_security_settings"]

# the keys of a change, and the argument of update_station_security each sets
_SETTINGS: Final = {
    "securityProfile": "security_profile",
    "certificateCommonName": "certificate_common_name",
    "certificateCommonNames": "certificate_common_names",
    "certificateOrganization": "certificate_organization",
    "duplicateConnections": "duplicate_connections",
}
_SECRETS: Final = ("password", "authorizationKey")
_KEYS: Final = {*_SETTINGS, *_SECRETS, "dropPendingPassword"}
_PROFILES: Final = (1, 2, 3)
_POLICIES: Final = ("replace", "refuse", None)


def security_settings_json(record: StationCredentials) -> dict[str, Any]:
    """What may be shown of a station's security settings (never a password or a hash)."""
    return {
        "identity": record.identity,
        "securityProfile": int(record.security_profile),
        "passwordSet": record.password_hash is not None,
        "pendingPassword": record.pending_password_hash is not None,
        "certificateCommonName": record.certificate_common_name,
        "certificateCommonNames": list(record.certificate_common_names),
        "certificateOrganization": record.certificate_organization,
        "duplicateConnections": (
            None if record.duplicate_connections is None else record.duplicate_connections.value
        ),
    }


def _store(credentials: CredentialStore | None) -> CredentialStore:
    if credentials is None:
        raise HttpError(409, "this CSMS keeps no station credentials (no stations file)")
    return credentials


async def security_settings(credentials: CredentialStore | None, identity: str) -> dict[str, Any]:
    """The answer to ``GET /stations/{identity}/security``."""
    record = await _store(credentials).get(identity)
    if record is None:
        raise HttpError(404, f"station {identity!r} has no credentials")
    return security_settings_json(record)


def _change(data: dict[str, Any]) -> dict[str, Any]:
    """The arguments of :func:`update_station_security` a change asks for (400 when one is
    not valid)."""
    if not data:
        raise HttpError(400, "name at least one setting to change")
    given = [key for key in _SECRETS if key in data]
    if len(given) > 1:
        raise HttpError(400, f"give only one of {', '.join(given)}")
    changes: dict[str, Any] = {_SETTINGS[key]: data[key] for key in _SETTINGS if key in data}
    profile = data.get("securityProfile", 1)
    if isinstance(profile, bool) or profile not in _PROFILES:
        raise HttpError(400, "securityProfile must be 1, 2 or 3")
    names = data.get("certificateCommonNames", [])
    if not isinstance(names, list) or not all(_name(name) for name in names):
        raise HttpError(400, "certificateCommonNames must be a list of names")
    for key in ("certificateCommonName", "certificateOrganization"):
        if key in data and data[key] is not None and not _name(data[key]):
            raise HttpError(400, f"{key} must be a name or null")
    if "duplicateConnections" in data and data["duplicateConnections"] not in _POLICIES:
        raise HttpError(400, "duplicateConnections must be replace, refuse or null")
    if "dropPendingPassword" in data:
        drop = data["dropPendingPassword"]
        if not isinstance(drop, bool):
            raise HttpError(400, "dropPendingPassword must be true or false")
        if drop:
            changes["pending_password_hash"] = None
    if given:
        key = given[0]
        secret = data[key]
        if not isinstance(secret, str) or (key == "authorizationKey" and secret != secret.strip()):
            raise HttpError(400, f"{key} must be a string (a key: hex digits alone)")
        try:
            changes["password"] = (
                _password(secret) if key == "password" else authorization_key_bytes(secret)
            )
        except ValueError as exc:
            raise HttpError(400, f"{key}: {exc}") from None
    return changes


def _name(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _password(text: str) -> str:
    if not 16 <= len(text) <= 40:
        raise ValueError("a password must be 16 to 40 characters")
    check_password_text(text)
    return text


async def update_security_settings(
    credentials: CredentialStore | None,
    identity: str,
    body: bytes,
    hashing: PasswordHashing | None,
) -> dict[str, Any]:
    """The answer to ``PATCH /stations/{identity}/security``: the settings as changed."""
    store = _store(credentials)
    changes = _change(parse_object(body, _KEYS))
    try:
        record = await update_station_security(store, identity, hashing=hashing, **changes)
    except LookupError:
        raise HttpError(404, f"station {identity!r} has no credentials") from None
    except IncompatibleSecuritySettings as exc:
        raise HttpError(409, str(exc)) from None
    except ValueError as exc:
        raise HttpError(400, str(exc)) from None
    return security_settings_json(record)
