"""The options of ``ocpp-trio serve`` beyond the basics, and the files they name: the admin API
and its token, the stations file and TLS, id tokens, and the ``--config`` file.

Kept apart from :mod:`ocpp_trio.cli.main` (which builds the parser and runs the command) so
that each stays short; ``main`` re-exports what tests and tools use.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tomllib
from collections.abc import Sequence
from typing import Any

from ocpp_trio.cli.args import OneLineParser, port_number
from ocpp_trio.protocol.version import Version
from ocpp_trio.security.config import build_security, load_stations_file

__all__ = [
    "add_serve_extras",
    "apply_config_file",
    "load_id_tokens",
    "load_serve_files",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "version_list",
]

log = logging.getLogger("ocpp_trio.cli")


def version_list(text: str) -> list[Version]:
    try:
        return [Version(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        choices = ", ".join(v.value for v in Version)
        raise argparse.ArgumentTypeError(f"{text!r}: versions are among {choices}") from None


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def rate(text: str) -> float:
    """A finite rate >= 0 (0: no limit)."""
    value = non_negative_float(text)
    if math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be finite (0 for no limit)")
    return value


def add_serve_extras(serve: argparse.ArgumentParser) -> None:
    """The admin API, security and configuration-file options of ``serve``."""
    serve.add_argument(
        "--admin-host",
        default="127.0.0.1",
        metavar="HOST",
        help="interface of the admin HTTP API (default %(default)s: this machine only)",
    )
    serve.add_argument(
        "--admin-port",
        type=port_number,
        metavar="PORT",
        help="port of the admin HTTP API, 0 for any (default 9001; when 9001 is taken the "
        "server runs without it)",
    )
    serve.add_argument("--no-admin", action="store_true", help="run without the admin API")
    serve.add_argument(
        "--admin-token",
        metavar="TOKEN",
        help="bearer token of the admin API (visible to other users in the process list: "
        "prefer OCPP_TRIO_ADMIN_TOKEN or --admin-token-file)",
    )
    serve.add_argument(
        "--admin-token-file",
        metavar="FILE",
        help="file holding the admin API token; created (mode 0600) with a new token when "
        "missing (default: <db>.admin-token)",
    )
    serve.add_argument(
        "--admin-allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name the admin API answers to besides IP addresses and localhost "
        "(repeatable; e.g. the name of a proxy in front of it)",
    )
    serve.add_argument(
        "--stations",
        dest="stations_file",
        metavar="FILE",
        help="TOML allow-list of stations with their Basic-auth passwords and security "
        "profiles (see docs/security.md); default: any station may connect",
    )
    serve.add_argument("--tls-cert", metavar="FILE", help="serve wss:// with this certificate")
    serve.add_argument("--tls-key", metavar="FILE", help="the certificate's private key")
    serve.add_argument(
        "--tls-extra-cert",
        metavar="FILE",
        help="a second certificate chain with its key in one PEM file, of the other key type "
        "(e.g. ECDSA beside an RSA --tls-cert), so that all the OCPP cipher suites are served",
    )
    serve.add_argument(
        "--tls-client-ca",
        metavar="FILE",
        help="CA of the client certificates (security profile 3); without --stations a "
        "certificate's CN must be the station identity",
    )
    serve.add_argument(
        "--tls-client-ca-key",
        metavar="FILE",
        help="the client CA's private key: sign the stations' certificate requests "
        "(SignCertificate), each certificate bound to its station",
    )
    serve.add_argument(
        "--tls-allow-any-identity",
        action="store_true",
        help="INSECURE: without --stations, let any client certificate of the CA connect as "
        "any station",
    )
    serve.add_argument(
        "--equal-cost-logins",
        action="store_true",
        help="answer unknown stations like wrong passwords (401 after a dummy hash), so "
        "neither answers nor timing tell which identities exist",
    )
    serve.add_argument(
        "--forget-unbooted-after",
        type=non_negative_float,
        default=600.0,
        metavar="SECONDS",
        help="without --stations, forget identities that never booted this long after they "
        "left, in memory and in the database; 0 keeps them (default %(default)s)",
    )
    serve.add_argument(
        "--id-tokens",
        metavar="FILE",
        help="idTokens (1.6 idTags) to accept, one per line ('#' starts a comment); "
        "default: accept all",
    )
    serve.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file of option values (names as the long options, e.g. port = 9000, "
        "admin-port = 9001); options given on the command line win",
    )


# -- serve's files: --config, --id-tokens, --stations and TLS ------------------------------------


def apply_config_file(parser: OneLineParser, path: str, argv: Sequence[str] | None) -> None:
    """Make the values of the TOML file ``path`` the defaults of ``serve``'s options, so that
    the command line still wins.  Keys are the long options' names (``admin-port`` or
    ``admin_port``); a mistake exits with status 2 like any other command-line error."""
    serve = parser.subcommand("serve")
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        serve.error(f"--config {path}: {exc}")
    options = {
        option[2:]: (action, kind)
        for action, kind in serve.options
        for option in action.option_strings
        if option.startswith("--") and option not in ("--help", "--config")
    }
    given = {arg.split("=", 1)[0] for arg in (argv if argv is not None else sys.argv[1:])}
    defaults: dict[str, Any] = {}
    for key, value in data.items():
        found = options.get(key.replace("_", "-"))
        if found is None:
            serve.error(f"--config {path}: unknown option {key!r}")
        if f"--{key.replace('_', '-')}" in given:
            continue  # the command line wins (and would extend a list default)
        action, kind = found
        try:
            defaults[action.dest] = _config_value(action, kind, value)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            serve.error(f"--config {path}: {key}: {exc}")
    serve.set_defaults(**defaults)


def _config_value(action: argparse.Action, kind: str, value: Any) -> Any:
    """``value`` from the TOML file as the option would take it (``kind``: its ``action=``)."""
    if kind == "store_true":
        if not isinstance(value, bool):
            raise TypeError("must be true or false")
        return value
    items = value if isinstance(value, list) else [value]
    if isinstance(value, dict | bool) or any(isinstance(v, dict | list) for v in items):
        raise TypeError(f"unexpected value {value!r}")
    convert = action.type if callable(action.type) else str
    converted = [convert(str(v)) for v in items]
    for v in converted:
        if action.choices is not None and v not in action.choices:
            raise ValueError(f"{v!r} is not one of {', '.join(map(str, action.choices))}")
    if kind in ("extend", "append"):
        return [x for v in converted for x in (v if isinstance(v, list) else [v])]
    if len(converted) != 1:
        raise TypeError("expects one value")
    return converted[0]


def load_id_tokens(path: str) -> frozenset[str]:
    """The idTokens of ``--id-tokens``: one per line, blank lines and ``#`` comments ignored.

    Raises:
        OSError: the file cannot be read.
        ValueError: it holds no token.
    """
    with open(path, encoding="utf-8") as file:
        tokens = frozenset(
            line.split("#", 1)[0].strip() for line in file if line.split("#", 1)[0].strip()
        )
    if not tokens:
        raise ValueError(f"{path}: no idToken in the file")
    return tokens


def load_serve_files(args: argparse.Namespace) -> None:
    """Read ``--id-tokens``, ``--stations`` and the TLS files before serving, so that a
    mistake stops the command before anything listens (exit status 1)."""
    args.id_token_set = load_id_tokens(args.id_tokens) if args.id_tokens else None
    if args.id_token_set is not None:
        log.info("accepting %d idTokens from %s", len(args.id_token_set), args.id_tokens)
    args.stations_config = load_stations_file(args.stations_file) if args.stations_file else None
    files = (args.stations_config, args.tls_cert, args.tls_key, args.tls_client_ca)
    args.security = (
        build_security(
            *files,
            allow_any_identity=args.tls_allow_any_identity,
            equal_cost=args.equal_cost_logins,
            additional_certificates=[(args.tls_extra_cert, None)] if args.tls_extra_cert else (),
        )
        if any(f is not None for f in files)
        else (None, None)
    )
    args.signer = None
    if args.tls_client_ca_key:
        if not args.tls_client_ca:
            raise ValueError("--tls-client-ca-key needs --tls-client-ca (the CA it signs as)")
        from ocpp_trio.security.signing import StationCertificateSigner  # needs cryptography

        organization = args.stations_config.organization if args.stations_config else None
        args.signer = StationCertificateSigner.from_files(
            args.tls_client_ca, args.tls_client_ca_key, organization=organization
        )
        log.info("signing the stations' certificate requests with %s", args.tls_client_ca)
    if args.stations_file:
        log.info("only the stations listed in %s may connect", args.stations_file)
    elif args.tls_client_ca and not args.tls_allow_any_identity:
        log.info("client certificates must name the station identity as their CN")
