"""Signing the stations' certificate requests (``SignCertificate``), bound to each station.

A station sends a CSR in ``SignCertificate``; :class:`StationCertificateSigner` answers it
(Accepted or Rejected), and once that answer is out, signs it with the operator's client CA and
sends the chain in ``CertificateSigned``.  Every certificate it signs names its station in a
``subjectAltName`` URI (:func:`~ocpp_trio.security.certificates.station_uri`), so it belongs to
that station alone: the authenticator and
:class:`~ocpp_trio.security.certificates.CertificateBinding` accept it for that identity only,
whatever CN the station asked for (A00.FR.405 lets the CN be its serial number).

Checks before signing: the CSR's signature, an RSA key of 2048 bits or more or an EC key on
P-256 or P-384, exactly one subject CN, the operator's O when one is configured, and a
``ChargingStationCertificate`` (a V2G certificate is the business of the V2G PKI).

Needs the ``cryptography`` package (``pip install 'ocpp-trio[ca]'``).
"""

from __future__ import annotations

import datetime
import enum
import logging
import os
import secrets
from typing import Any, Final, TypeVar

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ocpp_trio.errors import CertificateRequestError, OCPPError
from ocpp_trio.messages import v1_6, v2_0_1, v2_1
from ocpp_trio.messages._base import Direction, Response
from ocpp_trio.runtime.events import Exchange
from ocpp_trio.runtime.handlers import Router
from ocpp_trio.runtime.station import Station
from ocpp_trio.security.certificates import station_uri

__all__ = ["SignerStatistics", "StationCertificateSigner"]

logger = logging.getLogger("ocpp_trio.security")

_CURVES: Final = (ec.SECP256R1, ec.SECP384R1)
_MIN_RSA_BITS: Final = 2048
_STATION_CERTIFICATE: Final = "ChargingStationCertificate"
_SIGN_REQUESTS: Final = (
    v1_6.SignCertificateRequest,
    v2_0_1.SignCertificateRequest,
    v2_1.SignCertificateRequest,
)

StrPath = str | os.PathLike[str]
_SignRequest = (
    v1_6.SignCertificateRequest | v2_0_1.SignCertificateRequest | v2_1.SignCertificateRequest
)
S = TypeVar("S", bound=enum.StrEnum)


@attrs.frozen(kw_only=True)
class SignerStatistics:
    """Counters of a :class:`StationCertificateSigner`."""

    #: certificates signed and sent
    signed: int
    #: requests answered Rejected
    refused: int
    #: signed certificates the station did not take (error, timeout, not Accepted)
    undelivered: int


@attrs.define
class _Counts:
    signed: int = 0
    refused: int = 0
    undelivered: int = 0


class StationCertificateSigner:
    """Answers ``SignCertificate`` and delivers the signed certificate (see the module docs).

    Install it on the router and as a CSMS-wide extra handler::

        signer = StationCertificateSigner.from_files("ca.pem", "ca-key.pem")
        signer.install(router)
        csms.add_extra_handler(signer, name="certificates", buffer=64)

    Args:
        ca_certificate: the CA certificate (the client CA the server trusts).
        ca_key: its private key.
        organization: the subject O every CSR must hold (the operator); ``None``: any.
        validity: how long a certificate is valid (at most as long as the CA).
        call_timeout: seconds ``CertificateSigned`` waits for the station (default: the
            station's).
    """

    def __init__(
        self,
        ca_certificate: x509.Certificate,
        ca_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        *,
        organization: str | None = None,
        validity: datetime.timedelta = datetime.timedelta(days=365),
        call_timeout: float | None = None,
    ) -> None:
        self.ca_certificate = ca_certificate
        self._ca_key = ca_key
        self.organization = organization
        self.validity = validity
        self.call_timeout = call_timeout
        self._counts = _Counts()

    @classmethod
    def from_files(
        cls,
        ca_certificate: StrPath,
        ca_key: StrPath,
        *,
        key_password: bytes | None = None,
        **kwargs: Any,
    ) -> StationCertificateSigner:
        """A signer from PEM files (the other arguments are the constructor's).

        Raises:
            OSError: a file cannot be read.
            ValueError: a file holds no certificate or key, or they do not match.
            TypeError: the key is not an RSA or EC key.
        """
        with open(ca_certificate, "rb") as file:
            certificate = x509.load_pem_x509_certificate(file.read())
        with open(ca_key, "rb") as file:
            key = serialization.load_pem_private_key(file.read(), password=key_password)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise TypeError(f"{os.fspath(ca_key)}: the CA key must be an RSA or EC key")
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
            raise ValueError(f"{os.fspath(ca_key)}: the key does not match the CA certificate")
        return cls(certificate, key, **kwargs)

    def statistics(self) -> SignerStatistics:
        """A snapshot of the counters."""
        return SignerStatistics(**attrs.asdict(self._counts))

    # -- checking and signing ----------------------------------------------------------------

    def check(
        self, csr_pem: str, certificate_type: str | None = None
    ) -> x509.CertificateSigningRequest:
        """The CSR, parsed and checked (see the module docs).

        Raises:
            CertificateRequestError: what is wrong with it.
        """
        if certificate_type not in (None, _STATION_CERTIFICATE):
            raise CertificateRequestError(f"{certificate_type} certificates are not signed here")
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode("ascii", "replace"))
        except ValueError:
            raise CertificateRequestError("not a PEM certificate signing request") from None
        if not csr.is_signature_valid:
            raise CertificateRequestError("the CSR's signature is not valid")
        key = csr.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            if key.key_size < _MIN_RSA_BITS:
                raise CertificateRequestError(f"an RSA key of {key.key_size} bits is too small")
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(key.curve, _CURVES):
                raise CertificateRequestError(f"the curve {key.curve.name} is not accepted")
        else:
            raise CertificateRequestError("the key must be RSA or EC")
        names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(names) != 1:
            raise CertificateRequestError(f"the CSR has {len(names)} subject CNs, not one")
        if self.organization is not None:
            orgs = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
            if orgs != [self.organization]:
                raise CertificateRequestError(f"the CSR's O {orgs!r} is not {self.organization!r}")
        return csr

    def sign(self, identity: str, csr_pem: str, certificate_type: str | None = None) -> str:
        """Sign ``csr_pem`` for station ``identity``: the certificate and the CA, as PEM.

        Raises:
            CertificateRequestError: the CSR is refused.
        """
        csr = self.check(csr_pem, certificate_type)
        now = datetime.datetime.now(datetime.UTC)
        not_after = min(now + self.validity, self.ca_certificate.not_valid_after_utc)
        ca_public = self.ca_certificate.public_key()
        assert isinstance(ca_public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
        key = csr.public_key()
        assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.ca_certificate.subject)
            .public_key(key)
            .serial_number(secrets.randbits(159) | 1)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=isinstance(key, rsa.RSAPublicKey),
                    data_encipherment=False,
                    key_agreement=isinstance(key, ec.EllipticCurvePublicKey),
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(station_uri(identity))]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
            )
        )
        certificate = builder.sign(self._ca_key, hashes.SHA256())
        return (
            certificate.public_bytes(serialization.Encoding.PEM)
            + self.ca_certificate.public_bytes(serialization.Encoding.PEM)
        ).decode("ascii")

    # -- OCPP ----------------------------------------------------------------------------------

    def install(self, router: Router) -> None:
        """Answer ``SignCertificate`` (1.6 security extension, 2.0.1, 2.1) on ``router``."""

        @router.on(v1_6.SignCertificateRequest)
        async def sign_16(
            station: Station, request: v1_6.SignCertificateRequest
        ) -> v1_6.SignCertificateResponse:
            status = self._status(station, request, v1_6.GenericStatusEnumType)
            return v1_6.SignCertificateResponse(status=status)

        @router.on(v2_0_1.SignCertificateRequest)
        async def sign_201(
            station: Station, request: v2_0_1.SignCertificateRequest
        ) -> v2_0_1.SignCertificateResponse:
            status = self._status(station, request, v2_0_1.GenericStatusEnumType)
            return v2_0_1.SignCertificateResponse(status=status)

        @router.on(v2_1.SignCertificateRequest)
        async def sign_21(
            station: Station, request: v2_1.SignCertificateRequest
        ) -> v2_1.SignCertificateResponse:
            status = self._status(station, request, v2_1.GenericStatusEnumType)
            return v2_1.SignCertificateResponse(status=status)

    def _status(self, station: Station, request: _SignRequest, status: type[S]) -> S:
        """``Accepted`` or ``Rejected`` of the version's ``status`` enum, by :meth:`check`."""
        kind = getattr(request, "certificate_type", None)
        accepted = self._answer(station.identity, request.csr, None if kind is None else str(kind))
        return status("Accepted" if accepted else "Rejected")

    def _answer(self, identity: str, csr: str, certificate_type: str | None) -> bool:
        try:
            self.check(csr, certificate_type)
        except CertificateRequestError as exc:
            self._counts.refused += 1
            logger.warning("station %r: certificate request refused: %s", identity, exc)
            return False
        return True

    async def __call__(self, station: Station, exchange: Exchange) -> None:
        """Deliver the certificate of an accepted ``SignCertificate`` (an extra handler: it
        runs once the answer has been sent, so ``CertificateSigned`` comes after it)."""
        request = exchange.request
        if (
            exchange.direction is not Direction.STATION_TO_CSMS
            or not isinstance(request, _SIGN_REQUESTS)
            or not _accepted(exchange.response)
        ):
            return
        kind = getattr(request, "certificate_type", None)
        try:
            chain = self.sign(station.identity, request.csr, None if kind is None else str(kind))
        except CertificateRequestError as exc:  # pragma: no cover - checked when answered
            logger.warning("station %r: certificate not signed: %s", station.identity, exc)
            return
        signed = _signed_request(request, chain)
        try:
            response = await station.call(signed, call_timeout=self.call_timeout)
        except OCPPError as exc:
            self._counts.undelivered += 1
            logger.warning(
                "station %r: CertificateSigned failed: %s", station.identity, type(exc).__name__
            )
            return
        status = str(getattr(response, "status", ""))
        if status != "Accepted":
            self._counts.undelivered += 1
            logger.warning("station %r: CertificateSigned answered %s", station.identity, status)
            return
        self._counts.signed += 1
        logger.info("station %r: certificate signed and installed", station.identity)


def _accepted(response: Response | None) -> bool:
    return response is not None and str(getattr(response, "status", "")) == "Accepted"


def _signed_request(
    request: _SignRequest,
    chain: str,
) -> (
    v1_6.CertificateSignedRequest | v2_0_1.CertificateSignedRequest | v2_1.CertificateSignedRequest
):
    if isinstance(request, v1_6.SignCertificateRequest):
        return v1_6.CertificateSignedRequest(certificate_chain=chain)
    if isinstance(request, v2_0_1.SignCertificateRequest):
        return v2_0_1.CertificateSignedRequest(
            certificate_chain=chain,
            certificate_type=v2_0_1.CertificateSigningUseEnumType.CHARGING_STATION_CERTIFICATE,
        )
    return v2_1.CertificateSignedRequest(
        certificate_chain=chain,
        certificate_type=v2_1.CertificateSigningUseEnumType.CHARGING_STATION_CERTIFICATE,
        request_id=request.request_id,
    )
