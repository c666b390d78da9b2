"""TLS server contexts for OCPP security profiles 2 and 3."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable
from typing import Final

__all__ = ["OCPP_TLS12_CIPHERS", "server_ssl_context"]

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
    :class:`~ocpp_trio.security.auth.StationAuthenticator` then requires it per station).

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
