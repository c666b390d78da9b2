"""Security without sockets: password hashes, the authenticator's decisions per profile,
certificate binding, password rotation over memory transports, the stations file, idle timeout.
"""

from __future__ import annotations

import base64
import logging
from functools import partial
from typing import Any

import attrs
import pytest
import trio
from helpers.secrets import password_result
from helpers.station import FakeStation, boot_request, boot_router, running_station
from hypothesis import given, settings
from hypothesis import strategies as st

from ocpp_trio import CallError, ErrorCode, Version
from ocpp_trio.csms.core import CSMS, CSMSConfig
from ocpp_trio.domain.credentials import (
    InMemoryCredentialStore,
    PasswordHashing,
    SecurityProfile,
    StationCredentials,
    authorization_key_bytes,
    check_password_hash,
    hash_password,
    verify_password,
)
from ocpp_trio.errors import CallTimeoutError, SecurityConfigError
from ocpp_trio.messages import v2_0_1
from ocpp_trio.protocol.rpc import IncomingCall
from ocpp_trio.runtime.station import Station, StationConfig
from ocpp_trio.security.auth import (
    PasswordChangeObserver,
    RotationOutcome,
    StationAuthenticator,
    certificate_subject,
    check_certificate_binding,
    generate_password,
    rotate_password,
)
from ocpp_trio.security.config import build_security, load_stations_file, parse_stations
from ocpp_trio.transport.base import memory_transport_pair
from ocpp_trio.transport.server import ConnectionRequest, Rejection

# Cheap parameters: the tests check behaviour, not cost.
CHEAP = PasswordHashing(scrypt_log2_n=6, scrypt_r=4)
CHEAP_PBKDF2 = PasswordHashing(algorithm="pbkdf2-sha256", pbkdf2_iterations=1000)
PW = "correct-horse-battery-1"
PW2 = "another-password-of-24ch"
KEY = bytes(range(1, 21))  # a 20-byte 1.6 AuthorizationKey
V16, V201, V21 = Version.V16, Version.V201, Version.V21
P1, P2, P3 = (
    SecurityProfile.BASIC_AUTH,
    SecurityProfile.TLS_BASIC_AUTH,
    SecurityProfile.TLS_CLIENT_CERTIFICATE,
)


def basic(username: str | bytes, password: str | bytes) -> str:
    user = username.encode() if isinstance(username, str) else username
    secret = password.encode() if isinstance(password, str) else password
    return "Basic " + base64.b64encode(user + b":" + secret).decode("ascii")


def request(
    identity: str = "CS1",
    authorization: str | None = None,
    *,
    tls: bool = False,
    cert: dict[str, Any] | None = None,
    versions: tuple[Version, ...] = (V201,),
    remote: str = "127.0.0.1:1",
) -> ConnectionRequest:
    headers = (("authorization", authorization),) if authorization is not None else ()
    return ConnectionRequest(
        identity=identity,
        path=f"/{identity}",
        offered_versions=versions,
        offered_subprotocols=tuple(f"ocpp{v.value}" for v in versions),
        headers=headers,
        remote=remote,
        tls=tls,
        peer_certificate=cert,
    )


def cert(cn: str | None = "CS1", o: str | None = "CPO", *, extra_cn: str | None = None) -> dict:
    subject: list[tuple[tuple[str, str], ...]] = [(("countryName", "NL"),)]
    if o is not None:
        subject.append((("organizationName", o),))
    if cn is not None:
        subject.append((("commonName", cn),))
    if extra_cn is not None:
        subject.append((("commonName", extra_cn),))
    return {"subject": tuple(subject)}


def record(identity: str = "CS1", profile: int = 1, password: str | bytes = PW, **kw: Any):
    return StationCredentials(
        identity=identity,
        security_profile=profile,
        password_hash=hash_password(password, hashing=CHEAP),
        **kw,
    )


def authenticator(*records: StationCredentials, **kw: Any) -> StationAuthenticator:
    return StationAuthenticator(InMemoryCredentialStore(records), **kw)


# --------------------------------------------------------------------------------------------
# Password hashes


@pytest.mark.parametrize("hashing", [CHEAP, CHEAP_PBKDF2], ids=["scrypt", "pbkdf2"])
def test_hash_roundtrip_and_salting(hashing):
    first = hash_password(PW, hashing=hashing)
    second = hash_password(PW, hashing=hashing)
    assert first != second  # salted
    assert PW not in first
    assert first.startswith(hashing.algorithm + "$")
    assert verify_password(PW, first)
    assert verify_password(PW.encode(), second)
    assert not verify_password(PW + "x", first)
    assert not verify_password(b"", first)
    assert check_password_hash(first) == first


def test_default_hashing_is_scrypt_2_14():
    encoded = hash_password("x" * 16)
    assert encoded.startswith("scrypt$14$8$1$")
    assert verify_password("x" * 16, encoded)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "plaintext",
        "md5$abc$def",
        "scrypt$14$8$1$c2FsdHNhbHQ",
        "scrypt$x$8$1$c2FsdHNhbHQ$" + "A" * 43,
        "scrypt$30$8$1$c2FsdHNhbHQ$" + "A" * 43,  # 2**30: too much memory
        "scrypt$20$32$1$c2FsdHNhbHQ$" + "A" * 43,
        "scrypt$14$8$1$c2Fs$" + "A" * 43,  # salt too short
        "scrypt$14$8$1$c2FsdHNhbHQ$AAAA",  # digest too short
        "scrypt$14$8$1$!!!!!!!!!!!$" + "A" * 43,
        "pbkdf2-sha256$1$c2FsdHNhbHQ$" + "A" * 43,
        "pbkdf2-sha256$99999999999$c2FsdHNhbHQ$" + "A" * 43,
    ],
)
def test_malformed_hashes_are_rejected_and_match_nothing(bad):
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by problem
        check_password_hash(bad)
    assert not verify_password("anything", bad)
    with pytest.raises(ValueError):  # noqa: PT011
        StationCredentials(identity="X", security_profile=1, password_hash=bad)


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.binary(min_size=1, max_size=64))
def test_hash_verifies_exactly_its_password(password, other):
    encoded = hash_password(password, hashing=CHEAP)
    assert verify_password(password, encoded)
    assert verify_password(other, encoded) == (other == password)


def test_authorization_key_bytes():
    assert authorization_key_bytes(KEY.hex().upper()) == KEY
    assert authorization_key_bytes(" " + KEY.hex() + "\n") == KEY
    for bad in ["abc", "zz" * 20, "00" * 15, ""]:
        with pytest.raises(ValueError):  # noqa: PT011
            authorization_key_bytes(bad)


async def test_in_memory_store():
    a, b = record("A"), record("B", 3)
    store = InMemoryCredentialStore([a])
    assert await store.get("A") is a
    assert await store.get("B") is None
    await store.put(b)
    assert {r.identity for r in store} == {"A", "B"}
    assert len(store) == 2
    await store.delete("A")
    await store.delete("A")
    assert await store.get("A") is None
    with pytest.raises(ValueError, match="twice"):
        InMemoryCredentialStore([a, a])


def test_record_repr_hides_hashes():
    rec = record()
    assert rec.security_profile is P1
    assert "scrypt" not in repr(rec)
    with pytest.raises(ValueError):  # noqa: PT011
        StationCredentials(identity="X", security_profile=4)


# --------------------------------------------------------------------------------------------
# The authenticator: profiles 1 and 2


async def test_profile_1_accepts_the_right_password():
    auth = authenticator(record())
    assert await auth(request(authorization=basic("CS1", PW))) is None
    assert auth.statistics().accepted == 1


@pytest.mark.parametrize(
    ("authorization", "problem"),
    [
        (None, "no Basic credentials"),
        (basic("CS1", "wrong-password-123"), "wrong password"),
        (basic("CS2", PW), "username"),
        (basic("cs1", PW), "username"),
        (basic("CS1", ""), "empty"),
        (basic("CS1", "x" * 600), "over-long"),
        ("Bearer abc", "not Basic"),
        ("Basic !!!notbase64", "malformed"),
        ("Basic " + base64.b64encode(b"CS1" + PW.encode()).decode(), "username"),
        ("Basic", "malformed"),
    ],
)
async def test_profile_1_refusals_are_401_with_a_challenge(caplog, authorization, problem):
    auth = authenticator(record(), realm="My CSMS")
    rejection = await auth(request(authorization=authorization))
    assert rejection == Rejection(
        401,
        "authentication required",
        (("WWW-Authenticate", 'Basic realm="My CSMS", charset="UTF-8"'),),
    )
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert problem in warning.getMessage()
    assert PW not in caplog.text
    assert auth.statistics().bad_credentials == 1


async def test_basic_scheme_is_case_insensitive_and_utf8_passwords_work():
    password = "päss-wörd-ünïcode-✓"
    auth = authenticator(record(password=password))
    header = basic("CS1", password).replace("Basic", "bAsIc")
    assert await auth(request(authorization=header)) is None


async def test_identity_with_colon_on_1_6():
    auth = authenticator(record("CS:01"))
    assert await auth(request("CS:01", basic("CS:01", PW))) is None
    assert (await auth(request("CS:01", basic("CS:01", PW + ":")))) is not None


async def test_authorization_key_accepted_as_raw_bytes_and_as_hex():
    auth = authenticator(record(password=KEY))
    for sent in (KEY, KEY.hex(), KEY.hex().upper()):
        assert await auth(request(authorization=basic("CS1", sent), versions=(V16,))) is None
    assert await auth(request(authorization=basic("CS1", KEY[:-1]), versions=(V16,))) is not None
    # raw key bytes (control characters) only where the station offers 1.6
    refused = await auth(request(authorization=basic("CS1", KEY)))
    assert refused is not None
    assert refused.status_code == 401


async def test_a_password_that_looks_like_hex_is_still_itself():
    hexish = "0123456789abcdef0123456789abcdef"
    auth = authenticator(record(password=hexish))
    assert await auth(request(authorization=basic("CS1", hexish))) is None


async def test_unknown_station_is_404(caplog):
    auth = authenticator(record())
    rejection = await auth(request("NOPE", basic("NOPE", PW)))
    assert rejection is not None
    assert rejection.status_code == 404
    assert auth.statistics().unknown == 1
    assert "unknown station" in caplog.text


async def test_no_password_provisioned_is_401():
    auth = authenticator(StationCredentials(identity="CS1", security_profile=1))
    rejection = await auth(request(authorization=basic("CS1", PW)))
    assert rejection is not None
    assert rejection.status_code == 401


async def test_profile_mismatch_is_403():
    auth = authenticator(record("P1", 1), record("P2", 2))
    # profile 2 without TLS: a downgrade
    refused = await auth(request("P2", basic("P2", PW)))
    assert refused is not None
    assert refused.status_code == 403
    assert await auth(request("P2", basic("P2", PW), tls=True)) is None
    # profile 1 over TLS: another profile (A00.FR.002)
    refused = await auth(request("P1", basic("P1", PW), tls=True))
    assert refused is not None
    assert refused.status_code == 403
    assert auth.statistics().wrong_profile == 2
    lenient = authenticator(record("P1", 1), allow_higher_profile=True)
    assert await lenient(request("P1", basic("P1", PW), tls=True)) is None


async def test_profile_2_station_may_present_a_certificate_but_needs_its_password():
    auth = authenticator(record("CS1", 2))
    assert await auth(request(authorization=basic("CS1", PW), tls=True, cert=cert())) is None
    refused = await auth(request(tls=True, cert=cert()))
    assert refused is not None
    assert refused.status_code == 401


def test_realm_must_be_safe():
    with pytest.raises(ValueError, match="realm"):
        StationAuthenticator(InMemoryCredentialStore(), realm='a"b')


# --------------------------------------------------------------------------------------------
# Profile 3


def test_certificate_subject_and_binding():
    c = cert("SN-1", "CPO")
    assert certificate_subject(c) == {
        "countryName": ("NL",),
        "organizationName": ("CPO",),
        "commonName": ("SN-1",),
    }
    assert check_certificate_binding(c, "SN-1") is None
    assert check_certificate_binding(c, "CS1", common_name="SN-1", organization="CPO") is None
    assert "CN" in (check_certificate_binding(c, "CS1") or "")
    assert "O " in (check_certificate_binding(c, "SN-1", organization="Other") or "")
    assert "O " in (check_certificate_binding(cert("SN-1", None), "SN-1", organization="CPO") or "")
    assert "2 subject CNs" in (check_certificate_binding(cert("SN-1", extra_cn="X"), "SN-1") or "")
    assert "0 subject CNs" in (check_certificate_binding(cert(None), "SN-1") or "")
    assert check_certificate_binding({}, "x") is not None


async def test_profile_3_checks():
    auth = authenticator(
        StationCredentials(identity="CS1", security_profile=3),
        StationCredentials(
            identity="CS2",
            security_profile=3,
            certificate_common_name="SERIAL-2",
            certificate_organization="Other CPO",
        ),
        organization="CPO",
    )
    assert await auth(request("CS1", tls=True, cert=cert("CS1", "CPO"))) is None
    # Basic auth on profile 3 is ignored, not refused
    assert await auth(request("CS1", basic("CS1", "x"), tls=True, cert=cert("CS1"))) is None
    assert await auth(request("CS2", tls=True, cert=cert("SERIAL-2", "Other CPO"))) is None
    cases = [
        request("CS1", tls=True, cert=cert("CS2", "CPO")),  # wrong CN
        request("CS1", tls=True, cert=cert("CS1", "Evil")),  # wrong O
        request("CS2", tls=True, cert=cert("CS2", "Other CPO")),  # CN must be the serial
        request("CS1", tls=True),  # no certificate: a downgrade to profile 2
        request("CS1", basic("CS1", PW)),  # no TLS
    ]
    for case in cases:
        refused = await auth(case)
        assert refused is not None
        assert refused.status_code == 403
    stats = auth.statistics()
    assert (stats.accepted, stats.bad_certificate, stats.wrong_profile) == (3, 3, 2)


# --------------------------------------------------------------------------------------------
# Password rotation over memory transports


async def connected(nursery: trio.Nursery, version: Version, identity: str = "CS1"):
    csms = CSMS(boot_router(), config=CSMSConfig(station=StationConfig(call_timeout=5)))
    ours, theirs = memory_transport_pair()
    station: Station = await nursery.start(partial(csms.serve_station, ours, identity, version))
    fake = FakeStation(theirs, version)
    await fake.exchange(boot_request(version))
    return csms, station, fake


async def answer_next(fake: FakeStation, status: str) -> IncomingCall:
    call = await fake.expect_call()
    await fake.answer(call, password_result(fake.version, status))
    return call


async def accepts(store: InMemoryCredentialStore, password: str | bytes, identity="CS1") -> bool:
    auth = StationAuthenticator(store)
    return await auth(request(identity, basic(identity, password), versions=tuple(Version))) is None


OLD_NEW = {V16: (KEY, bytes(range(100, 120))), V201: (PW, PW2), V21: (PW, PW2)}


@pytest.mark.parametrize("version", list(Version))
@pytest.mark.parametrize(
    ("status", "outcome", "old_ok", "new_ok"),
    [
        ("Accepted", RotationOutcome.ACCEPTED, False, True),
        ("Rejected", RotationOutcome.REJECTED, True, False),
        ("RebootRequired", RotationOutcome.PENDING, True, True),
    ],
)
async def test_rotate_password(autojump_clock, version, status, outcome, old_ok, new_ok):
    old, new = OLD_NEW[version]
    store = InMemoryCredentialStore([record(password=old)])
    async with trio.open_nursery() as nursery:
        _csms, station, fake = await connected(nursery, version)
        nursery.start_soon(answer_next, fake, status)
        result = await rotate_password(station, store, new, hashing=CHEAP)
        assert result.outcome is outcome
        assert result.status == status
        nursery.cancel_scope.cancel()
    assert await accepts(store, old) is old_ok
    assert await accepts(store, new) is new_ok


async def test_rotation_wire_format(autojump_clock):
    for version in Version:
        old, new = OLD_NEW[version]
        store = InMemoryCredentialStore([record(password=old)])
        async with trio.open_nursery() as nursery:
            _csms, station, fake = await connected(nursery, version)
            seen: list[IncomingCall] = []

            async def answer(fake: FakeStation = fake, seen: list = seen) -> None:
                seen.append(await answer_next(fake, "Accepted"))

            nursery.start_soon(answer)
            await rotate_password(station, store, new, hashing=CHEAP)
            nursery.cancel_scope.cancel()
        [call] = seen
        payload = call.request.to_json()
        if version is V16:
            assert payload == {"key": "AuthorizationKey", "value": bytes(new).hex().upper()}
        else:
            assert payload == {
                "setVariableData": [
                    {
                        "attributeValue": new,
                        "component": {"name": "SecurityCtrlr"},
                        "variable": {"name": "BasicAuthPassword"},
                    }
                ]
            }


async def test_rotation_1_6_not_supported_and_hex_text(autojump_clock):
    store = InMemoryCredentialStore([record(password=KEY)])
    new_hex = "AB" * 20
    async with trio.open_nursery() as nursery:
        _csms, station, fake = await connected(nursery, V16)
        nursery.start_soon(answer_next, fake, "NotSupported")
        result = await rotate_password(station, store, new_hex, hashing=CHEAP)
        assert result.outcome is RotationOutcome.REJECTED
        nursery.start_soon(answer_next, fake, "Accepted")
        result = await rotate_password(station, store, new_hex, hashing=CHEAP)
        assert result.outcome is RotationOutcome.ACCEPTED
        nursery.cancel_scope.cancel()
    assert not await accepts(store, KEY)
    assert await accepts(store, bytes.fromhex(new_hex))
    assert await accepts(store, new_hex)


async def test_rotation_call_error_keeps_the_old_password(autojump_clock):
    store = InMemoryCredentialStore([record()])
    async with trio.open_nursery() as nursery:
        _csms, station, fake = await connected(nursery, V201)

        async def refuse() -> None:
            call = await fake.expect_call()
            text = fake.rpc.answer_error(call.message_id, ErrorCode.NOT_SUPPORTED, "no")
            await fake.transport.send_message(text)

        nursery.start_soon(refuse)
        with pytest.raises(CallError):
            await rotate_password(station, store, PW2, hashing=CHEAP)
        nursery.cancel_scope.cancel()
    assert await accepts(store, PW)
    assert not await accepts(store, PW2)


async def test_rotation_timeout_leaves_both_until_the_new_one_is_used(autojump_clock):
    store = InMemoryCredentialStore([record()])
    async with trio.open_nursery() as nursery:
        _csms, station, fake = await connected(nursery, V201)
        with pytest.raises(CallTimeoutError):
            await rotate_password(station, store, PW2, call_timeout=1, hashing=CHEAP)
        assert (await fake.expect_call()).action == "SetVariables"
        nursery.cancel_scope.cancel()
    auth = StationAuthenticator(store)
    assert await auth(request(authorization=basic("CS1", PW))) is None
    assert await auth(request(authorization=basic("CS1", PW))) is None  # old still fine
    assert await auth(request(authorization=basic("CS1", PW2))) is None  # new adopted here
    assert auth.statistics().pending_adopted == 1
    assert await auth(request(authorization=basic("CS1", PW))) is not None  # old is gone now
    assert await auth(request(authorization=basic("CS1", PW2))) is None


async def test_rotation_cancelled_mid_call_records_pending(autojump_clock):
    store = InMemoryCredentialStore([record()])
    async with trio.open_nursery() as nursery:
        _csms, station, fake = await connected(nursery, V201)
        with trio.CancelScope() as scope:

            async def cancel_once_sent() -> None:
                # not a timer: under autojump_clock it could fire while the hash runs
                await fake.expect_call()
                scope.cancel()

            nursery.start_soon(cancel_once_sent)
            await rotate_password(station, store, PW2, hashing=CHEAP)
        assert scope.cancelled_caught
        nursery.cancel_scope.cancel()
    assert await accepts(store, PW)
    assert await accepts(store, PW2)


async def test_rotation_argument_checks(autojump_clock):
    store = InMemoryCredentialStore([record()])
    async with trio.open_nursery() as nursery:
        _csms, station, _fake = await connected(nursery, V201)
        with pytest.raises(ValueError, match="16 to 40"):
            await rotate_password(station, store, "short")
        with pytest.raises(TypeError):
            await rotate_password(station, store, b"x" * 20)
        with pytest.raises(LookupError):
            await rotate_password(station, InMemoryCredentialStore(), PW2)
        _csms, station16, _fake = await connected(nursery, V16, "CS16")
        await store.put(record("CS16", password=KEY))
        with pytest.raises(ValueError, match="hex"):
            await rotate_password(station16, store, "not hex at all")
        with pytest.raises(ValueError, match="16 to 250"):
            await rotate_password(station16, store, b"short")
        nursery.cancel_scope.cancel()


async def test_rotation_with_a_generated_password(autojump_clock):
    store = InMemoryCredentialStore([record()])
    async with trio.open_nursery() as nursery:
        _csms, station, fake = await connected(nursery, V201)
        seen: list[IncomingCall] = []

        async def answer() -> None:
            seen.append(await answer_next(fake, "Accepted"))

        nursery.start_soon(answer)
        await rotate_password(station, store, hashing=CHEAP)
        nursery.cancel_scope.cancel()
    generated = seen[0].request.set_variable_data[0].attribute_value
    assert len(generated) == 40
    assert generated.isalnum()
    assert await accepts(store, generated)
    assert not await accepts(store, PW)


def test_generate_password():
    key = generate_password(V16)
    assert len(authorization_key_bytes(key)) == 20
    assert generate_password(V201) != generate_password(V201)
    assert len(generate_password("2.1")) == 40


async def test_observer_follows_raw_calls_and_skips_the_helpers():
    store = InMemoryCredentialStore([record()])
    async with trio.open_nursery() as nursery:
        await nursery.start(_run_observed, store, nursery)
        nursery.cancel_scope.cancel()
    assert not await accepts(store, PW)
    assert not await accepts(store, PW2)
    assert await accepts(store, "third-password-0123456")


async def _run_observed(
    store: InMemoryCredentialStore,
    nursery: trio.Nursery,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    csms = CSMS(boot_router())
    csms.add_extra_handler(PasswordChangeObserver(store, hashing=CHEAP), name="passwords")
    await nursery.start(csms.run)
    ours, theirs = memory_transport_pair()
    station: Station = await nursery.start(partial(csms.serve_station, ours, "CS1", V201))
    fake = FakeStation(theirs, V201)
    await fake.exchange(boot_request(V201))

    # a raw call by the application: the observer updates the store
    nursery.start_soon(answer_next, fake, "Accepted")
    data = v2_0_1.SetVariableDataType(
        attribute_value=PW2,
        component=v2_0_1.ComponentType(name="SecurityCtrlr"),
        variable=v2_0_1.VariableType(name="BasicAuthPassword"),
    )
    await station.call(v2_0_1.SetVariablesRequest(set_variable_data=(data,)))
    await settled(csms, 2)
    assert await accepts(store, PW2)
    assert not await accepts(store, PW)
    # raw call refused: nothing changes
    nursery.start_soon(answer_next, fake, "Rejected")
    await station.call(
        v2_0_1.SetVariablesRequest(set_variable_data=(attrs.evolve(data, attribute_value=PW),))
    )
    await settled(csms, 3)
    assert await accepts(store, PW2)
    # helper rotations: the observer skips them (replayed late, it could undo a newer one)
    puts: list[StationCredentials] = []
    original_put = store.put

    async def counting_put(credentials: StationCredentials) -> None:
        puts.append(credentials)
        await original_put(credentials)

    store.put = counting_put  # type: ignore[method-assign]
    for password in (PW, "third-password-0123456"):
        nursery.start_soon(answer_next, fake, "Accepted")
        await rotate_password(station, store, password, hashing=CHEAP)
    await settled(csms, 5)
    # the helpers' own writes only: pending before each CALL, settled by its answer
    assert [(p.pending_password_hash is None) for p in puts] == [False, True, False, True]
    # an unrelated SetVariables is ignored
    nursery.start_soon(fake_answer_unrelated, fake)
    other = v2_0_1.SetVariableDataType(
        attribute_value="60",
        component=v2_0_1.ComponentType(name="OCPPCommCtrlr"),
        variable=v2_0_1.VariableType(name="HeartbeatInterval"),
    )
    await station.call(v2_0_1.SetVariablesRequest(set_variable_data=(other,)))
    await settled(csms, 6)
    task_status.started()


async def settled(csms: CSMS, exchanges: int) -> None:
    """Wait (real time) until the CSMS-wide extra handler has handled ``exchanges``."""
    [runner] = csms._extras
    with trio.fail_after(5):
        while runner.handled < exchanges:  # noqa: ASYNC110
            await trio.sleep(0.01)


async def fake_answer_unrelated(fake: FakeStation) -> None:
    call = await fake.expect_call()
    await fake.answer(
        call,
        v2_0_1.SetVariablesResponse(
            set_variable_result=(
                v2_0_1.SetVariableResultType(
                    attribute_status=v2_0_1.SetVariableStatusEnumType.ACCEPTED,
                    component=v2_0_1.ComponentType(name="OCPPCommCtrlr"),
                    variable=v2_0_1.VariableType(name="HeartbeatInterval"),
                ),
            )
        ),
    )


# --------------------------------------------------------------------------------------------
# Stations file

EXAMPLE = f"""
[defaults]
security_profile = 2
organization = "Example CPO"

[[station]]
identity = "CS001"
password = "{PW}"

[[station]]
identity = "CP16"
security_profile = 1
authorization_key = "{KEY.hex()}"

[[station]]
identity = "PRE"
password_hash = "{hash_password(PW2, hashing=CHEAP)}"

[[station]]
identity = "CS003"
security_profile = 3
certificate_common_name = "SN-3"
certificate_organization = "Other CPO"
"""


async def test_stations_file(tmp_path):
    path = tmp_path / "stations.toml"
    path.write_text(EXAMPLE)
    config = load_stations_file(path, hashing=CHEAP)
    assert [s.identity for s in config.stations] == ["CS001", "CP16", "PRE", "CS003"]
    assert [int(s.security_profile) for s in config.stations] == [2, 1, 2, 3]
    assert config.organization == "Example CPO"
    assert PW not in repr(config)
    assert all(PW not in (s.password_hash or "") for s in config.stations)
    assert config.stations[3].certificate_common_name == "SN-3"
    assert config.stations[3].password_hash is None
    auth = config.authenticator()
    assert auth.organization == "Example CPO"
    assert await auth(request("CS001", basic("CS001", PW), tls=True)) is None
    assert await auth(request("CP16", basic("CP16", KEY), versions=(V16,))) is None
    assert await auth(request("CP16", basic("CP16", KEY.hex()))) is None
    assert await auth(request("PRE", basic("PRE", PW2), tls=True)) is None
    assert await auth(request("CS003", tls=True, cert=cert("SN-3", "Other CPO"))) is None
    refused = await auth(request("OTHER", basic("OTHER", PW), tls=True))
    assert refused is not None
    assert refused.status_code == 404


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[station]\n", "invalid TOML"),
        ("[[station]]\nidentity = 'A'\npassword = 'x'\n", "security_profile"),
        ("[[station]]\nidentity = 'A'\nsecurity_profile = 1\n", "needs a password"),
        ("[[station]]\nidentity = 'A'\nsecurity_profile = 4\npassword = 'p'\n", "1, 2 or 3"),
        ("[[station]]\nidentity = 'A'\nsecurity_profile = true\n", "1, 2 or 3"),
        ("[[station]]\nsecurity_profile = 3\n", "identity"),
        ("[[station]]\nidentity = ''\nsecurity_profile = 3\n", "identity"),
        ("[[station]]\nidentity = 'a/b'\nsecurity_profile = 3\n", "'/'"),
        ("[[station]]\nidentity = 'a'\nsecurity_profile = 3\npasswrd = 'x'\n", "unknown key"),
        ("[[station]]\nidentity = 'A'\nsecurity_profile = 1\npassword = 'short'\n", "16 to 40"),
        (
            "[[station]]\nidentity = 'A'\nsecurity_profile = 1\nauthorization_key = 'zz'\n",
            "authorization_key",
        ),
        (
            "[[station]]\nidentity = 'A'\nsecurity_profile = 1\npassword_hash = 'plain'\n",
            "password_hash",
        ),
        (
            f"[[station]]\nidentity = 'A'\nsecurity_profile = 1\npassword = '{PW}'\n"
            f"password_hash = 'x'\n",
            "only one",
        ),
        ("[[station]]\nidentity = 'A'\nsecurity_profile = 3\n" * 2, "twice"),
        ("[defaults]\nsecurity_profile = 2\ncolour = 'red'\n", "unknown key"),
        ("[defaults]\nallow_higher_profile = 'yes'\n", "true or false"),
        ("[defaults]\norganization = 5\n", "non-empty string"),
        ("defaults = 3\n", "table"),
        ("station = 3\n", "[[station]]"),
        ("stations = []\n", "unknown key"),
    ],
)
def test_stations_file_errors(text, problem):
    with pytest.raises(SecurityConfigError) as info:
        parse_stations(text, hashing=CHEAP)
    assert problem in str(info.value)
    assert PW not in str(info.value)


def test_stations_file_unreadable(tmp_path):
    with pytest.raises(SecurityConfigError, match="cannot read"):
        load_stations_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[station]]\nidentity = 'A'\n")
    with pytest.raises(SecurityConfigError, match=r"bad\.toml: station 'A'"):
        load_stations_file(bad)


def test_build_security_combinations(tmp_path):
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("localhost")
    cert_file, ca_file = tmp_path / "server.pem", tmp_path / "ca.pem"
    server.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    ca.cert_pem.write_to_path(str(ca_file))

    def stations(*profiles: int, higher: bool = False) -> Any:
        path = tmp_path / f"s{''.join(map(str, profiles))}{higher}.toml"
        text = f"[defaults]\nallow_higher_profile = {'true' if higher else 'false'}\n"
        for n, p in enumerate(profiles):
            text += f"[[station]]\nidentity = 'S{n}'\nsecurity_profile = {p}\n"
            if p != 3:
                text += f"password = '{PW}'\n"
        path.write_text(text)
        return path

    assert build_security(None) == (None, None)
    check, context = build_security(stations(1), hashing=CHEAP)
    assert isinstance(check, StationAuthenticator)
    assert context is None
    check, context = build_security(None, cert_file)
    assert check is None
    assert context is not None
    assert context.verify_mode.name == "CERT_NONE"
    _, context = build_security(None, cert_file, None, ca_file)
    assert context is not None
    assert context.verify_mode.name == "CERT_REQUIRED"
    _, context = build_security(stations(3), cert_file, None, ca_file)
    assert context is not None
    assert context.verify_mode.name == "CERT_REQUIRED"
    _, context = build_security(stations(2, 3), cert_file, None, ca_file, hashing=CHEAP)
    assert context is not None
    assert context.verify_mode.name == "CERT_OPTIONAL"
    check, _ = build_security(stations(1, 2, higher=True), cert_file, hashing=CHEAP)
    assert check is not None
    assert check.allow_higher_profile
    errors = [
        (partial(build_security, None, None, cert_file), "need --tls-cert"),
        (partial(build_security, None, None, None, ca_file), "need --tls-cert"),
        (partial(build_security, stations(2), hashing=CHEAP), "need --tls-cert"),
        (partial(build_security, stations(3), cert_file), "--tls-client-ca"),
        (partial(build_security, stations(1, 2), cert_file, hashing=CHEAP), "plain listener"),
    ]
    for call, problem in errors:
        with pytest.raises(SecurityConfigError, match=problem):
            call()
    with pytest.raises(FileNotFoundError):
        build_security(None, tmp_path / "missing.pem")


# --------------------------------------------------------------------------------------------
# Idle timeout (a minimal addition to the station runtime)


async def test_idle_timeout_closes_a_silent_station(autojump_clock):
    config = StationConfig(idle_timeout=60)
    async with running_station(boot_router(), config=config) as (station, fake):
        await fake.exchange(boot_request(V201))
        start = trio.current_time()
        with trio.fail_after(120):
            await station.wait_closed()
        assert trio.current_time() - start == pytest.approx(60)
        closed = fake.transport.closed
        assert closed is not None
        assert (closed.code, closed.reason) == (1000, "idle timeout")


async def test_idle_timeout_spares_a_talking_station(autojump_clock):
    config = StationConfig(idle_timeout=60)
    async with running_station(boot_router(), config=config) as (station, fake):
        await fake.exchange(boot_request(V201))
        for _ in range(5):
            await trio.sleep(50)
            await fake.exchange(v2_0_1.HeartbeatRequest())
        assert station.connected


async def test_no_idle_timeout_by_default(autojump_clock):
    async with running_station(boot_router()) as (station, fake):
        await fake.exchange(boot_request(V201))
        await trio.sleep(10_000)
        assert station.connected
