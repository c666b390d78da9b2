"""A small JSON admin API over HTTP/1.1 for a running CSMS, on trio and h11.

Endpoints (all answers are JSON objects):

=======================================  ========================================================
``GET /``                                the endpoints
``GET /health``                          ``200 {"status": "ok", "stations": N, "node": ...,
                                         "store": {...}}`` while the CSMS serves (a load
                                         balancer's check; ``node`` is the node name of a shared
                                         store, ``store`` the store writer's counters)
``GET /stations``                        every station seen since the API started (and every one
                                         connected): identity, version, connected, state, boot
                                         status, last seen, open transactions
``GET /stations/{id}``                   one of them (404 when never seen)
``GET /stations/{id}/device-model``      the device model the CSMS has learned (reports,
                                         GetVariables answers, 1.6 configuration keys); write-only
                                         attributes (passwords) are listed without a value
``GET /transactions``                    open and recently finished transactions; filters
                                         ``?station=ID`` and ``?state=open|ended``; with a
                                         store, ``state=ended`` reads the transaction ledger,
                                         paged (see :mod:`ocpp_trio.csms.admin_ledger`)
``GET /metrics``                         Prometheus metrics (text format, not JSON; see
                                         docs/metrics.md)
``POST /stations/{id}/call``             send a CALL: body ``{"action": "Reset", "payload":
                                         {...}}`` (``payload`` defaults to ``{}``; an optional
                                         ``"timeout"`` in seconds); the payload is checked with
                                         :func:`ocpp_trio.messages.decode_request` for the
                                         station's version
``POST /stations/{id}/rotate-password``  give the station a new generated Basic-auth password
                                         (:func:`~ocpp_trio.security.rotation.rotate_password`);
                                         the password is never shown
=======================================  ========================================================

``POST .../call`` answers ``200 {"action", "response"}`` with the station's response payload;
``400`` for a body, action or payload that is not valid (with the field path and the OCPP code);
``404`` for a station never seen, ``409`` for one not connected or whose registration state
forbids the CALL now (in a cluster, the call goes through the node that serves the station, see
:mod:`ocpp_trio.csms.cluster`); ``502 {"callError": {"code", "description", "details"}}``
when the station answered with a CALLERROR (or a broken answer); ``504`` when it did not answer
in time; ``503`` when the connection dropped meanwhile.
A CALL that sets the station's Basic-auth password goes through
:func:`~ocpp_trio.security.rotation.send_password_change` when the API has the credential store
(and the station is served by this node), so the new password is recorded before it is sent.
Secrets (write-only values) never appear in an answer or in the log: they read ``***``.

Access: every request needs ``Authorization: Bearer <token>`` (``401`` without it; the one exception
is ``GET /health`` sent without credentials, a load balancer's health check, answered ``{"status":
"ok"}`` and nothing else; with the token it also says the node, stations and store); its ``Host``
must be an IP address, ``localhost`` or one of ``allowed_hosts`` (``403``: a DNS-rebinding page
names its own host); a request with an ``Origin`` not in ``allowed_origins``, or a
``Sec-Fetch-Site`` other than ``same-origin``/``none``, is refused (``403``: a cross-site request
from a browser); a POST body must be ``application/json`` (``415``), so a cross-site form cannot be
one.

Bounds: one request per connection (``Connection: close``), ``header_timeout`` seconds to send
the request head (``408``; an idle connection is dropped that soon), ``read_timeout`` for the
whole request, at most ``max_request_bytes`` of body (``413`` beyond) and ``max_header_bytes``
of request head (``431``), ``max_connections`` served at once and
``max_connections_per_address`` from one address (``503`` beyond, at once), ``write_timeout``
seconds to send the answer.  It listens on 127.0.0.1 unless told otherwise, and warns when
bound to another address: anyone who has the token can send any CALL to any station.
"""

from __future__ import annotations

import datetime
import hmac
import http
import ipaddress
import json
import logging
import secrets
import urllib.parse
from typing import Any, Final

import attrs
import h11
import trio

from ocpp_trio import messages
from ocpp_trio.csms.admin_ledger import LEDGER_PARAMETERS, ended_transactions
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

log = logging.getLogger("ocpp_trio.admin")

_ENDPOINTS: Final = (
    "GET /health",
    "GET /stations",
    "GET /stations/{id}",
    "GET /stations/{id}/device-model",
    "GET /transactions?station=ID&state=open|ended",
    "GET /transactions?state=ended&station=ID&id_token=T&since=TIME&until=TIME&limit=N&cursor=C",
    "POST /stations/{id}/call",
    "GET /metrics",
    "POST /stations/{id}/rotate-password",
)


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


def _is_liveness_probe(request: h11.Request) -> bool:
    """``GET /health`` without credentials: what a load balancer's health check sends (without
    a token, and often without a ``Host``), answered ``{"status": "ok"}`` and nothing more."""
    return (
        request.method == b"GET"
        and request.target == b"/health"
        and not any(name.lower() == b"authorization" for name, _ in request.headers)
    )


def generate_token() -> str:
    """A new random admin token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


class _HttpError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers
        self.body: dict[str, Any] = {"error": message, **extra}


@attrs.define
class _Seen:
    identity: str
    version: Version
    connected_at: datetime.datetime
    disconnected_at: datetime.datetime | None = None
    last_seen_at: datetime.datetime | None = None


@attrs.frozen
class _Text:
    """An answer that is not JSON (``/metrics``)."""

    data: bytes
    content_type: str


def _iso(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


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
                last_seen_at=_iso(station.last_seen_at),
            )
        else:
            assert seen is not None
            remembered = self.csms.remembered_status(identity)
            out.update(
                version=seen.version.value,
                state="offline",
                status=remembered.value if remembered else None,
                last_seen_at=_iso(seen.last_seen_at),
            )
        if seen is not None:
            out.update(
                connected_at=_iso(seen.connected_at),
                disconnected_at=_iso(seen.disconnected_at),
            )
        out["open_transactions"] = (
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
        address = _peer_address(stream)
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
        await self._respond(stream, conn, 503, {"error": message}, headers=(("Retry-After", "1"),))
        await _linger(stream)

    async def _serve_one(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.config.max_header_bytes)
        try:
            with trio.fail_after(self.config.read_timeout):
                with trio.fail_after(self.config.header_timeout):
                    request = await self._read_head(stream, conn)
                probe = _is_liveness_probe(request)
                if not probe:
                    self._check_access(request)
                body = await self._read_body(stream, conn)
        except trio.TooSlowError:
            await self._respond(stream, conn, 408, {"error": "request not received in time"})
            await _linger(stream)
            return
        except h11.RemoteProtocolError as exc:
            # h11's hint: 400, or 431 for a request head over max_header_bytes
            status = exc.error_status_hint
            await self._respond(stream, conn, status, {"error": f"bad request: {exc}"})
            await _linger(stream)
            return
        except _HttpError as exc:
            await self._respond(stream, conn, exc.status, exc.body, headers=exc.headers)
            await _linger(stream)
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        if probe:  # a load balancer's health check: no token, and nothing but the status
            await self._respond(stream, conn, 200, {"status": "ok"})
            return
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("ascii", "replace")
        try:
            status, answer = await self._route(method, target, body)
        except _HttpError as exc:
            status, answer = exc.status, exc.body
        except Exception:
            log.exception("admin API: %s %s failed", method, target)
            status, answer = 500, {"error": "internal error"}
        log.info("admin API: %s %s -> %d", method, urllib.parse.urlsplit(target).path, status)
        allow = "POST" if target.endswith(("/call", "/rotate-password")) else "GET"
        await self._respond(
            stream, conn, status, answer, headers=(("Allow", allow),) if status == 405 else ()
        )

    def _check_access(self, request: h11.Request) -> None:
        """Host, browser origin, token and content type (see the module docs)."""
        headers = {name.lower(): value for name, value in request.headers}
        host = headers.get(b"host", b"").decode("latin-1")
        if not _host_allowed(host, self.config.allowed_hosts):
            raise _HttpError(403, "this Host is not allowed (see allowed_hosts)")
        origin = headers.get(b"origin")
        if origin is not None and origin.decode("latin-1") not in self.config.allowed_origins:
            raise _HttpError(403, "cross-origin requests are not allowed")
        fetch_site = headers.get(b"sec-fetch-site", b"none").decode("latin-1").lower()
        if fetch_site not in ("none", "same-origin") and origin is None:
            raise _HttpError(403, "cross-site requests are not allowed")
        scheme, _, given = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8"), self.token.encode("utf-8")
        ):
            raise _HttpError(
                401,
                "a valid bearer token is required",
                headers=(("WWW-Authenticate", 'Bearer realm="ocpp-trio admin"'),),
            )
        if request.method == b"POST":
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            if content_type.split(";", 1)[0].strip().lower() != "application/json":
                raise _HttpError(415, "the body must be sent as application/json")

    async def _read_head(self, stream: trio.abc.Stream, conn: h11.Connection) -> h11.Request:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(bytes(data))
                continue
            if isinstance(event, h11.Request):
                # h11 bounds a head that arrives in pieces; one that came whole is measured here
                head = len(event.method) + len(event.target) + 12
                head += sum(len(name) + len(value) + 4 for name, value in event.headers)
                if head > self.config.max_header_bytes:
                    raise _HttpError(431, f"request head over {self.config.max_header_bytes} bytes")
                length = dict(event.headers).get(b"content-length")
                limit = self.config.max_request_bytes
                if length is not None and int(length) > limit:
                    raise _HttpError(413, f"request body over {limit} bytes")
                return event
            if isinstance(event, h11.ConnectionClosed):
                raise trio.ClosedResourceError("the client went away")

    async def _read_body(self, stream: trio.abc.Stream, conn: h11.Connection) -> bytes:
        body = bytearray()
        limit = self.config.max_request_bytes
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(bytes(data))
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > limit:
                    raise _HttpError(413, f"request body over {limit} bytes")
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                raise trio.ClosedResourceError("the client went away")

    async def _respond(
        self,
        stream: trio.abc.Stream,
        conn: h11.Connection,
        status: int,
        body: dict[str, Any] | _Text,
        *,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        if isinstance(body, _Text):
            data, content_type = body.data, body.content_type
        else:
            data = json.dumps(body, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
            content_type = "application/json; charset=utf-8"
        all_headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(data))),
            ("Connection", "close"),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            *headers,
        ]
        try:
            with trio.move_on_after(self.config.write_timeout):
                reason = http.HTTPStatus(status).phrase.encode("ascii")
                out = conn.send(
                    h11.Response(status_code=status, headers=all_headers, reason=reason)
                )
                out += conn.send(h11.Data(data=data)) or b""
                out += conn.send(h11.EndOfMessage()) or b""
                await stream.send_all(out)
        except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client broke the exchange or went away; nothing left to tell it

    # -- routing -----------------------------------------------------------------------------

    async def _route(
        self, method: str, target: str, body: bytes
    ) -> tuple[int, dict[str, Any] | _Text]:
        url = urllib.parse.urlsplit(target)
        try:
            parts = [urllib.parse.unquote(p, errors="strict") for p in url.path.split("/") if p]
        except UnicodeDecodeError:
            raise _HttpError(400, "the path is not valid UTF-8") from None
        query = urllib.parse.parse_qs(url.query)

        def expect(wanted: str) -> None:
            if method != wanted:
                raise _HttpError(405, f"use {wanted} here")

        if not parts:
            expect("GET")
            return 200, {"endpoints": list(_ENDPOINTS)}
        if parts == ["health"]:
            expect("GET")
            return 200, self._health()
        if parts == ["stations"]:
            expect("GET")
            stations = [self.station_json(i) for i in self._identities()]
            return 200, {"stations": [s for s in stations if s is not None]}
        if parts == ["metrics"]:
            expect("GET")
            return 200, _Text(metrics_text(csms_registry(self.csms)), METRICS_CONTENT_TYPE)
        if parts == ["transactions"]:
            expect("GET")
            state = _one(query, "state")
            if state not in (None, "open", "ended"):
                raise _HttpError(400, "state must be open or ended")
            if state == "ended" or LEDGER_PARAMETERS & query.keys():
                return 200, await self._ledger(state, query)
            return 200, {"transactions": self.transactions_json(_one(query, "station"), state)}
        if parts[0] == "stations" and len(parts) in (2, 3):
            identity = parts[1]
            if len(parts) == 2:
                expect("GET")
                return 200, self._known(identity)
            if parts[2] == "device-model":
                expect("GET")
                self._known(identity)
                return 200, self._device_model(identity)
            if parts[2] == "call":
                expect("POST")
                return await self._call(identity, body)
            if parts[2] == "rotate-password":
                expect("POST")
                return await self._rotate(identity, body)
        raise _HttpError(404, f"no such endpoint: {url.path}")

    def _health(self) -> dict[str, Any]:
        statistics = self.csms.statistics()
        answer: dict[str, Any] = {
            "status": "ok",
            "stations": statistics.stations_connected,
            "node": getattr(self.csms.config.store, "node", None),
        }
        if statistics.store is not None:
            answer["store"] = attrs.asdict(statistics.store)
        return answer

    async def _ledger(self, state: str | None, query: dict[str, list[str]]) -> dict[str, Any]:
        if self.csms.config.store is None:  # no ledger: the recent ones the machines hold
            if LEDGER_PARAMETERS & query.keys():
                raise _HttpError(400, "this CSMS keeps no ledger (it has no store)")
            return {"transactions": self.transactions_json(_one(query, "station"), state)}
        if state != "ended":
            raise _HttpError(400, "the ledger's parameters need state=ended")
        try:
            return await ended_transactions(self.csms.ledger, query)
        except ValueError as exc:
            raise _HttpError(400, str(exc)) from None

    def _known(self, identity: str) -> dict[str, Any]:
        found = self.station_json(identity)
        if found is None:
            raise _HttpError(404, f"station {identity!r} has never connected")
        return found

    def _model(self, identity: str) -> DeviceModel | None:
        machines = self.csms.machines(identity)
        return None if machines is None else machines.device_model

    def _device_model(self, identity: str) -> dict[str, Any]:
        machines = self.csms.machines(identity)
        variables = list(machines.device_model) if machines is not None else []
        return {"identity": identity, "variables": [_variable_json(v) for v in variables]}

    async def _call(self, identity: str, body: bytes) -> tuple[int, dict[str, Any]]:
        action, payload, timeout = _parse_call(body)
        station = self.csms.get_station(identity)
        remote = self.csms.remote
        if station is not None:
            version = station.version
            limit = self.config.call_timeout or station.config.call_timeout
        elif remote is not None:  # in a cluster: the station may be served by another node
            found = await remote.version_of(identity)
            if found is None:
                raise _HttpError(404, f"station {identity!r} has never connected")
            version = found
            limit = self.config.call_timeout or self.csms.config.station.call_timeout
        else:
            self._known(identity)
            raise _HttpError(409, f"station {identity!r} is not connected")
        spec = messages.actions(version).get(action)
        if spec is None:
            raise _HttpError(400, f"{action!r} is not an OCPP {version.value} action")
        if not spec.direction.sent_by_csms() or spec.is_send:
            raise _HttpError(400, f"a CSMS cannot send {action} ({spec.direction.value})")
        try:
            request = messages.decode_request(version, action, payload)
        except RecursionError:
            raise _HttpError(400, f"invalid {action} payload: nested too deeply") from None
        except MessageValidationError as exc:
            raise _HttpError(
                400,
                f"invalid {action} payload: {exc}",
                path=exc.path,
                code=exc.wire_code,
            ) from None
        assert isinstance(request, Request)
        if timeout is not None:
            limit = min(limit, timeout)
        try:
            if self.credentials is not None and password_in(request) is not None:
                if station is None:  # the pending record must be written where it is sent
                    raise _HttpError(
                        409, f"a password change goes through the node serving {identity!r}"
                    )
                response = await send_password_change(
                    station, self.credentials, request, call_timeout=limit, hashing=self.hashing
                )
            else:
                response = await self.csms.call(identity, request, call_timeout=limit)
        except (ValueError, LookupError) as exc:
            raise _HttpError(400, f"cannot change the password: {exc}") from None
        except StateError as exc:
            raise _HttpError(409, str(exc)) from None
        except LocalProtocolError as exc:
            raise _HttpError(400, str(exc)) from None
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
            raise _HttpError(504, f"station {identity!r} did not answer within {limit} s") from None
        except ConnectionLostError:
            raise _HttpError(503, f"station {identity!r} disconnected before answering") from None
        except RemoteProtocolError as exc:
            raise _HttpError(502, f"the station's answer was invalid: {exc}") from None
        shown = redact_message(response, self._model(identity))
        return 200, {"action": action, "response": shown.to_json()}

    def _limit(self, station: Station, timeout: float | None) -> float:
        limit = self.config.call_timeout or station.config.call_timeout
        return limit if timeout is None else min(limit, timeout)

    async def _rotate(self, identity: str, body: bytes) -> tuple[int, dict[str, Any]]:
        timeout = _parse_object(body, {"timeout"}, allow_empty=True).get("timeout")
        timeout = _timeout(timeout)
        station = self.csms.get_station(identity)
        if station is None:
            self._known(identity)
            raise _HttpError(409, f"station {identity!r} is not connected")
        if self.credentials is None:
            raise _HttpError(409, "this CSMS keeps no station passwords (no stations file)")
        try:
            result = await rotate_password(
                station,
                self.credentials,
                call_timeout=self._limit(station, timeout),
                hashing=self.hashing,
            )
        except LookupError:
            raise _HttpError(409, f"station {identity!r} has no password to rotate") from None
        except StateError as exc:
            raise _HttpError(409, str(exc)) from None
        except CallError as exc:
            raise _HttpError(502, f"the station answered with a CALLERROR: {exc.code}") from None
        except CallTimeoutError:
            raise _HttpError(
                504, f"station {identity!r} did not answer; both passwords stay valid"
            ) from None
        except ConnectionLostError:
            raise _HttpError(
                503, f"station {identity!r} disconnected; both passwords stay valid"
            ) from None
        except RemoteProtocolError as exc:
            raise _HttpError(502, f"the station's answer was invalid: {exc}") from None
        return 200, {"outcome": result.outcome.value, "status": result.status}


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _parse_object(body: bytes, keys: set[str], *, allow_empty: bool = False) -> dict[str, Any]:
    """The JSON object of ``body`` with no key outside ``keys``; ``400`` for anything else."""
    if allow_empty and not body.strip():
        return {}
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _HttpError(400, "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise _HttpError(400, "the body must be a JSON object")
    unknown = set(data) - keys
    if unknown:
        raise _HttpError(400, f"unknown keys: {', '.join(sorted(map(str, unknown)))}")
    return data


def _timeout(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise _HttpError(400, '"timeout" must be a positive number of seconds')
    return float(value)


def _parse_call(body: bytes) -> tuple[str, Any, float | None]:
    data = _parse_object(body, {"action", "payload", "timeout"})
    action = data.get("action")
    if not isinstance(action, str) or not action:
        raise _HttpError(400, '"action" must be an action name, e.g. "Reset"')
    return action, data.get("payload", {}), _timeout(data.get("timeout"))


def _variable_json(variable: DeviceVariable) -> dict[str, Any]:
    out: dict[str, Any] = {
        "component": variable.component.to_json(),
        "variable": variable.variable.to_json(),
        "attributes": [
            {key: value for key, value in attrs.asdict(attribute).items() if value is not None}
            for attribute in variable.attributes
        ],
    }
    if variable.characteristics is not None:
        out["characteristics"] = {
            key: value
            for key, value in attrs.asdict(variable.characteristics).items()
            if value is not None
        }
    return out


def _transaction_json(tx: Transaction, state: str) -> dict[str, Any]:
    return {
        "station": tx.identity,
        "transaction_id": tx.transaction_id,
        "version": tx.version.value,
        "state": state,
        "evse_id": tx.evse_id,
        "connector_id": tx.connector_id,
        "id_token": tx.id_token,
        "started_at": _iso(tx.started_at),
        "ended_at": _iso(tx.ended_at),
        "updated_at": _iso(tx.updated_at),
        "meter_start_wh": tx.meter_start_wh,
        "meter_stop_wh": tx.meter_stop_wh,
        "energy_wh": tx.energy_wh,
        "charging_state": tx.charging_state,
        "stopped_reason": tx.stopped_reason,
        "remote_start_id": tx.remote_start_id,
        "events": len(tx.events),
        "offline_events": tx.offline_events,
        "missing_seq_nos": list(tx.missing_seq_nos),
    }


# After answering a request that was not read whole, the rest is read and dropped for a
# moment before closing: closing with unread data resets the connection, and the client may
# lose the answer.
_LINGER_SECONDS: Final = 0.2
_LINGER_BYTES: Final = 256 * 1024


async def _linger(stream: trio.abc.Stream) -> None:
    with trio.move_on_after(_LINGER_SECONDS):
        try:
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
            drained = 0
            while drained < _LINGER_BYTES:
                data = await stream.receive_some(65536)
                if not data:
                    break
                drained += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


def _peer_address(stream: trio.abc.Stream) -> str:
    if isinstance(stream, trio.SocketStream):
        try:
            return str(stream.socket.getpeername()[0])
        except OSError:
            pass
    return "unknown"


def _host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Whether a ``Host`` header names this server: an IP address, ``localhost``, or a name
    the operator allowed.  A DNS-rebinding page reaches us under its own host name."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if not name:
        return False
    if name == "localhost" or name in {h.lower() for h in allowed}:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.partition("%")[0]).is_loopback
    except ValueError:
        return False


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
            if not _is_loopback(address):
                log.warning(
                    "the admin API listens on %s:%d, reachable from other machines: anyone "
                    "with its token can send any command to any station; prefer 127.0.0.1 "
                    "behind an authenticating TLS proxy",
                    address,
                    bound,
                )
        task_status.started(AdminInfo(addresses=tuple(addresses), token=api.token))
