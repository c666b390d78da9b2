"""Certificates, TLS clients and CSMS servers for the security tests (a trustme PKI,
trio-websocket peers)."""

from __future__ import annotations

import base64
import ssl
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from trio_websocket import ConnectionRejected, WebSocketConnection
from wsproto import ConnectionType, WSConnection
from wsproto.events import Request

from helpers.station import FakeStation, boot_request
from helpers.websocket import TrioWebSocketPeer, ws_station
from ocpp_trio import Version
from ocpp_trio.csms.core import CSMS, CSMSConfig, open_csms
from ocpp_trio.runtime.handlers import Router
from ocpp_trio.security.auth import (
    StationAuthenticator,
    server_ssl_context,
)
from ocpp_trio.transport.server import ServerConfig

PW = "profile-two-password-01"
SERVER = ServerConfig(ping_interval=0, handshake_timeout=2.0, close_timeout=0.5)
CPO = "Example CPO"

V16, V201, V21 = Version.V16, Version.V201, Version.V21


@attrs.frozen
class Pki:
    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    directory: Path

    def client(
        self, cert: trustme.LeafCert | None = None, *, trust: trustme.CA | None = None
    ) -> ssl.SSLContext:
        context = ssl.create_default_context()
        (trust or self.ca).configure_trust(context)
        if cert is not None:
            cert.configure_cert(context)
        return context

    def station_cert(self, cn: str, o: str | None = CPO, **kw: Any) -> trustme.LeafCert:
        return self.ca.issue_cert(
            f"{cn.lower()}.stations.test", common_name=cn, organization_name=o, **kw
        )

    def server_context(self, *, require: bool = False, client_ca: bool = True) -> ssl.SSLContext:
        return server_ssl_context(
            self.cert_file,
            client_ca=self.ca_file if client_ca else None,
            require_client_certificate=require,
        )


def make_pki(tmp_path: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1 and client certificates, under ``tmp_path``."""
    ca = trustme.CA(organization_name="Test Root")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    return Pki(ca, ca_file, cert_file, tmp_path)


def basic(identity: str, password: str) -> tuple[bytes, bytes]:
    token = base64.b64encode(f"{identity}:{password}".encode()).decode()
    return (b"Authorization", f"Basic {token}".encode())


async def boot_over(ws: WebSocketConnection, version: Version = V201) -> str:
    """Boot as a station over ``ws``; the registration status."""
    fake = FakeStation(TrioWebSocketPeer(ws), version)  # type: ignore[arg-type]
    response = await fake.exchange(boot_request(version))
    return str(getattr(response, "status", response))


async def connects(port: int, path: str, **kw: Any) -> bool:
    async with ws_station(port, path, **kw) as ws:
        return await boot_over(ws) == "Accepted"


async def refusal(port: int, path: str, **kw: Any) -> int:
    """The HTTP status the server refuses the upgrade with."""
    statuses: list[int] = []
    try:
        async with ws_station(port, path, **kw):
            pytest.fail("the upgrade succeeded")  # pragma: no cover
    except* ConnectionRejected as group:
        statuses += [e.status_code for e in group.exceptions if isinstance(e, ConnectionRejected)]
    [status] = statuses
    return status


async def tls_refused(port: int, ssl_context: ssl.SSLContext, path: str = "/CS1") -> None:
    """Expect the server to refuse at the TLS level (the client sees an alert, a reset or the
    end of the stream, depending on timing; the server's log says why)."""
    stream = await trio.open_ssl_over_tcp_stream(
        "127.0.0.1", port, ssl_context=ssl_context, https_compatible=True
    )
    async with stream:
        try:
            with trio.fail_after(5):
                await stream.do_handshake()
                ws = WSConnection(ConnectionType.CLIENT)
                await stream.send_all(
                    ws.send(Request(host="127.0.0.1", target=path, subprotocols=["ocpp2.0.1"]))
                )
                data = await stream.receive_some(4096)
        except trio.BrokenResourceError:
            return
    assert data == b"", data  # nothing but the end of the connection


@asynccontextmanager
async def csms_with(
    auth: StationAuthenticator, context: ssl.SSLContext | None, app: Router | None = None
) -> AsyncIterator[CSMS]:
    async with open_csms(
        app or router(),
        "127.0.0.1",
        0,
        config=CSMSConfig(server=SERVER),
        ssl_context=context,
        check_request=auth,
    ) as csms:
        yield csms


def port_of(csms: CSMS) -> int:
    assert csms.server_info is not None
    return csms.server_info.port


def weak_clients(pki: Pki) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Clients the server must refuse: TLS 1.1 only, and TLS 1.2 with CBC suites only."""
    old = pki.client()
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    cbc = pki.client()
    cbc.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc.set_ciphers("AES128-SHA:ECDHE-RSA-AES128-SHA")
    return old, cbc


async def _handshake_details(port: int, client: ssl.SSLContext) -> tuple[str, str, Any]:
    stream = await trio.open_ssl_over_tcp_stream(
        "127.0.0.1", port, ssl_context=client, https_compatible=True
    )
    async with stream:
        with trio.fail_after(5):
            await stream.do_handshake()
        cipher = stream.cipher()
        assert cipher is not None
        return cipher[0], str(stream.version()), stream.compression()


def csr(cn: str, key: Any, o: str | None = CPO) -> str:
    names = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if o is not None:
        names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(names))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM).decode()


def router() -> Router:
    r = Router()
    r.set_default_boot()
    return r
