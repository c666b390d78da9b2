"""Security profiles over real sockets on 127.0.0.1, with certificates made at test time (trustme).

The stations are trio-websocket clients, an implementation independent of the server's own
WebSocket layer, driven through its public API (:class:`TrioWebSocketPeer` makes one a
``Transport`` for ``FakeStation``); they own their TCP/TLS streams (trio-websocket's own client
leaks its socket when the server refuses). A refused TLS handshake is probed with a raw client:
with TLS 1.3 the client finishes its side of the handshake before the server has checked the
client certificate, so the refusal shows up on the first read.
"""

from __future__ import annotations

import datetime
import logging
import ssl
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
import trustme
from helpers.station import FakeStation, boot_request
from helpers.tls import (
    CPO,
    PW,
    SERVER,
    Pki,
    _handshake_details,
    basic,
    connects,
    csms_with,
    port_of,
    refusal,
    router,
    tls_refused,
    weak_clients,
)
from helpers.websocket import TrioWebSocketPeer, ws_station
from wsproto import ConnectionType, WSConnection
from wsproto.events import Request

from ocpp_trio import Version
from ocpp_trio.csms.core import CSMS, CSMSConfig
from ocpp_trio.domain.credentials import (
    InMemoryCredentialStore,
    PasswordHashing,
    StationCredentials,
    hash_password,
)
from ocpp_trio.messages import v2_0_1
from ocpp_trio.runtime.station import Station
from ocpp_trio.security.auth import (
    OCPP_TLS12_CIPHERS,
    RotationOutcome,
    StationAuthenticator,
    rotate_password,
    server_ssl_context,
)
from ocpp_trio.transport.server import serve_ocpp_websocket

CHEAP = PasswordHashing(scrypt_log2_n=6, scrypt_r=4)
PW2 = "profile-two-password-02"
V201 = Version.V201


def store_of(*records: StationCredentials) -> InMemoryCredentialStore:
    return InMemoryCredentialStore(records)


def p2(identity: str, password: str = PW) -> StationCredentials:
    return StationCredentials(
        identity=identity,
        security_profile=2,
        password_hash=hash_password(password, hashing=CHEAP),
    )


def p3(identity: str, **kw: Any) -> StationCredentials:
    return StationCredentials(identity=identity, security_profile=3, **kw)


# --------------------------------------------------------------------------------------------
# The TLS context


def test_server_context_settings(pki: Pki):
    context = pki.server_context()
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.verify_mode is ssl.CERT_OPTIONAL
    assert context.options & ssl.OP_NO_COMPRESSION
    names = {c["name"] for c in context.get_ciphers()}
    assert set(OCPP_TLS12_CIPHERS) <= names
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == set(OCPP_TLS12_CIPHERS)
    assert not any("CBC" in n or n[-4:] == "-SHA" for n in tls12)
    assert pki.server_context(client_ca=False).verify_mode is ssl.CERT_NONE
    assert pki.server_context(require=True).verify_mode is ssl.CERT_REQUIRED
    with pytest.raises(ValueError, match="client CA"):
        server_ssl_context(pki.cert_file, require_client_certificate=True)


async def test_ocpp_cipher_suites_with_rsa_and_ecdsa_certificates(nursery, pki: Pki):
    rsa_file, ecdsa_file = pki.directory / "rsa.pem", pki.directory / "ecdsa.pem"
    pki.ca.issue_cert(
        "127.0.0.1", key_type=trustme.KeyType.RSA
    ).private_key_and_cert_chain_pem.write_to_path(str(rsa_file))
    pki.ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(ecdsa_file))
    context = server_ssl_context(rsa_file, additional_certificates=[(ecdsa_file, None)])

    async def idle(connection: Any) -> None:
        await trio.sleep_forever()  # pragma: no cover

    info = await nursery.start(
        partial(serve_ocpp_websocket, idle, "127.0.0.1", 0, config=SERVER, ssl_context=context)
    )
    required = [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
    ]
    for suite in required:
        client = pki.client()
        client.maximum_version = ssl.TLSVersion.TLSv1_2
        client.set_ciphers(suite)
        assert await _handshake_details(info.port, client) == (suite, "TLSv1.2", None)
    name, version, compression = await _handshake_details(info.port, pki.client())
    assert version == "TLSv1.3"
    assert name.startswith("TLS_")
    assert compression is None


async def test_old_tls_and_weak_ciphers_are_refused(nursery, pki: Pki, caplog):
    info = await nursery.start(
        partial(
            serve_ocpp_websocket,
            _never,
            "127.0.0.1",
            0,
            config=SERVER,
            ssl_context=pki.server_context(),
        )
    )
    for client in weak_clients(pki):
        with pytest.raises(trio.BrokenResourceError):
            await _handshake_details(info.port, client)
    await trio.testing.wait_all_tasks_blocked()  # the server has seen both failures
    assert info.statistics().handshakes_failed == 2
    failures = [r.getMessage() for r in caplog.records if "TLS handshake failed" in r.getMessage()]
    assert len(failures) == 2
    assert all(r.levelno == logging.WARNING for r in caplog.records if "TLS" in r.getMessage())


async def _never(connection: Any) -> None:  # pragma: no cover - never upgraded
    await trio.sleep_forever()


# --------------------------------------------------------------------------------------------
# Profile 2


async def test_profile_2_happy_path_and_refusals(pki: Pki):
    auth = StationAuthenticator(store_of(p2("CS2")))
    async with csms_with(auth, pki.server_context(client_ca=False)) as csms:
        port = port_of(csms)
        assert await connects(
            port, "/ocpp/CS2", ssl_context=pki.client(), headers=[basic("CS2", PW)]
        )
        assert (
            await refusal(
                port, "/ocpp/CS2", ssl_context=pki.client(), headers=[basic("CS2", "x" * 20)]
            )
            == 401
        )
        assert await refusal(port, "/ocpp/CS2", ssl_context=pki.client()) == 401
        assert (
            await refusal(port, "/ocpp/CS2", ssl_context=pki.client(), headers=[basic("CSX", PW)])
            == 401
        )
        assert (
            await refusal(port, "/ocpp/NOPE", ssl_context=pki.client(), headers=[basic("NOPE", PW)])
            == 404
        )
        # the server is fine after all that
        assert await connects(
            port, "/ocpp/CS2", ssl_context=pki.client(), headers=[basic("CS2", PW)]
        )
    stats = auth.statistics()
    assert (stats.accepted, stats.bad_credentials, stats.unknown) == (2, 3, 1)


async def test_profile_2_station_over_plain_websocket_is_refused(nursery, pki: Pki):
    """A CSMS serving a plain and a TLS listener with one authenticator: the downgrade is 403."""

    auth = StationAuthenticator(store_of(p2("CS2")))
    csms = CSMS(router(), config=CSMSConfig(server=SERVER))
    await nursery.start(csms.run)
    plain = await nursery.start(
        partial(
            serve_ocpp_websocket,
            csms.handle_connection,
            "127.0.0.1",
            0,
            config=SERVER,
            check_request=auth,
        )
    )
    secure = await nursery.start(
        partial(
            serve_ocpp_websocket,
            csms.handle_connection,
            "127.0.0.1",
            0,
            config=SERVER,
            check_request=auth,
            ssl_context=pki.server_context(client_ca=False),
        )
    )
    assert await refusal(plain.port, "/CS2", headers=[basic("CS2", PW)]) == 403
    assert await connects(secure.port, "/CS2", ssl_context=pki.client(), headers=[basic("CS2", PW)])
    assert auth.statistics().wrong_profile == 1


async def test_plain_client_on_the_tls_port(pki: Pki, caplog):
    auth = StationAuthenticator(store_of(p2("CS2")))
    async with csms_with(auth, pki.server_context(client_ca=False)) as csms:
        port = port_of(csms)
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            ws = WSConnection(ConnectionType.CLIENT)
            await stream.send_all(ws.send(Request(host="127.0.0.1", target="/CS2")))
            with trio.fail_after(5):
                reply = await stream.receive_some(4096)
            assert not reply.startswith(b"HTTP/1.1 101")
        assert await connects(port, "/CS2", ssl_context=pki.client(), headers=[basic("CS2", PW)])
    assert "TLS handshake failed" in caplog.text


# --------------------------------------------------------------------------------------------
# Profile 3


async def test_profile_3_happy_path_exposes_the_certificate(pki: Pki):
    seen: list[Any] = []
    app = router()

    @app.on(v2_0_1.BootNotificationRequest)
    async def boot(station: Station, request: v2_0_1.BootNotificationRequest) -> Any:
        assert station.request is not None
        seen.append(station.request.peer_certificate)
        return v2_0_1.BootNotificationResponse(
            current_time=datetime.datetime.now(datetime.UTC),
            interval=300,
            status=v2_0_1.RegistrationStatusEnumType.ACCEPTED,
        )

    auth = StationAuthenticator(
        store_of(p3("CS3"), p3("CS4", certificate_common_name="SN-0004")), organization=CPO
    )
    async with csms_with(auth, pki.server_context(), app) as csms:
        port = port_of(csms)
        assert await connects(port, "/ocpp/CS3", ssl_context=pki.client(pki.station_cert("CS3")))
        assert await connects(
            port, "/ocpp/CS4", ssl_context=pki.client(pki.station_cert("SN-0004"))
        )
    assert len(seen) == 2
    assert (("commonName", "CS3"),) in seen[0]["subject"]
    assert (("organizationName", CPO),) in seen[0]["subject"]
    assert auth.statistics().accepted == 2


async def test_profile_3_refusals(pki: Pki, caplog):
    other_ca = trustme.CA()
    auth = StationAuthenticator(store_of(p3("CS3"), p2("CS2")), organization=CPO)
    async with csms_with(auth, pki.server_context()) as csms:
        port = port_of(csms)
        # a certificate from another CA: refused in the TLS handshake
        foreign = other_ca.issue_cert("cs3.test", common_name="CS3", organization_name=CPO)
        await tls_refused(port, pki.client(foreign))
        # expired: refused in the TLS handshake
        now = datetime.datetime.now(datetime.UTC)
        expired = pki.station_cert(
            "CS3",
            not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1),
        )
        await tls_refused(port, pki.client(expired))
        # valid chain, wrong CN or O: 403 before the upgrade
        wrong_cn = pki.client(pki.station_cert("CS9"))
        assert await refusal(port, "/CS3", ssl_context=wrong_cn) == 403
        wrong_o = pki.client(pki.station_cert("CS3", "Evil CPO"))
        assert await refusal(port, "/CS3", ssl_context=wrong_o) == 403
        # TLS without a client certificate (a downgrade to profile 2), even with a password
        assert (
            await refusal(port, "/CS3", ssl_context=pki.client(), headers=[basic("CS3", PW)]) == 403
        )
        # the profile-2 station sharing the port is unaffected
        assert await connects(port, "/CS2", ssl_context=pki.client(), headers=[basic("CS2", PW)])
        assert await connects(port, "/CS3", ssl_context=pki.client(pki.station_cert("CS3")))
    assert csms.server_info is not None
    assert csms.server_info.statistics().handshakes_failed == 2
    text = caplog.text
    assert "certificate verify failed" in text
    assert "expired" in text
    stats = auth.statistics()
    assert (stats.bad_certificate, stats.wrong_profile) == (2, 1)


async def test_profile_3_only_server_refuses_clients_without_certificates(pki: Pki, caplog):
    auth = StationAuthenticator(store_of(p3("CS3")), organization=CPO)
    async with csms_with(auth, pki.server_context(require=True)) as csms:
        port = port_of(csms)
        await tls_refused(port, pki.client(), "/CS3")
        assert await connects(port, "/CS3", ssl_context=pki.client(pki.station_cert("CS3")))
    assert "peer did not return a certificate" in caplog.text


# --------------------------------------------------------------------------------------------
# Rotation end to end


async def test_password_rotation_over_the_wire(pki: Pki):
    auth = StationAuthenticator(store_of(p2("CS2")))
    client = pki.client()
    async with csms_with(auth, pki.server_context(client_ca=False)) as csms:
        port = port_of(csms)
        async with ws_station(port, "/CS2", ssl_context=client, headers=[basic("CS2", PW)]) as ws:
            fake = FakeStation(TrioWebSocketPeer(ws), V201)  # type: ignore[arg-type]
            await fake.exchange(boot_request(V201))
            station = csms.get_station("CS2")
            assert station is not None
            async with trio.open_nursery() as nursery:

                async def answer() -> None:
                    call = await fake.expect_call()
                    assert call.action == "SetVariables"
                    result = v2_0_1.SetVariableResultType(
                        attribute_status=v2_0_1.SetVariableStatusEnumType.ACCEPTED,
                        component=v2_0_1.ComponentType(name="SecurityCtrlr"),
                        variable=v2_0_1.VariableType(name="BasicAuthPassword"),
                    )
                    await fake.answer(
                        call, v2_0_1.SetVariablesResponse(set_variable_result=(result,))
                    )

                nursery.start_soon(answer)
                result = await rotate_password(station, auth.store, PW2, hashing=CHEAP)
            assert result.outcome is RotationOutcome.ACCEPTED
        assert await refusal(port, "/CS2", ssl_context=client, headers=[basic("CS2", PW)]) == 401
        assert await connects(port, "/CS2", ssl_context=client, headers=[basic("CS2", PW2)])
