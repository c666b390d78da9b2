"""``ocpp-trio serve``: a working CSMS with a default handler set that accepts every station.

Run it with ``python -m ocpp_trio serve --host 127.0.0.1 --port 9000`` (or ``ocpp-trio serve``).
Stations connect to ``ws://HOST:PORT/<station id>``.  Every finished exchange, in both
directions, is logged on one line (logger ``ocpp_trio.exchange``); the library's own
connection/disconnection lines come from ``ocpp_trio`` and ``ocpp_trio.server``.

SIGINT (Ctrl-C) and SIGTERM stop the server in order: the listener closes, every station gets a
1001 close, and the process exits with status 0 and no traceback.  Status 1 means the server
could not start (e.g. the port is taken), 2 a command-line error.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

import trio

from ocpp_trio._csms import CSMS, CSMSConfig, serve_csms
from ocpp_trio._errors import CallError, ErrorCode, MessageValidationError
from ocpp_trio._events import Exchange
from ocpp_trio._handlers import Router
from ocpp_trio._server import ServerConfig
from ocpp_trio._station import Station, StationConfig
from ocpp_trio._supervisor import RegistrationStatus
from ocpp_trio._version import Version
from ocpp_trio.messages import Direction, Message, Request, Response, v1_6, v2_0_1, v2_1

__all__ = [
    "ExchangeLogger",
    "build_parser",
    "default_router",
    "main",
    "summarize",
]

log = logging.getLogger("ocpp_trio.cli")
exchange_log = logging.getLogger("ocpp_trio.exchange")

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# -- the default handler set -------------------------------------------------------------------


def default_router(
    *,
    boot_status: RegistrationStatus | str = RegistrationStatus.ACCEPTED,
    interval: int = 300,
) -> Router:
    """The handlers of ``ocpp-trio serve``: accept everything, remember nothing.

    * BootNotification (every version): ``boot_status`` with ``interval`` seconds.
    * Heartbeat: the runtime's built-in answer (current UTC time).
    * Authorize, 1.6 Start/StopTransaction, 2.x TransactionEvent: the id token is Accepted;
      1.6 StartTransaction gets a transaction id unique for this process (1, 2, 3, ...).
    * DataTransfer: ``UnknownVendorId`` (this CSMS knows no vendor extension).
    * Every other station request whose response has no required field (StatusNotification,
      MeterValues, NotifyReport, NotifyEvent, SecurityEventNotification, the status
      notifications, ...): the empty response.
    * Anything else (certificate signing and status, EV charging needs, ...): ``NotSupported``.
    """
    router = Router()
    router.set_default_boot(boot_status, interval)
    transaction_ids = itertools.count(1)

    # -- 1.6
    @router.on(v1_6.AuthorizeRequest)
    async def authorize_16(
        station: Station, request: v1_6.AuthorizeRequest
    ) -> v1_6.AuthorizeResponse:
        return v1_6.AuthorizeResponse(id_tag_info=_ID_TAG_ACCEPTED)

    @router.on(v1_6.StartTransactionRequest)
    async def start_transaction_16(
        station: Station, request: v1_6.StartTransactionRequest
    ) -> v1_6.StartTransactionResponse:
        return v1_6.StartTransactionResponse(
            id_tag_info=_ID_TAG_ACCEPTED, transaction_id=next(transaction_ids)
        )

    @router.on(v1_6.StopTransactionRequest)
    async def stop_transaction_16(
        station: Station, request: v1_6.StopTransactionRequest
    ) -> v1_6.StopTransactionResponse:
        if request.id_tag is None:
            return v1_6.StopTransactionResponse()
        return v1_6.StopTransactionResponse(id_tag_info=_ID_TAG_ACCEPTED)

    @router.on(v1_6.DataTransferRequest)
    async def data_transfer_16(
        station: Station, request: v1_6.DataTransferRequest
    ) -> v1_6.DataTransferResponse:
        return v1_6.DataTransferResponse(status=v1_6.DataTransferStatus.UNKNOWN_VENDOR_ID)

    # -- 2.0.1
    @router.on(v2_0_1.AuthorizeRequest)
    async def authorize_201(
        station: Station, request: v2_0_1.AuthorizeRequest
    ) -> v2_0_1.AuthorizeResponse:
        return v2_0_1.AuthorizeResponse(id_token_info=_TOKEN_ACCEPTED_201)

    @router.on(v2_0_1.TransactionEventRequest)
    async def transaction_event_201(
        station: Station, request: v2_0_1.TransactionEventRequest
    ) -> v2_0_1.TransactionEventResponse:
        if request.id_token is None:
            return v2_0_1.TransactionEventResponse()
        return v2_0_1.TransactionEventResponse(id_token_info=_TOKEN_ACCEPTED_201)

    @router.on(v2_0_1.DataTransferRequest)
    async def data_transfer_201(
        station: Station, request: v2_0_1.DataTransferRequest
    ) -> v2_0_1.DataTransferResponse:
        return v2_0_1.DataTransferResponse(
            status=v2_0_1.DataTransferStatusEnumType.UNKNOWN_VENDOR_ID
        )

    # -- 2.1
    @router.on(v2_1.AuthorizeRequest)
    async def authorize_21(
        station: Station, request: v2_1.AuthorizeRequest
    ) -> v2_1.AuthorizeResponse:
        return v2_1.AuthorizeResponse(id_token_info=_TOKEN_ACCEPTED_21)

    @router.on(v2_1.TransactionEventRequest)
    async def transaction_event_21(
        station: Station, request: v2_1.TransactionEventRequest
    ) -> v2_1.TransactionEventResponse:
        if request.id_token is None:
            return v2_1.TransactionEventResponse()
        return v2_1.TransactionEventResponse(id_token_info=_TOKEN_ACCEPTED_21)

    @router.on(v2_1.DataTransferRequest)
    async def data_transfer_21(
        station: Station, request: v2_1.DataTransferRequest
    ) -> v2_1.DataTransferResponse:
        return v2_1.DataTransferResponse(status=v2_1.DataTransferStatusEnumType.UNKNOWN_VENDOR_ID)

    router.fallback(_empty_response)
    return router


_ID_TAG_ACCEPTED = v1_6.IdTagInfo(status=v1_6.AuthorizationStatus.ACCEPTED)
_TOKEN_ACCEPTED_201 = v2_0_1.IdTokenInfoType(status=v2_0_1.AuthorizationStatusEnumType.ACCEPTED)
_TOKEN_ACCEPTED_21 = v2_1.IdTokenInfoType(status=v2_1.AuthorizationStatusEnumType.ACCEPTED)

# response class -> its empty instance, or None when the schema requires a field
_EMPTY: dict[type[Response], Response | None] = {}


async def _empty_response(station: Station, request: Request[Any]) -> Response:
    """Answer with the empty response when the schema allows one, else ``NotSupported``."""
    response_type = type(request).RESPONSE
    if response_type not in _EMPTY:
        try:
            _EMPTY[response_type] = response_type.from_json({})
        except MessageValidationError:
            _EMPTY[response_type] = None
    empty = _EMPTY[response_type]
    if empty is None:
        raise CallError(ErrorCode.NOT_SUPPORTED, f"{request.ACTION} is not supported here")
    return empty


# -- logging every exchange --------------------------------------------------------------------


def summarize(message: Message | None, limit: int) -> str:
    """The wire JSON of ``message`` on one line, cut to ``limit`` characters (``0``: no cut)."""
    if message is None:
        return "-"
    text = json.dumps(message.to_json(), separators=(",", ":"), ensure_ascii=False, default=str)
    if limit and len(text) > limit:
        return text[: max(limit - 3, 0)] + "..."
    return text


class ExchangeLogger:
    """An extra handler that logs each finished exchange on one line.

    ``<station> <version> <direction> <action> <outcome> req=<json> res=<json> (<ms> ms)``, where
    the direction is ``station->csms`` (the station's CALL or SEND) or ``csms->station`` (ours),
    and the outcome ``ok``, ``send`` (a 2.1 SEND) or ``error=<what>``.  CALLERRORs and failures
    are logged at WARNING, the rest at INFO.
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
        self.logger.log(
            level,
            "%s %s %s %s %s req=%s res=%s (%.1f ms)",
            exchange.identity,
            exchange.version,
            direction,
            exchange.action,
            outcome,
            summarize(exchange.request, self.payload_chars),
            summarize(exchange.response, self.payload_chars),
            (exchange.finished - exchange.started) * 1000.0,
        )


# -- the command line --------------------------------------------------------------------------


def _versions(text: str) -> list[Version]:
    try:
        return [Version(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        choices = ", ".join(v.value for v in Version)
        raise argparse.ArgumentTypeError(f"{text!r}: versions are among {choices}") from None


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``ocpp-trio`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="ocpp-trio", description="ocpp-trio: a trio-native OCPP-J central system."
    )
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
        "--port", type=int, default=9000, help="port to bind, 0 for any (default %(default)s)"
    )
    serve.add_argument(
        "--versions",
        type=_versions,
        action="extend",
        metavar="V[,V...]",
        help="OCPP versions to offer (comma-separated or repeated; default: 1.6,2.0.1,2.1)",
    )
    serve.add_argument(
        "--ping-interval",
        type=_non_negative_float,
        default=30.0,
        metavar="SECONDS",
        help="WebSocket keepalive ping interval, 0 disables (default %(default)s)",
    )
    serve.add_argument(
        "--heartbeat-interval",
        type=_non_negative_int,
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
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how long the CSMS waits for a station's answer (default %(default)s)",
    )
    serve.add_argument(
        "--payload-chars",
        type=_non_negative_int,
        default=200,
        metavar="N",
        help="cut logged payloads to N characters, 0 for no cut (default %(default)s)",
    )
    serve.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default="INFO",
        help="logging level (default %(default)s; exchanges are logged at INFO)",
    )
    return parser


def _config(args: argparse.Namespace) -> CSMSConfig:
    versions = tuple(dict.fromkeys(args.versions)) if args.versions else tuple(Version)
    return CSMSConfig(
        station=StationConfig(call_timeout=args.call_timeout),
        server=ServerConfig(versions=versions, ping_interval=args.ping_interval),
        close_timeout=5.0,
    )


async def serve(
    args: argparse.Namespace, *, task_status: trio.TaskStatus[CSMS] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run ``ocpp-trio serve`` until SIGINT or SIGTERM (or cancellation).

    Waits for: a stop signal or cancellation; then for the CSMS to close its stations.
    Closes: the listener and every connection.  Exceptions: ``OSError`` when binding fails.
    """
    router = default_router(boot_status=args.boot_status, interval=args.heartbeat_interval)
    stop_signals = (
        {signal.SIGINT, signal.SIGTERM} if hasattr(signal, "SIGTERM") else {signal.SIGINT}
    )
    # While the receiver is open trio delivers SIGINT here instead of raising
    # KeyboardInterrupt at an arbitrary checkpoint, so shutdown is a plain cancellation.
    with trio.open_signal_receiver(*stop_signals) as signals:
        async with trio.open_nursery() as nursery:
            csms: CSMS = await nursery.start(
                _serve_csms, router, args.host, args.port, _config(args)
            )
            csms.add_extra_handler(
                ExchangeLogger(payload_chars=args.payload_chars),
                buffer=1024,
                max_failures=0,
                name="exchange log",
            )
            assert csms.server_info is not None
            versions = ", ".join(v.value for v in csms.config.server.versions)
            for host, port in csms.server_info.addresses:
                log.info("listening on ws://%s:%d/<station id> (OCPP %s)", host, port, versions)
            task_status.started(csms)
            async for signum in signals:
                log.info("%s received: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


async def _serve_csms(
    router: Router,
    host: str,
    port: int,
    config: CSMSConfig,
    *,
    task_status: trio.TaskStatus[CSMS] = trio.TASK_STATUS_IGNORED,
) -> None:
    await serve_csms(router, host, port, config=config, task_status=task_status)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``ocpp-trio`` command: parse ``argv`` and run; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format=_LOG_FORMAT, stream=sys.stderr)
    try:
        trio.run(serve, args)
    except BaseException as exc:
        leaves = _leaves(exc)
        # KeyboardInterrupt only comes before the signal receiver is installed (or after it
        # is gone): a stop all the same
        if all(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
            log.info("interrupted")
            return 0
        if len(leaves) == 1 and isinstance(leaves[0], OSError):
            log.error("cannot serve on %s:%s: %s", args.host, args.port, leaves[0])  # noqa: TRY400
            return 1
        raise
    return 0


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
