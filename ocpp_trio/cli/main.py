"""The ``ocpp-trio`` command: ``serve``, ``simulate`` and ``demo``.

``ocpp-trio serve``: a working CSMS with a default handler set that accepts every station (or
the stations of ``--stations FILE``, and the idTokens of ``--id-tokens FILE``), with a JSON admin
API on a second port (``--admin-port``, see :mod:`ocpp_trio.csms.admin`); ``--config FILE``
gives the options in TOML.  ``ocpp-trio simulate`` runs simulated stations against a CSMS
(:mod:`ocpp_trio.cli.simulate`); ``ocpp-trio demo`` runs both in one process;
``ocpp-trio export transactions`` writes the transaction ledger as CSV
(:mod:`ocpp_trio.cli.export`); ``ocpp-trio --version`` prints the version.

Run it with ``python -m ocpp_trio serve --host 127.0.0.1 --port 9000`` (or ``ocpp-trio serve``).
Stations connect to ``ws://HOST:PORT/<station id>``.  Every finished exchange, in both
directions, is logged on one line (logger ``ocpp_trio.exchange``); the library's own
connection/disconnection lines come from ``ocpp_trio`` and ``ocpp_trio.server``.

Station state (registrations, transactions, EVSE statuses, the device model, the 1.6 transaction
id counter) is kept in the SQLite file given by ``--db`` (default ``./ocpp-trio.db``; a
``postgresql://`` URL shares a PostgreSQL database between nodes, docs/scale-out.md;
``:memory:`` keeps it in memory only): a restarted server resumes accepted stations without a
BootNotification (see docs/recovery.md).

Secrets never reach the log: write-only values (Basic-auth passwords, 1.6 AuthorizationKey)
are shown as ``***`` in the exchange lines.  The admin API needs a bearer token (see
:mod:`ocpp_trio.cli.admin_token`).  Without ``--stations`` any identity may connect, and
identities that never booted are forgotten ``--forget-unbooted-after`` seconds after they left.

SIGINT (Ctrl-C) and SIGTERM stop the server in order: the listener closes, every station gets a
1001 close, and the process exits with status 0 and no traceback (every command ends on Ctrl-C
without one).  Status 1 means the server could not start (e.g. the port is taken: the message
names it, and a database the attempt would have created is removed again), 2 a command-line
error (a port out of range, a URL that is not ws:// or wss://, a file that is not there: one
line naming the option and the value; see :mod:`ocpp_trio.cli.args`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from functools import partial

import attrs
import trio

from ocpp_trio.cli.admin_token import default_token_file, resolve_admin_token
from ocpp_trio.cli.args import (
    OneLineParser,
    check_files,
    client_ssl_context,
    new_database,
    package_version,
    port_number,
    remove_new_database,
    stopped_by_user,
)
from ocpp_trio.cli.export import add_export_parser, run_export
from ocpp_trio.cli.logs import LOG_FORMATS, configure_logging
from ocpp_trio.cli.serve_options import (
    add_serve_extras,
    apply_config_file,
    load_id_tokens,
    load_serve_files,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    rate,
    version_list,
)
from ocpp_trio.cli.simulate import (
    LiveView,
    add_simulate_parser,
    add_simulation_options,
    build_simulator_config,
    open_view,
    run_simulation,
    simulate,
    summary,
)
from ocpp_trio.client.simulator import Simulator
from ocpp_trio.csms.admin import AdminConfig, AdminInfo, serve_admin
from ocpp_trio.csms.core import CSMS, CSMSConfig, serve_csms, start_csms
from ocpp_trio.csms.ledger import LedgerConfig
from ocpp_trio.domain.credentials import CredentialStore
from ocpp_trio.domain.device_model import DeviceModel
from ocpp_trio.domain.events import TransactionEnded, TransactionStarted
from ocpp_trio.domain.redaction import redact_message
from ocpp_trio.errors import CallError, ErrorCode, StoreError
from ocpp_trio.messages import Direction, Message, v1_6, v2_0_1, v2_1
from ocpp_trio.protocol.supervisor import RegistrationStatus
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.events import Exchange
from ocpp_trio.runtime.groups import leaves as exception_leaves
from ocpp_trio.runtime.handlers import Router
from ocpp_trio.runtime.station import Station, StationConfig
from ocpp_trio.security.auth import PasswordChangeObserver, StationAuthenticator
from ocpp_trio.security.config import (
    use_persistent_credentials,
)
from ocpp_trio.store.base import Store
from ocpp_trio.store.memory import MemoryStore
from ocpp_trio.store.sqlite import open_sqlite_store
from ocpp_trio.transport.server import ServerConfig

__all__ = [
    "ExchangeLogger",
    "build_parser",
    "default_router",
    "load_id_tokens",
    "main",
    "summarize",
]

log = logging.getLogger("ocpp_trio.cli")
exchange_log = logging.getLogger("ocpp_trio.exchange")


# -- the default handler set -------------------------------------------------------------------


def default_router(
    *,
    boot_status: RegistrationStatus | str = RegistrationStatus.ACCEPTED,
    interval: int = 300,
    id_tokens: Collection[str] | None = None,
) -> Router:
    """The handlers of ``ocpp-trio serve``: accept everything, remember nothing.

    * BootNotification (every version): ``boot_status`` with ``interval`` seconds.
    * Authorize: the id token is Accepted (with ``id_tokens``: when it is one of them, else
      Invalid; 1.6 idTags compare case-insensitively).

    Everything else gets the runtime's default answer (``ocpp_trio.runtime.defaults``), which
    asks the Authorize handler above about the id tokens of transaction messages: 1.6
    Start/StopTransaction and 2.x TransactionEvent carry its verdict; a 1.6 StartTransaction
    gets a transaction id from the CSMS-wide allocator (kept in the store, so it continues
    after a restart), and a station retrying the same StartTransaction gets the same id again;
    Heartbeat the current time; DataTransfer ``UnknownVendorId``; the notifications whose
    response carries nothing the empty response; and what needs a decision this CSMS cannot
    take (certificate signing and status, EV charging needs, ...) ``NotSupported``.
    """
    router = Router()
    router.set_default_boot(boot_status, interval)
    known = None if id_tokens is None else frozenset(id_tokens)
    known_16 = None if known is None else frozenset(t.casefold() for t in known)

    @router.on(v1_6.AuthorizeRequest)
    async def authorize_16(
        station: Station, request: v1_6.AuthorizeRequest
    ) -> v1_6.AuthorizeResponse:
        accepted = known_16 is None or request.id_tag.casefold() in known_16
        return v1_6.AuthorizeResponse(id_tag_info=_ID_TAG_ACCEPTED if accepted else _ID_TAG_INVALID)

    @router.on(v2_0_1.AuthorizeRequest)
    async def authorize_201(
        station: Station, request: v2_0_1.AuthorizeRequest
    ) -> v2_0_1.AuthorizeResponse:
        accepted = known is None or request.id_token.id_token in known
        return v2_0_1.AuthorizeResponse(
            id_token_info=_TOKEN_ACCEPTED_201 if accepted else _TOKEN_INVALID_201
        )

    @router.on(v2_1.AuthorizeRequest)
    async def authorize_21(
        station: Station, request: v2_1.AuthorizeRequest
    ) -> v2_1.AuthorizeResponse:
        accepted = known is None or request.id_token.id_token in known
        return v2_1.AuthorizeResponse(
            id_token_info=_TOKEN_ACCEPTED_21 if accepted else _TOKEN_INVALID_21
        )

    return router


_ID_TAG_ACCEPTED = v1_6.IdTagInfo(status=v1_6.AuthorizationStatus.ACCEPTED)
_TOKEN_ACCEPTED_201 = v2_0_1.IdTokenInfoType(status=v2_0_1.AuthorizationStatusEnumType.ACCEPTED)
_TOKEN_ACCEPTED_21 = v2_1.IdTokenInfoType(status=v2_1.AuthorizationStatusEnumType.ACCEPTED)
_ID_TAG_INVALID = v1_6.IdTagInfo(status=v1_6.AuthorizationStatus.INVALID)
_TOKEN_INVALID_201 = v2_0_1.IdTokenInfoType(status=v2_0_1.AuthorizationStatusEnumType.INVALID)
_TOKEN_INVALID_21 = v2_1.IdTokenInfoType(status=v2_1.AuthorizationStatusEnumType.INVALID)


# -- logging every exchange --------------------------------------------------------------------


def summarize(message: Message | None, limit: int, device_model: DeviceModel | None = None) -> str:
    """The wire JSON of ``message`` on one line, cut to ``limit`` characters (``0``: no cut),
    its secrets shown as ``***`` (write-only values; ``device_model`` names more of them)."""
    if message is None:
        return "-"
    shown = redact_message(message, device_model)
    text = json.dumps(shown.to_json(), separators=(",", ":"), ensure_ascii=False, default=str)
    if limit and len(text) > limit:
        return text[: max(limit - 3, 0)] + "..."
    return text


class ExchangeLogger:
    """An extra handler that logs each finished exchange on one line.

    ``<station> <version> <direction> <action> <outcome> req=<json> res=<json> (<ms> ms)``, where
    the direction is ``station->csms`` (the station's CALL or SEND) or ``csms->station`` (ours),
    and the outcome ``ok``, ``send`` (a 2.1 SEND) or ``error=<what>``.  CALLERRORs and failures
    are logged at WARNING, the rest at INFO.  Secrets read ``***`` (see :func:`summarize`).
    """

    def __init__(self, *, payload_chars: int = 200, logger: logging.Logger | None = None) -> None:
        self.payload_chars = payload_chars
        self.logger = logger or exchange_log

    async def __call__(self, station: Station, exchange: Exchange) -> None:
        if not self.logger.isEnabledFor(logging.WARNING if exchange.error else logging.INFO):
            return
        direction = (
            "csms->station" if exchange.direction is Direction.CSMS_TO_STATION else "station->csms"
        )
        if exchange.error is not None:
            error = exchange.error
            if isinstance(error, CallError):
                code = error.code
                wire = code.wire(exchange.version) if isinstance(code, ErrorCode) else code
                outcome = f"error={wire}"
                if error.description:
                    outcome += f" ({error.description})"
            else:
                outcome = f"error={type(error).__name__} ({error})"
            level = logging.WARNING
        else:
            outcome = "ok" if exchange.response is not None else "send"
            level = logging.INFO
        # the station's reported WriteOnly variables are hidden too (the known secrets always)
        machines = getattr(station, "machines", None)
        model: DeviceModel | None = None if machines is None else machines.device_model
        self.logger.log(
            level,
            "%s %s %s %s %s req=%s res=%s (%.1f ms)",
            exchange.identity,
            exchange.version,
            direction,
            exchange.action,
            outcome,
            summarize(exchange.request, self.payload_chars, model),
            summarize(exchange.response, self.payload_chars, model),
            (exchange.finished - exchange.started) * 1000.0,
            extra={"station_id": exchange.identity},
        )


# -- the command line --------------------------------------------------------------------------


def build_parser() -> OneLineParser:
    """The ``ocpp-trio`` argument parser."""
    parser = OneLineParser(
        prog="ocpp-trio", description="ocpp-trio: a trio-native OCPP-J central system."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run a CSMS that accepts every station and logs every exchange",
        description=(
            "Run a CSMS on ws://HOST:PORT/<station id> that accepts every station, answers "
            "the common station messages of OCPP 1.6, 2.0.1 and 2.1, and logs every exchange "
            "on one line.  Ctrl-C stops it (exit status 0)."
        ),
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default %(default)s)"
    )
    serve.add_argument(
        "--port",
        type=port_number,
        default=9000,
        help="port to bind, 0 for any (default %(default)s)",
    )
    serve.add_argument(
        "--versions",
        type=version_list,
        action="extend",
        metavar="V[,V...]",
        help="OCPP versions to offer (comma-separated or repeated; default: 1.6,2.0.1,2.1)",
    )
    serve.add_argument(
        "--ping-interval",
        type=non_negative_float,
        default=30.0,
        metavar="SECONDS",
        help="WebSocket keepalive ping interval, 0 disables (default %(default)s)",
    )
    serve.add_argument(
        "--heartbeat-interval",
        type=non_negative_int,
        default=300,
        metavar="SECONDS",
        help="interval sent in BootNotification answers (default %(default)s)",
    )
    serve.add_argument(
        "--boot-status",
        choices=[s.value for s in RegistrationStatus],
        default=RegistrationStatus.ACCEPTED.value,
        help="status of every BootNotification answer (default %(default)s)",
    )
    serve.add_argument(
        "--call-timeout",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how long the CSMS waits for a station's answer (default %(default)s)",
    )
    serve.add_argument(
        "--max-message-rate",
        type=rate,
        default=50.0,
        metavar="N",
        help="frames per second one station may send, sustained; above it (after a burst of "
        "--message-burst) reading from it pauses, nothing is lost; 0 for no limit "
        "(default %(default)s)",
    )
    serve.add_argument(
        "--message-burst",
        type=positive_int,
        default=200,
        metavar="N",
        help="frames a station may send at once above --max-message-rate (default %(default)s)",
    )
    serve.add_argument(
        "--payload-chars",
        type=non_negative_int,
        default=200,
        metavar="N",
        help="cut logged payloads to N characters, 0 for no cut (default %(default)s)",
    )
    serve.add_argument(
        "--db",
        default="./ocpp-trio.db",
        metavar="FILE|URL",
        help="SQLite file keeping station state across restarts, ':memory:' for none, or a "
        "postgresql:// URL shared by several nodes (default %(default)s)",
    )
    serve.add_argument(
        "--node",
        metavar="NAME",
        help="this process's name among the nodes sharing a postgresql:// store "
        "(default: host name, process id and a random suffix)",
    )
    serve.add_argument(
        "--ledger-days",
        type=positive_float,
        metavar="DAYS",
        help="keep finished transactions (the ledger) this many days (default: all)",
    )
    add_serve_extras(serve)
    serve.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default="INFO",
        help="logging level (default %(default)s; exchanges are logged at INFO)",
    )
    serve.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="log lines as text, or as one JSON object each (default %(default)s)",
    )
    add_simulate_parser(commands)
    add_export_parser(commands)
    demo = commands.add_parser(
        "demo",
        help="run a CSMS and simulated stations together: a charging session within seconds",
        description=(
            "Run `serve` (with its admin API) and `simulate` in one process: a few stations "
            "connect, boot and charge, and every transaction the CSMS sees is printed.  "
            "Ctrl-C stops both."
        ),
    )
    demo.add_argument(
        "--port", type=port_number, default=9000, help="CSMS port (default %(default)s)"
    )
    demo.add_argument(
        "--admin-port",
        type=port_number,
        help="admin API port, 0 for any (default 9001; when taken the demo runs without it)",
    )
    add_simulation_options(demo, demo=True)
    demo.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default="WARNING",
        help="logging level on stderr (default %(default)s)",
    )
    return parser


def _station_config(args: argparse.Namespace) -> StationConfig:
    config = StationConfig(call_timeout=args.call_timeout)
    if hasattr(args, "max_message_rate"):  # serve's options (not those of every command)
        config = attrs.evolve(
            config,
            max_message_rate=args.max_message_rate or None,
            message_burst=args.message_burst,
        )
    return config


def _config(args: argparse.Namespace, store: Store | None = None) -> CSMSConfig:
    versions = tuple(dict.fromkeys(args.versions)) if args.versions else tuple(Version)
    # nodes sharing a PostgreSQL store take 1.6 transaction ids from one shared counter
    shared_ids = getattr(store, "transaction_ids", None)
    forget = getattr(args, "forget_unbooted_after", 0.0)
    return CSMSConfig(
        station=_station_config(args),
        server=ServerConfig(versions=versions, ping_interval=args.ping_interval),
        close_timeout=5.0,
        store=store,
        **({"transaction_ids": shared_ids} if shared_ids is not None else {}),
        ledger=_ledger_config(args),
        # only where any identity may connect: a stations file bounds the identities itself
        forget_unbooted_after=forget
        if forget and not getattr(args, "stations_file", None)
        else None,
    )


def _ledger_config(args: argparse.Namespace) -> LedgerConfig:
    days = getattr(args, "ledger_days", None)
    return LedgerConfig(retention=None if days is None else datetime.timedelta(days=days))


@asynccontextmanager
async def _open_store(path: str, node: str | None = None) -> AsyncIterator[Store]:
    """The store of ``--db``: the SQLite file, a memory store for ``:memory:``, or the
    PostgreSQL database of a ``postgresql://`` URL (see docs/scale-out.md)."""
    if path == ":memory:":
        yield MemoryStore()
        return
    if path.startswith(("postgresql://", "postgres://")):
        from ocpp_trio.store.postgres import open_postgres_store  # the optional dependency

        async with open_postgres_store(path, node=node) as postgres:
            log.info("station state kept in PostgreSQL, as node %s", postgres.node)
            yield postgres
        return
    async with open_sqlite_store(path) as store:
        log.info("station state kept in %s", path)
        yield store


async def serve(
    args: argparse.Namespace, *, task_status: trio.TaskStatus[CSMS] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run ``ocpp-trio serve`` until SIGINT or SIGTERM (or cancellation).

    Waits for: a stop signal or cancellation; then for the CSMS to close its stations.
    Closes: the listener and every connection.  Exceptions: ``OSError`` when binding fails.
    """
    router = default_router(
        boot_status=args.boot_status,
        interval=args.heartbeat_interval,
        id_tokens=getattr(args, "id_token_set", None),
    )
    check_request, ssl_context = getattr(args, "security", (None, None))
    signer = getattr(args, "signer", None)
    if signer is not None:
        signer.install(router)
    stop_signals = (
        {signal.SIGINT, signal.SIGTERM} if hasattr(signal, "SIGTERM") else {signal.SIGINT}
    )
    # While the receiver is open trio delivers SIGINT here instead of raising
    # KeyboardInterrupt at an arbitrary checkpoint, so shutdown is a plain cancellation.
    with trio.open_signal_receiver(*stop_signals) as signals:
        async with (
            _open_store(args.db, getattr(args, "node", None)) as store,
            trio.open_nursery() as nursery,
        ):
            if isinstance(check_request, StationAuthenticator):
                # passwords live in the store so that a rotation survives a restart
                added = await use_persistent_credentials(check_request, store.credentials)
                log.info("credentials: %d station(s) new to the store", added)
            csms: CSMS = await nursery.start(
                partial(
                    serve_csms,
                    router,
                    args.host,
                    args.port,
                    config=_config(args, store),
                    check_request=check_request,
                    ssl_context=ssl_context,
                )
            )
            if getattr(store, "node", None) is not None:  # a node of a PostgreSQL cluster
                from ocpp_trio.csms.cluster import serve_cluster  # the optional dependency

                await nursery.start(serve_cluster, csms, store)
            credentials: CredentialStore | None = None
            if isinstance(check_request, StationAuthenticator):
                credentials = store.credentials
                PasswordChangeObserver(credentials).install(csms)
            if signer is not None:
                csms.add_extra_handler(signer, buffer=64, name="certificates")
            csms.add_extra_handler(
                ExchangeLogger(payload_chars=args.payload_chars),
                buffer=1024,
                max_failures=0,
                name="exchange log",
            )
            assert csms.server_info is not None
            versions = ", ".join(v.value for v in csms.config.server.versions)
            scheme = "ws" if ssl_context is None else "wss"
            for host, port in csms.server_info.addresses:
                log.info(
                    "listening on %s://%s:%d/<station id> (OCPP %s)", scheme, host, port, versions
                )
            if not args.no_admin:
                token = resolve_admin_token(args.admin_token, args.admin_token_file, args.db)
                if token.warning:
                    log.warning("%s", token.warning)
                config = AdminConfig(
                    token=token.token, allowed_hosts=tuple(args.admin_allowed_host)
                )
                info = await _start_admin(
                    nursery,
                    csms,
                    args.admin_host,
                    args.admin_port,
                    config=config,
                    credentials=credentials,
                )
                if info is not None and token.announce:
                    log.warning("%s", token.announce)
            task_status.started(csms)
            async for signum in signals:
                log.info("%s received: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


class AdminBindError(OSError):
    """The admin API's port given with ``--admin-port`` cannot be bound."""


async def _start_admin(
    nursery: trio.Nursery,
    csms: CSMS,
    host: str,
    port: int | None,
    *,
    config: AdminConfig | None = None,
    credentials: CredentialStore | None = None,
) -> AdminInfo | None:
    """Serve the admin API in ``nursery``; the default port (9001) being taken is only
    logged, an explicit ``--admin-port`` that cannot be bound is an error."""
    try:
        info: AdminInfo = await nursery.start(
            partial(
                serve_admin,
                csms,
                host,
                9001 if port is None else port,
                config=config,
                credentials=credentials,
            )
        )
    except OSError as exc:
        if port is not None:
            raise AdminBindError(f"admin API on {host}:{port}: {exc}") from exc
        log.warning("admin API not started: %s:9001: %s", host, exc)
        return None
    for address, bound in info.addresses:
        log.info("admin API on http://%s:%d/ (GET /stations, /transactions, ...)", address, bound)
    return info


def main(argv: Sequence[str] | None = None) -> int:
    """The ``ocpp-trio`` command: parse ``argv`` and run; returns the exit status."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command == "serve" and args.config:
            apply_config_file(parser, args.config, argv)
            args = parser.parse_args(argv)
        _check_args(parser, args)
        configure_logging(args.log_level, getattr(args, "log_format", "text"), sys.stderr)
        if args.command == "simulate":
            return trio.run(simulate, args)
        if args.command == "demo":
            return _run_demo(args)
        if args.command == "export":
            return run_export(args)
        return _run_serve(args)
    except BaseException as exc:
        # Ctrl-C before a command's own signal handling is in place (or after it is gone)
        if stopped_by_user(exc):
            log.info("interrupted")
            return 0
        raise


def _check_args(parser: OneLineParser, args: argparse.Namespace) -> None:
    """What argparse cannot check alone: the files named exist, a CA file suits the URL."""
    if args.command == "serve":
        files = {
            "--stations": args.stations_file,
            "--tls-cert": args.tls_cert,
            "--tls-key": args.tls_key,
            "--tls-client-ca": args.tls_client_ca,
            "--id-tokens": args.id_tokens,
        }
        check_files(parser.subcommand("serve"), files)
    elif args.command == "simulate":
        simulate_parser = parser.subcommand("simulate")
        args.ssl_context = client_ssl_context(simulate_parser, args.url, args.ca_file)


def _run_serve(args: argparse.Namespace) -> int:
    try:
        load_serve_files(args)
    except (OSError, ValueError) as exc:
        log.error("cannot start: %s", exc)  # noqa: TRY400
        return 1
    fresh = new_database(args.db)
    token_file = getattr(args, "admin_token_file", None) or default_token_file(args.db)
    fresh_token = token_file is not None and not os.path.exists(token_file)
    listening: list[bool] = []
    try:
        trio.run(_serve_until_stopped, args, listening)
    except BaseException as exc:
        leaves = exception_leaves(exc)
        # KeyboardInterrupt only comes before the signal receiver is installed (or after it
        # is gone): a stop all the same
        if stopped_by_user(exc):
            log.info("interrupted")
            return 0
        if not listening:  # a server that never listened leaves nothing behind
            if fresh:
                remove_new_database(args.db)
            if fresh_token and token_file is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(token_file)
        if len(leaves) == 1 and isinstance(leaves[0], StoreError):
            log.error("cannot use the store %s: %s", args.db, leaves[0])  # noqa: TRY400
            return 1
        if len(leaves) == 1 and isinstance(leaves[0], AdminBindError):
            log.error("cannot serve the %s", leaves[0])  # noqa: TRY400
            return 1
        if len(leaves) == 1 and isinstance(leaves[0], OSError):
            log.error(  # noqa: TRY400
                "cannot serve on %s:%s: %s", args.host, args.port, _os_error(leaves[0])
            )
            return 1
        raise
    finally:
        gc.unfreeze()  # what serve froze (in this process only: tests run it in-process)
    return 0


async def _serve_until_stopped(args: argparse.Namespace, listening: list[bool]) -> None:
    """:func:`serve`, noting in ``listening`` once it listens."""
    async with trio.open_nursery() as nursery:
        await nursery.start(serve, args)
        listening.append(True)
        # What is loaded by now (message classes, schemas, validators, settings) lives as long
        # as the process: out of the collector's full passes, which otherwise walk all of it
        # again and again under load (docs/serving.md, "Tuning"). Undone when serve ends.
        gc.freeze()


def _os_error(exc: OSError) -> str:
    """An OSError's own words, without the errno and the address (the caller names it)."""
    return exc.strerror or str(exc)


# -- demo: serve and simulate in one process -----------------------------------------------------


def _run_demo(args: argparse.Namespace) -> int:
    try:
        return trio.run(demo, args)
    except BaseException as exc:
        leaves = exception_leaves(exc)
        if len(leaves) == 1 and isinstance(leaves[0], AdminBindError):
            log.error("cannot start the demo: %s", leaves[0])  # noqa: TRY400
            return 1
        if len(leaves) == 1 and isinstance(leaves[0], OSError):
            log.error(  # noqa: TRY400
                "cannot start the demo: cannot listen on 127.0.0.1:%d: %s",
                args.port,
                _os_error(leaves[0]),
            )
            return 1
        raise


async def demo(args: argparse.Namespace) -> int:
    """Run ``ocpp-trio demo``: a CSMS, its admin API and simulated stations in one process,
    printing each transaction the CSMS sees; returns the exit status."""
    config = CSMSConfig(station=StationConfig(call_timeout=30.0), close_timeout=5.0)
    async with trio.open_nursery() as nursery:
        csms = await start_csms(
            nursery, default_router(interval=60), "127.0.0.1", args.port, config=config
        )
        assert csms.server_info is not None
        port = csms.server_info.port
        admin = await _start_admin(nursery, csms, "127.0.0.1", args.admin_port)
        auth = f"-H 'Authorization: Bearer {admin.token}' " if admin is not None else ""
        simulator = Simulator(build_simulator_config(args, f"ws://127.0.0.1:{port}"))
        with open_view(args.quiet) as view:
            view.line(f"CSMS listening on ws://127.0.0.1:{port}/<station id>")
            if admin is not None:
                view.line(
                    f"admin API on http://127.0.0.1:{admin.port}/ "
                    f"(try: curl {auth}http://127.0.0.1:{admin.port}/transactions)"
                )
            nursery.start_soon(_print_transactions, csms, view)
            elapsed = await run_simulation(
                simulator, view, duration=args.duration, grace=args.grace
            )
        nursery.cancel_scope.cancel()
    result = summary(simulator, elapsed)
    print(json.dumps(result), flush=True)
    return 0 if result["sessions_started"] or args.duration is None else 1


async def _print_transactions(csms: CSMS, view: LiveView) -> None:
    async with csms.subscribe_transactions(buffer=256) as events:
        async for event in events:
            tx = event.transaction
            short = tx.transaction_id[:8]
            if isinstance(event, TransactionStarted):
                view.line(f"CSMS: {tx.identity} started transaction {short} on EVSE {tx.evse_id}")
            elif isinstance(event, TransactionEnded):
                energy = tx.energy_wh or 0.0
                view.line(
                    f"CSMS: {tx.identity} ended transaction {short}: {energy:.1f} Wh "
                    f"({tx.stopped_reason or 'no reason given'})"
                )
