"""A small JSON admin API over HTTP/1.1 for a running CSMS, on trio and h11.

Its endpoints are those of its OpenAPI description (:mod:`ocpp_trio.csms.admin_openapi`,
served at ``GET /openapi.json``), documented in docs/howto-admin.md: the stations, their device
models and security settings, transactions and the ledger (:mod:`ocpp_trio.csms.admin_ledger`),
``/health``, ``/metrics``, sending a CALL, rotating a password.  Requests are routed by the
description: a path it does not have is answered 404, a method 405 with ``Allow``, a query
parameter it does not list 400; every GET is also answered to HEAD.  Field names are camelCase.
Secrets (write-only values) never appear in an answer or in the log: they read ``***``.

Access: every request needs ``Authorization: Bearer <token>`` (``401`` without it), except
``GET /openapi.json`` (the same document for every server, nothing about the stations) and
``GET /health`` (a load balancer's check: without the token it answers only ``{"status":
"ok"}``); its ``Host`` (when given: an HTTP/1.0 check may send
none) must be an IP address, ``localhost`` or one of ``allowed_hosts`` (``403``: a
DNS-rebinding page names its own host); a request with an ``Origin`` not in
``allowed_origins``, or a ``Sec-Fetch-Site`` other than ``same-origin``/``none``, is refused
(``403``: a cross-site request from a browser); a request body must be ``application/json``
(``415``), so a cross-site form cannot be one.

Bounds: one request per connection (``Connection: close``), ``header_timeout`` seconds to send
the request head (``408``; an idle connection is dropped that soon), ``read_timeout`` for the
whole request, at most ``max_request_bytes`` of body (``413`` beyond) and ``max_header_bytes``
of request head (``431``), ``max_connections`` served at once and
``max_connections_per_address`` from one address (``503`` beyond, at once), ``write_timeout``
seconds to send the answer.  It listens on 127.0.0.1 unless told otherwise, and warns when
bound to another address: anyone who has the token can send any CALL to any station.
"""

from __future__ import annotations

import contextvars
import datetime
import hmac
import logging
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import attrs
import h11
import trio

from ocpp_trio import messages
from ocpp_trio.csms.admin_http import (
    HttpError,
    Route,
    Routes,
    Text,
    host_allowed,
    is_loopback,
    linger,
    parse_object,
    peer_address,
    query_names,
    read_body,
    read_head,
    respond,
)
from ocpp_trio.csms.admin_ledger import LEDGER_PARAMETERS, ended_transactions
from ocpp_trio.csms.admin_openapi import OPERATION_IDS, PUBLIC_PATHS, openapi_description
from ocpp_trio.csms.admin_security import security_settings, update_security_settings
from ocpp_trio.csms.core import CSMS
from ocpp_trio.csms.metrics import METRICS_CONTENT_TYPE, csms_registry, metrics_text
from ocpp_trio.domain.credentials import CredentialStore, PasswordHashing
from ocpp_trio.domain.device_model import DeviceModel, DeviceVariable
from ocpp_trio.domain.redaction import redact_message
from ocpp_trio.domain.transactions import Transaction
from ocpp_trio.errors import (
    CallError,
    CallTimeoutError,
    ConnectionLostError,
    ErrorCode,
    LocalProtocolError,
    MessageValidationError,
    RemoteProtocolError,
    StateError,
)
from ocpp_trio.messages._base import Request
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.events import Connected, Disconnected
from ocpp_trio.runtime.station import Station
from ocpp_trio.security.rotation import password_in, rotate_password, send_password_change

__all__ = ["AdminConfig", "AdminInfo", "serve_admin"]

#: whether the request this task serves carried the right token (set by _check_access)
_AUTHENTICATED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "ocpp_trio_admin_authenticated", default=False
)
log = logging.getLogger("ocpp_trio.admin")

Answer = tuple[int, Mapping[str, Any] | Text]
Query = dict[str, list[str]]
_Operation = Callable[[Mapping[str, str], Query, bytes], Awaitable[Answer]]
_BODY_METHODS: Final = frozenset({b"POST", b"PATCH", b"PUT"})


@attrs.frozen(kw_only=True)
class AdminConfig:
    """Access rules and limits of the admin API.

    Attributes:
        token: the bearer token every request must carry; ``None``: :func:`serve_admin`
            generates one and reports it in :attr:`AdminInfo.token`.
        allowed_hosts: host names accepted in the ``Host`` header besides IP addresses and
            ``localhost`` (e.g. the name of a proxy in front of it).
        allowed_origins: ``Origin`` values accepted (e.g. ``"https://ops.example.com"`` for a
            web console); requests from any other browser origin are refused.
        max_request_bytes: the largest request body accepted.
        max_header_bytes: the largest request line plus headers accepted.
        header_timeout: seconds a client has to send the request head.
        read_timeout: seconds a client has to send its whole request.
        write_timeout: seconds the answer may take to send.
        max_connections: connections served at once; more are answered 503 at once.
        max_connections_per_address: connections served at once per client address.
        call_timeout: seconds a ``POST .../call`` waits for the station (default: the
            station's ``call_timeout``); a request's own ``"timeout"`` may only shorten it.
    """

    token: str | None = attrs.field(default=None, repr=False)
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    max_request_bytes: int = 64 * 1024
    max_header_bytes: int = 16 * 1024
    header_timeout: float = 2.0
    read_timeout: float = 10.0
    write_timeout: float = 10.0
    max_connections: int = 32
    max_connections_per_address: int = 8
    call_timeout: float | None = None


@attrs.frozen(kw_only=True)
class AdminInfo:
    """Where the admin API listens (``(host, port)`` per listener), and its token."""

    addresses: tuple[tuple[str, int], ...]
    token: str = attrs.field(default="", repr=False)

    @property
    def port(self) -> int:
        """The port of the first listener (the one to read back after binding port 0)."""
        return self.addresses[0][1]


def generate_token() -> str:
    """A new random admin token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


@attrs.define
class _Seen:
    identity: str
    version: Version
    connected_at: datetime.datetime
    disconnected_at: datetime.datetime | None = None
    last_seen_at: datetime.datetime | None = None


class AdminApi:
    """The request handling of the admin API for one CSMS (see the module docs)."""

    def __init__(
        self,
        csms: CSMS,
        config: AdminConfig,
        *,
        credentials: CredentialStore | None = None,
        hashing: PasswordHashing | None = None,
    ) -> None:
        self.csms = csms
        self.config = config
        self.token = config.token or generate_token()
        self.credentials = credentials
        self.hashing = hashing
        self._seen: dict[str, _Seen] = {}
        self._limiter = trio.CapacityLimiter(config.max_connections)
        self._per_address: dict[str, int] = {}
        description = openapi_description()
        self._description = description
        self._routes = Routes(description["paths"])
        self._operations: dict[str, _Operation] = {
            "listEndpoints": self._list_endpoints,
            "getOpenApi": self._get_openapi,
            "getHealth": self._get_health,
            "getMetrics": self._get_metrics,
            "listStations": self._list_stations,
            "getStation": self._get_station,
            "getDeviceModel": self._get_device_model,
            "callStation": self._call_station,
            "rotatePassword": self._rotate_password,
            "getSecuritySettings": self._get_security,
            "updateSecuritySettings": self._update_security,
            "listTransactions": self._list_transactions,
        }
        assert self._operations.keys() == OPERATION_IDS, "every operation has its handler"

    # -- what the CSMS knows -----------------------------------------------------------------

    async def follow(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Record every station that connects (the CSMS itself lists only connected ones).

        Waits for: the CSMS to close, or cancellation.
        """
        async with self.csms.subscribe(buffer=1024) as events:
            task_status.started()
            async for event in events:
                if isinstance(event, Connected):
                    self._seen[event.identity] = _Seen(event.identity, event.version, event.at)
                elif isinstance(event, Disconnected):
                    seen = self._seen.get(event.identity)
                    if seen is not None:
                        seen.disconnected_at = event.at
                        seen.last_seen_at = event.last_seen_at
                    self._prune()

    def _prune(self) -> None:
        """Drop the stations the CSMS forgot (one-shot identities that never booted)."""
        forgotten = [
            i
            for i in self._seen
            if self.csms.machines(i) is None and self.csms.get_station(i) is None
        ]
        for identity in forgotten:
            del self._seen[identity]

    def _identities(self) -> list[str]:
        self._prune()
        return sorted(set(self._seen) | set(self.csms.stations))

    def station_json(self, identity: str) -> dict[str, Any] | None:
        """What the API says about one station, or ``None`` if never seen."""
        station = self.csms.get_station(identity)
        seen = self._seen.get(identity)
        if station is None and seen is None:
            return None
        machines = self.csms.machines(identity)
        out: dict[str, Any] = {"identity": identity, "connected": station is not None}
        if station is not None:
            out.update(
                version=station.version.value,
                state=station.state.value,
                status=station.status.value if station.status else None,
                lastSeenAt=_iso(station.last_seen_at),
            )
        else:
            assert seen is not None
            remembered = self.csms.remembered_status(identity)
            out.update(
                version=seen.version.value,
                state="offline",
                status=remembered.value if remembered else None,
                lastSeenAt=_iso(seen.last_seen_at),
            )
        if seen is not None:
            out.update(
                connectedAt=_iso(seen.connected_at),
                disconnectedAt=_iso(seen.disconnected_at),
            )
        out["openTransactions"] = (
            sum(1 for tx in machines.open_transactions() if not tx.ended) if machines else 0
        )
        return out

    def transactions_json(self, station: str | None, state: str | None) -> list[dict[str, Any]]:
        """Open and recently finished transactions, oldest first per station."""
        found: list[dict[str, Any]] = []
        for identity in self._identities():
            if station is not None and identity != station:
                continue
            machines = self.csms.machines(identity)
            if machines is None:
                continue
            ended = {tx.transaction_id: tx for tx in machines.ended_transactions}
            current = {tx.transaction_id: tx for tx in machines.open_transactions()}
            for tx in (*ended.values(), *(t for k, t in current.items() if k not in ended)):
                kind = "ended" if tx.ended else "open"
                if state is None or state == kind:
                    found.append(_transaction_json(tx, kind))
        return found

    # -- HTTP --------------------------------------------------------------------------------

    async def handle(self, stream: trio.abc.Stream) -> None:
        """Serve one connection: read one request, answer it, close.

        Waits for: the request (``header_timeout``, ``read_timeout``), the answer (a CALL
        waits for the station), the write (``write_timeout``).  Closes: ``stream``.
        Exceptions: none.
        """
        address = peer_address(stream)
        async with stream:
            count = self._per_address.get(address, 0)
            if count >= self.config.max_connections_per_address:
                await self._refuse_busy(stream, "too many connections from this address")
                return
            try:
                self._limiter.acquire_nowait()
            except trio.WouldBlock:
                await self._refuse_busy(stream, "too many connections")
                return
            self._per_address[address] = count + 1
            try:
                await self._serve_one(stream)
            finally:
                self._limiter.release()
                left = self._per_address[address] - 1
                if left:
                    self._per_address[address] = left
                else:
                    del self._per_address[address]

    async def _refuse_busy(self, stream: trio.abc.Stream, message: str) -> None:
        conn = h11.Connection(h11.SERVER)
        await self._respond(stream, conn, 503, {"error": message}, (("Retry-After", "1"),))
        await linger(stream)

    async def _respond(
        self,
        stream: trio.abc.Stream,
        conn: h11.Connection,
        status: int,
        body: Mapping[str, Any] | Text,
        headers: tuple[tuple[str, str], ...] = (),
        *,
        head_only: bool = False,
    ) -> None:
        await respond(
            stream,
            conn,
            status,
            body,
            headers=headers,
            write_timeout=self.config.write_timeout,
            head_only=head_only,
        )

    async def _serve_one(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.config.max_header_bytes)
        config = self.config
        try:
            with trio.fail_after(config.read_timeout):
                with trio.fail_after(config.header_timeout):
                    request = await read_head(
                        stream,
                        conn,
                        max_head=config.max_header_bytes,
                        max_body=config.max_request_bytes,
                    )
                url = urllib.parse.urlsplit(request.target.decode("ascii", "replace"))
                route = self._routes.match(url.path)
                self._check_access(request, route)
                body = await read_body(stream, conn, limit=config.max_request_bytes)
        except trio.TooSlowError:
            await self._respond(stream, conn, 408, {"error": "request not received in time"})
            await linger(stream)
            return
        except h11.RemoteProtocolError as exc:
            # h11's hint: 400, or 431 for a request head over max_header_bytes
            status = exc.error_status_hint
            await self._respond(stream, conn, status, {"error": f"bad request: {exc}"})
            await linger(stream)
            return
        except HttpError as exc:
            await self._respond(stream, conn, exc.status, exc.body, exc.headers)
            await linger(stream)
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        method = request.method.decode("ascii", "replace")
        headers: tuple[tuple[str, str], ...] = ()
        try:
            status, answer = await self._dispatch(method, url, route, body)
        except HttpError as exc:
            status, answer, headers = exc.status, exc.body, exc.headers
        except Exception:
            log.exception("admin API: %s %s failed", method, url.path)
            status, answer = 500, {"error": "internal error"}
        log.info("admin API: %s %s -> %d", method, url.path, status)
        await self._respond(stream, conn, status, answer, headers, head_only=method == "HEAD")

    def _check_access(self, request: h11.Request, route: Route | None) -> None:
        """Host, browser origin, token and content type (see the module docs)."""
        headers = {name.lower(): value for name, value in request.headers}
        # no Host at all: an HTTP/1.0 client such as a load balancer's check, never a browser
        host = headers.get(b"host")
        if host is not None and not host_allowed(host.decode("latin-1"), self.config.allowed_hosts):
            raise HttpError(403, "this Host is not allowed (see allowed_hosts)")
        origin = headers.get(b"origin")
        if origin is not None and origin.decode("latin-1") not in self.config.allowed_origins:
            raise HttpError(403, "cross-origin requests are not allowed")
        fetch_site = headers.get(b"sec-fetch-site", b"none").decode("latin-1").lower()
        if fetch_site not in ("none", "same-origin") and origin is None:
            raise HttpError(403, "cross-site requests are not allowed")
        public = (
            route is not None and route.path in PUBLIC_PATHS and request.method in (b"GET", b"HEAD")
        )
        scheme, _, given = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        authenticated = scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8"), self.token.encode("utf-8")
        )
        _AUTHENTICATED.set(authenticated)
        if not public and not authenticated:
            raise HttpError(
                401,
                "a valid bearer token is required",
                headers=(("WWW-Authenticate", 'Bearer realm="ocpp-trio admin"'),),
            )
        if request.method in _BODY_METHODS:
            content_type = headers.get(b"content-type")
            length = headers.get(b"content-length", b"0").strip()
            sends_body = length not in (b"", b"0") or b"transfer-encoding" in headers
            if content_type is None and not sends_body:
                return
            media = (content_type or b"").decode("latin-1").split(";", 1)[0].strip().lower()
            if media != "application/json":
                raise HttpError(415, "the body must be sent as application/json")

    # -- routing -----------------------------------------------------------------------------

    async def _dispatch(
        self, method: str, url: urllib.parse.SplitResult, route: Route | None, body: bytes
    ) -> Answer:
        if route is None:
            raise HttpError(404, f"no such endpoint: {url.path}")
        operation = route.operation(method)
        if operation is None:
            allowed = route.allowed()
            raise HttpError(405, f"use {allowed} here", headers=(("Allow", allowed),))
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        unknown = sorted(set(query) - query_names(operation))
        if unknown:
            raise HttpError(400, f"unknown query parameter(s): {', '.join(unknown)}")
        return await self._operations[operation["operationId"]](route.params, query, body)

    async def _list_endpoints(
        self, _params: Mapping[str, str], _query: Query, _body: bytes
    ) -> Answer:
        endpoints = [
            f"{method.upper()} {path}"
            for path, operations in self._description["paths"].items()
            for method in operations
        ]
        return 200, {"endpoints": endpoints}

    async def _get_openapi(self, _params: Mapping[str, str], _query: Query, _body: bytes) -> Answer:
        return 200, self._description

    async def _get_health(self, _params: Mapping[str, str], _query: Query, _body: bytes) -> Answer:
        if not _AUTHENTICATED.get():  # a load balancer's check: that it serves, nothing more
            return 200, {"status": "ok"}
        statistics = self.csms.statistics()
        answer: dict[str, Any] = {
            "status": "ok",
            "stations": statistics.stations_connected,
            "node": getattr(self.csms.config.store, "node", None),
        }
        if statistics.store is not None:
            store = statistics.store
            answer["store"] = {
                "commits": store.commits,
                "writes": store.writes,
                "failures": store.failures,
                "stale": store.stale,
                "largestBatch": store.largest_batch,
                "queued": store.queued,
                "committing": store.committing,
            }
        return 200, answer

    async def _get_metrics(self, _params: Mapping[str, str], _query: Query, _body: bytes) -> Answer:
        return 200, Text(metrics_text(csms_registry(self.csms)), METRICS_CONTENT_TYPE)

    async def _list_stations(
        self, _params: Mapping[str, str], _query: Query, _body: bytes
    ) -> Answer:
        stations = [self.station_json(i) for i in self._identities()]
        return 200, {"stations": [s for s in stations if s is not None]}

    async def _get_station(self, params: Mapping[str, str], _query: Query, _body: bytes) -> Answer:
        return 200, self._known(params["identity"])

    async def _get_device_model(
        self, params: Mapping[str, str], _query: Query, _body: bytes
    ) -> Answer:
        identity = params["identity"]
        self._known(identity)
        machines = self.csms.machines(identity)
        variables = list(machines.device_model) if machines is not None else []
        return 200, {"identity": identity, "variables": [_variable_json(v) for v in variables]}

    async def _list_transactions(
        self, _params: Mapping[str, str], query: Query, _body: bytes
    ) -> Answer:
        state = _one(query, "state")
        if state not in (None, "open", "ended"):
            raise HttpError(400, "state must be open or ended")
        if state == "ended" or LEDGER_PARAMETERS & query.keys():
            return 200, await self._ledger(state, query)
        transactions = self.transactions_json(_one(query, "station"), state)
        return 200, {"transactions": transactions, "nextCursor": None}

    async def _ledger(self, state: str | None, query: Query) -> dict[str, Any]:
        if self.csms.config.store is None:  # no ledger: the recent ones the machines hold
            if LEDGER_PARAMETERS & query.keys():
                raise HttpError(400, "this CSMS keeps no ledger (it has no store)")
            return {
                "transactions": self.transactions_json(_one(query, "station"), state),
                "nextCursor": None,
            }
        if state != "ended":
            raise HttpError(400, "the ledger's parameters need state=ended")
        try:
            return await ended_transactions(self.csms.ledger, query)
        except ValueError as exc:
            raise HttpError(400, str(exc)) from None

    def _known(self, identity: str) -> dict[str, Any]:
        found = self.station_json(identity)
        if found is None:
            raise HttpError(404, f"station {identity!r} has never connected")
        return found

    def _model(self, identity: str) -> DeviceModel | None:
        machines = self.csms.machines(identity)
        return None if machines is None else machines.device_model

    async def _call_station(self, params: Mapping[str, str], _query: Query, body: bytes) -> Answer:
        identity = params["identity"]
        action, payload, timeout = _parse_call(body)
        station = self.csms.get_station(identity)
        remote = self.csms.remote
        if station is not None:
            version = station.version
            limit = self.config.call_timeout or station.config.call_timeout
        elif remote is not None:  # in a cluster: the station may be served by another node
            found = await remote.version_of(identity)
            if found is None:
                raise HttpError(404, f"station {identity!r} has never connected")
            version = found
            limit = self.config.call_timeout or self.csms.config.station.call_timeout
        else:
            self._known(identity)
            raise HttpError(409, f"station {identity!r} is not connected")
        request = _decode_call(version, action, payload)
        if timeout is not None:
            limit = min(limit, timeout)
        try:
            if self.credentials is not None and password_in(request) is not None:
                if station is None:  # the pending record must be written where it is sent
                    raise HttpError(
                        409, f"a password change goes through the node serving {identity!r}"
                    )
                response = await send_password_change(
                    station, self.credentials, request, call_timeout=limit, hashing=self.hashing
                )
            else:
                response = await self.csms.call(identity, request, call_timeout=limit)
        except (ValueError, LookupError) as exc:
            raise HttpError(400, f"cannot change the password: {exc}") from None
        except StateError as exc:
            raise HttpError(409, str(exc)) from None
        except LocalProtocolError as exc:
            raise HttpError(400, str(exc)) from None
        except CallError as exc:
            code = exc.code.wire(version) if isinstance(exc.code, ErrorCode) else exc.code
            return 502, {
                "error": "the station answered with a CALLERROR",
                "action": action,
                "callError": {
                    "code": code,
                    "description": exc.description,
                    "details": exc.details,
                },
            }
        except CallTimeoutError:
            raise HttpError(504, f"station {identity!r} did not answer within {limit} s") from None
        except ConnectionLostError:
            raise HttpError(503, f"station {identity!r} disconnected before answering") from None
        except RemoteProtocolError as exc:
            raise HttpError(502, f"the station's answer was invalid: {exc}") from None
        shown = redact_message(response, self._model(identity))
        return 200, {"action": action, "response": shown.to_json()}

    def _limit(self, station: Station, timeout: float | None) -> float:
        limit = self.config.call_timeout or station.config.call_timeout
        return limit if timeout is None else min(limit, timeout)

    async def _rotate_password(
        self, params: Mapping[str, str], _query: Query, body: bytes
    ) -> Answer:
        identity = params["identity"]
        timeout = _parse_timeout(parse_object(body, {"timeout"}, allow_empty=True))
        station = self.csms.get_station(identity)
        if station is None:
            self._known(identity)
            raise HttpError(409, f"station {identity!r} is not connected")
        if self.credentials is None:
            raise HttpError(409, "this CSMS keeps no station passwords (no stations file)")
        try:
            result = await rotate_password(
                station,
                self.credentials,
                call_timeout=self._limit(station, timeout),
                hashing=self.hashing,
            )
        except LookupError:
            raise HttpError(409, f"station {identity!r} has no password to rotate") from None
        except StateError as exc:
            raise HttpError(409, str(exc)) from None
        except CallError as exc:
            raise HttpError(502, f"the station answered with a CALLERROR: {exc.code}") from None
        except CallTimeoutError:
            raise HttpError(
                504, f"station {identity!r} did not answer; both passwords stay valid"
            ) from None
        except ConnectionLostError:
            raise HttpError(
                503, f"station {identity!r} disconnected; both passwords stay valid"
            ) from None
        except RemoteProtocolError as exc:
            raise HttpError(502, f"the station's answer was invalid: {exc}") from None
        return 200, {"outcome": result.outcome.value, "status": result.status}

    async def _get_security(self, params: Mapping[str, str], _query: Query, _body: bytes) -> Answer:
        return 200, await security_settings(self.credentials, params["identity"])

    async def _update_security(
        self, params: Mapping[str, str], _query: Query, body: bytes
    ) -> Answer:
        identity = params["identity"]
        changed = await update_security_settings(self.credentials, identity, body, self.hashing)
        log.info("admin API: station %r: security settings changed", identity)
        return 200, changed


def _iso(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _one(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _parse_timeout(data: Mapping[str, Any]) -> float | None:
    if "timeout" not in data:
        return None
    value = data["timeout"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise HttpError(400, '"timeout" must be a positive number of seconds')
    return float(value)


def _parse_call(body: bytes) -> tuple[str, Any, float | None]:
    data = parse_object(body, {"action", "payload", "timeout"})
    action = data.get("action")
    if not isinstance(action, str) or not action:
        raise HttpError(400, '"action" must be an action name, e.g. "Reset"')
    payload = data.get("payload", {})
    if not isinstance(payload, dict):
        raise HttpError(400, '"payload" must be a JSON object')
    return action, payload, _parse_timeout(data)


def _decode_call(version: Version, action: str, payload: Any) -> Request[Any]:
    """The request a CSMS may send, from the body's action and payload (400 otherwise)."""
    spec = messages.actions(version).get(action)
    if spec is None:
        raise HttpError(400, f"{action!r} is not an OCPP {version.value} action")
    if not spec.direction.sent_by_csms() or spec.is_send:
        raise HttpError(400, f"a CSMS cannot send {action} ({spec.direction.value})")
    try:
        request = messages.decode_request(version, action, payload)
    except RecursionError:
        raise HttpError(400, f"invalid {action} payload: nested too deeply") from None
    except MessageValidationError as exc:
        raise HttpError(
            400, f"invalid {action} payload: {exc}", path=exc.path, code=exc.wire_code
        ) from None
    assert isinstance(request, Request)
    return request


def _variable_json(variable: DeviceVariable) -> dict[str, Any]:
    attributes = []
    for attribute in variable.attributes:
        shown = {
            "type": attribute.type,
            "value": attribute.value,
            "mutability": attribute.mutability,
            "persistent": attribute.persistent,
            "constant": attribute.constant,
            "pendingValue": attribute.pending_value,
        }
        attributes.append({key: value for key, value in shown.items() if value is not None})
    out: dict[str, Any] = {
        "component": variable.component.to_json(),
        "variable": variable.variable.to_json(),
        "attributes": attributes,
    }
    found = variable.characteristics
    if found is not None:
        characteristics = {
            "dataType": found.data_type,
            "supportsMonitoring": found.supports_monitoring,
            "unit": found.unit,
            "minLimit": found.min_limit,
            "maxLimit": found.max_limit,
            "valuesList": found.values_list,
        }
        out["characteristics"] = {k: v for k, v in characteristics.items() if v is not None}
    return out


def _transaction_json(tx: Transaction, state: str) -> dict[str, Any]:
    return {
        "station": tx.identity,
        "transactionId": tx.transaction_id,
        "version": tx.version.value,
        "state": state,
        "evseId": tx.evse_id,
        "connectorId": tx.connector_id,
        "idToken": tx.id_token,
        "startedAt": _iso(tx.started_at),
        "endedAt": _iso(tx.ended_at),
        "updatedAt": _iso(tx.updated_at),
        "meterStartWh": tx.meter_start_wh,
        "meterStopWh": tx.meter_stop_wh,
        "energyWh": tx.energy_wh,
        "chargingState": tx.charging_state,
        "stoppedReason": tx.stopped_reason,
        "remoteStartId": tx.remote_start_id,
        "events": len(tx.events),
        "offlineEvents": tx.offline_events,
        "missingSeqNos": list(tx.missing_seq_nos),
    }


async def serve_admin(
    csms: CSMS,
    host: str | None = "127.0.0.1",
    port: int = 9001,
    *,
    config: AdminConfig | None = None,
    credentials: CredentialStore | None = None,
    hashing: PasswordHashing | None = None,
    task_status: trio.TaskStatus[AdminInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the admin API of ``csms`` on ``host:port`` until cancelled.

    Use as ``info: AdminInfo = await nursery.start(serve_admin, csms, "127.0.0.1", 9001)``;
    reports once listening (``info.port`` after binding port 0, ``info.token`` the bearer
    token, generated when ``config`` gives none).  Stations are listed from the moment it
    starts (and those connected then).  With ``credentials`` (the store the authenticator
    reads), password changes are recorded before they are sent, and
    ``POST /stations/{id}/rotate-password`` works.

    Waits for: cancellation.  Cancellation: stops listening; requests in progress are cancelled.
    Closes: the listeners and every connection.  Exceptions: ``OSError`` when binding fails.
    """
    api = AdminApi(csms, config or AdminConfig(), credentials=credentials, hashing=hashing)
    listeners = await trio.open_tcp_listeners(port, host=host)
    async with trio.open_nursery() as nursery:
        await nursery.start(api.follow)
        addresses: list[tuple[str, int]] = []
        for listener in listeners:
            sockname = listener.socket.getsockname()
            addresses.append((str(sockname[0]), int(sockname[1])))
        await nursery.start(trio.serve_listeners, api.handle, listeners)
        for address, bound in addresses:
            log.debug("admin API on http://%s:%d/", address, bound)
            if not is_loopback(address):
                log.warning(
                    "the admin API listens on %s:%d, reachable from other machines: anyone "
                    "with its token can send any command to any station; prefer 127.0.0.1 "
                    "behind an authenticating TLS proxy",
                    address,
                    bound,
                )
        task_status.started(AdminInfo(addresses=tuple(addresses), token=api.token))
