"""Changing a station's security settings at run time, all together and in one write.

A station's security settings are its :class:`~ocpp_trio.domain.credentials.StationCredentials`
record: the security profile, the Basic-auth password hash and the pending one, the names its
profile-3 certificate may carry (CN, more CNs, O) and its duplicate-connection policy.
:func:`update_station_security` changes any of them at once:

1. a new password is hashed first (in a worker thread, outside any lock);
2. under the record's lock (:func:`~ocpp_trio.security.rotation.record_lock`, which every
   read-modify-write of a record holds: password rotations, the authenticator adopting a
   pending password), the current record is read, compared with ``expected`` when given (a
   compare-and-swap), changed, checked as a whole, and written back: on a store that several
   processes share (:class:`~ocpp_trio.domain.credentials.AtomicCredentialStore`, PostgreSQL)
   in one transaction holding the record's row, so that no node's change is lost.

Readers never see a mix: a record is one value, replaced whole, and the
:class:`~ocpp_trio.security.auth.StationAuthenticator` decides each connection on one version
of it (it checks again when the record changed while it was hashing), and the CSMS applies the
duplicate-connection policy of that same version to the connection.

The connection a station has when its settings change is not closed: the settings apply from
its next connection.  Setting a password here does not send it to the station (that is
:func:`~ocpp_trio.security.rotation.rotate_password`): it is for a station provisioned by other
means.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from functools import partial
from typing import Any, Final, Literal

import attrs
import trio

from ocpp_trio.domain.credentials import (
    CredentialStore,
    DuplicatePolicy,
    PasswordHashing,
    SecurityProfile,
    StationCredentials,
    check_password_hash,
    hash_password,
)
from ocpp_trio.errors import IncompatibleSecuritySettings, SecuritySettingsConflict
from ocpp_trio.security.rotation import update_record

__all__ = [
    "KEEP",
    "update_station_security",
]


class _Keep(enum.Enum):
    KEEP = "keep"


#: "leave this setting as it is" (the default of every setting of
#: :func:`update_station_security`)
KEEP: Final = _Keep.KEEP
_KeepT = Literal[_Keep.KEEP]


async def update_station_security(
    store: CredentialStore,
    identity: str,
    *,
    security_profile: SecurityProfile | int | _KeepT = KEEP,
    password: str | bytes | _KeepT = KEEP,
    password_hash: str | _KeepT | None = KEEP,
    pending_password_hash: str | _KeepT | None = KEEP,
    certificate_common_name: str | _KeepT | None = KEEP,
    certificate_common_names: Iterable[str] | _KeepT = KEEP,
    certificate_organization: str | _KeepT | None = KEEP,
    duplicate_connections: DuplicatePolicy | str | _KeepT | None = KEEP,
    expected: StationCredentials | None = None,
    create: bool = False,
    hashing: PasswordHashing | None = None,
) -> StationCredentials:
    """Change the security settings of station ``identity`` in ``store`` at once (see the
    module docs); a setting left at :data:`KEEP` stays as it is.

    Args:
        store: the credential store the authenticator reads.
        identity: the station.
        security_profile: 1, 2 or 3.
        password: a new Basic-auth secret (2.x: the ``BasicAuthPassword`` text; 1.6: the
            ``AuthorizationKey`` bytes), hashed here; it replaces the current one, and a
            pending one is dropped.
        password_hash: the same, already hashed (``hash_password``); ``None``: no password.
        pending_password_hash: ``None`` drops a pending password (one whose adoption by the
            station was uncertain); a hash makes it the pending one.
        certificate_common_name: profile 3: the certificate's subject CN (``None``: the
            identity).
        certificate_common_names: profile 3: more CNs allowed.
        certificate_organization: profile 3: the subject O (``None``: the authenticator's).
        duplicate_connections: ``"replace"``, ``"refuse"`` or ``None`` (the CSMS's policy).
        expected: only change the record if it is still this one (compare-and-swap); else
            :class:`SecuritySettingsConflict`.
        create: make a record for a station the store does not know (``security_profile``
            is then required).
        hashing: how ``password`` is hashed.

    Returns:
        the record as written.

    Waits for: the hash (a worker thread), the record's lock, the store.
    Cancellation: safe; the record is written whole or not at all.

    Raises:
        LookupError: the store has no record of ``identity`` (and ``create`` is false).
        ValueError: a setting is not valid, or a password and a hash are given together.
        IncompatibleSecuritySettings: (a ``ValueError``) the settings do not fit together: a
            profile 1 or 2 station without a password.
        SecuritySettingsConflict: the record is not ``expected``.
    """
    if password is not KEEP and password_hash is not KEEP:
        raise ValueError("give a password or a password hash, not both")
    if password is not KEEP:
        if not password:
            raise ValueError("the password is empty")
        password_hash = await trio.to_thread.run_sync(
            partial(hash_password, password, hashing=hashing)
        )
    elif isinstance(password_hash, str):
        check_password_hash(password_hash)
    if isinstance(pending_password_hash, str):
        check_password_hash(pending_password_hash)
    changes: dict[str, Any] = {
        name: value
        for name, value in (
            ("security_profile", security_profile),
            ("password_hash", password_hash),
            ("pending_password_hash", pending_password_hash),
            ("certificate_common_name", certificate_common_name),
            ("certificate_common_names", certificate_common_names),
            ("certificate_organization", certificate_organization),
            ("duplicate_connections", duplicate_connections),
        )
        if value is not KEEP
    }
    if password_hash is not KEEP and pending_password_hash is KEEP:
        changes["pending_password_hash"] = None  # a new current password settles any change

    def change(current: StationCredentials | None) -> StationCredentials:
        if expected is not None and current != expected:
            raise SecuritySettingsConflict(f"station {identity!r}: its settings changed meanwhile")
        if current is None and "security_profile" not in changes:
            raise ValueError("a new station needs a security profile")
        try:
            if current is None:
                new = StationCredentials(identity=identity, **changes)
            else:
                new = attrs.evolve(current, **changes)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid security settings: {exc}") from None
        _check_whole(new)
        return new

    updated = await update_record(
        store, identity, change, create=partial(change, None) if create else None
    )
    if updated is not None:
        return updated
    if expected is not None:  # the record it was compared with is gone
        raise SecuritySettingsConflict(f"station {identity!r}: its settings changed meanwhile")
    raise LookupError(f"station {identity!r} has no credentials in the store")


def _check_whole(record: StationCredentials) -> None:
    if record.security_profile is not SecurityProfile.TLS_CLIENT_CERTIFICATE and not (
        record.password_hash or record.pending_password_hash
    ):
        raise IncompatibleSecuritySettings(
            f"security profile {int(record.security_profile)} needs a password (Basic auth)"
        )
    names = (record.certificate_common_name, record.certificate_organization)
    if any(name is not None and not name.strip() for name in names) or not all(
        name.strip() for name in record.certificate_common_names
    ):
        raise ValueError("certificate names must not be empty")
