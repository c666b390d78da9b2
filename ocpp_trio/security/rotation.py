"""Password rotation without a window: the new password is recorded before the CALL goes out.

The order, for :func:`rotate_password` and :func:`send_password_change` alike:

1. the new secret is hashed, and the hash is stored as the station's *pending* password before
   the ``SetVariables(SecurityCtrlr.BasicAuthPassword)`` / ``ChangeConfiguration
   (AuthorizationKey)`` CALL is sent, so a station that applies it and reconnects at once (even
   before its answer has been read) logs in with it;
2. on ``Accepted`` the pending hash becomes the only one (the old password is refused from then
   on); on ``Rejected`` / ``NotSupported`` / a CALLERROR it is dropped and the old password
   stays the only one (A01.FR.03/04); on ``RebootRequired``, a timeout, a lost connection or a
   broken answer both stay valid until the station first logs in with the new one, which then
   replaces the old (:class:`RotationOutcome`).

Every read-modify-write of a station's record (here, and the authenticator adopting a pending
password) holds one lock per store and identity, so none overwrites another.
:class:`PasswordChangeObserver` does the same for password changes the application sends as
plain ``station.call(...)``: installed with :meth:`PasswordChangeObserver.install`, a call hook
records the pending hash before the CALL goes out and an extra handler settles it by the answer.
"""

from __future__ import annotations

import enum
import logging
import secrets
import string
import unicodedata
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Final, Generic, Protocol, TypeVar

import attrs
import trio

from ocpp_trio.domain.credentials import (
    AtomicCredentialStore,
    CredentialStore,
    PasswordHashing,
    StationCredentials,
    authorization_key_bytes,
    hash_password,
)
from ocpp_trio.errors import CallError, LocalProtocolError, StateError
from ocpp_trio.messages import v1_6, v2_0_1, v2_1
from ocpp_trio.messages._base import Direction, Message, Request, Response
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.events import Exchange, ExtraHandler
from ocpp_trio.runtime.station import CallHook, Station

__all__ = [
    "PasswordChangeObserver",
    "RotationOutcome",
    "RotationResult",
    "generate_password",
    "password_in",
    "record_lock",
    "rotate_password",
    "send_password_change",
]

logger = logging.getLogger("ocpp_trio.security")

_AUTHORIZATION_KEY: Final = "AuthorizationKey"
_SECURITY_CTRLR: Final = "SecurityCtrlr"
_BASIC_AUTH_PASSWORD: Final = "BasicAuthPassword"
_PASSWORD_CHARS: Final = string.ascii_letters + string.digits
_SETVARIABLES_REQUESTS: Final = (v2_0_1.SetVariablesRequest, v2_1.SetVariablesRequest)
V = TypeVar("V")


class _ByRequest(Generic[V]):
    """A value per request object, by identity (two equal requests are two changes), dropped
    when the request object goes away."""

    def __init__(self) -> None:
        self._items: dict[int, tuple[weakref.ref[Message], V]] = {}

    def put(self, request: Message, value: V) -> None:
        key = id(request)
        self._items[key] = (weakref.ref(request, partial(self._drop, key)), value)

    def pop(self, request: Message) -> V | None:
        item = self._items.pop(id(request), None)
        return item[1] if item is not None and item[0]() is request else None

    def __contains__(self, request: Message) -> bool:
        item = self._items.get(id(request))
        return item is not None and item[0]() is request

    def _drop(self, key: int, _ref: object) -> None:
        self._items.pop(key, None)


# Requests sent by the helpers, so that the observer skips them.
_HELPER_REQUESTS: _ByRequest[None] = _ByRequest()


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


# -- one writer per record ---------------------------------------------------------------------

_LOCKS: weakref.WeakKeyDictionary[object, dict[str, trio.Lock]] = weakref.WeakKeyDictionary()
# stores that cannot be weak dictionary keys (unhashable), by id (kept while they have locks)
_LOCKS_BY_ID: dict[int, dict[str, trio.Lock]] = {}


def _locks_of(store: CredentialStore) -> dict[str, trio.Lock]:
    try:
        return _LOCKS.setdefault(store, {})
    except TypeError:
        return _LOCKS_BY_ID.setdefault(id(store), {})


@asynccontextmanager
async def record_lock(store: CredentialStore, identity: str) -> AsyncIterator[None]:
    """Hold the lock of ``identity``'s record in ``store`` (read-modify-write under it)."""
    locks = _locks_of(store)
    lock = locks.get(identity)
    if lock is None:
        lock = locks[identity] = trio.Lock()
    try:
        async with lock:
            yield
    finally:
        if not lock.locked() and not lock.statistics().tasks_waiting:
            locks.pop(identity, None)
            if not locks:
                _LOCKS_BY_ID.pop(id(store), None)


async def update_record(
    store: CredentialStore,
    identity: str,
    change: Callable[[StationCredentials], StationCredentials | None],
    *,
    create: Callable[[], StationCredentials] | None = None,
) -> StationCredentials | None:
    """Apply ``change`` to the record of ``identity`` and write what it returns (nothing when
    it returns ``None`` or the record unchanged); without a record, write what ``create``
    makes. Returns the record as it is now (the very object ``create`` made when that was
    written), ``None`` when there is none and no ``create`` (``change`` is not run).

    Under the record's lock in this process, and, when ``store`` is shared by several
    processes (:class:`~ocpp_trio.domain.credentials.AtomicCredentialStore`), atomically
    across all of them, the first record included. ``change`` and ``create`` must only
    compute; what they raise reaches the caller and nothing is written.
    """
    async with record_lock(store, identity):
        if isinstance(store, AtomicCredentialStore):
            return await store.update(identity, change, create=create)
        record = await store.get(identity)
        if record is None:
            if create is None:
                return None
            first = create()
            await store.put(first)
            return first
        new = change(record)
        if new is not None and new != record:
            await store.put(new)
            return new
        return record


# -- the messages --------------------------------------------------------------------------------


def generate_password(version: Version | str) -> str:
    """A fresh random password for a station of ``version``.

    2.x: 40 letters and digits (``BasicAuthPassword`` is 16 to 40 characters). 1.6: a 20-byte
    ``AuthorizationKey`` as 40 hex digits.
    """
    if Version(version) is Version.V16:
        return secrets.token_hex(20).upper()
    return "".join(secrets.choice(_PASSWORD_CHARS) for _ in range(40))


def check_password_text(password: str) -> None:
    """Refuse a 2.x password with control characters (``ValueError``)."""
    if any(unicodedata.category(c) == "Cc" for c in password):
        raise ValueError("a password must not contain control characters")


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
    check_password_text(password)
    module = v2_0_1 if version is Version.V201 else v2_1
    data = module.SetVariableDataType(
        attribute_value=password,
        component=module.ComponentType(name=_SECURITY_CTRLR),
        variable=module.VariableType(name=_BASIC_AUTH_PASSWORD),
    )
    return password.encode("utf-8"), module.SetVariablesRequest(set_variable_data=(data,))


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


def password_in(request: Message) -> bytes | None:
    """The secret a CSMS CALL sets as the station's Basic-auth password, or ``None`` if it sets
    none (or one the station must refuse: then nothing changes)."""
    if isinstance(request, v1_6.ChangeConfigurationRequest):
        if request.key.lower() != _AUTHORIZATION_KEY.lower():
            return None
        try:
            return authorization_key_bytes(request.value)
        except ValueError:
            return None
    if isinstance(request, _SETVARIABLES_REQUESTS):
        for item in request.set_variable_data:
            if _is_password_variable(item.component, item.variable, item.attribute_type):
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


# -- the store side ------------------------------------------------------------------------------


async def _hash(secret: bytes, hashing: PasswordHashing | None) -> str:
    return await trio.to_thread.run_sync(partial(hash_password, secret, hashing=hashing))


async def _record_pending(
    store: CredentialStore, identity: str, secret: bytes, hashing: PasswordHashing | None
) -> tuple[str, str | None]:
    """Hash ``secret`` and store it as the pending password; returns its hash and the pending
    one it replaced.

    Raises:
        LookupError: the store has no record of ``identity``.
    """
    encoded = await _hash(secret, hashing)
    replaced: list[str | None] = [None]

    def change(record: StationCredentials) -> StationCredentials:
        replaced[0] = record.pending_password_hash
        return attrs.evolve(record, pending_password_hash=encoded)

    if await update_record(store, identity, change) is None:
        raise LookupError(f"station {identity!r} has no credentials in the store")
    return encoded, replaced[0]


async def _settle(
    store: CredentialStore,
    identity: str,
    outcome: RotationOutcome,
    encoded: str,
    previous_pending: str | None,
) -> None:
    """Apply the station's answer to a change whose hash was recorded as pending."""

    def change(record: StationCredentials) -> StationCredentials | None:
        if record.pending_password_hash != encoded:
            return None  # adopted at a login already, or a newer change took over
        if outcome is RotationOutcome.ACCEPTED:
            return attrs.evolve(record, password_hash=encoded, pending_password_hash=None)
        if outcome is RotationOutcome.REJECTED:
            return attrs.evolve(record, pending_password_hash=previous_pending)
        return None  # PENDING: both stay valid

    if outcome is RotationOutcome.ACCEPTED:
        logger.info("station %r: password changed; only the new one is accepted", identity)
    elif outcome is RotationOutcome.REJECTED:
        logger.info("station %r: password change refused; the old password stays", identity)
    else:
        logger.info(
            "station %r: password change uncertain; old and new accepted until the new is used",
            identity,
        )
    await update_record(store, identity, change)


async def _apply_after_the_fact(
    store: CredentialStore,
    identity: str,
    outcome: RotationOutcome,
    secret: bytes,
    hashing: PasswordHashing | None,
) -> None:
    """For a change seen only once answered (the observer): store it by its outcome."""
    if outcome is RotationOutcome.REJECTED:
        logger.info("station %r: password change refused; the old password stays", identity)
        return
    encoded = await _hash(secret, hashing)

    def change(record: StationCredentials) -> StationCredentials:
        if outcome is RotationOutcome.ACCEPTED:
            return attrs.evolve(record, password_hash=encoded, pending_password_hash=None)
        return attrs.evolve(record, pending_password_hash=encoded)

    if await update_record(store, identity, change) is None:
        logger.warning("station %r: password changed but the station is not in the store", identity)
        return
    logger.info("station %r: password change stored (%s)", identity, outcome.value)


async def _change(
    station: Station,
    store: CredentialStore,
    request: Request[Any],
    secret: bytes,
    *,
    call_timeout: float | None,
    hashing: PasswordHashing | None,
) -> tuple[Response, RotationOutcome, str | None]:
    identity = station.identity
    encoded, previous = await _record_pending(store, identity, secret, hashing)
    _HELPER_REQUESTS.put(request, None)
    try:
        response = await station.call(request, call_timeout=call_timeout)
    except (CallError, LocalProtocolError, StateError) as exc:
        # answered with an error, or never sent: the old password stays
        logger.warning("station %r: password change failed: %s", identity, type(exc).__name__)
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await _settle(store, identity, RotationOutcome.REJECTED, encoded, previous)
        raise
    except BaseException:
        # timeout, lost connection, broken answer, cancellation: it may have been applied, and
        # the pending record already says so
        logger.warning("station %r: password change unanswered; both stay valid", identity)
        raise
    outcome, status = _outcome_of(response)
    await _settle(store, identity, outcome, encoded, previous)
    return response, outcome, status


async def rotate_password(
    station: Station,
    store: CredentialStore,
    new_password: str | bytes | None = None,
    *,
    call_timeout: float | None = None,
    hashing: PasswordHashing | None = None,
) -> RotationResult:
    """Send a new Basic-auth password to ``station``, recording it first (see the module docs).

    2.x: ``SetVariables(SecurityCtrlr.BasicAuthPassword)`` with ``new_password`` (text, 16 to
    40 characters, no control characters). 1.6: ``ChangeConfiguration(AuthorizationKey)`` with
    the key as hex; ``new_password`` is the key as bytes, or as hex text. ``None`` generates one
    (:func:`generate_password`).

    Waits for: the hash (a worker thread), the store, the station's answer (``call_timeout``),
    the store again.
    Cancellation: safe; once the CALL may have gone out, the pending record stands.
    Closes: nothing.

    Raises:
        LookupError: the station has no record in ``store`` (nothing sent).
        ValueError, TypeError: ``new_password`` is not valid for the station's version.
        CallError: the station answered with a CALLERROR (the old password stays).
        CallTimeoutError, ConnectionLostError, RemoteProtocolError: no usable answer (the new
            password stays pending).
        StateError: the registration state forbids the CALL now (nothing sent).
    """
    if new_password is None:
        new_password = generate_password(station.version)
    secret, request = _password_request(station.version, new_password)
    if await store.get(station.identity) is None:
        raise LookupError(f"station {station.identity!r} has no credentials in the store")
    _response, outcome, status = await _change(
        station, store, request, secret, call_timeout=call_timeout, hashing=hashing
    )
    return RotationResult(outcome, status)


async def send_password_change(
    station: Station,
    store: CredentialStore,
    request: Request[Any],
    *,
    call_timeout: float | None = None,
    hashing: PasswordHashing | None = None,
) -> Response:
    """``station.call(request)`` for an application-built request, and when it sets the
    Basic-auth password (:func:`password_in`), record it first and settle it by the answer,
    as :func:`rotate_password` does.

    Waits for, cancellation, exceptions: as :func:`rotate_password` (``LookupError`` only when
    the request sets a password); the station's response is returned.
    """
    secret = _password_to_set(request)
    if secret is None:
        return await station.call(request, call_timeout=call_timeout)
    response, _outcome, _status = await _change(
        station, store, request, secret, call_timeout=call_timeout, hashing=hashing
    )
    return response


def _password_to_set(request: Message) -> bytes | None:
    """The secret ``request`` sets (:func:`password_in`), checked as a 2.x password.

    Raises:
        ValueError: a 2.x password that is not 16 to 40 characters or has control characters.
    """
    secret = password_in(request)
    if secret is not None and isinstance(request, _SETVARIABLES_REQUESTS):
        check_password_text(secret.decode("utf-8"))
    return secret


class HookedPeer(Protocol):
    """What :meth:`PasswordChangeObserver.install` installs on: a :class:`~ocpp_trio.CSMS` (for
    every station) or one :class:`~ocpp_trio.Station`."""

    def add_extra_handler(
        self,
        handler: ExtraHandler[Station],
        *,
        buffer: int | None = None,
        max_failures: int | None = None,
        name: str | None = None,
    ) -> None: ...

    def add_call_hook(self, hook: CallHook) -> None: ...


class PasswordChangeObserver:
    """Keeps the store in step with password changes the application sends itself as plain
    ``SetVariables``/``ChangeConfiguration`` calls, without a window, as :func:`rotate_password`
    does (whose calls, and :func:`send_password_change`'s, it skips).

    Two parts, both installed by :meth:`install`: a call hook (:meth:`before_call`) that
    records the new password as pending before the CALL goes out, so a station that applies it
    and reconnects at once logs in with it; and an extra handler (the observer itself) that
    settles it by the answer: ``Accepted`` makes it the only one, ``Rejected`` or a CALLERROR
    drops it, no answer leaves both valid.  A change the hook did not see (installed as an extra
    handler alone, a station without a record) is stored once answered.

    Install it CSMS-wide: ``PasswordChangeObserver(store).install(csms)``.  Extra handlers drop
    exchanges when their buffer is full (the change then stays pending: both passwords valid
    until the station logs in with the new one); :meth:`install` gives it room.

    Args:
        store: the store the authenticator reads.
        hashing: how new passwords are hashed (default scrypt parameters).
    """

    def __init__(self, store: CredentialStore, *, hashing: PasswordHashing | None = None) -> None:
        self.store = store
        self.hashing = hashing
        # the changes recorded by before_call and not yet settled: the pending hash, and the
        # pending hash it replaced
        self._recorded: _ByRequest[tuple[str, str | None]] = _ByRequest()

    def install(self, target: HookedPeer, *, buffer: int = 256) -> None:
        """Install on ``target`` (a CSMS, or one station): :meth:`before_call` as a call hook,
        the observer as an extra handler named ``passwords`` with room for ``buffer``
        exchanges."""
        target.add_call_hook(self.before_call)
        target.add_extra_handler(self, name="passwords", buffer=buffer)

    async def before_call(self, station: Station, request: Request[Any]) -> None:
        """The call hook: when ``request`` sets the password, record its hash as pending.

        Raises:
            ValueError: a 2.x password that is not 16 to 40 characters or has control
                characters (nothing is sent).
        """
        if request in _HELPER_REQUESTS:
            return
        secret = _password_to_set(request)
        if secret is None:
            return
        try:
            recorded = await _record_pending(self.store, station.identity, secret, self.hashing)
        except LookupError:
            return  # not a station the store knows: nothing to keep in step
        self._recorded.put(request, recorded)

    async def __call__(self, station: Station, exchange: Exchange) -> None:
        """Look at one finished exchange; update the store if it changed the password."""
        if exchange.direction is not Direction.CSMS_TO_STATION:
            return
        request = exchange.request
        if request in _HELPER_REQUESTS:
            return
        secret = password_in(request)
        if secret is None:
            return
        if exchange.response is not None:
            outcome, _status = _outcome_of(exchange.response)
        elif isinstance(exchange.error, CallError):
            outcome = RotationOutcome.REJECTED
        else:  # timeout, connection lost, broken answer: it may have been applied
            outcome = RotationOutcome.PENDING
        recorded = self._recorded.pop(request)
        if recorded is not None:
            encoded, previous = recorded
            await _settle(self.store, exchange.identity, outcome, encoded, previous)
            return
        await _apply_after_the_fact(self.store, exchange.identity, outcome, secret, self.hashing)
