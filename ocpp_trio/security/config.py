"""The stations file (TOML) and the one call that turns CLI options into server security.

Format (see docs/security.md for the full example)::

    [defaults]                        # optional
    security_profile = 2              # for stations that name none
    organization = "Example CPO"      # subject O required in profile-3 client certificates
    allow_higher_profile = false      # accept profile-1 stations over TLS
    realm = "OCPP"                    # of the 401 challenge
    duplicate_connections = "replace" # or "refuse": for stations that name none

    [[station]]
    identity = "CS001"
    security_profile = 2
    password = "2.x BasicAuthPassword, hashed on load"

    [[station]]
    identity = "CP-16"
    authorization_key = "1.6 AuthorizationKey as hex, hashed on load"

    [[station]]
    identity = "CS002"
    password_hash = "scrypt$14$8$1$..."   # pre-hashed (hash_password)

    [[station]]
    identity = "CS003"
    security_profile = 3
    certificate_common_name = "SN-0042"   # default: the identity
    certificate_common_names = ["SN-0043"] # more allowed CNs
    certificate_organization = "Example CPO"
    duplicate_connections = "refuse"      # this station's duplicate-connection policy

Plaintext passwords are hashed when the file is loaded and then forgotten. Unknown keys are
errors (a typo must not silently weaken a station's security).
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from ocpp_trio.domain.credentials import (
    CredentialStore,
    InMemoryCredentialStore,
    PasswordHashing,
    SecurityProfile,
    StationCredentials,
    authorization_key_bytes,
    check_password_hash,
    hash_password,
)
from ocpp_trio.errors import SecurityConfigError
from ocpp_trio.security.auth import StationAuthenticator
from ocpp_trio.security.certificates import CertificateBinding, CertificatePolicy
from ocpp_trio.security.rotation import check_password_text, update_record
from ocpp_trio.security.throttle import LoginLimits
from ocpp_trio.security.tls import server_ssl_context

__all__ = [
    "StationsConfig",
    "build_security",
    "declared_digest",
    "load_stations_file",
    "parse_stations",
    "use_persistent_credentials",
]

_DEFAULT_KEYS: Final = frozenset(
    {"security_profile", "organization", "allow_higher_profile", "realm", "duplicate_connections"}
)
_STATION_KEYS: Final = frozenset(
    {
        "identity",
        "security_profile",
        "password",
        "authorization_key",
        "password_hash",
        "certificate_common_name",
        "certificate_common_names",
        "certificate_organization",
        "duplicate_connections",
    }
)
#: the duplicate-connection policies a stations file may name (``DuplicatePolicy`` values)
DUPLICATE_POLICIES: Final = ("replace", "refuse")
_SECRET_KEYS: Final = ("password", "authorization_key", "password_hash")
_MAX_IDENTITY: Final = 128


@attrs.frozen(kw_only=True)
class StationsConfig:
    """A loaded stations file.

    Attributes:
        stations: one record per station (passwords already hashed).
        organization: the default subject O for profile-3 certificates.
        allow_higher_profile: see :class:`~ocpp_trio.security.auth.StationAuthenticator`.
        realm: the Basic-auth realm.
        duplicate_connections: the duplicate-connection policy (``"replace"`` or
            ``"refuse"``) per station identity that names one, or has one from [defaults]
            (also in each station's record).
    """

    stations: tuple[StationCredentials, ...]
    organization: str | None = None
    allow_higher_profile: bool = False
    realm: str = "OCPP"
    duplicate_connections: Mapping[str, str] = attrs.field(factory=dict)

    def profiles(self) -> frozenset[SecurityProfile]:
        """The security profiles the stations use."""
        return frozenset(s.security_profile for s in self.stations)

    def store(self) -> InMemoryCredentialStore:
        """A new in-memory credential store holding the stations."""
        return InMemoryCredentialStore(self.stations)

    def authenticator(
        self,
        *,
        hash_threads: int | None = None,
        limits: LoginLimits | None = None,
        equal_cost: bool = False,
    ) -> StationAuthenticator:
        """A :class:`~ocpp_trio.security.auth.StationAuthenticator` over a new :meth:`store`,
        configured as the file says (the other arguments are the authenticator's)."""
        return StationAuthenticator(
            self.store(),
            realm=self.realm,
            organization=self.organization,
            allow_higher_profile=self.allow_higher_profile,
            hash_threads=hash_threads,
            limits=limits,
            equal_cost=equal_cost,
        )


async def use_persistent_credentials(
    authenticator: StationAuthenticator, store: CredentialStore
) -> int:
    """Move ``authenticator`` onto ``store`` (e.g. the SQLite store's ``credentials``).

    The stations file says *who* may connect, and with which profile, certificate names and
    duplicate-connection policy; the persistent store keeps the *passwords*, because a rotation
    (:func:`~ocpp_trio.security.auth.rotate_password`) must survive a restart, and the settings
    changed at run time (:func:`~ocpp_trio.security.settings.update_station_security`). So a
    station the store does not know yet is copied in from the file; a known station keeps its
    stored password hashes, and takes its other settings from the file when its entry there
    changed since it was last read (each record keeps a digest of the entry it came from),
    else keeps the stored ones. To reset a rotated password from the file, delete the
    station's record from the store first.

    Returns:
        How many station records were new to ``store``.
    """
    added = 0
    current = authenticator.store
    listed = list(current) if isinstance(current, InMemoryCredentialStore) else []
    for record in listed:
        declared = attrs.evolve(record, declared_digest=declared_digest(record))

        def change(
            stored: StationCredentials, declared: StationCredentials = declared
        ) -> StationCredentials | None:
            if stored.declared_digest == declared.declared_digest:
                return None
            return attrs.evolve(
                declared,
                password_hash=stored.password_hash,
                pending_password_hash=stored.pending_password_hash,
            )

        def create(declared: StationCredentials = declared) -> StationCredentials:
            return declared  # new to the store

        now = await update_record(store, record.identity, change, create=create)
        added += now is declared
    authenticator.store = store
    return added


def declared_digest(record: StationCredentials) -> str:
    """A digest of the settings a stations-file entry gives (its secrets left out)."""
    settings = {
        "security_profile": int(record.security_profile),
        "certificate_common_name": record.certificate_common_name,
        "certificate_common_names": list(record.certificate_common_names),
        "certificate_organization": record.certificate_organization,
        "duplicate_connections": (
            None if record.duplicate_connections is None else record.duplicate_connections.value
        ),
    }
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def load_stations_file(
    path: str | os.PathLike[str], *, hashing: PasswordHashing | None = None
) -> StationsConfig:
    """Read a stations file (TOML; see the module docs); plaintext passwords are hashed.

    Hashing is deliberately slow (tens of milliseconds per password): for many stations, list
    ``password_hash`` values instead.

    Raises:
        SecurityConfigError: the file cannot be read or is invalid (the message names the
            file, the station and the problem, never a password).
    """
    try:
        with open(path, "rb") as file:
            text = file.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SecurityConfigError(f"{os.fspath(path)}: cannot read: {exc}") from None
    try:
        return parse_stations(text, hashing=hashing)
    except SecurityConfigError as exc:
        raise SecurityConfigError(f"{os.fspath(path)}: {exc}") from None


def parse_stations(text: str, *, hashing: PasswordHashing | None = None) -> StationsConfig:
    """Parse the text of a stations file (see :func:`load_stations_file`).

    Raises:
        SecurityConfigError: invalid TOML or content.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SecurityConfigError(f"invalid TOML: {exc}") from None
    _no_unknown_keys(data, frozenset({"defaults", "station"}), "the file")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, Mapping):
        raise SecurityConfigError("[defaults] must be a table")
    _no_unknown_keys(defaults, _DEFAULT_KEYS, "[defaults]")
    default_profile = defaults.get("security_profile")
    if default_profile is not None:
        default_profile = _profile(default_profile, "[defaults]")
    organization = _optional_str(defaults, "organization", "[defaults]")
    allow_higher = defaults.get("allow_higher_profile", False)
    if not isinstance(allow_higher, bool):
        raise SecurityConfigError("[defaults] allow_higher_profile must be true or false")
    realm = _optional_str(defaults, "realm", "[defaults]") or "OCPP"
    default_duplicates = _duplicate_policy(defaults, "[defaults]")
    entries = data.get("station", [])
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise SecurityConfigError("stations are listed as [[station]] tables")
    stations: list[StationCredentials] = []
    duplicates: dict[str, str] = {}
    seen: set[str] = set()
    for number, entry in enumerate(entries, 1):
        record = _station(entry, number, default_profile, hashing)
        if record.identity in seen:
            raise SecurityConfigError(f"station {record.identity!r} is listed twice")
        seen.add(record.identity)
        policy = _duplicate_policy(entry, f"station {record.identity!r}") or default_duplicates
        if policy is not None:
            duplicates[record.identity] = policy
            record = attrs.evolve(record, duplicate_connections=policy)
        stations.append(record)
    return StationsConfig(
        stations=tuple(stations),
        organization=organization,
        allow_higher_profile=allow_higher,
        realm=realm,
        duplicate_connections=duplicates,
    )


def _no_unknown_keys(table: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SecurityConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _optional_str(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise SecurityConfigError(f"{where}: {key} must be a non-empty string")
    return value


def _duplicate_policy(table: Mapping[str, Any], where: str) -> str | None:
    value = table.get("duplicate_connections")
    if value is not None and value not in DUPLICATE_POLICIES:
        raise SecurityConfigError(
            f"{where}: duplicate_connections must be {' or '.join(map(repr, DUPLICATE_POLICIES))}"
        )
    return value


def _common_names(table: Mapping[str, Any], where: str) -> tuple[str, ...]:
    value = table.get("certificate_common_names", [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SecurityConfigError(f"{where}: certificate_common_names must be a list of names")
    return tuple(value)


def _profile(value: object, where: str) -> SecurityProfile:
    if isinstance(value, bool) or not isinstance(value, int) or value not in (1, 2, 3):
        raise SecurityConfigError(f"{where}: security_profile must be 1, 2 or 3")
    return SecurityProfile(value)


def _check_identity(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SecurityConfigError(f"{where}: identity must be a non-empty string")
    if len(value) > _MAX_IDENTITY:
        raise SecurityConfigError(f"{where}: identity is longer than {_MAX_IDENTITY} characters")
    if "/" in value or any(unicodedata.category(c) == "Cc" for c in value):
        raise SecurityConfigError(f"{where}: identity contains '/' or control characters")
    return value


def _station(
    entry: Mapping[str, Any],
    number: int,
    default_profile: SecurityProfile | None,
    hashing: PasswordHashing | None,
) -> StationCredentials:
    where = f"station #{number}"
    identity = _check_identity(entry.get("identity"), where)
    where = f"station {identity!r}"
    _no_unknown_keys(entry, _STATION_KEYS, where)
    if "security_profile" in entry:
        profile = _profile(entry["security_profile"], where)
    elif default_profile is not None:
        profile = default_profile
    else:
        raise SecurityConfigError(f"{where}: no security_profile (and none in [defaults])")
    given = [key for key in _SECRET_KEYS if key in entry]
    if len(given) > 1:
        raise SecurityConfigError(f"{where}: give only one of {', '.join(given)}")
    if not given and profile is not SecurityProfile.TLS_CLIENT_CERTIFICATE:
        raise SecurityConfigError(
            f"{where}: profile {int(profile)} needs a password, authorization_key or password_hash"
        )
    password_hash = _password_hash(entry, given[0], where, hashing) if given else None
    return StationCredentials(
        identity=identity,
        security_profile=profile,
        password_hash=password_hash,
        certificate_common_name=_optional_str(entry, "certificate_common_name", where),
        certificate_organization=_optional_str(entry, "certificate_organization", where),
        certificate_common_names=_common_names(entry, where),
    )


def _password_hash(
    entry: Mapping[str, Any], key: str, where: str, hashing: PasswordHashing | None
) -> str:
    value = entry[key]
    if not isinstance(value, str) or not value:
        raise SecurityConfigError(f"{where}: {key} must be a non-empty string")
    if key == "password_hash":
        try:
            return check_password_hash(value)
        except ValueError as exc:
            raise SecurityConfigError(f"{where}: password_hash: {exc}") from None
    if key == "authorization_key":
        try:
            secret = authorization_key_bytes(value)
        except ValueError as exc:
            raise SecurityConfigError(f"{where}: authorization_key: {exc}") from None
        return hash_password(secret, hashing=hashing)
    if not 16 <= len(value) <= 40:
        raise SecurityConfigError(f"{where}: a password must be 16 to 40 characters")
    try:
        check_password_text(value)
    except ValueError as exc:
        raise SecurityConfigError(f"{where}: {exc}") from None
    return hash_password(value, hashing=hashing)


def build_security(
    stations_file: str | os.PathLike[str] | StationsConfig | None,
    tls_cert: str | os.PathLike[str] | None = None,
    tls_key: str | os.PathLike[str] | None = None,
    tls_client_ca: str | os.PathLike[str] | None = None,
    *,
    hashing: PasswordHashing | None = None,
    allow_any_identity: bool = False,
    limits: LoginLimits | None = None,
    equal_cost: bool = False,
    additional_certificates: Iterable[
        tuple[str | os.PathLike[str], str | os.PathLike[str] | None]
    ] = (),
) -> tuple[StationAuthenticator | CertificateBinding | None, ssl.SSLContext | None]:
    """Turn the CLI's security options into ``(check_request, ssl_context)`` for one listener.

    * ``stations_file`` (a path, or a file already loaded with :func:`load_stations_file`):
      when given, only the stations it lists may connect, each with its profile (a
      :class:`~ocpp_trio.security.auth.StationAuthenticator` with ``limits`` and
      ``equal_cost``).
    * ``tls_cert`` (+ ``tls_key``): serve ``wss://`` with :func:`server_ssl_context`;
      ``additional_certificates`` are its certificates of other key types.
    * ``tls_client_ca``: request client certificates (profile 3) chaining to this CA. They are
      required of every client when no stations file is given or all its stations use profile
      3; otherwise optional at the TLS level and required per station by the authenticator.
      Without a stations file each certificate must belong to the identity it connects as (a
      :class:`~ocpp_trio.security.certificates.CertificateBinding`: by default its CN must be
      the identity), unless ``allow_any_identity`` turns that off (logged at WARNING).
    * Neither a stations file nor a client CA: no authentication at all (``None``).

    One listener is either plain or TLS, so the stations must fit it: profile 2 and 3 need
    ``tls_cert``, profile 3 also ``tls_client_ca``; profile 1 cannot use a TLS listener unless
    the file sets ``allow_higher_profile``.

    Raises:
        SecurityConfigError: invalid file, or options that do not fit the stations.
        OSError, ssl.SSLError: a certificate or key file is missing or unusable.
    """
    if tls_cert is None and (tls_key is not None or tls_client_ca is not None):
        raise SecurityConfigError("--tls-key and --tls-client-ca need --tls-cert")
    if allow_any_identity and (tls_client_ca is None or stations_file is not None):
        raise SecurityConfigError(
            "allowing any identity applies to client certificates without a stations file"
        )
    if isinstance(stations_file, StationsConfig) or stations_file is None:
        config = stations_file
    else:
        config = load_stations_file(stations_file, hashing=hashing)
    profiles = config.profiles() if config is not None else frozenset()
    if tls_cert is None and profiles - {SecurityProfile.BASIC_AUTH}:
        raise SecurityConfigError("stations with security profile 2 or 3 need --tls-cert")
    if SecurityProfile.TLS_CLIENT_CERTIFICATE in profiles and tls_client_ca is None:
        raise SecurityConfigError("stations with security profile 3 need --tls-client-ca")
    if (
        tls_cert is not None
        and config is not None
        and SecurityProfile.BASIC_AUTH in profiles
        and not config.allow_higher_profile
    ):
        raise SecurityConfigError(
            "stations with security profile 1 cannot connect over TLS; serve them on a plain "
            "listener, or set allow_higher_profile = true in [defaults]"
        )
    context = None
    if tls_cert is not None:
        context = server_ssl_context(
            tls_cert,
            tls_key,
            additional_certificates=additional_certificates,
            client_ca=tls_client_ca,
            require_client_certificate=tls_client_ca is not None
            and profiles <= {SecurityProfile.TLS_CLIENT_CERTIFICATE},
        )
    checker: StationAuthenticator | CertificateBinding | None = None
    if config is not None:
        checker = config.authenticator(limits=limits, equal_cost=equal_cost)
    elif tls_client_ca is not None:
        checker = CertificateBinding(CertificatePolicy(any_identity=allow_any_identity))
    return checker, context
