"""The PostgreSQL store's own behaviour (the contract it shares with the other stores is tested in
``test_store.py``): migrations, atomic commits, credentials, and the ownership of stations by
nodes, fenced by the epoch."""

from __future__ import annotations

from functools import partial

import attrs
import psycopg
import pytest
import trio
import trio.lowlevel
from helpers.store import append, observation

from ocpp_trio.domain.credentials import (
    AtomicCredentialStore,
    CredentialStore,
    StationCredentials,
)
from ocpp_trio.errors import SecuritySettingsConflict, StaleEpochError, StoreError
from ocpp_trio.protocol.version import Version
from ocpp_trio.security.rotation import update_record
from ocpp_trio.security.settings import update_station_security
from ocpp_trio.store.postgres import (
    SCHEMA_VERSION,
    migrate,
    open_postgres_store,
    schema_version,
)
from ocpp_trio.store.writer import StationJournal, StoredTransactionIds, StoreWriter

V201 = Version.V201


async def test_migrates_once_and_refuses_a_newer_schema(postgres_dsn: str) -> None:
    async with (
        open_postgres_store(postgres_dsn, node="a") as a,
        open_postgres_store(postgres_dsn, node="b") as b,
    ):
        assert await a.run_sync(schema_version) == SCHEMA_VERSION
        assert await b.run_sync(lambda db: migrate(db)) == SCHEMA_VERSION  # nothing left
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="schema version 99"):
        async with open_postgres_store(postgres_dsn):
            pass  # pragma: no cover


async def test_unreachable_database_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="PostgreSQL"):
        async with open_postgres_store("postgresql://nobody@127.0.0.1:1/none", connect_timeout=0.5):
            pass  # pragma: no cover


async def test_credentials(postgres_dsn: str) -> None:
    record = StationCredentials(identity="CS1", security_profile=2, certificate_common_name="SN")
    async with open_postgres_store(postgres_dsn) as store:
        assert await store.credentials.get("CS1") is None
        await store.credentials.put(record)
        await store.credentials.put(record)  # replaces
        assert await store.credentials.get("CS1") == record
        await store.run_sync(lambda db: db.execute("UPDATE credentials SET record = '{'"))
        with pytest.raises(StoreError, match="unreadable credentials"):
            await store.credentials.get("CS1")
        await store.credentials.delete("CS1")
        assert await store.credentials.get("CS1") is None


async def test_a_claim_by_another_node_fences_the_old_owner(postgres_dsn: str) -> None:
    async with (
        open_postgres_store(postgres_dsn, node="a", node_timeout=60) as a,
        open_postgres_store(postgres_dsn, node="b", node_timeout=60) as b,
    ):
        assert await a.owner("CS1") is None
        first = await a.claim("CS1", V201)
        owner = await b.owner("CS1")
        assert owner is not None
        assert (owner.node, owner.epoch, owner.alive) == ("a", first.epoch, True)
        writer_a = StoreWriter(a)
        journal_a = StationJournal(writer_a, "CS1", epoch=first.epoch, last_seq=0, unfolded=0)
        journal_a.record(observation(0))
        await writer_a.flush()
        await journal_a.durable()
        # the station reconnects through node b: b claims it and continues the journal
        second = await b.claim("CS1", V201)
        assert (second.epoch, second.last_seq) == (first.epoch + 1, 1)
        assert (await a.owner("CS1")).node == "b"  # type: ignore[union-attr]
        # every later write of a is refused, and nothing of it is stored
        journal_a.record(observation(1))
        await writer_a.flush()
        with pytest.raises(StaleEpochError):
            await journal_a.durable()
        assert writer_a.statistics().stale == 1
        assert await b.commit([append("CS1", second.epoch, 2)]) == frozenset()
        record = await b.load("CS1")
        assert record is not None
        assert [e.seq for e in record.journal] == [1, 2]
        # releasing with an old epoch (or by another node) does nothing
        assert not await a.release("CS1", first.epoch)
        assert not await a.release("CS1", second.epoch)
        assert await b.release("CS1", second.epoch)
        assert (await a.owner("CS1")).node is None  # type: ignore[union-attr]


async def test_claims_wait_for_a_commit_that_holds_the_row(postgres_dsn: str) -> None:
    # a commit locks its stations' rows until it ends: a claim in between waits, so the
    # commit's epoch check stays true until its writes are in
    async with open_postgres_store(postgres_dsn, node="a") as a:
        await a.claim("CS1", V201)
        holding = trio.Event()
        release = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def hold(db: psycopg.Connection[tuple[object, ...]]) -> None:
            db.execute("SELECT epoch FROM stations WHERE identity = 'CS1' FOR SHARE")
            trio.from_thread.run_sync(holding.set, trio_token=token)
            trio.from_thread.run(release.wait, trio_token=token)

        claimed: list[int] = []

        async def claim_elsewhere() -> None:
            async with open_postgres_store(postgres_dsn, node="b") as b:
                claimed.append((await b.claim("CS1", V201)).epoch)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.run_sync, hold)
            await holding.wait()
            nursery.start_soon(claim_elsewhere)
            await trio.sleep(0.5)
            assert claimed == []  # still waiting for the row
            release.set()
        assert claimed == [2]


async def test_nodes_heartbeat_and_leave(postgres_dsn: str) -> None:
    async with open_postgres_store(postgres_dsn, node="a", heartbeat_interval=0.05) as a:
        async with open_postgres_store(postgres_dsn, node="b") as b:
            await b.claim("CS1", V201)
            first = {n.node: n for n in await a.nodes()}
            assert set(first) == {"a", "b"}
            assert all(n.alive for n in first.values())
            await trio.sleep(0.2)
            later = {n.node: n for n in await a.nodes()}
            assert later["a"].heartbeat_at > first["a"].heartbeat_at
        # b left: its row is gone and its stations have no owner
        assert [n.node for n in await a.nodes()] == ["a"]
        assert (await a.owner("CS1")).node is None  # type: ignore[union-attr]
        # a node that stops beating counts as dead after node_timeout
        await a.run_sync(
            lambda db: db.execute(
                "INSERT INTO nodes VALUES ('gone', now() - interval '1 hour',"
                " now() - interval '1 hour')"
            )
        )
        gone = {n.node: n.alive for n in await a.nodes()}
        assert gone == {"a": True, "gone": False}


async def test_the_body_exception_passes_unwrapped(postgres_dsn: str) -> None:
    with pytest.raises(KeyError):
        async with open_postgres_store(postgres_dsn):
            raise KeyError("mine")


async def test_security_settings_changes_from_two_nodes_are_never_lost(
    postgres_dsn: str,
) -> None:
    # each change reads the record's names and writes them back with one more: with a lock
    # inside each process only, the two nodes would overwrite each other's changes
    record = StationCredentials(identity="CS1", security_profile=3)
    per_node = 15
    async with (
        open_postgres_store(postgres_dsn, node="a", pool_size=4) as a,
        open_postgres_store(postgres_dsn, node="b", pool_size=4) as b,
    ):
        assert isinstance(a.credentials, AtomicCredentialStore)
        await a.credentials.put(record)

        async def add_names(store: CredentialStore, node: str) -> None:
            for n in range(per_node):
                name = f"{node}-{n}"

                def change(current: StationCredentials, name: str = name) -> StationCredentials:
                    names = (*current.certificate_common_names, name)
                    return attrs.evolve(current, certificate_common_names=names)

                await update_record(store, "CS1", change)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(add_names, a.credentials, "a")
            nursery.start_soon(add_names, b.credentials, "b")
        final = await b.credentials.get("CS1")
        assert final is not None
        assert sorted(final.certificate_common_names) == sorted(
            f"{node}-{n}" for node in "ab" for n in range(per_node)
        )
        # what a change raises reaches the caller, and nothing is written
        with pytest.raises(SecuritySettingsConflict):
            await update_station_security(
                a.credentials, "CS1", certificate_common_names=["x"], expected=record
            )
        assert await a.credentials.get("CS1") == final
        # no record: the change is not run
        assert await a.credentials.update("nobody", lambda r: pytest.fail("ran")) is None


async def test_two_nodes_making_the_first_record_of_a_station_lose_nothing(
    postgres_dsn: str,
) -> None:
    # both nodes make a station's first record at once: one creates it, the other's change
    # applies to it (an upsert by each would drop one of the two names)
    async with (
        open_postgres_store(postgres_dsn, node="a", pool_size=4) as a,
        open_postgres_store(postgres_dsn, node="b", pool_size=4) as b,
    ):

        async def add(store: CredentialStore, identity: str, name: str) -> None:
            def change(current: StationCredentials) -> StationCredentials:
                names = (*current.certificate_common_names, name)
                return attrs.evolve(current, certificate_common_names=names)

            def create() -> StationCredentials:
                return StationCredentials(
                    identity=identity, security_profile=3, certificate_common_names=(name,)
                )

            await update_record(store, identity, change, create=create)

        identities = [f"NEW{n}" for n in range(20)]
        async with trio.open_nursery() as nursery:
            for identity in identities:
                nursery.start_soon(add, a.credentials, identity, "a")
                nursery.start_soon(add, b.credentials, identity, "b")
        for identity in identities:
            made = await a.credentials.get(identity)
            assert made is not None
            assert sorted(made.certificate_common_names) == ["a", "b"]


async def test_transaction_ids_are_unique_across_nodes(postgres_dsn: str) -> None:
    async with (
        open_postgres_store(postgres_dsn, node="a") as a,
        open_postgres_store(postgres_dsn, node="b") as b,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(a.transaction_ids.run)
        await nursery.start(b.transaction_ids.run)
        handed: list[int] = []
        for _ in range(3):  # three blocks each, interleaved
            for ids in (a.transaction_ids, b.transaction_ids):
                for _ in range(600):  # past half a block: the next one is reserved
                    handed.append(ids.allocate("CS1"))
                while ids._spare is None:  # noqa: ASYNC110 - the reservation runs in a thread
                    await trio.sleep(0.01)
                for _ in range(400):
                    handed.append(ids.allocate("CS1"))
        assert len(set(handed)) == len(handed)
        assert min(handed) == 1
        counter = await a.counter("transaction_id")
        assert counter is not None
        assert counter > max(handed)
        nursery.cancel_scope.cancel()
    # a single process on the same database continues after every id handed out
    async with open_postgres_store(postgres_dsn, node="c") as c:
        ids = StoredTransactionIds(StoreWriter(c))
        await ids.load()
        assert ids.allocate("CS3") == counter


async def test_a_node_frozen_mid_transaction_does_not_block_claims(postgres_dsn: str) -> None:
    # a node stopped (SIGSTOP) while its commit holds the rows: PostgreSQL ends its session
    # after idle_in_transaction_timeout, and the claim of another node goes through
    async with open_postgres_store(postgres_dsn, node="a", idle_in_transaction_timeout=0.3) as a:
        await a.claim("CS1", V201)
        holding = trio.Event()
        release = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def frozen(db: psycopg.Connection[tuple[object, ...]]) -> None:
            db.execute("SELECT epoch FROM stations WHERE identity = 'CS1' FOR SHARE")
            trio.from_thread.run_sync(holding.set, trio_token=token)
            trio.from_thread.run(release.wait, trio_token=token)
            db.execute("SELECT 1")  # the node wakes up: its session is gone

        async with trio.open_nursery() as nursery:

            async def run_frozen() -> None:
                with pytest.raises(StoreError):
                    await a.run_sync(frozen)

            nursery.start_soon(run_frozen)
            await holding.wait()
            async with open_postgres_store(postgres_dsn, node="b") as b:
                with trio.fail_after(10):
                    assert (await b.claim("CS1", V201)).epoch == 2
            release.set()
        # the pool replaces the broken connection: a works again
        assert (await a.load("CS1")).epoch == 2  # type: ignore[union-attr]


async def test_a_claim_ends_a_stuck_transaction_of_another_node(postgres_dsn: str) -> None:
    # a node frozen in the middle of a statement is not "idle in transaction": a claim that
    # waits longer than lock_timeout for the row ends the other nodes' old transactions
    async with open_postgres_store(postgres_dsn, node="a") as a:
        await a.claim("CS1", V201)
        holding = trio.Event()

        def stuck() -> None:
            with psycopg.connect(postgres_dsn, application_name="ocpp-trio") as db:
                db.execute("SELECT epoch FROM stations WHERE identity = 'CS1' FOR SHARE")
                trio.from_thread.run_sync(holding.set)
                with pytest.raises(psycopg.OperationalError):
                    db.execute("SELECT pg_sleep(60)")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(trio.to_thread.run_sync, stuck))
            await holding.wait()
            with trio.fail_after(30):
                assert (await a.claim("CS1", V201)).epoch == 2
