"""One-shot identities: where any identity may connect, those that never booted are forgotten
(memory, store, admin API) once they have been gone ``forget_unbooted_after`` seconds.
"""

from __future__ import annotations

import datetime
from functools import partial
from pathlib import Path
from typing import Any

import trio
from helpers.admin import TOKEN, http
from helpers.station import FakeStation, boot_request, boot_router

from ocpp_trio import Version
from ocpp_trio.cli.main import _config, build_parser
from ocpp_trio.csms.admin import AdminConfig, AdminInfo, serve_admin
from ocpp_trio.csms.core import CSMS, CSMSConfig, open_csms
from ocpp_trio.store.memory import MemoryStore
from ocpp_trio.store.sqlite import open_sqlite_store
from ocpp_trio.transport.base import CloseCode, memory_transport_pair

V201 = Version.V201


async def visit(csms: CSMS, nursery: trio.Nursery, identity: str, *, boot: bool) -> None:
    """Connect as ``identity``, boot or not, and leave."""
    ours, theirs = memory_transport_pair()
    await nursery.start(partial(csms.serve_station, ours, identity, V201))
    if boot:
        await FakeStation(theirs, V201).call(boot_request(V201))
    await theirs.aclose(CloseCode.NORMAL)
    while csms.get_station(identity) is not None:  # noqa: ASYNC110
        await trio.sleep(0.01)


async def test_identities_that_never_booted_are_forgotten(autojump_clock: Any) -> None:
    store = MemoryStore()
    config = CSMSConfig(store=store, forget_unbooted_after=10.0)
    async with (
        open_csms(boot_router(), None, None, config=config) as csms,
        trio.open_nursery() as nursery,
    ):
        csms.add_station("SEEDED")
        for n in range(5):
            await visit(csms, nursery, f"ONE-SHOT-{n}", boot=False)
        await visit(csms, nursery, "BOOTED", boot=True)
        await visit(csms, nursery, "BACK-AGAIN", boot=False)
        assert {f"ONE-SHOT-{n}" for n in range(5)} <= set(await store.identities())
        await trio.sleep(8)
        await visit(csms, nursery, "BACK-AGAIN", boot=False)  # the clock starts again
        await trio.sleep(8)
        assert csms.machines("ONE-SHOT-0") is None
        assert csms.machines("BACK-AGAIN") is not None
        await trio.sleep(8)
        assert csms.machines("BACK-AGAIN") is None
        for kept in ("SEEDED", "BOOTED"):
            assert csms.machines(kept) is not None
        assert set(await store.identities()) == {"BOOTED"}  # SEEDED never connected
        assert csms.statistics().stations_forgotten == 6
        nursery.cancel_scope.cancel()


async def test_kept_without_the_setting(autojump_clock: Any) -> None:
    async with open_csms(boot_router(), None, None) as csms, trio.open_nursery() as nursery:
        await visit(csms, nursery, "ONE-SHOT", boot=False)
        await trio.sleep(3600)
        assert csms.machines("ONE-SHOT") is not None
        nursery.cancel_scope.cancel()


async def test_the_store_sweeps_its_own_leftovers_at_start(tmp_path: Path) -> None:
    db = tmp_path / "csms.db"
    async with open_sqlite_store(db) as store:
        async with (
            open_csms(boot_router(), None, None, config=CSMSConfig(store=store)) as csms,
            trio.open_nursery() as nursery,
        ):
            await visit(csms, nursery, "OLD-ONE-SHOT", boot=False)
            await visit(csms, nursery, "OLD-BOOTED", boot=True)
            nursery.cancel_scope.cancel()
        assert set(await store.identities()) == {"OLD-ONE-SHOT", "OLD-BOOTED"}
        future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
        assert await store.forget_unbooted(future - datetime.timedelta(days=2)) == []
        # a restart: the unbooted leftover of the earlier run goes, the booted one stays
        config = CSMSConfig(store=store, forget_unbooted_after=0.001)
        await trio.sleep(0.01)
        async with open_csms(boot_router(), None, None, config=config):
            pass
        assert await store.identities() == ["OLD-BOOTED"]
        memory = MemoryStore()
        await memory.claim("X", V201)
        assert await memory.forget_unbooted(future) == ["X"]


async def test_the_admin_api_forgets_them_too() -> None:
    config = CSMSConfig(forget_unbooted_after=0.1)
    with trio.fail_after(10):
        async with (
            open_csms(boot_router(), None, None, config=config) as csms,
            trio.open_nursery() as nursery,
        ):
            info: AdminInfo = await nursery.start(
                partial(serve_admin, csms, "127.0.0.1", 0, config=AdminConfig(token=TOKEN))
            )
            await visit(csms, nursery, "ONE-SHOT", boot=False)
            await visit(csms, nursery, "BOOTED", boot=True)
            listed = await http(info.port, "GET", "/stations")
            assert {s["identity"] for s in listed.body["stations"]} == {"ONE-SHOT", "BOOTED"}
            while csms.machines("ONE-SHOT") is not None:  # noqa: ASYNC110
                await trio.sleep(0.05)
            listed = await http(info.port, "GET", "/stations")
            assert {s["identity"] for s in listed.body["stations"]} == {"BOOTED"}
            assert (await http(info.port, "GET", "/stations/ONE-SHOT")).status == 404
            nursery.cancel_scope.cancel()


def test_serve_forgets_them_only_without_a_stations_file() -> None:
    parser = build_parser()
    args = parser.parse_args(["serve"])
    assert _config(args).forget_unbooted_after == 600.0
    args = parser.parse_args(["serve", "--forget-unbooted-after", "0"])
    assert _config(args).forget_unbooted_after is None
    args = parser.parse_args(["serve", "--stations", "stations.toml"])
    assert _config(args).forget_unbooted_after is None
