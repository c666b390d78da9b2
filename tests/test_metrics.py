"""Prometheus metrics: a scripted session over memory transports, then ``GET /metrics`` over a
real socket, parsed with prometheus_client's own text parser; the values must move as the
session did."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import h11
import pytest
import trio
import trio.testing
from helpers.admin import read_raw
from helpers.station import boot_router, waiting_router
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ocpp_trio import (
    CSMS,
    CallError,
    CallTimeoutError,
    ConnectionRequest,
    CSMSConfig,
    ErrorCode,
    Exchange,
    InMemoryCredentialStore,
    MemoryStore,
    SecurityProfile,
    Station,
    StationAuthenticator,
    StationConfig,
    StationCredentials,
    Version,
    csms_collector,
    hash_password,
    open_csms,
)
from ocpp_trio.csms.admin import AdminInfo, serve_admin
from ocpp_trio.messages import v2_0_1
from ocpp_trio.testing import FakeStation, open_fake_station

TIMEOUT = 20
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def scrape(info: AdminInfo) -> tuple[str, Samples]:
    """``GET /metrics`` over a fresh connection; returns the content type and the samples."""
    headers = [("Host", f"127.0.0.1:{info.port}"), ("Accept", "text/plain")]
    token = getattr(info, "token", "")  # an admin API that requires a bearer token
    if token:
        headers.append(("Authorization", f"Bearer {token}"))
    conn = h11.Connection(h11.CLIENT)
    async with await trio.open_tcp_stream("127.0.0.1", info.port) as stream:
        request = h11.Request(method="GET", target="/metrics", headers=headers)
        await stream.send_all(conn.send(request) + (conn.send(h11.EndOfMessage()) or b""))
        answer = await read_raw(stream, conn)
    assert answer.status == 200, answer.body
    content_type = answer.headers["content-type"]
    content = answer.body
    return content_type, samples(content.decode("utf-8"))


def authenticator() -> StationAuthenticator:
    store = InMemoryCredentialStore(
        [
            StationCredentials(
                identity="CS1",
                security_profile=SecurityProfile.BASIC_AUTH,
                password_hash=hash_password("a-long-random-password-1"),
            )
        ]
    )
    return StationAuthenticator(store)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def upgrade(identity: str, authorization: str | None = None) -> ConnectionRequest:
    headers = (("authorization", authorization),) if authorization else ()
    return ConnectionRequest(
        identity=identity,
        path=f"/{identity}",
        offered_versions=(Version.V201,),
        offered_subprotocols=("ocpp2.0.1",),
        headers=headers,
        remote="127.0.0.1:1",
    )


@asynccontextmanager
async def metrics_csms(
    auth: StationAuthenticator, release: trio.Event
) -> AsyncIterator[tuple[CSMS, AdminInfo]]:
    config = CSMSConfig(store=MemoryStore(), station=StationConfig(call_timeout=0.2))
    async with (
        open_csms(waiting_router(release), None, None, config=config, check_request=auth) as csms,
        trio.open_nursery() as nursery,
    ):
        info: AdminInfo = await nursery.start(partial(serve_admin, csms, "127.0.0.1", 0))
        yield csms, info
        nursery.cancel_scope.cancel()


async def answer_reset(fake: FakeStation, error: bool = False) -> None:
    call = await fake.expect_call()
    if error:
        await fake.answer_error(call, ErrorCode.NOT_SUPPORTED, "no")
    else:
        await fake.answer(call, v2_0_1.ResetResponse(status=v2_0_1.ResetStatusEnumType.ACCEPTED))


RESET = v2_0_1.ResetRequest(type=v2_0_1.ResetEnumType.ON_IDLE)


async def test_metrics_follow_a_scripted_session() -> None:
    release = trio.Event()
    auth = authenticator()
    with trio.fail_after(TIMEOUT):
        async with (
            metrics_csms(auth, release) as (csms, info),
            open_fake_station(csms, "CS1") as fake,
        ):
            content_type, before = await scrape(info)
            assert content_type.startswith("text/plain")
            connected = value(
                before, "ocpp_trio_stations_connected", version="2.0.1", state="connected"
            )
            assert connected == 1
            assert value(before, "ocpp_trio_calls_received_total", action="Heartbeat",
                         outcome="error") == 0  # fmt: skip

            # the station's CALLs: refused before boot, answered, broken, unsupported
            refused = await fake.exchange(v2_0_1.HeartbeatRequest())
            assert isinstance(refused, CallError)
            await fake.boot()
            await fake.call(v2_0_1.HeartbeatRequest())
            await fake.call(v2_0_1.HeartbeatRequest())
            frame = await fake.call_raw(v2_0_1.HeartbeatRequest())
            assert frame[0] == 3
            await fake.send_raw([2, "x1", "AcmeDance", {}])
            assert (await fake.transport.get_message()).startswith('[4,"x1","NotImplemented"')
            unsupported = await fake.exchange(
                v2_0_1.AuthorizeRequest(
                    id_token=v2_0_1.IdTokenType(id_token="T", type=v2_0_1.IdTokenEnumType.ISO14443)
                )
            )
            assert isinstance(unsupported, CallError)

            # the CSMS's CALLs: answered, refused, timed out
            station = csms.get_station("CS1")
            assert station is not None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_reset, fake)
                await station.call(RESET)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_reset, fake, True)
                with pytest.raises(CallError):
                    await station.call(RESET)
            with pytest.raises(CallTimeoutError):
                await station.call(RESET)
            await fake.expect_call()  # the one never answered

            # authentication: one accepted, one wrong password, one unknown station
            assert await auth(upgrade("CS1", basic("CS1", "a-long-random-password-1"))) is None
            assert await auth(upgrade("CS1", basic("CS1", "wrong"))) is not None
            assert await auth(upgrade("CS9")) is not None

            # a stuck extra handler: the first exchange reaches it, the next ones are dropped
            async def stuck(station: Station, exchange: Exchange) -> None:
                await trio.sleep_forever()

            csms.add_extra_handler(stuck, buffer=0)
            await trio.testing.wait_all_tasks_blocked()
            for _ in range(3):
                await fake.call(v2_0_1.HeartbeatRequest())

            # a handler that waits: the CALLs behind it queue up
            for n in range(3):
                await fake.send_raw([2, f"d{n}", "DataTransfer", {"vendorId": "acme"}])
            await trio.testing.wait_all_tasks_blocked()
            _, during = await scrape(info)
            assert value(during, "ocpp_trio_handler_queue_calls") == 2
            assert value(during, "ocpp_trio_handler_queue_max_calls") == 2
            release.set()
            for _ in range(3):
                json.loads(await fake.transport.get_message())

            _, after = await scrape(info)

    def got(name: str, **labels: str) -> float:
        return value(after, name, **labels)

    assert got("ocpp_trio_stations_connected", version="2.0.1", state="accepted") == 1
    assert got("ocpp_trio_stations_connected", version="2.0.1", state="connected") == 0
    assert got("ocpp_trio_connections_total") == 1
    # station CALLs by action and outcome
    assert got("ocpp_trio_calls_received_total", action="Heartbeat", outcome="error") == 1
    assert got("ocpp_trio_calls_received_total", action="Heartbeat", outcome="result") == 6
    assert got("ocpp_trio_calls_received_total", action="BootNotification", outcome="result") == 1
    assert got("ocpp_trio_calls_received_total", action="Authorize", outcome="error") == 1
    assert got("ocpp_trio_calls_received_total", action="unknown", outcome="error") == 1
    assert got("ocpp_trio_calls_received_total", action="DataTransfer", outcome="result") == 3
    # our CALLs
    assert got("ocpp_trio_calls_sent_total", action="Reset", outcome="result") == 1
    assert got("ocpp_trio_calls_sent_total", action="Reset", outcome="error") == 1
    assert got("ocpp_trio_calls_sent_total", action="Reset", outcome="timeout") == 1
    # CALLERRORs by code, both ways
    assert got("ocpp_trio_callerrors_total", direction="sent", code="SecurityError") == 1
    assert got("ocpp_trio_callerrors_total", direction="sent", code="NotImplemented") == 1
    assert got("ocpp_trio_callerrors_total", direction="sent", code="NotSupported") == 1
    assert got("ocpp_trio_callerrors_total", direction="received", code="NotSupported") == 1
    # latency histograms: every observation is counted once, in order of the buckets
    assert got("ocpp_trio_call_duration_seconds_count", action="Reset") == 3
    assert got("ocpp_trio_call_duration_seconds_bucket", action="Reset", le="+Inf") == 3
    assert got("ocpp_trio_call_duration_seconds_sum", action="Reset") >= 0.2  # the timeout
    assert got("ocpp_trio_handling_duration_seconds_count", action="Heartbeat") == 7
    assert got("ocpp_trio_handling_duration_seconds_count", action="DataTransfer") == 3
    assert got("ocpp_trio_handling_duration_seconds_count", action="unknown") == 0
    buckets = sorted(
        (float(dict(labels)["le"]), n)
        for (name, labels), n in after.items()
        if name == "ocpp_trio_handling_duration_seconds_bucket"
        and dict(labels)["action"] == "Heartbeat"
    )
    counts = [n for _, n in buckets]
    assert counts == sorted(counts)
    assert counts[-1] == 7
    # queues drained
    assert got("ocpp_trio_handler_queue_calls") == 0
    assert got("ocpp_trio_store_queue_writes") == 0
    # the store: the boot was written ahead of its answer
    assert got("ocpp_trio_store_commits_total") >= 1
    commits = got("ocpp_trio_store_commit_duration_seconds_count")
    assert commits >= got("ocpp_trio_store_commits_total")
    # the stuck extra handler took one exchange and missed the rest
    assert got("ocpp_trio_extra_handler_dropped_total") >= 2
    # authentication
    assert got("ocpp_trio_auth_accepted_total") == 1
    assert got("ocpp_trio_auth_failures_total", reason="bad_credentials") == 1
    assert got("ocpp_trio_auth_failures_total", reason="unknown") == 1
    assert got("ocpp_trio_auth_failures_total", reason="wrong_profile") == 0
    # counters never went down
    for key, was in before.items():
        if key[0].endswith(("_total", "_count", "_bucket")):
            assert after.get(key, 0) >= was, key


async def test_an_application_registers_the_collector(autojump_clock: Any) -> None:
    async with open_csms(boot_router(), None, None) as csms, open_fake_station(csms) as fake:
        await fake.boot()
        await trio.testing.wait_all_tasks_blocked()  # counted once the answer is out
        registry = CollectorRegistry()
        registry.register(csms_collector(csms))
        found = samples(generate_latest(registry).decode())
        assert value(found, "ocpp_trio_stations_connected", version="2.0.1", state="accepted")
        assert value(
            found, "ocpp_trio_calls_received_total", action="BootNotification", outcome="result"
        )
        # no store, no authenticator: their metrics are left out rather than faked
        assert not any(name.startswith("ocpp_trio_store_") for name, _ in found)
        assert not any(name.startswith("ocpp_trio_auth_") for name, _ in found)


def test_counts_survive_the_stations(autojump_clock: Any) -> None:
    # the tally belongs to the CSMS: a station that goes away takes none of it along
    from ocpp_trio.runtime.tally import CallTally

    tally = CallTally()
    tally.answered("Heartbeat", None, 0.0004)
    tally.answered("Heartbeat", CallError(ErrorCode.SECURITY_ERROR, "no"), 0.002)
    tally.call_done("Reset", CallError("VendorCode", "odd"), 61.0)
    stats = tally.statistics()
    assert stats.received == {("Heartbeat", "result"): 1, ("Heartbeat", "error"): 1}
    assert stats.errors_sent == {"SecurityError": 1}
    assert stats.errors_received == {"other": 1}
    histogram = stats.handling["Heartbeat"]
    assert histogram.count == 2
    assert histogram.counts[0] == 1  # <= 0.5 ms
    assert stats.round_trip["Reset"].counts[-1] == 1  # above the last bound
    assert isinstance(stats.sent, Mapping)
