"""Password rotation without a window: recorded before the CALL, settled by the answer, and a
station that reconnects at once with its new password is never refused.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext
from functools import partial
from typing import Any

import attrs
import pytest
import trio
from helpers.flood import login
from helpers.secrets import password_result
from helpers.station import FakeStation, boot_request, boot_router
from helpers.tls import SERVER, refusal
from helpers.websocket import TrioWebSocketPeer
from trio_websocket import WebSocketConnection, wrap_client_stream

from ocpp_trio import CallError, ErrorCode, Version
from ocpp_trio.csms.core import CSMS, CSMSConfig, open_csms
from ocpp_trio.domain.credentials import (
    CredentialStore,
    InMemoryCredentialStore,
    PasswordHashing,
    StationCredentials,
    hash_password,
    verify_password,
)
from ocpp_trio.errors import CallTimeoutError, SecurityConfigError
from ocpp_trio.messages import v1_6, v2_0_1
from ocpp_trio.protocol.rpc import IncomingCall
from ocpp_trio.runtime.station import Station, StationConfig
from ocpp_trio.security.auth import StationAuthenticator
from ocpp_trio.security.config import parse_stations
from ocpp_trio.security.rotation import (
    PasswordChangeObserver,
    RotationOutcome,
    rotate_password,
    send_password_change,
)
from ocpp_trio.store.sqlite import open_sqlite_store
from ocpp_trio.transport.base import memory_transport_pair

CHEAP = PasswordHashing(scrypt_log2_n=6, scrypt_r=4)
V16, V201 = Version.V16, Version.V201
PW0 = "first-password-0000000"


def password(n: int) -> str:
    return f"rotated-password-{n:06d}"


def set_result(status: str) -> v2_0_1.SetVariablesResponse:
    response: v2_0_1.SetVariablesResponse = password_result(V201, status)
    return response


async def answer_with(fake: FakeStation, status: str) -> None:
    """Answer the next password change with ``status``."""
    call = await fake.expect_call()
    await fake.answer(call, set_result(status))


def record(identity: str = "CS1", secret: str | bytes = PW0) -> StationCredentials:
    return StationCredentials(
        identity=identity, security_profile=1, password_hash=hash_password(secret, hashing=CHEAP)
    )


def matches(encoded: str | None, secret: str | bytes) -> bool:
    return encoded is not None and verify_password(secret, encoded)


async def pending_while_sent_then(
    store: CredentialStore, seen: list[StationCredentials | None], new: str
) -> StationCredentials:
    """Check that while the station had the CALL, the old password was the current one and
    ``new`` the pending one (``seen``: the record read then); return the record now."""
    [during] = seen
    assert during is not None
    assert matches(during.password_hash, PW0)
    assert matches(during.pending_password_hash, new)
    after = await store.get("CS1")
    assert after is not None
    return after


# -- the order of writes, over memory transports ------------------------------------------------


@asynccontextmanager
async def connected(
    version: Version = V201, call_timeout: float = 5, observer: PasswordChangeObserver | None = None
) -> AsyncIterator[tuple[Station, FakeStation]]:
    csms = CSMS(boot_router(), config=CSMSConfig(station=StationConfig(call_timeout=call_timeout)))
    if observer is not None:
        observer.install(csms)
    ours, theirs = memory_transport_pair()
    async with trio.open_nursery() as nursery:
        await nursery.start(csms.run)  # where CSMS-wide extra handlers run
        station: Station = await nursery.start(partial(csms.serve_station, ours, "CS1", version))
        fake = FakeStation(theirs, version)
        await fake.call(boot_request(version))
        yield station, fake
        nursery.cancel_scope.cancel()


async def test_the_new_password_is_pending_before_the_call_goes_out(autojump_clock: Any) -> None:
    store = InMemoryCredentialStore([record()])
    seen: list[StationCredentials | None] = []

    async def station_side(fake: FakeStation) -> None:
        call = await fake.expect_call()
        seen.append(await store.get("CS1"))  # what a login would read right now
        await fake.answer(call, set_result("Accepted"))

    async with connected() as (station, fake), trio.open_nursery() as nursery:
        nursery.start_soon(station_side, fake)
        result = await rotate_password(station, store, password(1), hashing=CHEAP)
    assert result.outcome is RotationOutcome.ACCEPTED
    after = await pending_while_sent_then(store, seen, password(1))
    assert matches(after.password_hash, password(1))
    assert after.pending_password_hash is None


@pytest.mark.parametrize(
    ("answer", "raised", "old_ok", "new_ok"),
    [
        (set_result("Rejected"), None, True, False),
        (CallError(ErrorCode.INTERNAL_ERROR, "no"), CallError, True, False),
        (None, CallTimeoutError, True, True),  # no answer: it may have been applied
    ],
    ids=["rejected", "callerror", "timeout"],
)
async def test_the_answer_settles_the_pending_password(
    autojump_clock: Any, answer: Any, raised: type[Exception] | None, old_ok: bool, new_ok: bool
) -> None:
    store = InMemoryCredentialStore([record()])

    async def station_side(fake: FakeStation) -> None:
        call = await fake.expect_call()
        if isinstance(answer, CallError):
            await fake.transport.send_message(
                fake.rpc.answer_error(call.message_id, answer.code, answer.description, {})
            )
        elif answer is not None:
            await fake.answer(call, answer)

    async with connected(call_timeout=2) as (station, fake), trio.open_nursery() as nursery:
        nursery.start_soon(station_side, fake)
        if raised is None:
            result = await rotate_password(station, store, password(1), hashing=CHEAP)
            assert result.outcome is RotationOutcome.REJECTED
        else:
            with pytest.raises(raised):
                await rotate_password(station, store, password(1), hashing=CHEAP)
    after = await store.get("CS1")
    assert after is not None
    accepted = {h for h in (after.password_hash, after.pending_password_hash) if h}
    assert any(matches(h, PW0) for h in accepted) is old_ok
    assert any(matches(h, password(1)) for h in accepted) is new_ok


async def test_a_rejected_change_restores_an_earlier_uncertain_one(autojump_clock: Any) -> None:
    uncertain = hash_password(password(1), hashing=CHEAP)
    store = InMemoryCredentialStore([attrs.evolve(record(), pending_password_hash=uncertain)])

    async with connected() as (station, fake), trio.open_nursery() as nursery:
        nursery.start_soon(answer_with, fake, "Rejected")
        result = await rotate_password(station, store, password(2), hashing=CHEAP)
    assert result.outcome is RotationOutcome.REJECTED
    after = await store.get("CS1")
    assert after is not None
    assert after.pending_password_hash == uncertain


async def test_send_password_change_for_application_requests(autojump_clock: Any) -> None:
    store = InMemoryCredentialStore([record(secret=bytes(range(1, 21)))])
    key = bytes(range(50, 70))
    seen: list[StationCredentials | None] = []

    async def station_side(fake: FakeStation) -> None:
        call = await fake.expect_call()
        seen.append(await store.get("CS1"))
        await fake.answer(
            call, v1_6.ChangeConfigurationResponse(status=v1_6.ConfigurationStatus.ACCEPTED)
        )

    async with connected(V16) as (station, fake), trio.open_nursery() as nursery:
        nursery.start_soon(station_side, fake)
        request = v1_6.ChangeConfigurationRequest(key="AuthorizationKey", value=key.hex())
        response = await send_password_change(station, store, request, hashing=CHEAP)
        assert response.status == "Accepted"
    assert seen[0] is not None
    assert matches(seen[0].pending_password_hash, key)
    after = await store.get("CS1")
    assert after is not None
    assert matches(after.password_hash, key)


def password_request(new: str) -> v2_0_1.SetVariablesRequest:
    """The SetVariables an application builds itself to change the password."""
    data = v2_0_1.SetVariableDataType(
        attribute_value=new,
        component=v2_0_1.ComponentType(name="SecurityCtrlr"),
        variable=v2_0_1.VariableType(name="BasicAuthPassword"),
    )
    return v2_0_1.SetVariablesRequest(set_variable_data=(data,))


@pytest.mark.parametrize(
    ("answer", "old_ok", "new_ok"),
    [
        (set_result("Accepted"), False, True),
        (set_result("Rejected"), True, False),
        (CallError(ErrorCode.INTERNAL_ERROR, "no"), True, False),
        (None, True, True),  # no answer: it may have been applied
    ],
    ids=["accepted", "rejected", "callerror", "timeout"],
)
@pytest.mark.parametrize("raw", [False, True], ids=["call", "call_raw"])
async def test_the_observer_records_a_plain_call_before_it_goes_out(
    autojump_clock: Any, answer: Any, old_ok: bool, new_ok: bool, raw: bool
) -> None:
    # an application's own station.call: the observer's call hook records the new password as
    # pending before the station sees the CALL, and its extra handler settles it by the answer
    earlier = hash_password(password(9), hashing=CHEAP)  # an uncertain change from before
    store = InMemoryCredentialStore([attrs.evolve(record(), pending_password_hash=earlier)])
    seen: list[StationCredentials | None] = []

    async def station_side(fake: FakeStation) -> None:
        call = await fake.expect_call()
        seen.append(await store.get("CS1"))  # what a login would read right now
        if isinstance(answer, CallError):
            await fake.transport.send_message(
                fake.rpc.answer_error(call.message_id, answer.code, answer.description, {})
            )
        elif answer is not None:
            await fake.answer(call, answer)

    observer = PasswordChangeObserver(store, hashing=CHEAP)
    async with (
        connected(call_timeout=2, observer=observer) as (station, fake),
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(station_side, fake)
        request = password_request(password(1))
        failing = answer is None or isinstance(answer, CallError)
        with pytest.raises((CallError, CallTimeoutError)) if failing else nullcontext():
            if raw:
                await station.call_raw("SetVariables", request.to_json())
            else:
                await station.call(request)
        await trio.sleep(1)  # the extra handler settles it (autojump: no real wait)
    after = await pending_while_sent_then(store, seen, password(1))
    valid = {h for h in (after.password_hash, after.pending_password_hash) if h}
    assert any(matches(h, PW0) for h in valid) is old_ok
    assert any(matches(h, password(1)) for h in valid) is new_ok
    if not new_ok:  # refused: the earlier uncertain change is back, as with rotate_password
        assert after.pending_password_hash == earlier


async def test_the_observer_refuses_a_bad_password_before_anything_is_sent(
    autojump_clock: Any,
) -> None:
    store = InMemoryCredentialStore([record()])
    observer = PasswordChangeObserver(store, hashing=CHEAP)
    async with connected(observer=observer) as (station, _fake):
        with pytest.raises(ValueError, match="control"):
            await station.call(password_request("with-a-tab\there-000000"))
        assert station.statistics().calls_sent == 0
    after = await store.get("CS1")
    assert after is not None
    assert after.pending_password_hash is None


# -- the authenticator reads the newest record -------------------------------------------------


class RotatingStore(InMemoryCredentialStore):
    """A store where a rotation lands between the authenticator's first read and its second:
    ``on_get`` runs before every read."""

    def __init__(self, records: list[StationCredentials]) -> None:
        super().__init__(records)
        self.on_get: Callable[[int], Any] = lambda n: None
        self.reads = 0

    async def get(self, identity: str) -> StationCredentials | None:
        self.reads += 1
        change = self.on_get(self.reads)
        if change is not None:
            await self.put(change)
        return await super().get(identity)


async def test_a_check_racing_with_a_rotation_sees_the_newest_record() -> None:
    base = record()
    store = RotatingStore([base])
    rotated = attrs.evolve(base, password_hash=hash_password(password(1), hashing=CHEAP))
    # the rotation lands after the first read: the new password is known only to the second
    store.on_get = lambda n: rotated if n == 2 else None
    auth = StationAuthenticator(store)
    assert await auth(login("CS1", password(1))) is None
    # and the old one, accepted by the first read's record, is refused by the newest
    store2 = RotatingStore([base])
    store2.on_get = lambda n: rotated if n == 2 else None
    refused = await StationAuthenticator(store2)(login("CS1", PW0))
    assert refused is not None
    assert refused.status_code == 401


# -- the station reconnects within a millisecond of its answer, over real sockets ---------------


def basic_header(identity: str, secret: str) -> tuple[bytes, bytes]:
    token = base64.b64encode(f"{identity}:{secret}".encode()).decode()
    return (b"Authorization", f"Basic {token}".encode())


async def upgrade(
    nursery: trio.Nursery, stream: trio.SocketStream, identity: str, secret: str
) -> WebSocketConnection:
    """The upgraded connection on ``stream`` (its tasks in ``nursery``)."""
    with trio.fail_after(5):
        return await wrap_client_stream(
            nursery,
            stream,
            "127.0.0.1",
            f"/{identity}",
            subprotocols=["ocpp2.0.1"],
            extra_headers=[basic_header(identity, secret)],
        )


async def rotate_in_background(
    csms: CSMS,
    store: CredentialStore,
    new: str,
    outcomes: list[object],
    done: trio.Event,
    plain: bool,
) -> None:
    station = csms.get_station("CS1")
    assert station is not None
    try:
        if plain:  # the application's own call, kept in step by the observer
            response = await station.call(password_request(new))
            [result] = response.set_variable_result
            accepted = result.attribute_status.value == "Accepted"
            outcomes.append(RotationOutcome.ACCEPTED if accepted else result.attribute_status)
        else:
            outcomes.append((await rotate_password(station, store, new, hashing=CHEAP)).outcome)
    except Exception as exc:  # the old connection may be replaced before its answer is read
        outcomes.append(type(exc).__name__)
    finally:
        done.set()


@pytest.mark.slow
@pytest.mark.parametrize("plain", [False, True], ids=["rotate_password", "observed_call"])
async def test_reconnecting_within_a_millisecond_of_the_answer_100_times(
    tmp_path: Any, plain: bool
) -> None:
    rounds = 100
    delays: list[float] = []
    outcomes: list[object] = []
    streams: list[trio.SocketStream] = []
    async with open_sqlite_store(tmp_path / "credentials.db") as db:
        store = db.credentials
        await store.put(record())
        auth = StationAuthenticator(store)
        async with (
            open_csms(
                boot_router(), "127.0.0.1", 0, config=CSMSConfig(server=SERVER), check_request=auth
            ) as csms,
            trio.open_nursery() as background,
        ):
            assert csms.server_info is not None
            port = csms.server_info.port
            if plain:
                PasswordChangeObserver(store, hashing=CHEAP).install(csms)
            current = PW0
            streams.append(await trio.open_tcp_stream("127.0.0.1", port))
            ws = await upgrade(background, streams[-1], "CS1", current)
            fake = FakeStation(TrioWebSocketPeer(ws), V201)  # type: ignore[arg-type]
            await fake.call(boot_request(V201))
            for n in range(1, rounds + 1):
                with trio.fail_after(10):
                    new = password(n)
                    serving = csms.get_station("CS1")
                    done = trio.Event()
                    background.start_soon(
                        rotate_in_background, csms, store, new, outcomes, done, plain
                    )
                    call: IncomingCall = await fake.expect_call()
                    assert call.action == "SetVariables"
                    # the next connection is open before the answer goes out, so its upgrade
                    # request follows the answer without waiting for anything
                    streams.append(await trio.open_tcp_stream("127.0.0.1", port))
                    await fake.answer(call, set_result("Accepted"))
                    answered = trio.current_time()
                    # raises ConnectionRejected if refused
                    ws = await upgrade(background, streams[-1], "CS1", new)
                    delays.append(trio.current_time() - answered)
                    await done.wait()
                    fake = FakeStation(TrioWebSocketPeer(ws), V201)  # type: ignore[arg-type]
                    # the server registers the new connection just after the client sees 101,
                    # and serves it just after that
                    while not _serving_anew(csms, serving):  # noqa: ASYNC110
                        await trio.sleep(0.001)
                    old, current = current, new
                    if n % 20 == 0:  # the old password is refused from now on
                        status = await refusal(port, "/CS1", headers=[basic_header("CS1", old)])
                        assert status == 401
            background.cancel_scope.cancel()
        for stream in streams:
            await stream.aclose()
    assert len(outcomes) == rounds
    assert set(outcomes) <= {RotationOutcome.ACCEPTED, "ConnectionLostError"}
    record_now = await _final(tmp_path)
    assert matches(record_now.password_hash, password(rounds))
    # measured, not asserted (wall clock): from the answer to the new connection's upgrade
    print(f"answer -> upgraded with the new password: max {max(delays) * 1e3:.1f} ms")


def _serving_anew(csms: CSMS, before: Station | None) -> bool:
    station = csms.get_station("CS1")
    return station is not None and station is not before and station.connected


async def _final(tmp_path: Any) -> StationCredentials:
    async with open_sqlite_store(tmp_path / "credentials.db") as db:
        found = await db.credentials.get("CS1")
    assert found is not None
    return found


async def test_passwords_with_control_characters_are_never_set(autojump_clock: Any) -> None:
    store = InMemoryCredentialStore([record()])
    async with connected() as (station, _fake):
        with pytest.raises(ValueError, match="control characters"):
            await rotate_password(station, store, "tab\there-password-0001", hashing=CHEAP)
    text = '[[station]]\nidentity = "X"\nsecurity_profile = 1\npassword = "a\\nb-0123456789ab"\n'
    with pytest.raises(SecurityConfigError, match="control characters"):
        parse_stations(text)
    after = await store.get("CS1")
    assert after is not None
    assert after.pending_password_hash is None  # nothing was recorded


class UnhashableStore(InMemoryCredentialStore):
    __hash__ = None  # type: ignore[assignment]


async def test_a_store_that_cannot_be_hashed_still_gets_its_lock(autojump_clock: Any) -> None:
    store = UnhashableStore([record()])

    async with connected() as (station, fake), trio.open_nursery() as nursery:
        nursery.start_soon(answer_with, fake, "Accepted")
        result = await rotate_password(station, store, password(1), hashing=CHEAP)
    assert result.outcome is RotationOutcome.ACCEPTED
    after = await store.get("CS1")
    assert after is not None
    assert matches(after.password_hash, password(1))
