"""Client certificates (security profile 3): whose station a certificate is.

A certificate that validated against the client CA proves only that the CA issued it; which
station it belongs to is a separate rule, and the rule is applied by default:

* a certificate the CSMS signed for a station (:mod:`ocpp_trio.security.signing`) names that
  station in a ``subjectAltName`` URI (:func:`station_uri`) and belongs to it alone;
* any other certificate must hold exactly one subject CN, equal to the station identity, or one
  of the CNs configured for the station (:attr:`CertificatePolicy.common_names`), or pass the
  application's own check (:attr:`CertificatePolicy.check`);
* the subject O must equal the operator's name when one is configured (A00.FR.404).

:class:`CertificateBinding` applies this to every upgrade request when there is no list of
stations (``ocpp-trio serve --tls-client-ca`` without ``--stations``); the
:class:`~ocpp_trio.security.auth.StationAuthenticator` applies it per station record.  Turning
the binding off (:attr:`CertificatePolicy.any_identity`) lets any holder of any certificate of
the CA connect as any station; it is logged at WARNING every time a policy with it is made.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import attrs

from ocpp_trio.transport.server import ConnectionRequest, Rejection

__all__ = [
    "STATION_URI_PREFIX",
    "CertificateBinding",
    "CertificateCheck",
    "CertificatePolicy",
    "certificate_problem",
    "certificate_stations",
    "certificate_subject",
    "check_certificate_binding",
    "station_uri",
]

logger = logging.getLogger("ocpp_trio.security")

#: the ``subjectAltName`` URI prefix that binds a certificate the CSMS signed to one station
STATION_URI_PREFIX: Final = "urn:ocpp-trio:station:"

#: an application's binding rule: ``(identity, certificate) -> None`` when the certificate
#: belongs to the station, else what is wrong (for the log)
CertificateCheck = Callable[[str, Mapping[str, Any]], str | None]


def certificate_subject(certificate: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The subject of a certificate in :meth:`ssl.SSLSocket.getpeercert` form, as
    ``{attribute name: values}`` (e.g. ``{"commonName": ("CS001",), "organizationName":
    ("Example CPO",)}``); an attribute may occur more than once."""
    subject: dict[str, list[str]] = {}
    for rdn in certificate.get("subject", ()):
        for name, value in rdn:
            subject.setdefault(str(name), []).append(str(value))
    return {name: tuple(values) for name, values in subject.items()}


def station_uri(identity: str) -> str:
    """The ``subjectAltName`` URI naming ``identity`` in a certificate the CSMS signs."""
    return STATION_URI_PREFIX + urllib.parse.quote(identity, safe="")


def certificate_stations(certificate: Mapping[str, Any]) -> tuple[str, ...]:
    """The stations a certificate was signed for (its :func:`station_uri` names)."""
    found = []
    for kind, value in certificate.get("subjectAltName", ()):
        if kind == "URI" and str(value).startswith(STATION_URI_PREFIX):
            found.append(urllib.parse.unquote(str(value)[len(STATION_URI_PREFIX) :]))
    return tuple(found)


def _frozen_names(names: Iterable[str]) -> frozenset[str]:
    return frozenset(names)


@attrs.frozen(kw_only=True)
class CertificatePolicy:
    """How a client certificate must bind to the station it connects as.

    Attributes:
        common_names: the subject CNs allowed (e.g. serial numbers); empty: the identity.
        organization: the subject O required; ``None``: not checked.
        check: the application's own rule instead of the CN rule (see
            :data:`CertificateCheck`).
        any_identity: no binding at all: any certificate of the CA may connect as any station
            (logged at WARNING when such a policy is made).
    """

    common_names: frozenset[str] = attrs.field(default=frozenset(), converter=_frozen_names)
    organization: str | None = None
    check: CertificateCheck | None = attrs.field(default=None, eq=False)
    any_identity: bool = False

    def __attrs_post_init__(self) -> None:
        if self.any_identity:
            logger.warning(
                "client certificates are NOT bound to station identities: any certificate of "
                "the client CA may connect as any station"
            )


def certificate_problem(
    policy: CertificatePolicy, identity: str, certificate: Mapping[str, Any]
) -> str | None:
    """``None`` when ``certificate`` belongs to station ``identity`` under ``policy``, else
    what is wrong (for the log; see the module docs for the rules)."""
    signed_for = certificate_stations(certificate)
    subject = certificate_subject(certificate)
    if signed_for:
        if identity not in signed_for:
            return f"the certificate was signed for station(s) {list(signed_for)!r}"
    elif not policy.any_identity:
        if policy.check is not None:
            problem = policy.check(identity, certificate)
            if problem is not None:
                return problem
        else:
            names = subject.get("commonName", ())
            if len(names) != 1:
                return f"the certificate has {len(names)} subject CNs, not one"
            allowed = policy.common_names or frozenset({identity})
            if names[0] not in allowed:
                wanted = sorted(allowed)
                shown = repr(wanted[0]) if len(wanted) == 1 else f"one of {wanted!r}"
                return f"certificate CN {names[0]!r} is not {shown}"
    if policy.organization is not None:
        orgs = subject.get("organizationName", ())
        if orgs != (policy.organization,):
            return f"certificate O {list(orgs)!r} is not {policy.organization!r}"
    return None


def check_certificate_binding(
    certificate: Mapping[str, Any],
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
    names = frozenset() if common_name is None else frozenset({common_name})
    policy = CertificatePolicy(common_names=names, organization=organization)
    return certificate_problem(policy, identity, certificate)


class CertificateBinding:
    """A ``check_request`` for a server without a list of stations whose stations prove who
    they are with client certificates: each certificate must belong to the identity it connects
    as (see the module docs).

    Args:
        policy: the rule for every station without one of its own.
        policies: rules per station identity (e.g. its serial number as the allowed CN).
    """

    def __init__(
        self,
        policy: CertificatePolicy | None = None,
        policies: Mapping[str, CertificatePolicy] | None = None,
    ) -> None:
        self.policy = policy or CertificatePolicy()
        self._policies: dict[str, CertificatePolicy] = dict(policies or {})
        #: upgrades let through and refused
        self.accepted = 0
        self.refused = 0

    def set_policy(self, identity: str, policy: CertificatePolicy | None) -> None:
        """Give ``identity`` its own rule (``None``: back to the default)."""
        if policy is None:
            self._policies.pop(identity, None)
        else:
            self._policies[identity] = policy

    def policy_for(self, identity: str) -> CertificatePolicy:
        """The rule ``identity`` is checked by."""
        return self._policies.get(identity, self.policy)

    async def __call__(self, request: ConnectionRequest) -> Rejection | None:
        """``None`` when the request's certificate belongs to its identity, else a 403."""
        if not request.tls or request.peer_certificate is None:
            problem: str | None = "a client certificate is required"
        else:
            policy = self.policy_for(request.identity)
            problem = certificate_problem(policy, request.identity, request.peer_certificate)
        if problem is not None:
            self.refused += 1
            logger.warning(
                "station %r (%s): refused: %s", request.identity, request.remote, problem
            )
            return Rejection(403, "the client certificate does not belong to this station")
        self.accepted += 1
        return None
