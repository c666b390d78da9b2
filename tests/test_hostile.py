"""Hostile input over real sockets on 127.0.0.1: the server and every other station keep working.

Every attack runs against a CSMS that also serves a well-behaved station ("GOOD"), which must
complete a CALL during and after the attack. Frame-level cases check the answer OCPP.md §10
names; connection-level cases check the close (1009, 1007, abort after the send timeout, the
handshake timeout, the idle timeout). Set ``OCPP_TRIO_HOSTILE_REPORT=<file>`` to get the count
of cases tried as JSON (docs/security.md quotes it).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import string
import tracemalloc
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from helpers.station import FakeStation, boot_request
from helpers.websocket import TrioWebSocketPeer, ws_station
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Message, Ping, Pong, Request, TextMessage

from ocpp_trio import Version
from ocpp_trio.csms.core import CSMS, CSMSConfig, open_csms
from ocpp_trio.domain.credentials import (
    InMemoryCredentialStore,
    PasswordHashing,
    StationCredentials,
    hash_password,
)
from ocpp_trio.errors import InvalidIdentityError
from ocpp_trio.messages import v2_0_1
from ocpp_trio.runtime.handlers import Router
from ocpp_trio.runtime.station import Station, StationConfig
from ocpp_trio.security.auth import StationAuthenticator
from ocpp_trio.transport.server import (
    ConnectionRequest,
    ServerConfig,
    check_identity_for_version,
    identity_from_path,
)

#: seconds before a wait that should end is called a hang (generous: CI machines get busy)
HANG_GUARD = 30.0
V16, V201, V21 = Version.V16, Version.V201, Version.V21
MAX_MESSAGE = 64 * 1024
SERVER = ServerConfig(
    max_message_size=MAX_MESSAGE,
    ping_interval=0,
    # long enough for the good station's handshake on a loaded machine; the handshake cases
    # set their own
    handshake_timeout=3.0,
    send_timeout=0.5,
    close_timeout=0.5,
)
# the message rate is off: the cases test what stands behind it (its own case paces a flood)
STATION = StationConfig(handler_queue_size=4, call_timeout=5, max_message_rate=None)
HYPOTHESIS = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
#: cases tried, by kind, and measurements (reported through OCPP_TRIO_HOSTILE_REPORT)
CASES: Counter[str] = Counter()
MEASURED: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    target = os.environ.get("OCPP_TRIO_HOSTILE_REPORT")
    if target:
        with open(target, "w") as file:
            json.dump({"cases": dict(sorted(CASES.items())), "measured": MEASURED}, file, indent=2)


def hostile_router() -> Router:
    router = Router()
    router.set_default_boot()

    @router.on(v2_0_1.DataTransferRequest)
    async def data_transfer(
        station: Station, request: v2_0_1.DataTransferRequest
    ) -> v2_0_1.DataTransferResponse:
        await trio.sleep(0.001)  # slow enough for a flood to fill the handler queue
        return v2_0_1.DataTransferResponse(status=v2_0_1.DataTransferStatusEnumType.ACCEPTED)

    return router


@attrs.define
class Bench:
    csms: CSMS
    port: int
    good: FakeStation
    good_calls: int = 0

    async def good_ok(self) -> None:
        """The well-behaved station completes a CALL (the bound only guards against a hang:
        a loaded test machine can take seconds)."""
        with trio.fail_after(HANG_GUARD):
            response = await self.good.exchange(v2_0_1.HeartbeatRequest())
        assert isinstance(response, v2_0_1.HeartbeatResponse), response
        self.good_calls += 1

    async def good_keeps_going(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Call every 50 ms until cancelled (run beside an attack)."""
        task_status.started()
        while True:
            await self.good_ok()
            await trio.sleep(0.05)

    def server_stats(self) -> Any:
        assert self.csms.server_info is not None
        return self.csms.server_info.statistics()


@asynccontextmanager
async def bench(
    *,
    server: ServerConfig = SERVER,
    station: StationConfig = STATION,
    check_request: Any = None,
    good_headers: list[tuple[bytes, bytes]] | None = None,
) -> AsyncIterator[Bench]:
    config = CSMSConfig(server=server, station=station)
    async with open_csms(
        hostile_router(), "127.0.0.1", 0, config=config, check_request=check_request
    ) as csms:
        assert csms.server_info is not None
        port = csms.server_info.port
        async with ws_station(port, "/GOOD", headers=good_headers or []) as ws:
            good = FakeStation(TrioWebSocketPeer(ws), V201)  # type: ignore[arg-type]
            await good.exchange(boot_request(V201))
            b = Bench(csms, port, good)
            await b.good_ok()
            yield b
            await b.good_ok()
            assert not csms.statistics().extra_errors


@asynccontextmanager
async def attacker(
    b: Bench, version: Version, identity: str = "EVIL"
) -> AsyncIterator[WebSocketConnection]:
    """An upgraded, booted station connection to attack with."""
    async with ws_station(b.port, f"/{identity}", subprotocols=[version.subprotocol]) as ws:
        await ws.send_message(json.dumps([2, "boot", "BootNotification", boot_payload(version)]))
        reply = json.loads(await ws.get_message())
        assert reply[:2] == [3, "boot"], reply
        yield ws


def boot_payload(version: Version) -> dict[str, Any]:
    return boot_request(version).to_json()


async def replies_until_sync(ws: WebSocketConnection, tag: str) -> list[Any]:
    """Send a Heartbeat CALL with id ``tag``; the frames received before its answer."""
    await ws.send_message(json.dumps([2, tag, "Heartbeat", {}]))
    before: list[Any] = []
    with trio.fail_after(HANG_GUARD):
        while True:
            frame = json.loads(await ws.get_message())
            if frame[:2] == [3, tag]:
                assert "currentTime" in frame[2]
                return before
            before.append(frame)


def check_error_frame(frame: Any, version: Version) -> None:
    """A well-formed CALLERROR of ``version`` (or a CALLRESULT to a CALL we happened to send)."""
    assert isinstance(frame, list)
    if frame[0] == 3:
        assert len(frame) == 3
        return
    assert frame[0] == 4
    assert len(frame) == 5
    assert isinstance(frame[1], str)
    if version is not V16:  # 1.6 echoes whatever string id the frame had, even "" or long
        assert 0 < len(frame[1]) <= 36
    assert isinstance(frame[2], str)
    assert isinstance(frame[3], str)
    assert len(frame[3]) <= 255
    assert isinstance(frame[4], dict)
    if version is V16:
        assert frame[2] != "RpcFrameworkError"


# --------------------------------------------------------------------------------------------
# Frames with exact answers (OCPP.md §10)

NESTED = "[" * 20_000 + "]" * 20_000
RFE = "RpcFrameworkError"


def _table() -> list[tuple[str, str | bytes, dict[Version, list[Any] | None]]]:
    rfe = [4, "-1", RFE]
    return [
        ("invalid JSON", "{not json", {V16: None, V201: rfe, V21: rfe}),
        ("not an array", '{"a": 1}', {V16: None, V201: rfe, V21: rfe}),
        ("empty array", "[]", {V16: None, V201: rfe, V21: rfe}),
        ("NaN", '[2, "n1", "Heartbeat", NaN]', {V16: [4, "n1", "GenericError"]}),
        ("deep nesting", NESTED, {V16: None, V201: rfe, V21: rfe}),
        ("non-UTF-8 binary", b"\xff\xfe\x00garbage", {V16: None, V201: rfe, V21: rfe}),
        (
            "CALL in a binary frame",
            b'[2, "b1", "Heartbeat", {}]',
            {V16: [4, "b1", "GenericError"], V201: [4, "b1", RFE], V21: [4, "b1", RFE]},
        ),
        (
            "unknown message type",
            '[7, "t7", "Heartbeat", {}]',
            {V16: None, V201: [4, "t7", "MessageTypeNotSupported"], V21: None},
        ),
        (
            "type 5 before 2.1",
            '[5, "t5", "GenericError", "", {}]',
            {V16: None, V201: [4, "t5", "MessageTypeNotSupported"], V21: None},
        ),
        ("integer message id", '[2, 17, "Heartbeat", {}]', {V16: None, V201: rfe, V21: rfe}),
        (
            "message id over 36",
            json.dumps([2, "x" * 37, "Heartbeat", {}]),
            {V16: [4, "x" * 37, "GenericError"], V201: rfe, V21: rfe},
        ),
        (
            "unknown action",
            '[2, "u1", "NoSuchAction", {}]',
            {V16: [4, "u1", "NotImplemented"], V201: [4, "u1", "NotImplemented"]},
        ),
        (
            "wrong direction",
            '[2, "w1", "Reset", {"type": "Immediate"}]',
            {V201: [4, "w1", "NotSupported"], V21: [4, "w1", "NotSupported"]},
        ),
        (
            "payload not an object",
            '[2, "p1", "Heartbeat", [1]]',
            {
                V16: [4, "p1", "FormationViolation"],
                V201: [4, "p1", "FormatViolation"],
                V21: [4, "p1", "FormatViolation"],
            },
        ),
        ("stray CALLRESULT", '[3, "nobody-asked", {}]', {V16: None, V201: None, V21: None}),
        (
            "stray CALLERROR",
            '[4, "nobody-asked", "GenericError", "", {}]',
            {V16: None, V201: None, V21: None},
        ),
    ]


async def test_bad_frames_get_the_answer_ocpp_md_names() -> None:
    async with bench() as b:
        for version in Version:
            async with attacker(b, version) as ws:
                for n, (name, frame, expected) in enumerate(_table()):
                    if version not in expected:
                        continue
                    CASES["frame table"] += 1
                    await ws.send_message(frame)
                    got = await replies_until_sync(ws, f"sync-{n}")
                    want = expected[version]
                    if want is None:
                        assert got == [], (name, version, got)
                    else:
                        [reply] = got
                        assert reply[:3] == want, (name, version, reply)
                        check_error_frame(reply, version)
            await b.good_ok()


# --------------------------------------------------------------------------------------------
# Random frames (hypothesis)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
ids = st.one_of(st.text(max_size=40), st.integers(), st.none(), st.just("-1"))
actions = st.one_of(
    st.sampled_from(["Heartbeat", "BootNotification", "Authorize", "Reset", "DataTransfer"]),
    st.text(max_size=30),
)
frame_shaped = st.builds(
    lambda t, i, rest: [t, i, *rest],
    st.sampled_from([2, 3, 4, 5, 6, 7, 0, -1, "2", 2.0]),
    ids,
    st.lists(st.one_of(actions, json_values), max_size=4),
)
garbage_frames = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    json_values.map(json.dumps),
    frame_shaped.map(json.dumps),
)


@settings(HYPOTHESIS, max_examples=200)
@given(version=st.sampled_from(list(Version)), frames=st.lists(garbage_frames, max_size=8))
async def test_random_frames_never_hurt(version: Version, frames: list[str | bytes]) -> None:
    async with bench() as b, attacker(b, version) as ws:
        for frame in frames:
            await ws.send_message(frame)
        CASES["random frames"] += len(frames)
        got = await replies_until_sync(ws, "sync-after-garbage")
        assert len(got) <= len(frames)
        for reply in got:
            check_error_frame(reply, version)
        await b.good_ok()
        # the attacker's own session is intact
        assert await replies_until_sync(ws, "sync-again") == []


@settings(HYPOTHESIS, max_examples=100)
@given(version=st.sampled_from(list(Version)), text=st.text(min_size=1, max_size=300))
async def test_random_text_is_answered_per_version(version: Version, text: str) -> None:
    try:
        json.loads(text)
    except ValueError:
        pass
    else:
        return  # valid JSON is the other tests' business
    CASES["random invalid JSON"] += 1
    async with bench() as b, attacker(b, version) as ws:
        await ws.send_message(text)
        got = await replies_until_sync(ws, "sync")
        if version is V16:
            assert len(got) <= 1
            assert all(r[2] == "GenericError" for r in got)
        else:
            [reply] = got
            assert reply[2] == RFE
        for reply in got:
            check_error_frame(reply, version)


# --------------------------------------------------------------------------------------------
# Connection-level attacks


async def test_frames_above_the_limit_close_1009_and_reconnect_works() -> None:
    async with bench() as b:
        for version in Version:
            CASES["oversize frame"] += 2
            async with attacker(b, version) as ws:
                await ws.send_message("[" + " " * (MAX_MESSAGE - 2) + "]")  # at the limit: fine
                assert len(await replies_until_sync(ws, "s")) <= 1
                await ws.send_message("x" * (MAX_MESSAGE + 1))
                with pytest.raises(ConnectionClosed) as closed:
                    await drain(ws)
                assert closed.value.reason.code == 1009
            await b.good_ok()
            async with attacker(b, version) as ws:  # the station may reconnect
                assert await replies_until_sync(ws, "back") == []


async def drain(ws: WebSocketConnection) -> None:
    """Read until the connection closes (at most 3 s)."""
    with trio.fail_after(3):
        while True:
            await ws.get_message()


async def test_invalid_utf8_text_frame_closes_1007(caplog: pytest.LogCaptureFixture) -> None:
    """wsproto fails a text frame that is not UTF-8 (RFC 6455 §8.1) with 1007; the server sends
    its close frame and drops the TCP connection."""
    caplog.set_level(logging.INFO, logger="ocpp_trio")
    async with bench() as b:
        CASES["invalid UTF-8 text frame"] += 1
        async with raw_client(b.port, "/BADUTF8") as (stream, _ws):
            # a text frame (opcode 1, FIN, masked) carrying invalid UTF-8
            payload = b'[2,"x","Heartbeat",{"a":"\xff\xfe"}]'
            mask = b"\x01\x02\x03\x04"
            masked = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
            await stream.send_all(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
            with trio.fail_after(3):
                while await _receive(stream):
                    pass
        await b.good_ok()
        with trio.fail_after(3):
            while b.csms.get_station("BADUTF8") is not None:  # noqa: ASYNC110
                await trio.sleep(0.01)
    assert "station 'BADUTF8' (127.0.0.1" in caplog.text
    assert "disconnected: 1007" in caplog.text


async def _receive(stream: trio.SocketStream) -> bytes:
    try:
        return await stream.receive_some(65536)
    except trio.BrokenResourceError:
        return b""


@asynccontextmanager
async def raw_client(
    port: int, path: str, *, subprotocol: str = "ocpp1.6", receive_buffer: int | None = None
) -> AsyncIterator[tuple[trio.SocketStream, WSConnection]]:
    """An upgraded connection driven by hand with wsproto (for peers that misbehave)."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(
            ws.send(Request(host="127.0.0.1", target=path, subprotocols=[subprotocol]))
        )
        with trio.fail_after(3):
            accepted = False
            while not accepted:
                ws.receive_data(await stream.receive_some(4096))
                accepted = any(isinstance(e, AcceptConnection) for e in ws.events())
        yield stream, ws


async def test_call_flood_is_answered_and_memory_stays_bounded() -> None:
    """2000 CALLs without waiting: each is answered (CALLRESULT, or GenericError beyond the
    handler queue), the good station is served throughout, memory does not grow with it."""
    count = 2000
    async with bench() as b, attacker(b, V201, "FLOOD") as ws:
        answers: Counter[str] = Counter()
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            async with trio.open_nursery() as nursery:
                await nursery.start(b.good_keeps_going)

                async def read() -> None:
                    with trio.fail_after(30):
                        while sum(answers.values()) < count:
                            frame = json.loads(await ws.get_message())
                            answers["result" if frame[0] == 3 else frame[2]] += 1

                nursery.start_soon(read)
                for n in range(count):
                    frame = [2, f"f{n}", "DataTransfer", {"vendorId": "flood"}]
                    await ws.send_message(json.dumps(frame))
                with trio.fail_after(30):
                    while sum(answers.values()) < count:  # noqa: ASYNC110
                        await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
            peak = tracemalloc.get_traced_memory()[1] - baseline
        finally:
            tracemalloc.stop()
        CASES["CALL flood (CALLs)"] += count
        MEASURED["CALL flood: traced memory peak (bytes)"] = peak
        MEASURED["CALL flood: GenericError answers"] = answers["GenericError"]
        assert set(answers) <= {"result", "GenericError"}, answers
        assert answers["result"] > 0
        assert answers["GenericError"] > 0  # the handler queue limit was hit
        assert peak < 16 * 1024 * 1024, peak
        assert b.good_calls > 2
        station = b.csms.get_station("FLOOD")
        assert station is not None
        stats = station.statistics()
        assert stats.calls_refused == answers["GenericError"]


async def test_a_frame_flood_is_paced_by_the_message_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Heartbeats sent as fast as the socket takes them (answered by the reader itself, so no
    queue limit applies): past the burst, reading from the flood follows the message rate;
    every frame is answered, and the good station is served meanwhile."""
    rate, burst, count = 200.0, 50, 450
    station = attrs.evolve(STATION, max_message_rate=rate, message_burst=burst)
    async with bench(station=station) as b, attacker(b, V201, "PACED") as ws:
        answered = 0
        async with trio.open_nursery() as nursery:
            await nursery.start(b.good_keeps_going)
            start = trio.current_time()

            async def send() -> None:
                for n in range(count):
                    await ws.send_message(json.dumps([2, f"p{n}", "Heartbeat", {}]))

            nursery.start_soon(send)
            with trio.fail_after(30):
                while answered < count:
                    frame = json.loads(await ws.get_message())
                    assert frame[0] == 3, frame
                    answered += 1
            elapsed = trio.current_time() - start
            nursery.cancel_scope.cancel()
        paced = b.csms.get_station("PACED")
        assert paced is not None
        stats = paced.statistics()
        CASES["frame flood over the message rate (frames)"] += count
        MEASURED["frame flood: seconds for the frames"] = round(elapsed, 2)
        MEASURED["frame flood: pauses"] = stats.throttled
        # the bucket lets at most burst + rate * t frames through in t seconds (the boot took
        # one token): the last heartbeat was read no sooner than this
        assert elapsed >= (count + 1 - burst - 1) / rate * 0.99
        assert stats.throttled > (count - burst) // 2  # time spent handling refills a little
        assert b.good_calls > 2
    assert "'PACED': more than 200.0 frames/s (burst 50); reading paused" in caplog.text


async def test_a_ping_flood_costs_one_pong_per_read() -> None:
    """Pings sent in bulk are answered once per read, with the last ping's payload (RFC 6455
    5.5.3), not one pong each; the connection still works, and the good station is served."""
    count, per_write = 5000, 500
    async with bench() as b, raw_client(b.port, "/PINGS") as (stream, ws):
        boot = [2, "boot", "BootNotification", boot_payload(V16)]
        await stream.send_all(ws.send(Message(data=json.dumps(boot))))
        pongs: list[bytes] = []
        answers: list[Any] = []

        async def read() -> None:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Pong):
                        pongs.append(bytes(event.payload))
                    elif isinstance(event, TextMessage):
                        answers.append(json.loads(event.data))

        async with trio.open_nursery() as nursery:
            await nursery.start(b.good_keeps_going)
            nursery.start_soon(read)
            for start in range(0, count, per_write):
                wire = b"".join(
                    ws.send(Ping(payload=str(n).encode())) for n in range(start, start + per_write)
                )
                await stream.send_all(wire)
            # a CALL after the flood: once answered, every ping before it has been read
            await stream.send_all(ws.send(Message(data=json.dumps([2, "hb", "Heartbeat", {}]))))
            last = str(count - 1).encode()
            with trio.fail_after(HANG_GUARD):
                # the last ping is answered (its pong may follow the CALL's answer)
                while not (any(a[1] == "hb" for a in answers) and last in pongs):  # noqa: ASYNC110
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        CASES["ping flood (pings)"] += count
        MEASURED["ping flood: pongs"] = len(pongs)
        assert pongs, "no pong at all"
        assert len(pongs) <= count // 10, len(pongs)
        assert pongs[-1] == last  # no pong after the last ping's
        assert b.good_calls > 0


async def test_a_peer_that_never_reads_is_aborted_and_blocks_nobody(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with bench() as b:
        CASES["peer never reads"] += 1
        async with raw_client(b.port, "/DEAF", receive_buffer=4096) as (stream, ws):
            boot = [2, "boot", "BootNotification", boot_payload(V16)]
            await stream.send_all(ws.send(Message(data=json.dumps(boot))))
            with trio.fail_after(3):
                while b.csms.get_station("DEAF") is None:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            # Heartbeats answered by the server's reader, never read by us; a long id makes
            # each answer big so the socket buffers fill quickly.
            heartbeat = ws.send(Message(data=json.dumps([2, "h" * 36, "Heartbeat", {}])))

            async def flood() -> None:
                try:
                    while True:
                        await stream.send_all(heartbeat * 50)  # blocks once the server stalls
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

            async with trio.open_nursery() as nursery:
                await nursery.start(b.good_keeps_going)
                nursery.start_soon(flood)
                start = trio.current_time()
                with trio.fail_after(5):
                    while b.csms.get_station("DEAF") is not None:  # noqa: ASYNC110
                        await trio.sleep(0.01)
                elapsed = trio.current_time() - start
                nursery.cancel_scope.cancel()
        assert elapsed < 3  # the send timeout (0.5 s) after the buffers filled
        assert "send timed out after 0.5 s" in caplog.text
        await b.good_ok()


async def test_slow_and_silent_handshakes_time_out() -> None:
    async with bench(server=attrs.evolve(SERVER, handshake_timeout=0.5)) as b:
        before = b.server_stats().handshakes_failed
        slow = 20
        CASES["slow handshake (slowloris)"] += slow
        CASES["silent connection"] += 1
        request = b"GET /SLOW HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"

        async def slowloris(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            async with await trio.open_tcp_stream("127.0.0.1", b.port) as stream:
                task_status.started()
                with trio.fail_after(3):
                    try:
                        for byte in request:
                            await stream.send_all(bytes([byte]))
                            await trio.sleep(0.05)
                    except trio.BrokenResourceError:
                        pass
                    assert await _receive(stream) == b""

        async with trio.open_nursery() as nursery:
            for _ in range(slow):
                await nursery.start(slowloris)
            silent = await trio.open_tcp_stream("127.0.0.1", b.port)
            async with silent:
                await b.good_ok()
                # a new station connects fine meanwhile
                async with attacker(b, V201, "NEWCOMER") as ws:
                    assert await replies_until_sync(ws, "s") == []
                with trio.fail_after(2):
                    assert await _receive(silent) == b""
        assert b.server_stats().handshakes_failed - before == slow + 1


@settings(HYPOTHESIS, max_examples=30)
@given(garbage=st.binary(min_size=1, max_size=2000))
async def test_random_bytes_instead_of_an_http_request(garbage: bytes) -> None:
    """Malformed HTTP: the connection is never upgraded and is dropped (at the latest by the
    server's handshake timeout, 1 s here)."""
    CASES["random bytes as HTTP request"] += 1
    async with (
        bench(server=attrs.evolve(SERVER, handshake_timeout=1.0)) as b,
        await trio.open_tcp_stream("127.0.0.1", b.port) as stream,
    ):
        await stream.send_all(garbage)
        await stream.send_eof()
        with trio.fail_after(5):
            data = b""
            while chunk := await _receive(stream):
                data += chunk
        assert not data.startswith(b"HTTP/1.1 101")


async def test_idle_connection_is_closed() -> None:
    async with bench(station=attrs.evolve(STATION, idle_timeout=0.3)) as b:
        CASES["idle connection"] += 1
        async with trio.open_nursery() as nursery:
            await nursery.start(b.good_keeps_going)  # GOOD talks every 50 ms: never idle
            async with attacker(b, V201, "IDLE") as ws:
                with pytest.raises(ConnectionClosed) as closed, trio.fail_after(3):
                    await ws.get_message()
            nursery.cancel_scope.cancel()
        assert (closed.value.reason.code, closed.value.reason.reason) == (1000, "idle timeout")


async def test_many_connections_for_one_identity() -> None:
    async with bench() as b:
        # one after the other (each closed before the next)
        sequential = 15
        CASES["connections for one identity"] += sequential
        for n in range(sequential):
            async with attacker(b, V201, "DUP") as ws:
                assert await replies_until_sync(ws, f"s{n}") == []
        # all at once: never two live sessions
        at_once = 10
        CASES["connections for one identity"] += at_once
        async with trio.open_nursery() as nursery:
            outcomes: list[str] = []

            async def connect(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                try:
                    async with ws_station(b.port, "/DUP") as ws:
                        task_status.started()
                        try:
                            with trio.fail_after(1.5):
                                await ws.get_message()
                        except ConnectionClosed as exc:
                            outcomes.append(exc.reason.reason or "")
                        except trio.TooSlowError:
                            outcomes.append("live")
                except* ConnectionClosed:  # closed before the upgrade completed
                    outcomes.append("replaced")

            for _ in range(at_once):
                nursery.start_soon(connect)
        assert outcomes.count("live") == 1, outcomes
        with trio.fail_after(3):  # the live DUP closed when its task ended
            while len(b.csms.stations) > 1:  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert b.csms.statistics().connections_replaced == at_once - 1
        await b.good_ok()


async def test_connection_flood() -> None:
    """100 stations connect, boot and call at once; all are served, and so is GOOD."""
    stations = 100
    CASES["concurrent connections"] += stations
    served: list[str] = []
    async with bench() as b:

        async def one(n: int) -> None:
            async with attacker(b, V201, f"MANY{n}") as ws:
                assert await replies_until_sync(ws, "s") == []
                served.append(ws.path)

        async with trio.open_nursery() as nursery:
            await nursery.start(b.good_keeps_going)
            with trio.fail_after(20):
                async with trio.open_nursery() as crowd:
                    for n in range(stations):
                        crowd.start_soon(one, n)
            nursery.cancel_scope.cancel()
    assert len(served) == stations


# --------------------------------------------------------------------------------------------
# Identities and credentials

path_segments = st.one_of(
    st.text(max_size=60).map(lambda s: urllib.parse.quote(s, safe="")),
    st.text(alphabet=string.ascii_letters + string.digits + "%:-._~!$&'()*+,;=@", max_size=60),
)


@settings(HYPOTHESIS, max_examples=100)
@given(segment=path_segments, version=st.sampled_from(list(Version)))
async def test_random_identities(segment: str, version: Version) -> None:
    CASES["random identity"] += 1
    path = "/ocpp/" + segment
    try:
        identity = identity_from_path(path)
        check_identity_for_version(identity, version)
        expected = 101
    except InvalidIdentityError as exc:
        expected = exc.status_code
    async with bench() as b:
        status = 101
        try:
            async with ws_station(b.port, path, subprotocols=[version.subprotocol]) as ws:
                assert ws.subprotocol == version.subprotocol
        except* ConnectionRejected as group:
            [rejection] = group.exceptions
            assert isinstance(rejection, ConnectionRejected)
            status = rejection.status_code
        assert status == expected
        assert status < 500


CHEAP = PasswordHashing(scrypt_log2_n=6, scrypt_r=4)
printable_latin1 = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=200,
)


@settings(HYPOTHESIS, max_examples=500)
@given(header=st.one_of(printable_latin1, printable_latin1.map(lambda s: "Basic " + s)))
async def test_random_authorization_headers_are_401(header: str) -> None:
    CASES["random Authorization header"] += 1
    auth = StationAuthenticator(
        InMemoryCredentialStore(
            [
                StationCredentials(
                    identity="CS1",
                    security_profile=1,
                    password_hash=hash_password("right-password-0123", hashing=CHEAP),
                )
            ]
        )
    )
    request = ConnectionRequest(
        identity="CS1",
        path="/CS1",
        offered_versions=(V201,),
        offered_subprotocols=("ocpp2.0.1",),
        headers=(("authorization", header),),
        remote="test",
    )
    rejection = await auth(request)
    assert rejection is not None
    assert rejection.status_code == 401


@settings(HYPOTHESIS, max_examples=30)
@given(password=st.binary(min_size=1, max_size=100))
async def test_random_passwords_over_the_wire(password: bytes) -> None:
    CASES["random password over the wire"] += 1
    right = "right-password-0123"
    store = InMemoryCredentialStore(
        [
            StationCredentials(
                identity=name,
                security_profile=1,
                password_hash=hash_password(right, hashing=CHEAP),
            )
            for name in ("CS1", "GOOD")
        ]
    )

    def basic(identity: str, secret: bytes) -> list[tuple[bytes, bytes]]:
        token = base64.b64encode(identity.encode() + b":" + secret)
        return [(b"Authorization", b"Basic " + token)]

    auth = StationAuthenticator(store)
    async with bench(check_request=auth, good_headers=basic("GOOD", right.encode())) as b:
        status = 101
        try:
            async with ws_station(b.port, "/CS1", headers=basic("CS1", password)):
                pass
        except* ConnectionRejected as group:
            [rejection] = group.exceptions
            assert isinstance(rejection, ConnectionRejected)
            status = rejection.status_code
        assert status == (101 if password == right.encode() else 401)
