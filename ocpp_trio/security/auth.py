"""Security profiles 1-3: Basic auth before the upgrade, profile enforcement, client-certificate
binding, TLS server contexts, and password rotation.

* :class:`StationAuthenticator` is a ready-made ``check_request`` for
  :func:`~ocpp_trio.transport.server.serve_ocpp_websocket` and the CSMS entry points. Per station it
  reads a :class:`~ocpp_trio.domain.credentials.StationCredentials` record from a
  :class:`~ocpp_trio.domain.credentials.CredentialStore` and refuses the upgrade unless the
  connection matches the station's one security profile (A00.FR.002):

  ====================  ==================================================  ================
  configured profile    required                                            refusal
  ====================  ==================================================  ================
  (not in the store)    --                                                  404
  1                     no TLS; Basic auth                                  403 / 401
  2                     TLS; Basic auth (a client certificate is ignored)   403 / 401
  3                     TLS with a validated client certificate whose       403
                        subject CN and O match; Basic auth is ignored
  ====================  ==================================================  ================

  Basic auth: the username must equal the identity from the URL (A00.FR.204); the password is
  checked against salted hashes in a worker thread (bounded by ``hash_threads``). A 1.6 station
  may send its ``AuthorizationKey`` as raw bytes or as the hex text. A 401 carries
  ``WWW-Authenticate: Basic realm="..."``. Profile 3 ignores an ``Authorization`` header: the
  certificate is the credential, and a station that sends both is not wrong.
* :func:`server_ssl_context` builds the TLS context: TLS 1.2 or newer, the OCPP cipher suites,
  no compression, client certificates checked against the given CA only.
* :func:`rotate_password` sends a new password to a station and updates the store by the
  answer; :class:`PasswordChangeObserver` (an extra handler) does the same for the
  application's own ``SetVariables``/``ChangeConfiguration`` calls.

Refusals are logged at WARNING with the station and the reason, never with the password.
"""

from __future__ import annotations

import base64
import binascii
import enum
import logging
import os
import secrets
import ssl
import string
import weakref
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any, Final

import attrs
import trio

from ocpp_trio.domain.credentials import (
    CredentialStore,
    PasswordHashing,
    SecurityProfile,
    StationCredentials,
    authorization_key_bytes,
    hash_password,
    verify_password,
)
from ocpp_trio.errors import CallError, LocalProtocolError
from ocpp_trio.messages import v1_6, v2_0_1, v2_1
from ocpp_trio.messages._base import Direction, Message, Request, Response
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.events import Exchange
from ocpp_trio.runtime.station import Station
from ocpp_trio.transport.server import ConnectionRequest, Rejection

__all__ = [
    "OCPP_TLS12_CIPHERS",
    "AuthenticatorStatistics",
    "PasswordChangeObserver",
    "RotationOutcome",
    "RotationResult",
    "StationAuthenticator",
    "certificate_subject",
    "check_certificate_binding",
    "generate_password",
    "rotate_password",
    "server_ssl_context",
]

logger = logging.getLogger("ocpp_trio.security")

#: The TLS 1.2 suites offered, strongest first: the four OCPP requires (A00.FR.317), plus the
#: ECDHE-RSA pair so that an RSA server certificate also gets forward secrecy. TLS 1.3 suites
#: are OpenSSL's defaults (all AEAD).
OCPP_TLS12_CIPHERS: Final = (
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
)
# Longest Basic-auth password checked; a longer one is refused without hashing it.
_MAX_PASSWORD_BYTES: Final = 512
_HEX_DIGITS: Final = frozenset(b"0123456789abcdefABCDEF")


# --------------------------------------------------------------------------------------------
# Client certificates (profile 3)


def certificate_subject(certificate: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """The subject of a certificate in :meth:`ssl.SSLSocket.getpeercert` form, as
    ``{attribute name: values}`` (e.g. ``{"commonName": ("CS001",), "organizationName":
    ("Example CPO",)}``); an attribute may occur more than once."""
    subject: dict[str, list[str]] = {}
    for rdn in certificate.get("subject", ()):
        for name, value in rdn:
            subject.setdefault(str(name), []).append(str(value))
    return {name: tuple(values) for name, values in subject.items()}


def check_certificate_binding(
    certificate: dict[str, Any],
    identity: str,
    *,
    common_name: str | None = None,
    organization: str | None = None,
) -> str | None:
    """Check that a (validated) client certificate belongs to the station (A00.FR.404/405).

    Args:
        certificate: the peer certificate, :meth:`ssl.SSLSocket.getpeercert` form.
        identity: the station identity from the URL.
        common_name: the subject CN required (e.g. the serial number); ``None``: ``identity``.
        organization: the subject O required (the operator); ``None``: not checked.

    Returns:
        ``None`` when it matches, else what is wrong (for the log).
    """
    subject = certificate_subject(certificate)
    wanted_cn = identity if common_name is None else common_name
    names = subject.get("commonName", ())
    if len(names) != 1:
        return f"the certificate has {len(names)} subject CNs, not one"
    if names[0] != wanted_cn:
        return f"certificate CN {names[0]!r} is not {wanted_cn!r}"
    if organization is not None:
        orgs = subject.get("organizationName", ())
        if orgs != (organization,):
            return f"certificate O {list(orgs)!r} is not {organization!r}"
    return None


# --------------------------------------------------------------------------------------------
# The check_request implementation


@attrs.frozen(kw_only=True)
class AuthenticatorStatistics:
    """Counters of a :class:`StationAuthenticator` (a snapshot)."""

    accepted: int
    #: identities not in the store (404)
    unknown: int
    #: missing, malformed or wrong Basic credentials (401)
    bad_credentials: int
    #: a connection with another security profile than configured (403)
    wrong_profile: int
    #: a client certificate that does not belong to the station (403)
    bad_certificate: int
    #: new passwords adopted on first use (after an uncertain rotation)
    pending_adopted: int


@attrs.define
class _Counts:
    accepted: int = 0
    unknown: int = 0
    bad_credentials: int = 0
    wrong_profile: int = 0
    bad_certificate: int = 0
    pending_adopted: int = 0


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
        hash_threads: password checks running at once in worker threads; more requests wait
            (inside their handshake timeout).
    """

    def __init__(
        self,
        store: CredentialStore,
        *,
        realm: str = "OCPP",
        organization: str | None = None,
        allow_higher_profile: bool = False,
        hash_threads: int = 2,
    ) -> None:
        if '"' in realm or "\\" in realm or not realm.isprintable():
            raise ValueError("the realm must be printable and free of quotes and backslashes")
        self.store = store
        self.realm = realm
        self.organization = organization
        self.allow_higher_profile = allow_higher_profile
        self._limiter = trio.CapacityLimiter(hash_threads)
        self._counts = _Counts()

    def statistics(self) -> AuthenticatorStatistics:
        """A snapshot of the counters."""
        return AuthenticatorStatistics(**attrs.asdict(self._counts))

    async def __call__(self, request: ConnectionRequest) -> Rejection | None:
        """Check one upgrade request: ``None`` to let it through, else the refusal.

        Waits for: the store, and a worker thread for the password check. Cancellation: by the
        server's handshake timeout (a running hash finishes in its thread first).
        Exceptions: the store's own errors escape (the server answers 500).
        """
        identity = request.identity
        record = await self.store.get(identity)
        if record is None:
            self._counts.unknown += 1
            logger.warning("station %r (%s): refused: unknown station", identity, request.remote)
            return Rejection(404, "unknown station")
        profile = record.security_profile
        if profile is SecurityProfile.TLS_CLIENT_CERTIFICATE:
            return self._check_certificate(request, record)
        if not request.tls and profile is SecurityProfile.TLS_BASIC_AUTH:
            return self._wrong_profile(request, profile, "TLS is required")
        if request.tls and profile is SecurityProfile.BASIC_AUTH and not self.allow_higher_profile:
            return self._wrong_profile(request, profile, "TLS is not expected")
        return await self._check_password(request, record)

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
        problem = check_certificate_binding(
            request.peer_certificate,
            request.identity,
            common_name=record.certificate_common_name,
            organization=record.certificate_organization or self.organization,
        )
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

    async def _check_password(
        self, request: ConnectionRequest, record: StationCredentials
    ) -> Rejection | None:
        header = request.header("authorization")
        if header is None:
            return self._unauthorized(request, "no Basic credentials")
        password = _basic_password(header, request.identity)
        if isinstance(password, str):
            return self._unauthorized(request, password)
        hashes = [h for h in (record.password_hash, record.pending_password_hash) if h]
        if not hashes:
            return self._unauthorized(request, "no password is provisioned for it")
        matched = await trio.to_thread.run_sync(
            partial(_matching_hash, _candidates(password), hashes), limiter=self._limiter
        )
        if matched is None:
            return self._unauthorized(request, "wrong password")
        if matched == record.pending_password_hash:
            await self._adopt_pending(record)
        self._counts.accepted += 1
        return None

    async def _adopt_pending(self, record: StationCredentials) -> None:
        """The station used its new password: from now on only that one is accepted."""
        current = await self.store.get(record.identity)
        if current is None or current.pending_password_hash != record.pending_password_hash:
            return  # changed meanwhile; the newer state wins
        self._counts.pending_adopted += 1
        logger.info("station %r: now authenticates with its new password", record.identity)
        await self.store.put(
            attrs.evolve(
                current, password_hash=current.pending_password_hash, pending_password_hash=None
            )
        )


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


def _matching_hash(candidates: Iterable[bytes], hashes: Sequence[str]) -> str | None:
    """The first hash some candidate matches (runs in a worker thread)."""
    for encoded in hashes:
        for candidate in candidates:
            if verify_password(candidate, encoded):
                return encoded
    return None


# --------------------------------------------------------------------------------------------
# TLS

StrPath = str | os.PathLike[str]


def server_ssl_context(
    certfile: StrPath,
    keyfile: StrPath | None = None,
    *,
    password: str | None = None,
    additional_certificates: Iterable[tuple[StrPath, StrPath | None]] = (),
    client_ca: StrPath | None = None,
    require_client_certificate: bool = False,
) -> ssl.SSLContext:
    """A server-side TLS context for OCPP security profiles 2 and 3.

    TLS 1.2 or newer (A00.FR.314: older clients are refused in the handshake); TLS 1.2 suites
    :data:`OCPP_TLS12_CIPHERS`; no TLS compression, no renegotiation. To serve both the ECDSA
    and the RSA suites OCPP requires, give one certificate of each key type
    (``additional_certificates``).

    Client certificates (profile 3) are checked against ``client_ca`` **only**, never against
    the system's trust store. With ``require_client_certificate`` every client must present
    one (a server for profile-3 stations only); without it a certificate is requested and, if
    presented, must validate, so profile-2 and profile-3 stations can share the port (the
    :class:`StationAuthenticator` then requires it per station).

    Args:
        certfile: PEM server certificate chain (it may hold the key too).
        keyfile: PEM private key, when not in ``certfile``.
        password: the private key's password.
        additional_certificates: more ``(certfile, keyfile)`` pairs, of other key types.
        client_ca: PEM CA certificate(s) client certificates must chain to.
        require_client_certificate: refuse TLS clients without a certificate.

    Raises:
        ValueError: a client certificate is required but no ``client_ca`` given.
        OSError, ssl.SSLError: a file is missing or unusable.
    """
    if require_client_certificate and client_ca is None:
        raise ValueError("requiring client certificates needs a client CA file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    context.set_ciphers(":".join(OCPP_TLS12_CIPHERS))
    context.load_cert_chain(certfile, keyfile, password)
    for extra_cert, extra_key in additional_certificates:
        context.load_cert_chain(extra_cert, extra_key, password)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_certificate else ssl.CERT_OPTIONAL
    return context


# --------------------------------------------------------------------------------------------
# Password rotation

_AUTHORIZATION_KEY: Final = "AuthorizationKey"
_SECURITY_CTRLR: Final = "SecurityCtrlr"
_BASIC_AUTH_PASSWORD: Final = "BasicAuthPassword"
_PASSWORD_CHARS: Final = string.ascii_letters + string.digits
_SETVARIABLES_REQUESTS: Final = (v2_0_1.SetVariablesRequest, v2_1.SetVariablesRequest)
# Requests sent by rotate_password, by identity, so that the observer skips them. Entries go
# away with the request objects.
_HELPER_REQUESTS: dict[int, weakref.ref[Message]] = {}


class RotationOutcome(enum.Enum):
    """What a password change did to the credential store."""

    #: the station accepted: only the new password is accepted from now on
    ACCEPTED = "accepted"
    #: adoption uncertain (``RebootRequired``, no or broken answer): both are accepted until
    #: the station authenticates with the new one
    PENDING = "pending"
    #: the station refused: the old password stays the only one
    REJECTED = "rejected"


@attrs.frozen
class RotationResult:
    """How :func:`rotate_password` ended.

    Attributes:
        outcome: what it did to the store.
        status: the station's answer as it was on the wire (``"Accepted"``, ``"Rejected"``,
            ``"RebootRequired"``, ``"NotSupported"``...), ``None`` when it named none.
    """

    outcome: RotationOutcome
    status: str | None


def generate_password(version: Version | str) -> str:
    """A fresh random password for a station of ``version``.

    2.x: 40 letters and digits (``BasicAuthPassword`` is 16 to 40 characters). 1.6: a 20-byte
    ``AuthorizationKey`` as 40 hex digits.
    """
    if Version(version) is Version.V16:
        return secrets.token_hex(20).upper()
    return "".join(secrets.choice(_PASSWORD_CHARS) for _ in range(40))


def _password_request(version: Version, password: str | bytes) -> tuple[bytes, Request[Any]]:
    """The secret to hash and the CALL that sets it, for ``version``."""
    if version is Version.V16:
        key = bytes(password) if isinstance(password, bytes) else authorization_key_bytes(password)
        if not 16 <= len(key) <= 250:
            raise ValueError(f"an AuthorizationKey must be 16 to 250 bytes, not {len(key)}")
        return key, v1_6.ChangeConfigurationRequest(key=_AUTHORIZATION_KEY, value=key.hex().upper())
    if not isinstance(password, str):
        raise TypeError("an OCPP 2.x BasicAuthPassword is text (str), not bytes")
    if not 16 <= len(password) <= 40:
        raise ValueError(f"a BasicAuthPassword must be 16 to 40 characters, not {len(password)}")
    module = v2_0_1 if version is Version.V201 else v2_1
    data = module.SetVariableDataType(
        attribute_value=password,
        component=module.ComponentType(name=_SECURITY_CTRLR),
        variable=module.VariableType(name=_BASIC_AUTH_PASSWORD),
    )
    return password.encode("utf-8"), module.SetVariablesRequest(set_variable_data=(data,))


def _is_password_target(item: v2_0_1.SetVariableDataType | v2_1.SetVariableDataType) -> bool:
    return _is_password_variable(item.component, item.variable, item.attribute_type)


def _is_password_variable(
    component: v2_0_1.ComponentType | v2_1.ComponentType,
    variable: v2_0_1.VariableType | v2_1.VariableType,
    attribute_type: object,
) -> bool:
    return (
        component.name.lower() == _SECURITY_CTRLR.lower()
        and component.evse is None
        and variable.name.lower() == _BASIC_AUTH_PASSWORD.lower()
        and variable.instance is None
        and (attribute_type is None or str(attribute_type) == "Actual")
    )


def _password_in(request: Message) -> bytes | None:
    """The secret a CSMS CALL sets as the station's password, or ``None`` if it sets none."""
    if isinstance(request, v1_6.ChangeConfigurationRequest):
        if request.key.lower() != _AUTHORIZATION_KEY.lower():
            return None
        try:
            return authorization_key_bytes(request.value)
        except ValueError:
            return None  # the station must reject it: nothing changes
    if isinstance(request, _SETVARIABLES_REQUESTS):
        for item in request.set_variable_data:
            if _is_password_target(item):
                return item.attribute_value.encode("utf-8")
    return None


def _outcome_of(response: Response) -> tuple[RotationOutcome, str | None]:
    """Read the station's answer to a password change."""
    status: str | None = None
    if isinstance(response, v1_6.ChangeConfigurationResponse):
        status = str(response.status)
    elif isinstance(response, v2_0_1.SetVariablesResponse | v2_1.SetVariablesResponse):
        for result in response.set_variable_result:
            if _is_password_variable(result.component, result.variable, result.attribute_type):
                status = str(result.attribute_status)
                break
    if status == "Accepted":
        return RotationOutcome.ACCEPTED, status
    if status is None or status == "RebootRequired":
        return RotationOutcome.PENDING, status
    return RotationOutcome.REJECTED, status


async def _apply(
    store: CredentialStore,
    identity: str,
    outcome: RotationOutcome,
    secret: bytes,
    hashing: PasswordHashing | None,
) -> None:
    if outcome is RotationOutcome.REJECTED:
        logger.info("station %r: password change refused; the old password stays", identity)
        return
    encoded = await trio.to_thread.run_sync(partial(hash_password, secret, hashing=hashing))
    record = await store.get(identity)
    if record is None:
        logger.warning("station %r: password changed but the station is not in the store", identity)
        return
    if outcome is RotationOutcome.ACCEPTED:
        record = attrs.evolve(record, password_hash=encoded, pending_password_hash=None)
        logger.info("station %r: password changed; only the new one is accepted", identity)
    else:
        record = attrs.evolve(record, pending_password_hash=encoded)
        logger.info(
            "station %r: password change uncertain; old and new accepted until the new is used",
            identity,
        )
    await store.put(record)


async def rotate_password(
    station: Station,
    store: CredentialStore,
    new_password: str | bytes | None = None,
    *,
    call_timeout: float | None = None,
    hashing: PasswordHashing | None = None,
) -> RotationResult:
    """Send a new Basic-auth password to ``station`` and update ``store`` by its answer.

    2.x: ``SetVariables(SecurityCtrlr.BasicAuthPassword)`` with ``new_password`` (text, 16 to
    40 characters). 1.6: ``ChangeConfiguration(AuthorizationKey)`` with the key as hex;
    ``new_password`` is the key as bytes, or as hex text. ``None`` generates one
    (:func:`generate_password`). Accepted: only the new password is valid from now on;
    Rejected/NotSupported (A01.FR.03/04): the old one stays; ``RebootRequired``, or no answer:
    both are valid until the station authenticates with the new one (see
    :class:`RotationOutcome`).

    Waits for: the station's answer (``call_timeout``), then the store.
    Cancellation: safe; when the CALL may have gone out, the new password is recorded as
    pending (shielded, bounded) before the cancellation goes on.
    Closes: nothing.

    Raises:
        LookupError: the station has no record in ``store`` (nothing sent).
        ValueError, TypeError: ``new_password`` is not valid for the station's version.
        CallError: the station answered with a CALLERROR (store unchanged).
        CallTimeoutError, ConnectionLostError, RemoteProtocolError: no usable answer (the new
            password is recorded as pending first).
        StateError: the registration state forbids the CALL now (nothing sent).
    """
    identity = station.identity
    if await store.get(identity) is None:
        raise LookupError(f"station {identity!r} has no credentials in the store")
    if new_password is None:
        new_password = generate_password(station.version)
    secret, request = _password_request(station.version, new_password)
    _HELPER_REQUESTS[id(request)] = weakref.ref(request, partial(_forget, id(request)))
    try:
        response = await station.call(request, call_timeout=call_timeout)
    except (CallError, LocalProtocolError) as exc:  # answered with an error, or never sent
        logger.warning("station %r: password change failed: %s", identity, type(exc).__name__)
        raise
    except BaseException:
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await _apply(store, identity, RotationOutcome.PENDING, secret, hashing)
        raise
    outcome, status = _outcome_of(response)
    await _apply(store, identity, outcome, secret, hashing)
    return RotationResult(outcome, status)


def _forget(key: int, _ref: object) -> None:
    _HELPER_REQUESTS.pop(key, None)


class PasswordChangeObserver:
    """An extra handler keeping the store in step with password changes the application sends
    itself (raw ``SetVariables``/``ChangeConfiguration`` calls), by the station's answer as in
    :func:`rotate_password` (whose own calls it skips).

    Install it CSMS-wide: ``csms.add_extra_handler(PasswordChangeObserver(store),
    name="passwords", buffer=256)``. Extra handlers drop exchanges when their buffer is full;
    give it room, or use :func:`rotate_password`, which never depends on it.

    Args:
        store: the store the authenticator reads.
        hashing: how new passwords are hashed (default scrypt parameters).
    """

    def __init__(self, store: CredentialStore, *, hashing: PasswordHashing | None = None) -> None:
        self.store = store
        self.hashing = hashing

    async def __call__(self, station: Station, exchange: Exchange) -> None:
        """Look at one finished exchange; update the store if it changed the password."""
        if exchange.direction is not Direction.CSMS_TO_STATION:
            return
        request = exchange.request
        ours = _HELPER_REQUESTS.get(id(request))
        if ours is not None and ours() is request:
            return
        secret = _password_in(request)
        if secret is None:
            return
        if exchange.response is not None:
            outcome, _status = _outcome_of(exchange.response)
        elif isinstance(exchange.error, CallError):
            outcome = RotationOutcome.REJECTED
        else:  # timeout, connection lost, broken answer: it may have been applied
            outcome = RotationOutcome.PENDING
        await _apply(self.store, exchange.identity, outcome, secret, self.hashing)
