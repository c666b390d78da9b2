"""Security profiles 1-3: Basic auth before the upgrade, profile enforcement, client-certificate
binding, login flood protection; and (re-exported here) TLS server contexts and password
rotation.

* :class:`StationAuthenticator` is a ready-made ``check_request`` for
  :func:`~ocpp_trio.transport.server.serve_ocpp_websocket` and the CSMS entry points. Per station it
  reads a :class:`~ocpp_trio.domain.credentials.StationCredentials` record from a
  :class:`~ocpp_trio.domain.credentials.CredentialStore` and refuses the upgrade unless the
  connection matches the station's one security profile (A00.FR.002):

  ====================  ==================================================  ================
  configured profile    required                                            refusal
  ====================  ==================================================  ================
  (not in the store)    --                                                  404 (401 with
                                                                            ``equal_cost``)
  1                     no TLS; Basic auth                                  403 / 401 / 429
  2                     TLS; Basic auth (a client certificate is ignored)   403 / 401 / 429
  3                     TLS with a validated client certificate that        403
                        belongs to the station (see
                        :mod:`ocpp_trio.security.certificates`); Basic
                        auth is ignored
  ====================  ==================================================  ================

  Basic auth: the username must equal the identity from the URL (A00.FR.204); a password with
  control characters is refused without hashing (except raw 1.6 ``AuthorizationKey`` bytes,
  when the station offers 1.6); the password is checked against salted hashes in worker
  threads, within the limits of :mod:`ocpp_trio.security.throttle` (429 with ``Retry-After``
  when a budget or the hashing queue is exhausted). A 1.6 station may send its
  ``AuthorizationKey`` as raw bytes or as the hex text. A 401 carries ``WWW-Authenticate: Basic
  realm="..."``. Profile 3 ignores an ``Authorization`` header: the certificate is the
  credential, and a station that sends both is not wrong.
* A check that races with a change of the station's record decides on one version of it:
  after hashing, the record is read again, and when it changed the request is checked again
  against the new one (the hashes already computed are kept); after a few changes in a row it
  is refused with 503 and ``Retry-After``. The duplicate-connection policy of the record a
  request was let in with is what the CSMS applies to it (:meth:`StationAuthenticator.
  admitted_duplicate_policy`).
* ``equal_cost=True``: an unknown identity costs one hash of a dummy password and is answered
  401, like a known one with a wrong password, so answers and timing do not tell which
  identities exist (profile mismatches, answered 403, still do).

Refusals are logged at WARNING with the station and the reason, never with the password.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import weakref
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Final

import attrs
import trio

from ocpp_trio.domain.credentials import (
    CredentialStore,
    DuplicatePolicy,
    PasswordHashing,
    SecurityProfile,
    StationCredentials,
    hash_password,
    verify_password,
)
from ocpp_trio.protocol.version import Version
from ocpp_trio.security.certificates import (
    CertificateCheck,
    CertificatePolicy,
    certificate_problem,
    certificate_subject,
    check_certificate_binding,
)
from ocpp_trio.security.rotation import (
    PasswordChangeObserver,
    RotationOutcome,
    RotationResult,
    generate_password,
    rotate_password,
    send_password_change,
    update_record,
)
from ocpp_trio.security.throttle import LoginLimits, LoginThrottle, retry_after_header
from ocpp_trio.security.tls import OCPP_TLS12_CIPHERS, server_ssl_context
from ocpp_trio.transport.server import ConnectionRequest, Rejection

__all__ = [
    "OCPP_TLS12_CIPHERS",
    "AuthenticatorStatistics",
    "LoginLimits",
    "PasswordChangeObserver",
    "RotationOutcome",
    "RotationResult",
    "StationAuthenticator",
    "certificate_subject",
    "check_certificate_binding",
    "generate_password",
    "rotate_password",
    "send_password_change",
    "server_ssl_context",
]

logger = logging.getLogger("ocpp_trio.security")

# Longest Basic-auth password checked; a longer one is refused without hashing it.
_MAX_PASSWORD_BYTES: Final = 512
_HEX_DIGITS: Final = frozenset(b"0123456789abcdefABCDEF")
_CONTROL_BYTES: Final = frozenset(range(0x20)) | {0x7F}
# Rounds of "hash, then read the record again" before a racing change is given up on.
_RECHECKS: Final = 4


@attrs.frozen(kw_only=True)
class AuthenticatorStatistics:
    """Counters of a :class:`StationAuthenticator` (a snapshot)."""

    accepted: int
    #: identities not in the store (404, or 401 with ``equal_cost``)
    unknown: int
    #: missing, malformed or wrong Basic credentials (401)
    bad_credentials: int
    #: a connection with another security profile than configured (403)
    wrong_profile: int
    #: a client certificate that does not belong to the station (403)
    bad_certificate: int
    #: new passwords adopted on first use (after an uncertain rotation)
    pending_adopted: int
    #: answered 429 without hashing (back-off, or the hashing queue full)
    throttled: int = 0
    #: logins recognised as credentials that logged in before, without hashing
    remembered: int = 0


@attrs.define
class _Counts:
    accepted: int = 0
    unknown: int = 0
    bad_credentials: int = 0
    wrong_profile: int = 0
    bad_certificate: int = 0
    pending_adopted: int = 0
    throttled: int = 0
    remembered: int = 0


def _hashes(record: StationCredentials) -> tuple[str, ...]:
    return tuple(h for h in (record.password_hash, record.pending_password_hash) if h)


def _match(
    record: StationCredentials, tried: Mapping[str, bytes | None]
) -> tuple[str, bytes] | None:
    """The first of the record's hashes a candidate matched, with that candidate."""
    for encoded in _hashes(record):
        secret = tried.get(encoded)
        if secret is not None:
            return encoded, secret
    return None


@attrs.frozen
class _Stale:
    """The record changed while a check was running: check again against ``latest``."""

    latest: StationCredentials | None


class StationAuthenticator:
    """Checks each upgrade request against the station's credentials; pass it as
    ``check_request`` (it is a :data:`~ocpp_trio.transport.server.RequestChecker`).

    See the module docs for what is checked per profile and what each refusal is.

    Args:
        store: where the station records are.
        realm: the realm of the ``WWW-Authenticate`` challenge.
        organization: the subject O required in every profile-3 client certificate whose
            record names none (A00.FR.404: the operator's name); ``None``: O is checked only
            where a record names one.
        allow_higher_profile: also accept a profile-1 station that comes over TLS (it is then
            checked like profile 2). Off by default: A00.FR.002 refuses any other profile.
        hash_threads: password checks hashing at once (shorthand for
            ``limits=LoginLimits(hash_concurrency=...)``).
        limits: the login flood limits (:class:`~ocpp_trio.security.throttle.LoginLimits`).
        equal_cost: answer unknown identities like wrong passwords, after a dummy hash.
        dummy_hashing: the cost of that dummy hash: the hashing the stored records use
            (default scrypt parameters).
        certificate_check: the application's binding rule for profile-3 certificates, instead
            of the CN rule (see :class:`~ocpp_trio.security.certificates.CertificatePolicy`).
        certificate_policies: a rule per identity, replacing the one made from its record.
    """

    def __init__(
        self,
        store: CredentialStore,
        *,
        realm: str = "OCPP",
        organization: str | None = None,
        allow_higher_profile: bool = False,
        hash_threads: int | None = None,
        limits: LoginLimits | None = None,
        equal_cost: bool = False,
        dummy_hashing: PasswordHashing | None = None,
        certificate_check: CertificateCheck | None = None,
        certificate_policies: Mapping[str, CertificatePolicy] | None = None,
    ) -> None:
        if '"' in realm or "\\" in realm or not realm.isprintable():
            raise ValueError("the realm must be printable and free of quotes and backslashes")
        if limits is None:
            limits = LoginLimits(hash_concurrency=hash_threads or 2)
        elif hash_threads is not None:
            limits = attrs.evolve(limits, hash_concurrency=hash_threads)
        self.store = store
        self.realm = realm
        self.organization = organization
        self.allow_higher_profile = allow_higher_profile
        self.equal_cost = equal_cost
        self.dummy_hashing = dummy_hashing
        self.certificate_check = certificate_check
        self._certificate_policies: dict[str, CertificatePolicy] = dict(certificate_policies or {})
        self.throttle = LoginThrottle(limits)
        self._dummy_hash: str | None = None
        self._counts = _Counts()
        # the record each request was let in with, by the request object (until it goes)
        self._admitted: dict[int, tuple[weakref.ref[ConnectionRequest], StationCredentials]] = {}

    def statistics(self) -> AuthenticatorStatistics:
        """A snapshot of the counters."""
        return AuthenticatorStatistics(**attrs.asdict(self._counts))

    def set_certificate_policy(self, identity: str, policy: CertificatePolicy | None) -> None:
        """Give ``identity`` its own certificate rule (``None``: back to its record's)."""
        if policy is None:
            self._certificate_policies.pop(identity, None)
        else:
            self._certificate_policies[identity] = policy

    def certificate_policy(self, record: StationCredentials) -> CertificatePolicy:
        """The rule a profile-3 station's certificate is checked by."""
        own = self._certificate_policies.get(record.identity)
        if own is not None:
            return own
        return CertificatePolicy(
            common_names=record.allowed_common_names(),
            organization=record.certificate_organization or self.organization,
            check=self.certificate_check,
        )

    async def __call__(self, request: ConnectionRequest) -> Rejection | None:
        """Check one upgrade request: ``None`` to let it through, else the refusal.

        The decision rests on one version of the station's record: when the record changed
        while the password was being hashed, the request is checked again against the new
        one (hashes already computed are not computed again), so a change of the station's
        settings (:func:`~ocpp_trio.security.settings.update_station_security`) is seen
        whole or not at all.

        Waits for: the store, and a worker thread for the password check (only when within
        the login limits). Cancellation: by the server's handshake timeout (a running hash
        finishes in its thread first).
        Exceptions: the store's own errors escape (the server answers 500).
        """
        record = await self.store.get(request.identity)
        tried: dict[str, bytes | None] = {}
        for _round in range(_RECHECKS):
            decision = await self._decide(request, record, tried)
            if not isinstance(decision, _Stale):
                if decision is None:
                    assert record is not None
                    self._admitted[id(request)] = (
                        weakref.ref(request, partial(self._forget_admission, id(request))),
                        record,
                    )
                return decision
            record = decision.latest
        logger.warning(
            "station %r (%s): refused: its security settings kept changing during the check",
            request.identity,
            request.remote,
        )
        return Rejection(503, "security settings changing", (retry_after_header(1.0),))

    def admitted_duplicate_policy(self, request: ConnectionRequest) -> DuplicatePolicy | None:
        """The duplicate-connection policy of the record that let ``request`` in (``None``:
        it names none, or this authenticator did not let that request in)."""
        found = self._admitted.get(id(request))
        if found is None or found[0]() is not request:
            return None
        return found[1].duplicate_connections

    def _forget_admission(self, key: int, _ref: object) -> None:
        self._admitted.pop(key, None)

    async def _decide(
        self,
        request: ConnectionRequest,
        record: StationCredentials | None,
        tried: dict[str, bytes | None],
    ) -> Rejection | _Stale | None:
        identity = request.identity
        if record is None:
            self._counts.unknown += 1
            if self.equal_cost:
                logger.warning("station %r (%s): unknown station", identity, request.remote)
                return await self._check_password(request, None, tried)
            logger.warning("station %r (%s): refused: unknown station", identity, request.remote)
            return Rejection(404, "unknown station")
        profile = record.security_profile
        if profile is SecurityProfile.TLS_CLIENT_CERTIFICATE:
            return self._check_certificate(request, record)
        if not request.tls and profile is SecurityProfile.TLS_BASIC_AUTH:
            return self._wrong_profile(request, profile, "TLS is required")
        if request.tls and profile is SecurityProfile.BASIC_AUTH and not self.allow_higher_profile:
            return self._wrong_profile(request, profile, "TLS is not expected")
        return await self._check_password(request, record, tried)

    def _wrong_profile(
        self, request: ConnectionRequest, profile: SecurityProfile, problem: str
    ) -> Rejection:
        self._counts.wrong_profile += 1
        logger.warning(
            "station %r (%s): refused: configured for security profile %d, %s",
            request.identity,
            request.remote,
            profile,
            problem,
        )
        return Rejection(403, f"security profile {int(profile)} expected: {problem}")

    def _check_certificate(
        self, request: ConnectionRequest, record: StationCredentials
    ) -> Rejection | None:
        profile = SecurityProfile.TLS_CLIENT_CERTIFICATE
        if not request.tls:
            return self._wrong_profile(request, profile, "TLS is required")
        if request.peer_certificate is None:
            return self._wrong_profile(request, profile, "a client certificate is required")
        policy = self.certificate_policy(record)
        problem = certificate_problem(policy, request.identity, request.peer_certificate)
        if problem is not None:
            self._counts.bad_certificate += 1
            logger.warning(
                "station %r (%s): refused: %s", request.identity, request.remote, problem
            )
            return Rejection(403, "the client certificate does not belong to this station")
        if request.header("authorization") is not None:
            logger.debug("station %r: Basic auth ignored on profile 3", request.identity)
        self._counts.accepted += 1
        return None

    def _unauthorized(self, request: ConnectionRequest, problem: str) -> Rejection:
        self._counts.bad_credentials += 1
        logger.warning("station %r (%s): refused: %s", request.identity, request.remote, problem)
        challenge = f'Basic realm="{self.realm}", charset="UTF-8"'
        return Rejection(401, "authentication required", (("WWW-Authenticate", challenge),))

    def _throttled(self, request: ConnectionRequest, wait: float, problem: str) -> Rejection:
        self._counts.throttled += 1
        logger.warning("station %r (%s): refused: %s", request.identity, request.remote, problem)
        return Rejection(429, "too many login attempts", (retry_after_header(wait),))

    async def _check_password(
        self,
        request: ConnectionRequest,
        record: StationCredentials | None,
        tried: dict[str, bytes | None],
    ) -> Rejection | _Stale | None:
        """Basic auth for ``record`` (``None``: an unknown identity, checked at equal cost);
        :class:`_Stale` when the record changed while its hashes were computed."""
        identity = request.identity
        header = request.header("authorization")
        if header is None:
            return self._unauthorized(request, "no Basic credentials")
        password = _basic_password(header, identity)
        if isinstance(password, str):
            return self._unauthorized(request, password)
        if _CONTROL_BYTES.intersection(password) and Version.V16 not in request.offered_versions:
            return self._unauthorized(request, "the password holds control characters")
        candidates = _candidates(password)
        if record is not None:
            if not _hashes(record):
                return self._unauthorized(request, "no password is provisioned for it")
            remembered = self.throttle.known(identity, candidates, _hashes(record))
            if remembered is not None:
                self._counts.remembered += 1
                await self._accept(record, remembered)
                return None
        hashing = record is None or any(h not in tried for h in _hashes(record))
        if hashing:
            wait = self.throttle.retry_after(identity, request.remote)
            if wait > 0:
                return self._throttled(request, wait, f"login back-off ({wait:.1f} s left)")
            if not self.throttle.try_enter(identity, request.remote):
                return self._throttled(request, 1.0, "too many password checks waiting")
            try:
                if record is None:
                    await self._verify_dummy(candidates)
                else:
                    await self._hash_all(candidates, record, tried)
            finally:
                self.throttle.leave(identity, request.remote)
            if record is not None:
                # the record must not have changed meanwhile: else decide again on the new one
                latest = await self.store.get(identity)
                if latest != record:
                    return _Stale(latest)
        matched = None if record is None else _match(record, tried)
        if matched is None or record is None:
            self.throttle.failed(identity, request.remote)
            return self._unauthorized(request, "wrong password")
        encoded, secret = matched
        self.throttle.succeeded(identity, request.remote, secret, encoded)
        await self._accept(record, encoded)
        return None

    async def _accept(self, record: StationCredentials, encoded: str) -> None:
        if encoded == record.pending_password_hash:
            await self._adopt_pending(record.identity, encoded)
        self._counts.accepted += 1

    async def _hash_all(
        self,
        candidates: tuple[bytes, ...],
        record: StationCredentials,
        tried: dict[str, bytes | None],
    ) -> None:
        """Hash the candidates against each of the record's hashes not tried yet."""
        for encoded in _hashes(record):
            if encoded not in tried:
                tried[encoded] = await trio.to_thread.run_sync(
                    partial(_matching_candidate, candidates, encoded),
                    limiter=self.throttle.limiter,
                )

    async def _verify_dummy(self, candidates: tuple[bytes, ...]) -> None:
        if self._dummy_hash is None:
            self._dummy_hash = await trio.to_thread.run_sync(
                partial(hash_password, secrets.token_bytes(20), hashing=self.dummy_hashing),
                limiter=self.throttle.limiter,
            )
        await trio.to_thread.run_sync(
            partial(_matching_candidate, candidates, self._dummy_hash),
            limiter=self.throttle.limiter,
        )

    async def _adopt_pending(self, identity: str, encoded: str) -> None:
        """The station used its new password: from now on only that one is accepted."""
        adopted: list[bool] = []

        def change(current: StationCredentials) -> StationCredentials | None:
            if current.pending_password_hash != encoded:
                return None  # changed meanwhile; the newer state wins
            adopted.append(True)
            return attrs.evolve(current, password_hash=encoded, pending_password_hash=None)

        await update_record(self.store, identity, change)
        if adopted:
            self._counts.pending_adopted += 1
            logger.info("station %r: now authenticates with its new password", identity)


def _basic_password(header: str, identity: str) -> bytes | str:
    """The password of a Basic ``Authorization`` header whose username is ``identity``, or
    what is wrong with the header (a ``str``)."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return f"not Basic credentials ({scheme[:20]!r})"
    try:
        decoded = base64.b64decode(token.strip().encode("latin-1"), validate=True)
    except (ValueError, binascii.Error):
        decoded = b""
    if not decoded:
        return "malformed Basic credentials"
    # The identity may contain ':' on 1.6, so compare the prefix instead of splitting.
    prefix = identity.encode("utf-8") + b":"
    if not decoded.startswith(prefix):
        return "the Basic username is not the station identity"
    password = decoded[len(prefix) :]
    if not password or len(password) > _MAX_PASSWORD_BYTES:
        return "empty or over-long password"
    return password


def _candidates(password: bytes) -> tuple[bytes, ...]:
    """The secrets a sent password may stand for: itself, and the bytes of its hex text (a 1.6
    station sending its AuthorizationKey as hex instead of raw bytes)."""
    if len(password) >= 32 and len(password) % 2 == 0 and _HEX_DIGITS.issuperset(password):
        return (password, bytes.fromhex(password.decode("ascii")))
    return (password,)


def _matching_candidate(candidates: Iterable[bytes], encoded: str) -> bytes | None:
    """The candidate that matches ``encoded``, or ``None`` (runs in a worker thread)."""
    for candidate in candidates:
        if verify_password(candidate, encoded):
            return candidate
    return None
