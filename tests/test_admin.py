"""The admin HTTP API of ``serve``: its endpoints, its errors and its limits, over real sockets.

The CSMS runs in-process without a socket; the charge points reach it over memory pairs (the
``Link`` of test_client) and the admin API is served on 127.0.0.1 and spoken to with h11.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import h11
import trio
from helpers.admin import TOKEN, http, read_answer, station_router
from helpers.client import charge_point

from ocpp_trio import (
    CSMS,
    DuplicatePolicy,
    InMemoryCredentialStore,
    StationCredentials,
    Version,
    hash_password,
    open_csms,
)
from ocpp_trio.cli.main import default_router
from ocpp_trio.csms.admin import AdminConfig, AdminInfo, serve_admin
from ocpp_trio.csms.admin_openapi import openapi_description
from ocpp_trio.domain.credentials import PasswordHashing, verify_password
from ocpp_trio.messages import v1_6, v2_0_1

NOW = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
FAST = PasswordHashing(algorithm="pbkdf2-sha256", pbkdf2_iterations=1000)
TIMEOUT = 10


@asynccontextmanager
async def admin_api(
    config: AdminConfig | None = None,
) -> AsyncIterator[tuple[CSMS, trio.Nursery, int]]:
    async with (
        open_csms(default_router(), None, None) as csms,
        trio.open_nursery() as nursery,
    ):
        config = attrs.evolve(config or AdminConfig(), token=TOKEN)
        info: AdminInfo = await nursery.start(
            partial(serve_admin, csms, "127.0.0.1", 0, config=config)
        )
        assert info.token == TOKEN
        assert info.addresses[0][0] == "127.0.0.1"
        yield csms, nursery, info.port
        nursery.cancel_scope.cancel()


async def test_stations_calls_and_device_model() -> None:
    with trio.fail_after(TIMEOUT):
        async with admin_api() as (csms, nursery, port):
            index = await http(port, "GET", "/")
            assert index.status == 200
            assert "POST /stations/{identity}/call" in index.body["endpoints"]
            cp, link = await charge_point(csms, nursery, "CS 1", router=station_router())
            await charge_point(csms, nursery, "OLD", Version.V16)
            health = await http(port, "GET", "/health")
            assert (health.status, health.body) == (
                200,
                {"status": "ok", "stations": 2, "node": None},
            )
            listed = await http(port, "GET", "/stations")
            assert listed.status == 200
            assert listed.headers["content-type"].startswith("application/json")
            by_id = {s["identity"]: s for s in listed.body["stations"]}
            assert set(by_id) == {"CS 1", "OLD"}
            assert by_id["CS 1"]["version"] == "2.0.1"
            assert by_id["OLD"]["version"] == "1.6"
            assert by_id["CS 1"]["connected"] is True
            assert by_id["CS 1"]["status"] == "Accepted"
            one = await http(port, "GET", "/stations/CS%201")
            assert one.body["identity"] == "CS 1"

            reset = await http(
                port,
                "POST",
                "/stations/CS%201/call",
                {"action": "Reset", "payload": {"type": "Immediate"}},
            )
            assert reset.status == 200, reset.body
            assert reset.body == {"action": "Reset", "response": {"status": "Accepted"}}

            wanted = {
                "getVariableData": [
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                    }
                ]
            }
            got = await http(
                port, "POST", "/stations/CS%201/call", {"action": "GetVariables", "payload": wanted}
            )
            assert got.status == 200
            assert got.body["response"]["getVariableResult"][0]["attributeValue"] == "120"
            machines = csms.machines("CS 1")
            assert machines is not None
            await machines.settle()
            model = await http(port, "GET", "/stations/CS%201/device-model")
            assert model.status == 200
            [variable] = model.body["variables"]
            assert variable["component"] == {"name": "OCPPCommCtrlr"}
            assert variable["variable"] == {"name": "HeartbeatInterval"}
            assert variable["attributes"][0]["value"] == "120"

            # once disconnected, still listed, calls refused with 409
            link.up = False
            await link.drop()
            await cp.wait_state(lambda c: not c.connected)
            await trio.testing.wait_all_tasks_blocked()
            gone = await http(port, "GET", "/stations/CS%201")
            assert gone.body["connected"] is False
            assert gone.body["state"] == "offline"
            assert gone.body["disconnectedAt"] is not None
            # the last frame it sent is remembered past the disconnection
            when = {
                key: datetime.datetime.fromisoformat(gone.body[key])
                for key in ("connectedAt", "lastSeenAt", "disconnectedAt")
            }
            assert when["connectedAt"] <= when["lastSeenAt"] <= when["disconnectedAt"]
            refused = await http(port, "POST", "/stations/CS%201/call", {"action": "Reset"})
            assert refused.status == 409


async def test_health_answers_a_probe_without_credentials_and_says_little() -> None:
    async with admin_api() as (_csms, _nursery, port):
        # what HAProxy's `option httpchk GET /health` sends: no token, no Host
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(b"GET /health HTTP/1.0\r\n\r\n")
            answer = b""
            while chunk := await stream.receive_some(4096):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert json.loads(body) == {"status": "ok"}
        # with the token, the details; with a wrong one, no more than without
        detailed = await http(port, "GET", "/health")
        assert detailed.status == 200
        assert {"status", "stations", "node"} <= detailed.body.keys()
        wrong = await http(port, "GET", "/health", token="not-the-token-at-all")
        assert (wrong.status, wrong.body) == (200, {"status": "ok"})
        # nothing else is open without the token
        assert (await http(port, "GET", "/stations", token=None)).status == 401


async def test_call_errors_map_to_http_statuses() -> None:
    with trio.fail_after(TIMEOUT):
        async with admin_api() as (csms, nursery, port):
            await charge_point(csms, nursery, "CS1", router=station_router())
            call = "/stations/CS1/call"
            cases: list[tuple[Any, int, str]] = [
                ({"action": "Reset", "payload": {"type": "Sometimes"}}, 400, "invalid Reset"),
                ({"action": "Reset", "payload": {}}, 400, "invalid Reset"),
                ({"action": "NoSuchThing"}, 400, "not an OCPP 2.0.1 action"),
                ({"action": "BootNotification", "payload": {}}, 400, "cannot send"),
                ({"payload": {}}, 400, "action"),
                ({"action": "Reset", "extra": 1}, 400, "unknown keys"),
                ({"action": "Reset", "timeout": -1}, 400, "timeout"),
                ([1, 2], 400, "JSON object"),
            ]
            for body, status, words in cases:
                answer = await http(port, "POST", call, body)
                assert answer.status == status, (body, answer.body)
                assert words in answer.body["error"], (body, answer.body)
            invalid = await http(port, "POST", call, {"action": "Reset", "payload": {"type": "X"}})
            assert invalid.body["path"] == "type"
            assert invalid.body["code"] == "PropertyConstraintViolation"
            not_json = await http(port, "POST", call, raw=b"{nope")
            assert not_json.status == 400
            # the station answers with a CALLERROR: 502 with the error
            refused = await http(port, "POST", call, {"action": "GetLocalListVersion"})
            assert refused.status == 502
            assert refused.body["callError"]["code"] == "NotSupported"
            # no answer in time: 504
            slow = await http(port, "POST", call, {"action": "ClearCache", "timeout": 0.2})
            assert slow.status == 504
            unknown = await http(port, "POST", "/stations/NOPE/call", {"action": "Reset"})
            assert unknown.status == 404
            assert (await http(port, "GET", "/stations/NOPE")).status == 404
            assert (await http(port, "GET", "/stations/NOPE/device-model")).status == 404
            assert (await http(port, "GET", "/nothing/here")).status == 404
            wrong = await http(port, "GET", call)
            assert wrong.status == 405
            assert wrong.headers["allow"] == "POST"
            assert (await http(port, "DELETE", "/stations")).status == 405
            assert (await http(port, "GET", "/transactions?state=maybe")).status == 400


async def test_transactions_open_and_ended() -> None:
    with trio.fail_after(TIMEOUT):
        async with admin_api() as (csms, nursery, port):
            cp, _link = await charge_point(csms, nursery, "CS1")
            cp16, _link16 = await charge_point(csms, nursery, "CP16", Version.V16)

            def event(seq: int, kind: str) -> v2_0_1.TransactionEventRequest:
                sample = v2_0_1.SampledValueType(
                    value=1000.0 + 500 * seq,
                    measurand=v2_0_1.MeasurandEnumType.ENERGY_ACTIVE_IMPORT_REGISTER,
                )
                return v2_0_1.TransactionEventRequest(
                    event_type=v2_0_1.TransactionEventEnumType(kind),
                    timestamp=NOW,
                    trigger_reason=v2_0_1.TriggerReasonEnumType.AUTHORIZED,
                    seq_no=seq,
                    transaction_info=v2_0_1.TransactionType(transaction_id="T-1"),
                    evse=v2_0_1.EVSEType(id=1, connector_id=1),
                    meter_value=(v2_0_1.MeterValueType(timestamp=NOW, sampled_value=(sample,)),),
                )

            await (await cp.enqueue(event(0, "Started"))).wait()
            start = await cp16.enqueue(
                v1_6.StartTransactionRequest(
                    connector_id=2, id_tag="TAG", meter_start=10, timestamp=NOW
                )
            )
            await start.wait()
            for identity in ("CS1", "CP16"):
                machines = csms.machines(identity)
                assert machines is not None
                await machines.settle()
            listed = await http(port, "GET", "/transactions")
            assert {(t["station"], t["state"]) for t in listed.body["transactions"]} == {
                ("CS1", "open"),
                ("CP16", "open"),
            }
            await (await cp.enqueue(event(1, "Ended"))).wait()
            machines = csms.machines("CS1")
            assert machines is not None
            await machines.settle()
            ended = await http(port, "GET", "/transactions?state=ended")
            [tx] = ended.body["transactions"]
            assert tx["station"] == "CS1"
            assert tx["transactionId"] == "T-1"
            assert tx["energyWh"] == 500.0
            assert tx["evseId"] == 1
            still_open = await http(port, "GET", "/transactions?state=open&station=CP16")
            [tx16] = still_open.body["transactions"]
            assert tx16["transactionId"] == str(start.result().transaction_id)
            station = await http(port, "GET", "/stations/CP16")
            assert station.body["openTransactions"] == 1


async def test_limits() -> None:
    config = AdminConfig(
        max_request_bytes=100, max_header_bytes=1024, read_timeout=0.3, max_connections=2
    )
    with trio.fail_after(TIMEOUT):
        async with admin_api(config) as (_csms, _nursery, port):
            big = await http(port, "POST", "/stations/X/call", raw=b"x" * 101)
            assert big.status == 413
            header = await http(port, "GET", "/stations", headers=[("X-Big", "y" * 2000)])
            assert header.status == 431
            # a client that never finishes its request
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(b"GET /stations HTTP/1.1\r\nHost: x\r\n")
                conn = h11.Connection(h11.CLIENT)
                conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
                late = await read_answer(stream, conn)
                assert late.status == 408
            # beyond max_connections: 503 at once, the others are served
            async with (
                await trio.open_tcp_stream("127.0.0.1", port) as one,
                await trio.open_tcp_stream("127.0.0.1", port) as two,
            ):
                statuses = []
                for _ in range(40):  # until both held connections are being served
                    statuses.append((await http(port, "GET", "/stations")).status)
                    if statuses[-1] == 503:
                        break
                    await trio.sleep(0.025)
                assert statuses[-1] == 503
                assert set(statuses) <= {200, 503}
                del one, two
            garbage = await http_raw(port, b"NOT HTTP\r\n\r\n")
            assert garbage.startswith(b"HTTP/1.1 400 ")


async def http_raw(port: int, data: bytes) -> bytes:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(data)
        received = b""
        while chunk := await stream.receive_some(65536):
            received += chunk
        return received


async def test_only_stations_seen_since_start_and_connected_ones() -> None:
    """A station connected before the API started is listed too (from the CSMS's registry)."""
    with trio.fail_after(TIMEOUT):
        async with (
            open_csms(default_router(), None, None) as csms,
            trio.open_nursery() as nursery,
        ):
            await charge_point(csms, nursery, "EARLY")
            info: AdminInfo = await nursery.start(serve_admin, csms, "127.0.0.1", 0)
            assert len(info.token) >= 40  # generated: none was given
            listed = await http(info.port, "GET", "/stations", token=info.token)
            assert [s["identity"] for s in listed.body["stations"]] == ["EARLY"]
            assert "connectedAt" not in listed.body["stations"][0]
            nursery.cancel_scope.cancel()


# -- access: token, Host, Origin, content type, malformed bodies, idle connections -------------


async def test_access_rules() -> None:
    with trio.fail_after(TIMEOUT):
        async with admin_api() as (csms, nursery, port):
            await charge_point(csms, nursery, "CS1", router=station_router())
            reset = {"action": "Reset", "payload": {"type": "Immediate"}}
            call = "/stations/CS1/call"
            missing = await http(port, "GET", "/stations", token=None)
            assert missing.status == 401
            assert missing.headers["www-authenticate"].startswith("Bearer")
            assert (await http(port, "GET", "/stations", token="wrong-token-000")).status == 401
            # DNS rebinding: the page's own host name in Host
            for host in ("evil.example", "evil.example:9001", "127.0.0.1.evil.example"):
                assert (await http(port, "GET", "/stations", host=host)).status == 403
            for host in ("localhost:1", "[::1]:9001", "10.1.2.3"):
                assert (await http(port, "GET", "/stations", host=host)).status == 200
            # cross-site requests from a browser, even with the token
            for header in (("Origin", "https://evil.example"), ("Sec-Fetch-Site", "cross-site")):
                assert (await http(port, "POST", call, reset, headers=[header])).status == 403
            # a form post cannot be JSON
            plain = await http(port, "POST", "/stations/CS1/call", reset, content_type="text/plain")
            assert plain.status == 415
            # malformed bodies: a clean 400, never 500
            for raw in (b"[" * 50_000 + b"]" * 50_000, b'{"action": ' * 20_000, b"\xff\xfe", b"1"):
                bad = await http(port, "POST", "/stations/CS1/call", raw=raw)
                assert bad.status in (400, 413), (raw[:20], bad.body)
            for depth in (1_500, 8_000):  # too deep to parse
                nested = '{"vendorId": "x", "data": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
                text = '{"action": "DataTransfer", "payload": ' + nested + "}"
                deep = await http(port, "POST", call, raw=text.encode())
                assert deep.status == 400, (depth, deep.body)
            deep_json = json.dumps({"action": "Reset", "payload": {"type": [[[[[["x"]]]]]]}})
            assert (await http(port, "POST", call, raw=deep_json.encode())).status == 400
            # allowed through: the station was reset
            assert (await http(port, "POST", "/stations/CS1/call", reset)).status == 200


async def test_a_configured_host_and_origin() -> None:
    config = AdminConfig(allowed_hosts=("csms.internal",), allowed_origins=("https://ops",))
    with trio.fail_after(TIMEOUT):
        async with admin_api(config) as (_csms, _nursery, port):
            assert (await http(port, "GET", "/", host="csms.internal:443")).status == 200
            ok = await http(
                port, "GET", "/", host="csms.internal", headers=[("Origin", "https://ops")]
            )
            assert ok.status == 200


async def test_idle_connections_lock_nobody_out() -> None:
    config = AdminConfig(header_timeout=0.5, max_connections_per_address=4)
    with trio.fail_after(TIMEOUT):
        async with admin_api(config) as (_csms, _nursery, port):
            async with trio.open_nursery() as idle:
                # an attacker holds idle connections from 127.0.0.2 (more than its share)
                streams = []
                for _ in range(8):
                    stream = await trio.open_tcp_stream(
                        "127.0.0.1", port, local_address="127.0.0.2"
                    )
                    streams.append(stream)
                    await stream.send_all(b"GET / HTTP/1.1\r\n")
                # another address is served meanwhile
                assert (await http(port, "GET", "/stations")).status == 200
                answers = [await _read_all(stream) for stream in streams]
                idle.cancel_scope.cancel()
            for stream in streams:
                await stream.aclose()
            statuses = sorted(int(a.split(b" ", 2)[1]) for a in answers)
            # four over its cap answered 503 at once; the four idle ones dropped with 408
            assert statuses == [408] * 4 + [503] * 4


async def _read_all(stream: trio.abc.Stream) -> bytes:
    received = b""
    while chunk := await stream.receive_some(65536):
        received += chunk
    return received


async def test_a_warning_when_listening_beyond_loopback(caplog: Any) -> None:
    async with (
        open_csms(default_router(), None, None) as csms,
        trio.open_nursery() as nursery,
    ):
        info: AdminInfo = await nursery.start(serve_admin, csms, "0.0.0.0", 0)
        assert info.addresses[0][0] == "0.0.0.0"
        nursery.cancel_scope.cancel()
    assert "reachable from other machines" in caplog.text


async def test_rotate_password_needs_the_credential_store() -> None:
    with trio.fail_after(TIMEOUT):
        async with admin_api() as (csms, nursery, port):
            await charge_point(csms, nursery, "CS1")
            answer = await http(port, "POST", "/stations/CS1/rotate-password", {})
            assert answer.status == 409
            assert "no station passwords" in answer.body["error"]
            assert (await http(port, "GET", "/stations/CS1/rotate-password")).status == 405


# -- the description, HEAD, 405, query parameters ------------------------------------------------


async def test_head_answers_every_get_with_its_headers_and_no_body() -> None:
    with trio.fail_after(TIMEOUT):
        async with admin_api() as (csms, nursery, port):
            await charge_point(csms, nursery, "CS1")
            for path in ("/", "/health", "/stations", "/stations/CS1", "/transactions"):
                got = await http(port, "GET", path)
                head = await http_raw(port, request("HEAD", path, port))
                status_line, _, rest = head.partition(b"\r\n")
                assert status_line == b"HTTP/1.1 200 OK", path
                headers, _, body = rest.partition(b"\r\n\r\n")
                assert body == b"", path
                found = dict(
                    line.decode().lower().split(": ", 1) for line in headers.split(b"\r\n")
                )
                assert found["content-type"] == got.headers["content-type"]
                assert int(found["content-length"]) > 0
            missing = await http_raw(port, request("HEAD", "/stations/NOPE", port))
            assert missing.startswith(b"HTTP/1.1 404 ")
            assert missing.endswith(b"\r\n\r\n")  # the error's headers, no body


def request(method: str, path: str, port: int, token: str | None = TOKEN) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n".encode()


async def test_wrong_methods_get_405_with_allow() -> None:
    with trio.fail_after(TIMEOUT):
        async with admin_api() as (_csms, _nursery, port):
            for method, path, allow in [
                ("POST", "/stations", "GET, HEAD"),
                ("DELETE", "/stations/CS1", "GET, HEAD"),
                ("PUT", "/stations/CS1/security", "GET, HEAD, PATCH"),
                ("GET", "/stations/CS1/rotate-password", "POST"),
                ("OPTIONS", "/transactions", "GET, HEAD"),
                ("HEAD", "/stations/CS1/call", "POST"),
            ]:
                answer = await http_raw(port, request(method, path, port))
                assert answer.startswith(b"HTTP/1.1 405 "), (method, path)
                assert f"\r\nAllow: {allow}\r\n".encode() in answer, (method, path)
            for path in ("/stations/", "/stations//call", "/nothing"):
                assert (await http(port, "GET", path)).status == 404, path


async def test_the_description_is_served_without_the_token() -> None:
    with trio.fail_after(TIMEOUT):
        async with admin_api() as (_csms, _nursery, port):
            served = await http(port, "GET", "/openapi.json", token=None)
            assert served.status == 200
            assert served.body == openapi_description()
            assert served.body["openapi"].startswith("3.")
            assert (await http(port, "GET", "/health", token=None)).status == 200
            # the rest needs it, even to be told a method is wrong
            assert (await http(port, "POST", "/openapi.json", {}, token=None)).status == 401
            assert (await http(port, "GET", "/", token=None)).status == 401
            # a page on another site still cannot read it
            evil = await http(port, "GET", "/openapi.json", token=None, host="evil.example")
            assert evil.status == 403
            index = await http(port, "GET", "/")
            described = {
                f"{method.upper()} {path}"
                for path, operations in served.body["paths"].items()
                for method in operations
            }
            assert set(index.body["endpoints"]) == described


async def test_unknown_query_parameters_are_refused() -> None:
    with trio.fail_after(TIMEOUT):
        async with admin_api() as (_csms, _nursery, port):
            old = await http(port, "GET", "/transactions?state=ended&id_token=T")
            assert old.status == 400
            assert "id_token" in old.body["error"]
            assert (await http(port, "GET", "/stations?x=1")).status == 400
            assert (await http(port, "GET", "/transactions?state=open&station=X")).status == 200


def test_every_answer_field_is_camel_case() -> None:
    """The convention holds in the description (the schemathesis test holds the answers to
    the description)."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            properties = node.get("properties")
            if isinstance(properties, dict):
                names.update(properties)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(openapi_description()["components"]["schemas"])
    assert names
    assert not [name for name in names if "_" in name or name[0].isupper()]


# -- security settings -------------------------------------------------------------------------


async def test_security_settings_are_shown_and_changed_without_secrets() -> None:
    store = InMemoryCredentialStore(
        [
            StationCredentials(
                identity="CS1",
                security_profile=2,
                password_hash=hash_password("a-long-first-password", hashing=FAST),
            )
        ]
    )
    with trio.fail_after(TIMEOUT):
        async with (
            open_csms(default_router(), None, None) as csms,
            trio.open_nursery() as nursery,
        ):
            config = AdminConfig(token=TOKEN)
            info: AdminInfo = await nursery.start(
                partial(
                    serve_admin,
                    csms,
                    "127.0.0.1",
                    0,
                    config=config,
                    credentials=store,
                    hashing=FAST,
                )
            )
            port = info.port
            shown = await http(port, "GET", "/stations/CS1/security")
            assert shown.body == {
                "identity": "CS1",
                "securityProfile": 2,
                "passwordSet": True,
                "pendingPassword": False,
                "certificateCommonName": None,
                "certificateCommonNames": [],
                "certificateOrganization": None,
                "duplicateConnections": None,
            }
            change = {
                "securityProfile": 3,
                "certificateCommonNames": ["SN-1", "SN-2"],
                "duplicateConnections": "refuse",
            }
            changed = await http(port, "PATCH", "/stations/CS1/security", change)
            assert changed.status == 200, changed.body
            assert changed.body["securityProfile"] == 3
            assert changed.body["certificateCommonNames"] == ["SN-1", "SN-2"]
            record = await store.get("CS1")
            assert record is not None
            assert record.duplicate_connections is DuplicatePolicy.REFUSE
            secret = "another-long-password-2"
            back = {"securityProfile": 2, "password": secret}
            again = await http(port, "PATCH", "/stations/CS1/security", back)
            assert again.status == 200
            assert secret not in json.dumps(again.body)
            record = await store.get("CS1")
            assert record is not None
            assert record.password_hash is not None
            assert verify_password(secret, record.password_hash)
            for bad, status in [
                ({}, 400),
                ({"securityProfile": 4}, 400),
                ({"securityProfile": True}, 400),
                ({"password": "short"}, 400),
                ({"password": "x" * 20, "authorizationKey": "00" * 16}, 400),
                ({"passwordHash": "scrypt$1"}, 400),
                ({"certificateCommonNames": [" "]}, 400),
                ({"authorizationKey": "abc"}, 400),
                ({"duplicateConnections": "sometimes"}, 400),
                ({"certificateCommonNames": "SN-1"}, 400),
                ({"unknown": 1}, 400),
            ]:
                answer = await http(port, "PATCH", "/stations/CS1/security", bad)
                assert answer.status == status, (bad, answer.body)
            # profile 3 and back to 2 keeps the password; dropping a pending change is fine
            for step in ({"securityProfile": 3}, {"securityProfile": 2}):
                assert (await http(port, "PATCH", "/stations/CS1/security", step)).status == 200
            drop = {"dropPendingPassword": True}
            assert (await http(port, "PATCH", "/stations/CS1/security", drop)).status == 200
            assert await store.get("CS1") == record
            nobody = await http(port, "PATCH", "/stations/NOPE/security", {"securityProfile": 3})
            assert nobody.status == 404
            assert (await http(port, "GET", "/stations/NOPE/security")).status == 404
            nursery.cancel_scope.cancel()


async def test_security_settings_need_the_credential_store() -> None:
    with trio.fail_after(TIMEOUT):
        async with admin_api() as (_csms, _nursery, port):
            assert (await http(port, "GET", "/stations/CS1/security")).status == 409
            change = {"securityProfile": 3}
            assert (await http(port, "PATCH", "/stations/CS1/security", change)).status == 409
