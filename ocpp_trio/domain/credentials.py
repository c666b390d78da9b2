"""Station credentials: security profiles, salted password hashes, and the credential store.

Passwords are never stored: a :class:`StationCredentials` record holds an encoded, salted hash
made by :func:`hash_password` (scrypt by default, PBKDF2-HMAC-SHA256 also understood), and the
plaintext exists only while a request is checked or a rotation is sent.

What is hashed is the **secret as bytes**: on 2.x the UTF-8 of ``BasicAuthPassword``; on 1.6 the
``AuthorizationKey`` *decoded from hex* (:func:`authorization_key_bytes`), since OCPP-J 1.6
§6.2.2 puts the raw key bytes in the Basic header. A station that sends the hex text instead is
accepted too (see :mod:`ocpp_trio.security.auth`).

Encoded hash formats (``$``-separated, base64 without padding)::

    scrypt$<log2 n>$<r>$<p>$<salt>$<digest>
    pbkdf2-sha256$<iterations>$<salt>$<digest>

The records are plain frozen attrs objects of strings and integers, so a persistent store can
keep them as they are.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, Protocol, runtime_checkable

import attrs

__all__ = [
    "DEFAULT_PASSWORD_HASHING",
    "AtomicCredentialStore",
    "CredentialStore",
    "DuplicatePolicy",
    "InMemoryCredentialStore",
    "PasswordHashing",
    "SecurityProfile",
    "StationCredentials",
    "authorization_key_bytes",
    "check_password_hash",
    "hash_password",
    "verify_password",
]

_SCRYPT: Final = "scrypt"
_PBKDF2: Final = "pbkdf2-sha256"
# Bounds on what a stored hash may ask for, so that a bad record cannot make a check take
# minutes or gigabytes.
_MAX_SCRYPT_MEMORY: Final = 256 * 1024 * 1024
_MAX_PBKDF2_ITERATIONS: Final = 10_000_000
_MIN_SALT: Final = 8


class SecurityProfile(enum.IntEnum):
    """The OCPP security profiles (OCPP 2.x Part 2 A00; the 1.6 security white paper)."""

    #: 1: HTTP Basic auth over plain WebSocket (``ws://``), for trusted networks only
    BASIC_AUTH = 1
    #: 2: HTTP Basic auth over TLS (``wss://``), the CSMS authenticated by its certificate
    TLS_BASIC_AUTH = 2
    #: 3: mutual TLS: the station authenticated by its client certificate
    TLS_CLIENT_CERTIFICATE = 3


class DuplicatePolicy(enum.Enum):
    """What to do with a new connection for an identity that is already connected."""

    #: close the old connection (1000) and serve the new one
    REPLACE = "replace"
    #: close the new connection (1008) and keep the old one
    REFUSE = "refuse"


@attrs.frozen(kw_only=True)
class PasswordHashing:
    """How :func:`hash_password` hashes (the parameters travel inside each encoded hash).

    Attributes:
        algorithm: ``"scrypt"`` (default) or ``"pbkdf2-sha256"``.
        scrypt_log2_n: scrypt cost, ``n = 2 ** scrypt_log2_n`` (default 14: 16 MiB, a few tens
            of milliseconds per check).
        scrypt_r: scrypt block size.
        scrypt_p: scrypt parallelism.
        pbkdf2_iterations: PBKDF2 rounds (default 600 000, the OWASP figure for SHA-256).
        salt_size: random salt bytes.
    """

    algorithm: str = attrs.field(
        default=_SCRYPT, validator=attrs.validators.in_((_SCRYPT, _PBKDF2))
    )
    scrypt_log2_n: int = attrs.field(default=14, validator=attrs.validators.in_(range(1, 21)))
    scrypt_r: int = attrs.field(default=8, validator=attrs.validators.in_(range(1, 33)))
    scrypt_p: int = attrs.field(default=1, validator=attrs.validators.in_(range(1, 17)))
    pbkdf2_iterations: int = attrs.field(
        default=600_000, validator=attrs.validators.in_(range(1000, _MAX_PBKDF2_ITERATIONS + 1))
    )
    salt_size: int = attrs.field(default=16, validator=attrs.validators.in_(range(_MIN_SALT, 65)))


#: The hashing :func:`hash_password` uses unless told otherwise.
DEFAULT_PASSWORD_HASHING: Final = PasswordHashing()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _secret(password: str | bytes) -> bytes:
    return password.encode("utf-8") if isinstance(password, str) else bytes(password)


def _scrypt(secret: bytes, salt: bytes, log2_n: int, r: int, p: int, length: int) -> bytes:
    n = 2**log2_n
    return hashlib.scrypt(
        secret, salt=salt, n=n, r=r, p=p, dklen=length, maxmem=128 * r * (n + p + 2) + 2**20
    )


def hash_password(password: str | bytes, *, hashing: PasswordHashing | None = None) -> str:
    """Hash a password (``str``: its UTF-8; ``bytes``: as is) with a fresh random salt.

    CPU-bound (tens of milliseconds by default): in a trio task, run it in a thread.

    Returns:
        the encoded hash, e.g. ``"scrypt$14$8$1$<salt>$<digest>"``.
    """
    h = hashing or DEFAULT_PASSWORD_HASHING
    secret = _secret(password)
    salt = secrets.token_bytes(h.salt_size)
    if h.algorithm == _SCRYPT:
        digest = _scrypt(secret, salt, h.scrypt_log2_n, h.scrypt_r, h.scrypt_p, 32)
        params = f"{h.scrypt_log2_n}${h.scrypt_r}${h.scrypt_p}"
    else:
        digest = hashlib.pbkdf2_hmac("sha256", secret, salt, h.pbkdf2_iterations)
        params = str(h.pbkdf2_iterations)
    return f"{h.algorithm}${params}${_b64(salt)}${_b64(digest)}"


@attrs.frozen
class _Parsed:
    algorithm: str
    numbers: tuple[int, ...]
    salt: bytes
    digest: bytes


def _parse(encoded: str) -> _Parsed:
    """Split and bound-check an encoded hash; ``ValueError`` naming the problem (never the hash)."""
    parts = encoded.split("$")
    algorithm = parts[0]
    expected = {_SCRYPT: 6, _PBKDF2: 4}.get(algorithm)
    if expected is None:
        raise ValueError(f"unknown password hash algorithm {algorithm[:20]!r}")
    if len(parts) != expected:
        raise ValueError(f"malformed {algorithm} password hash")
    try:
        numbers = tuple(int(x) for x in parts[1:-2])
        salt, digest = _unb64(parts[-2]), _unb64(parts[-1])
    except (ValueError, binascii.Error):
        raise ValueError(f"malformed {algorithm} password hash") from None
    if len(salt) < _MIN_SALT or not 16 <= len(digest) <= 64:
        raise ValueError(f"{algorithm} password hash has a short salt or a bad digest length")
    if algorithm == _SCRYPT:
        log2_n, r, p = numbers
        if not (1 <= log2_n <= 24 and 1 <= r <= 32 and 1 <= p <= 16):
            raise ValueError("scrypt parameters out of range")
        if 128 * r * 2**log2_n > _MAX_SCRYPT_MEMORY:
            raise ValueError("scrypt parameters need too much memory")
    elif not 1000 <= numbers[0] <= _MAX_PBKDF2_ITERATIONS:
        raise ValueError("pbkdf2 iteration count out of range")
    return _Parsed(algorithm, numbers, salt, digest)


def check_password_hash(encoded: str) -> str:
    """Check that ``encoded`` is a hash :func:`verify_password` can use; return it.

    Raises:
        ValueError: it is not (unknown algorithm, malformed, parameters out of bounds).
    """
    _parse(encoded)
    return encoded


def verify_password(password: str | bytes, encoded: str) -> bool:
    """Whether ``password`` matches the encoded hash; the comparison is constant-time.

    CPU-bound like :func:`hash_password`. A malformed hash matches nothing.
    """
    try:
        parsed = _parse(encoded)
    except ValueError:
        return False
    secret = _secret(password)
    if parsed.algorithm == _SCRYPT:
        log2_n, r, p = parsed.numbers
        candidate = _scrypt(secret, parsed.salt, log2_n, r, p, len(parsed.digest))
    else:
        candidate = hashlib.pbkdf2_hmac(
            "sha256", secret, parsed.salt, parsed.numbers[0], len(parsed.digest)
        )
    return hmac.compare_digest(candidate, parsed.digest)


def authorization_key_bytes(hex_key: str) -> bytes:
    """The 1.6 ``AuthorizationKey`` (hexadecimal text) as the key bytes that are hashed.

    Raises:
        ValueError: not an even number of hex digits, or shorter than 16 bytes (the 1.6
            security white paper's minimum).
    """
    text = hex_key.strip()
    if len(text) % 2 or not all(c in "0123456789abcdefABCDEF" for c in text):
        raise ValueError("an AuthorizationKey is written as an even number of hex digits")
    key = bytes.fromhex(text)
    if len(key) < 16:
        raise ValueError(f"an AuthorizationKey must be at least 16 bytes, not {len(key)}")
    return key


def _optional_hash(_instance: object, _attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None:
        check_password_hash(value)


def _names(names: Iterable[str]) -> tuple[str, ...]:
    if isinstance(names, str):
        raise TypeError("certificate_common_names is a list of names, not one string")
    return tuple(names)


def _duplicate_policy(value: DuplicatePolicy | str | None) -> DuplicatePolicy | None:
    return None if value is None else DuplicatePolicy(value)


@attrs.frozen(kw_only=True)
class StationCredentials:
    """What the CSMS knows to authenticate one station (a plain, persistable record).

    Attributes:
        identity: the station identity (as in the URL, percent-decoded).
        security_profile: the one profile this station must connect with.
        password_hash: the encoded hash of the current Basic-auth secret (profiles 1 and 2);
            ``None``: no password provisioned, every Basic-auth attempt fails.
        pending_password_hash: a new secret whose adoption by the station is uncertain (it
            answered ``RebootRequired``, or the answer never came): both are accepted until
            the station authenticates with the new one, which then replaces the current one.
        certificate_common_name: profile 3: the client certificate's subject CN (e.g. the
            station's serial number); ``None``: it must equal ``identity``.
        certificate_organization: profile 3: the subject O (the operator); ``None``: the
            authenticator's default organization, if any.
        certificate_common_names: profile 3: more subject CNs allowed besides
            ``certificate_common_name`` (e.g. the serial numbers of a replaced controller);
            when any is given, the identity itself is allowed only if listed.
        duplicate_connections: what a new connection of this station does while it is
            connected (``None``: the CSMS's policy); applied to the connections that a
            :class:`~ocpp_trio.security.auth.StationAuthenticator` let in with this record.
        declared_digest: a digest of the settings this record was last given from a
            declaration (the CLI's stations file): a record whose declaration is unchanged
            keeps the settings changed at run time (see
            :func:`~ocpp_trio.security.config.use_persistent_credentials`).

    A record is one value: every change of a station's security settings replaces the whole
    record in one write (:func:`~ocpp_trio.security.settings.update_station_security`), so a
    check that reads it sees the settings before or after the change, never a mix.
    """

    identity: str = attrs.field(validator=attrs.validators.min_len(1))
    security_profile: SecurityProfile = attrs.field(converter=SecurityProfile)
    password_hash: str | None = attrs.field(default=None, validator=_optional_hash, repr=False)
    pending_password_hash: str | None = attrs.field(
        default=None, validator=_optional_hash, repr=False
    )
    certificate_common_name: str | None = None
    certificate_organization: str | None = None
    certificate_common_names: tuple[str, ...] = attrs.field(default=(), converter=_names)
    duplicate_connections: DuplicatePolicy | None = attrs.field(
        default=None, converter=_duplicate_policy
    )
    declared_digest: str | None = None

    def allowed_common_names(self) -> frozenset[str]:
        """The subject CNs a profile-3 certificate of this station may hold (empty: only the
        identity)."""
        names = (self.certificate_common_name, *self.certificate_common_names)
        return frozenset(n for n in names if n)


class CredentialStore(Protocol):
    """Where station credentials live (in memory here; SQLite in the persistence layer).

    Every method may wait (I/O); none may be slow for long, since ``get`` runs inside each
    connection's handshake timeout.
    """

    async def get(self, identity: str) -> StationCredentials | None:
        """The record of ``identity``, or ``None`` when the station is unknown."""
        ...

    async def put(self, credentials: StationCredentials) -> None:
        """Create or replace the record of ``credentials.identity``."""
        ...

    async def delete(self, identity: str) -> None:
        """Forget ``identity`` (no error when unknown)."""
        ...


@runtime_checkable
class AtomicCredentialStore(CredentialStore, Protocol):
    """A credential store that several processes share (PostgreSQL), with a read-modify-write
    of one record that is atomic across all of them.

    The rotation helpers, :func:`~ocpp_trio.update_station_security` and the authenticator
    change records through :meth:`update` when the store has it: a lock inside one process
    cannot keep two processes from overwriting each other's change.
    """

    async def update(
        self,
        identity: str,
        change: Callable[[StationCredentials], StationCredentials | None],
        *,
        create: Callable[[], StationCredentials] | None = None,
    ) -> StationCredentials | None:
        """Apply ``change`` to the record of ``identity`` while no other writer can touch it,
        and write what it returns (nothing when it returns ``None`` or the record unchanged).
        Without a record, write what ``create`` makes instead, unless another writer makes
        one first (``change`` then applies to that one).

        ``change`` and ``create`` may run in another thread and more than once: they must
        only compute (and may raise, which writes nothing and reaches the caller).

        Returns:
            the record as it is now: the very object ``create`` made when that was written;
            ``None`` when there is no record and no ``create`` (``change`` was not run).
        """
        ...


class InMemoryCredentialStore:
    """A :class:`CredentialStore` in a dict (tests, or stations loaded from a file)."""

    def __init__(self, credentials: Iterable[StationCredentials] = ()) -> None:
        self._records: dict[str, StationCredentials] = {}
        for record in credentials:
            if record.identity in self._records:
                raise ValueError(f"station {record.identity!r} is listed twice")
            self._records[record.identity] = record

    async def get(self, identity: str) -> StationCredentials | None:
        """The record of ``identity``, or ``None``."""
        return self._records.get(identity)

    async def put(self, credentials: StationCredentials) -> None:
        """Create or replace a record."""
        self._records[credentials.identity] = credentials

    async def delete(self, identity: str) -> None:
        """Forget ``identity``."""
        self._records.pop(identity, None)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[StationCredentials]:
        return iter(list(self._records.values()))
