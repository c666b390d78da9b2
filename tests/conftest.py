"""Shared fixtures of the test suite.

Helpers shared between test modules live in the ``helpers`` package next to this file
(``from helpers.station import ...``); test modules never import each other.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

# the helpers package is imported by its top-level name, whatever pytest's import mode
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers.cluster import PostgresCluster, postgres_bin
from helpers.station import boot_router
from helpers.store import STORE_KINDS, open_store
from helpers.tls import Pki, make_pki

from ocpp_trio import CSMS, open_csms
from ocpp_trio.store.base import Store


@pytest.fixture
async def csms() -> AsyncIterator[CSMS]:
    """A CSMS without a listener (stations come in over memory pairs), accepting every boot."""
    async with open_csms(boot_router(), None, None) as running:
        yield running


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL server for the whole run, started on first use.

    Without the binaries the tests that need it are skipped, except under CI (``CI`` set),
    where ``.ci/run`` installs them and their absence is a failure.
    """
    if postgres_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL's binaries are missing (.ci/run installs postgresql-15)")
        pytest.skip("PostgreSQL's binaries are not installed")
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_dsn(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A new empty database in the shared cluster, dropped after the test."""
    dsn = postgres_cluster.create_database()
    try:
        yield dsn
    finally:
        postgres_cluster.drop_database(dsn)


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Which store a contract test runs against, and where it keeps its data."""
    kind: str = request.param
    if kind == "postgres":
        return kind, request.getfixturevalue("postgres_dsn")
    return kind, str(tmp_path / "store.db")


@pytest.fixture
async def store(store_kind: tuple[str, str]) -> AsyncIterator[Store]:
    """The store of ``store_kind``, open for the test."""
    async with open_store(*store_kind) as opened:
        yield opened


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A throwaway PKI (trustme): CA, server and client certificates."""
    return make_pki(tmp_path)
