"""The security probe: ``ocpp-trio serve`` in a subprocess, checked rule by rule over real
sockets, as an attacker on the same machine would try it (see docs/security.md, threat model).

* Basic auth: 401 without, with a wrong username or password; 404 for an unknown identity.
* TLS: versions below 1.2 and CBC suites refused; the OCPP suites (RSA and ECDSA) and TLS 1.3
  served.
* Client certificates without a stations file: CN bound to the identity; CSRs the CSMS signs
  bound to their station; the opt-out is loud.
* Flooding: 1,000 wrong passwords do not keep good stations out.
* The admin API: token, Host, Origin, content type, malformed bodies, idle connections.
* Secrets: after each way a password is changed, it is nowhere in the log, the SQLite file
  and its WAL, or the admin API.
* The duplicate-connection policy of one station from the stations file.

(The handshake rules of the transport, identities outside the 2.x character set and offers
without a supported subprotocol, are checked with the transport.)
"""

from __future__ import annotations

import re
import signal
import ssl
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from helpers.admin import http
from helpers.flood import attempt_status, good_login
from helpers.secrets import accepted_change, accepted_set
from helpers.station import FakeStation, boot_request
from helpers.tls import (
    CPO,
    Pki,
    _handshake_details,
    basic,
    boot_over,
    connects,
    csr,
    refusal,
    tls_refused,
    weak_clients,
)
from helpers.websocket import TrioWebSocketPeer, ws_station
from interop.harness import RunningProcess, run_process, serve_command
from trio_websocket import ConnectionClosed

from ocpp_trio import Version
from ocpp_trio.messages import decode_request, v2_0_1
from ocpp_trio.protocol.rpc import IncomingCall

pytestmark = pytest.mark.slow

V16, V201 = Version.V16, Version.V201
PW_201 = "probe-password-2x-000001"
KEY_16 = bytes(range(30, 50))
GOOD_PW = "the-good-password-0001"  # test_security_flood's good_login


@attrs.frozen
class Served:
    process: RunningProcess
    port: int
    admin: int
    token: str

    @property
    def log(self) -> str:
        return "\n".join(self.process.stderr.lines)


async def _logged(process: RunningProcess, pattern: str) -> re.Match[str]:
    line, *_ = await process.stderr.wait_for(lambda line: re.search(pattern, line) is not None)
    found = re.search(pattern, line)
    assert found, line
    return found


@asynccontextmanager
async def serving(*options: str) -> AsyncIterator[Served]:
    """``ocpp-trio serve`` with ``options``, until SIGINT at the end of the block."""
    command = serve_command("--admin-port", "0", "--log-level", "DEBUG", *options)
    async with run_process(command) as process:
        port = int((await _logged(process, r"listening on wss?://127\.0\.0\.1:(\d+)/"))[1])
        admin = int((await _logged(process, r"admin API on http://127\.0\.0\.1:(\d+)/"))[1])
        token = (await _logged(process, r"admin API token \(.*\): (\S+)$"))[1]
        yield Served(process, port, admin, token)
        process.process.send_signal(signal.SIGINT)
        assert await process.wait() == 0, "\n".join(process.stderr.lines)
    assert "Traceback" not in "\n".join(process.stderr.lines)


def stations_file(directory: Path, profile: int) -> Path:
    path = directory / "stations.toml"
    path.write_text(
        f"""
        [defaults]
        security_profile = {profile}

        [[station]]
        identity = "CS201"
        password = "{PW_201}"

        [[station]]
        identity = "CP16"
        authorization_key = "{KEY_16.hex()}"

        [[station]]
        identity = "KEEP"
        password = "{PW_201}"
        duplicate_connections = "refuse"

        [[station]]
        identity = "GOOD"
        password = "{GOOD_PW}"

        [[station]]
        identity = "NEW"
        password = "{GOOD_PW}"
        """
    )
    return path


# -- Basic auth, TLS, secrets, the admin API, duplicates (profile 2) ---------------------------


async def test_probe_profile_2(pki: Pki, tmp_path: Path) -> None:
    rsa_file = tmp_path / "rsa.pem"
    pki.ca.issue_cert(
        "127.0.0.1", key_type=trustme.KeyType.RSA
    ).private_key_and_cert_chain_pem.write_to_path(str(rsa_file))
    ecdsa_file = tmp_path / "ecdsa.pem"
    pki.ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(ecdsa_file))
    db = tmp_path / "csms.db"
    options = (
        *("--db", str(db), "--stations", str(stations_file(tmp_path, 2))),
        *("--tls-cert", str(rsa_file), "--tls-extra-cert", str(ecdsa_file)),
    )
    client = pki.client()
    with trio.fail_after(90):
        async with serving(*options) as served:
            port = served.port
            # the token is kept beside the database, readable by its owner only
            token_file = trio.Path(f"{db}.admin-token")
            assert (await token_file.read_text()).strip() == served.token
            assert stat.S_IMODE((await token_file.stat()).st_mode) == 0o600

            # -- Basic auth
            assert await refusal(port, "/CS201", ssl_context=client) == 401
            for wrong in (basic("CS201", "x" * 20), basic("CP16", PW_201)):
                assert await refusal(port, "/CS201", ssl_context=client, headers=[wrong]) == 401
            assert await refusal(port, "/NOBODY", ssl_context=client) == 404
            good = [basic("CS201", PW_201)]
            assert await connects(port, "/CS201", ssl_context=client, headers=good)

            # -- TLS versions and suites
            await _tls_rules(port, pki)

            # -- the admin API
            await _admin_rules(served)

            # -- secrets, after each way a password is changed
            await _secrets(served, client, db)

            # -- KEEP refuses a second connection (its own policy)
            await _keep_refuses_a_duplicate(port, client)
        # a restart reads the token file: nothing is shown again
    with trio.fail_after(60):
        async with run_process(
            [
                sys.executable,
                "-m",
                "ocpp_trio",
                "serve",
                "--port",
                "0",
                "--admin-port",
                "0",
                *options,
            ]
        ) as again:
            await _logged(again, r"admin API on http://127\.0\.0\.1:(\d+)/")
            again.process.send_signal(signal.SIGINT)
            assert await again.wait() == 0
    assert served.token not in "\n".join(again.stderr.lines)


async def _tls_rules(port: int, pki: Pki) -> None:
    old, cbc = weak_clients(pki)
    for refused in (old, cbc):
        with pytest.raises(trio.BrokenResourceError):
            await _handshake_details(port, refused)
    for suite in (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
    ):
        tls12 = pki.client()
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        tls12.set_ciphers(suite)
        assert await _handshake_details(port, tls12) == (suite, "TLSv1.2", None)
    _name, version, compression = await _handshake_details(port, pki.client())
    assert (version, compression) == ("TLSv1.3", None)
    # plain WebSocket on the TLS port: no upgrade
    async with await trio.open_tcp_stream("127.0.0.1", port) as plain:
        await plain.send_all(b"GET /CS201 HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.move_on_after(5):
            assert b"101" not in await plain.receive_some(4096)


async def _admin_rules(served: Served) -> None:
    admin, token = served.admin, served.token
    reset = {"action": "Reset", "payload": {"type": "Immediate"}}
    assert (await http(admin, "GET", "/stations", token=None)).status == 401
    assert (await http(admin, "GET", "/stations", token="not-the-token-0000")).status == 401
    assert (await http(admin, "GET", "/stations", token=token, host="evil.example")).status == 403
    cross = [("Origin", "https://evil.example")]
    call = "/stations/CS201/call"
    assert (await http(admin, "POST", call, reset, token=token, headers=cross)).status == 403
    form = await http(admin, "POST", call, reset, token=token, content_type="text/plain")
    assert form.status == 415
    deep = b'{"action": "Reset", "payload": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    assert (await http(admin, "POST", call, raw=deep, token=token)).status == 400
    # idle connections from one address lock nobody else out
    streams = []
    try:
        for _ in range(12):
            stream = await trio.open_tcp_stream("127.0.0.1", admin, local_address="127.0.0.2")
            streams.append(stream)
            await stream.send_all(b"GET /stations HTTP/1.1\r\n")
        assert (await http(admin, "GET", "/stations", token=token)).status == 200
    finally:
        for stream in streams:
            await stream.aclose()


async def _answer(fake: FakeStation, answer: Any, got: list[IncomingCall]) -> None:
    call = await fake.expect_call()
    got.append(call)
    await fake.answer(call, answer(call))


async def _secrets(served: Served, client: ssl.SSLContext, db: Path) -> None:
    port, admin, token = served.port, served.admin, served.token
    found: list[str] = []  # every secret set, to look for afterwards

    async def change(
        identity: str, version: Version, secret: str, path: str, body: Any, answer: Any
    ) -> str:
        subprotocol = f"ocpp{version.value}"
        header = basic(identity, secret)  # a 1.6 key as its hex text
        async with ws_station(
            port, f"/{identity}", ssl_context=client, headers=[header], subprotocols=[subprotocol]
        ) as ws:
            fake = FakeStation(TrioWebSocketPeer(ws), version)  # type: ignore[arg-type]
            await fake.call(boot_request(version))
            got: list[IncomingCall] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_answer, fake, answer, got)
                reply = await http(admin, "POST", path, body, token=token)
            assert reply.status == 200, reply.body
        if version is V201:
            new = got[0].request.to_json()["setVariableData"][0]["attributeValue"]
        else:
            new = got[0].request.to_json()["value"]
        return new

    # 2.0.1 SetVariables through the admin API
    secret = "probe-new-password-00001"
    payload = decode_request(
        V201,
        "SetVariables",
        {
            "setVariableData": [
                {
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                    "attributeValue": secret,
                }
            ]
        },
    ).to_json()
    body = {"action": "SetVariables", "payload": payload}
    assert await change("CS201", V201, PW_201, "/stations/CS201/call", body, accepted_set) == secret
    found.append(secret)
    # 1.6 ChangeConfiguration(AuthorizationKey) through the admin API
    key = bytes(range(60, 80)).hex().upper()
    body = {"action": "ChangeConfiguration", "payload": {"key": "AuthorizationKey", "value": key}}
    assert (
        await change("CP16", V16, KEY_16.hex(), "/stations/CP16/call", body, accepted_change) == key
    )
    found += [key, key.lower()]
    # rotate_password, through the admin API: the operator never sees it
    generated = await change(
        "CS201", V201, secret, "/stations/CS201/rotate-password", {}, accepted_set
    )
    found.append(generated)
    # the new ones work, the old ones do not
    assert await connects(port, "/CS201", ssl_context=client, headers=[basic("CS201", generated)])
    assert (
        await refusal(port, "/CS201", ssl_context=client, headers=[basic("CS201", secret)]) == 401
    )
    await trio.sleep(0.5)  # the store writer's last commit
    # nowhere: the log, the database and its WAL, the admin API
    for text in found:
        assert text not in served.log
    for path in db.parent.glob(db.name + "*"):
        content = await trio.Path(path).read_bytes()
        for text in found:
            assert text.encode() not in content, path.name
    endpoints = ["/", "/stations", "/transactions"]
    for identity in ("CS201", "CP16"):
        endpoints += [f"/stations/{identity}", f"/stations/{identity}/device-model"]
    for endpoint in endpoints:
        answer = await http(admin, "GET", endpoint, token=token)
        assert answer.status == 200, endpoint
        for text in found:
            assert text not in str(answer.body), endpoint
    assert "***" in served.log  # the exchange lines show where a secret was


async def _keep_refuses_a_duplicate(port: int, client: ssl.SSLContext) -> None:
    header = [basic("KEEP", PW_201)]
    async with ws_station(port, "/KEEP", ssl_context=client, headers=header) as first:
        assert await boot_over(first) == "Accepted"
        async with ws_station(port, "/KEEP", ssl_context=client, headers=header) as second:
            with pytest.raises(ConnectionClosed) as closed:
                await second.get_message()
        assert closed.value.reason.code == 1008
        assert await boot_over(first) == "Accepted"  # the first is kept


# -- client certificates without a stations file ------------------------------------------------


async def test_probe_client_certificates(pki: Pki, tmp_path: Path) -> None:
    key_file = tmp_path / "ca-key.pem"
    pki.ca.private_key_pem.write_to_path(str(key_file))
    options = (
        *("--db", ":memory:", "--tls-cert", str(pki.cert_file)),
        *("--tls-client-ca", str(pki.ca_file), "--tls-client-ca-key", str(key_file)),
    )
    a = pki.client(pki.station_cert("A"))
    with trio.fail_after(60):
        async with serving(*options) as served:
            port = served.port
            assert await connects(port, "/A", ssl_context=a)
            assert await refusal(port, "/B", ssl_context=a) == 403  # CN=A is not /B
            await tls_refused(port, pki.client(), "/A")  # no certificate at all
            foreign = trustme.CA().issue_cert("x.test", common_name="A", organization_name=CPO)
            await tls_refused(port, pki.client(foreign), "/A")
            # the CSR flow: A asks for a certificate with CN=B; it is bound to A
            key = ec.generate_private_key(ec.SECP256R1())
            async with ws_station(port, "/A", ssl_context=a) as ws:
                fake = FakeStation(TrioWebSocketPeer(ws), V201)  # type: ignore[arg-type]
                await fake.call(boot_request(V201))
                answer = await fake.call(v2_0_1.SignCertificateRequest(csr=csr("B", key)))
                assert getattr(answer, "status", None) == "Accepted"
                signed = await fake.expect_call()
                assert signed.action == "CertificateSigned"
                await fake.answer(
                    signed,
                    v2_0_1.CertificateSignedResponse(
                        status=v2_0_1.CertificateSignedStatusEnumType.ACCEPTED
                    ),
                )
            chain = signed.request.to_json()["certificateChain"]
            bundle = tmp_path / "a-signed.pem"
            bundle.write_bytes(_key_pem(key) + chain.encode())
            signed_client = pki.client()
            signed_client.load_cert_chain(str(bundle))
            assert await connects(port, "/A", ssl_context=signed_client)
            assert await refusal(port, "/B", ssl_context=signed_client) == 403
        # the opt-out is loud
        async with serving(*options[:6], "--tls-allow-any-identity") as anyone:
            assert await connects(anyone.port, "/B", ssl_context=a)
    assert "NOT bound" in anyone.log
    assert "NOT bound" not in served.log


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# -- flooding (profile 1, plain) -------------------------------------------------------------------


async def test_probe_login_flood(tmp_path: Path) -> None:
    options = ("--db", ":memory:", "--stations", str(stations_file(tmp_path, 1)))
    answers: list[int] = []
    logins: dict[str, tuple[float, int]] = {}
    with trio.fail_after(120):
        async with serving(*options) as served:
            port = served.port
            await good_login(port, "GOOD", "127.0.0.1")
            attackers = trio.CapacityLimiter(50)

            async def attack(n: int) -> None:
                async with attackers:
                    answers.append(
                        await attempt_status(port, "GOOD", f"wrong-{n:06d}", "127.0.0.2")
                    )

            async def during(identity: str, source: str) -> None:
                while len(answers) < 100:  # noqa: ASYNC110 - in the thick of it
                    await trio.sleep(0.005)
                logins[identity] = (await good_login(port, identity, source), len(answers))

            async with trio.open_nursery() as nursery:
                for n in range(1000):
                    nursery.start_soon(attack, n)
                nursery.start_soon(during, "GOOD", "127.0.0.1")
                nursery.start_soon(during, "NEW", "127.0.0.3")
    assert len(answers) == 1000
    assert set(answers) <= {401, 429}
    assert answers.count(429) > 900
    assert set(logins) == {"GOOD", "NEW"}
    assert all(done < 1000 for _took, done in logins.values())
    for identity, (took, done) in sorted(logins.items()):
        print(f"probe: {identity} logged in after {took * 1e3:.0f} ms ({done} attacks answered)")
