"""Client certificates bound to station identities by default, per-station certificate and
duplicate-connection policies, and the CSMS signing its stations' CSRs (bound to them).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from helpers.station import FakeStation, boot_request, boot_router
from helpers.tls import CPO, Pki, connects, csms_with, csr, port_of, refusal

from ocpp_trio import Version
from ocpp_trio.csms.core import CSMS, CSMSConfig, DuplicatePolicy
from ocpp_trio.errors import CertificateRequestError
from ocpp_trio.messages import v1_6, v2_0_1, v2_1
from ocpp_trio.security.certificates import (
    CertificateBinding,
    CertificatePolicy,
    certificate_problem,
    certificate_stations,
    station_uri,
)
from ocpp_trio.security.config import build_security, parse_stations
from ocpp_trio.security.signing import StationCertificateSigner
from ocpp_trio.transport.base import CloseCode, memory_transport_pair

V16, V201, V21 = Version.V16, Version.V201, Version.V21


def cert(cn: str | None, o: str | None = None, *, uri: str | None = None) -> dict[str, Any]:
    subject: list[tuple[tuple[str, str], ...]] = []
    if o is not None:
        subject.append((("organizationName", o),))
    if cn is not None:
        subject.append((("commonName", cn),))
    found: dict[str, Any] = {"subject": tuple(subject)}
    if uri is not None:
        found["subjectAltName"] = (("DNS", "x.test"), ("URI", uri))
    return found


# -- the rules -----------------------------------------------------------------------------------


def test_the_cn_must_be_the_identity_by_default() -> None:
    policy = CertificatePolicy()
    assert certificate_problem(policy, "CS1", cert("CS1")) is None
    assert "is not 'CS2'" in (certificate_problem(policy, "CS2", cert("CS1")) or "")
    assert "2 subject CNs" in (
        certificate_problem(policy, "CS1", {"subject": ((("commonName", "CS1"),),) * 2}) or ""
    )


def test_allowed_names_organization_and_callable_policies() -> None:
    serials = CertificatePolicy(common_names={"SN-1", "SN-2"}, organization=CPO)
    assert certificate_problem(serials, "CS1", cert("SN-2", CPO)) is None
    assert certificate_problem(serials, "CS1", cert("CS1", CPO)) is not None  # only the listed
    assert "O" in (certificate_problem(serials, "CS1", cert("SN-1", "Evil")) or "")

    def by_prefix(identity: str, certificate: Any) -> str | None:
        return None if identity.startswith("SITE-A-") else "not a site A station"

    site = CertificatePolicy(check=by_prefix)
    assert certificate_problem(site, "SITE-A-7", cert("anything")) is None
    assert certificate_problem(site, "SITE-B-7", cert("anything")) == "not a site A station"


def test_opting_out_is_loud(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        anyone = CertificatePolicy(any_identity=True)
    assert "NOT bound" in caplog.text
    assert certificate_problem(anyone, "CS2", cert("CS1")) is None


def test_a_certificate_signed_for_a_station_belongs_to_it_alone() -> None:
    policy = CertificatePolicy()
    signed = cert("CS2", uri=station_uri("CS 1/é"))
    assert certificate_stations(signed) == ("CS 1/é",)
    assert certificate_problem(policy, "CS 1/é", signed) is None  # CN aside
    assert "signed for" in (certificate_problem(policy, "CS2", signed) or "")  # CN = CS2, still no
    anyone = CertificatePolicy(any_identity=True)
    assert certificate_problem(anyone, "CS2", signed) is not None


# -- over TLS ------------------------------------------------------------------------------------


async def test_without_a_stations_file_the_cn_binds_the_identity(pki: Pki) -> None:
    checker, context = build_security(None, pki.cert_file, None, pki.ca_file)
    assert isinstance(checker, CertificateBinding)
    assert context is not None
    checker.set_policy("CS9", CertificatePolicy(common_names={"SN-0009"}))
    a = pki.client(pki.station_cert("A"))
    async with csms_with(checker, context) as csms:  # type: ignore[arg-type]
        port = port_of(csms)
        assert await connects(port, "/A", ssl_context=a)
        assert await refusal(port, "/B", ssl_context=a) == 403  # CN=A cannot be /B
        assert await connects(port, "/CS9", ssl_context=pki.client(pki.station_cert("SN-0009")))
        assert await refusal(port, "/CS9", ssl_context=pki.client(pki.station_cert("CS9"))) == 403
    assert (checker.accepted, checker.refused) == (2, 2)


async def test_the_explicit_opt_out(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    checker, context = build_security(
        None, pki.cert_file, None, pki.ca_file, allow_any_identity=True
    )
    assert "NOT bound" in caplog.text
    assert context is not None
    async with csms_with(checker, context) as csms:  # type: ignore[arg-type]
        assert await connects(port_of(csms), "/B", ssl_context=pki.client(pki.station_cert("A")))


async def test_per_station_certificate_policies_in_the_stations_file(pki: Pki) -> None:
    config = parse_stations(
        """
        [[station]]
        identity = "CS1"
        security_profile = 3
        certificate_common_names = ["SN-1", "SN-1-SPARE"]

        [[station]]
        identity = "CS2"
        security_profile = 3
        """
    )
    assert config.stations[0].allowed_common_names() == {"SN-1", "SN-1-SPARE"}
    auth = config.authenticator()
    auth.set_certificate_policy("CS2", CertificatePolicy(common_names={"SN-2"}))
    async with csms_with(auth, pki.server_context(require=True)) as csms:
        port = port_of(csms)
        spare = pki.client(pki.station_cert("SN-1-SPARE"))
        assert await connects(port, "/CS1", ssl_context=spare)
        assert await refusal(port, "/CS1", ssl_context=pki.client(pki.station_cert("CS1"))) == 403
        assert await connects(port, "/CS2", ssl_context=pki.client(pki.station_cert("SN-2")))
        auth.set_certificate_policy("CS2", None)  # back to its record: the identity
        assert await connects(port, "/CS2", ssl_context=pki.client(pki.station_cert("CS2")))


# -- signing the stations' CSRs ----------------------------------------------------------------


@pytest.fixture
def signer(pki: Pki) -> StationCertificateSigner:
    key_file = pki.directory / "ca-key.pem"
    pki.ca.private_key_pem.write_to_path(str(key_file))
    return StationCertificateSigner.from_files(pki.ca_file, key_file, organization=CPO)


def test_csr_checks(signer: StationCertificateSigner) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    signer.check(csr("SN-1", key))
    with pytest.raises(CertificateRequestError, match="PEM"):
        signer.check("not a CSR")
    with pytest.raises(CertificateRequestError, match="too small"):
        signer.check(csr("SN-1", rsa.generate_private_key(public_exponent=65537, key_size=1024)))
    with pytest.raises(CertificateRequestError, match="curve"):
        signer.check(csr("SN-1", ec.generate_private_key(ec.SECP521R1())))
    with pytest.raises(CertificateRequestError, match="O"):
        signer.check(csr("SN-1", key, "Evil CPO"))
    with pytest.raises(CertificateRequestError, match="V2GCertificate"):
        signer.check(csr("SN-1", key), "V2GCertificate")
    chain = signer.sign("CS1", csr("SN-1", key))
    leaf = x509.load_pem_x509_certificates(chain.encode())[0]
    uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert uris.get_values_for_type(x509.UniformResourceIdentifier) == [station_uri("CS1")]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "SN-1"


def test_a_key_that_does_not_match_the_ca_is_refused(pki: Pki) -> None:
    other = trustme.CA()
    key_file = pki.directory / "other-key.pem"
    other.private_key_pem.write_to_path(str(key_file))
    with pytest.raises(ValueError, match="does not match"):
        StationCertificateSigner.from_files(pki.ca_file, key_file)


@pytest.mark.parametrize("version", [V16, V201, V21])
async def test_the_csr_flow_binds_the_certificate_to_its_station(
    version: Version, signer: StationCertificateSigner, pki: Pki, tmp_path: Path
) -> None:
    router = boot_router()
    signer.install(router)
    csms = CSMS(router)
    csms.add_extra_handler(signer, name="certificates")
    key = ec.generate_private_key(ec.SECP256R1())
    module = {V16: v1_6, V201: v2_0_1, V21: v2_1}[version]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(csms.run)
            ours, theirs = memory_transport_pair()
            await nursery.start(partial(csms.serve_station, ours, "CS1", version))
            fake = FakeStation(theirs, version)
            await fake.call(boot_request(version))
            # a station asking for another station's name as its CN
            extra = {"request_id": 7} if version is V21 else {}
            answer = await fake.call(module.SignCertificateRequest(csr=csr("CS2", key), **extra))
            assert str(getattr(answer, "status", None)) == "Accepted"
            signed = await fake.expect_call()
            assert signed.action == "CertificateSigned"
            payload = signed.request.to_json()
            if version is V21:
                assert payload["requestId"] == 7
            await fake.answer(
                signed,
                module.CertificateSignedResponse(
                    status=module.CertificateSignedStatusEnumType.ACCEPTED
                ),
            )
            refused = await fake.call(module.SignCertificateRequest(csr="garbage"))
            assert str(getattr(refused, "status", None)) == "Rejected"
            nursery.cancel_scope.cancel()
    stats = signer.statistics()
    assert (stats.signed, stats.refused) == (1, 1)
    # the certificate connects as its station only, whatever its CN says
    bundle = tmp_path / "station.pem"
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    bundle.write_bytes(key_pem + payload["certificateChain"].encode())
    client = pki.client()
    client.load_cert_chain(str(bundle))
    checker, context = build_security(None, pki.cert_file, None, pki.ca_file)
    assert context is not None
    async with csms_with(checker, context) as server:  # type: ignore[arg-type]
        port = port_of(server)
        assert await connects(port, "/CS1", ssl_context=client)
        assert await refusal(port, "/CS2", ssl_context=client) == 403


# -- duplicate connections, per station ----------------------------------------------------------


async def test_the_duplicate_connection_policy_per_station() -> None:
    csms = CSMS(boot_router(), config=CSMSConfig(duplicate_connections=DuplicatePolicy.REPLACE))
    csms.set_duplicate_policy("KEEP", "refuse")
    assert csms.duplicate_policy("KEEP") is DuplicatePolicy.REFUSE
    assert csms.duplicate_policy("OTHER") is DuplicatePolicy.REPLACE
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            ends = {}
            for identity in ("KEEP", "OTHER"):
                for n in (1, 2):
                    ours, theirs = memory_transport_pair()
                    await nursery.start(partial(csms.serve_station, ours, identity, V201))
                    ends[identity, n] = theirs
                    if n == 1:
                        await FakeStation(theirs, V201).call(boot_request(V201))
            # KEEP: the new connection was refused; OTHER: the old one was replaced
            refused, replaced = ends["KEEP", 2].closed, ends["OTHER", 1].closed
            assert refused is not None
            assert refused.code == CloseCode.POLICY_VIOLATION
            assert replaced is not None
            assert replaced.code == CloseCode.NORMAL
            assert ends["KEEP", 1].closed is None
            assert ends["OTHER", 2].closed is None
            nursery.cancel_scope.cancel()
    assert csms.statistics().connections_refused == 1
    csms.set_duplicate_policy("KEEP", None)
    assert csms.duplicate_policy("KEEP") is DuplicatePolicy.REPLACE


STATION = '[[station]]\nidentity = "X"\nsecurity_profile = 3\n'


def test_duplicate_policies_in_the_stations_file() -> None:
    config = parse_stations(
        """
        [defaults]
        security_profile = 3
        duplicate_connections = "refuse"

        [[station]]
        identity = "CS1"

        [[station]]
        identity = "CS2"
        duplicate_connections = "replace"
        """
    )
    assert config.duplicate_connections == {"CS1": "refuse", "CS2": "replace"}
    with pytest.raises(Exception, match="duplicate_connections"):
        parse_stations(
            '[[station]]\nidentity = "X"\nsecurity_profile = 3\nduplicate_connections = "both"\n'
        )


def test_stations_file_certificate_names_must_be_a_list() -> None:
    with pytest.raises(Exception, match="certificate_common_names"):
        parse_stations(
            '[[station]]\nidentity = "X"\nsecurity_profile = 3\ncertificate_common_names = "SN"\n'
        )
