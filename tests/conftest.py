"""Fixtures shared by the test files: a throwaway PostgreSQL cluster (see ``_cluster.py``)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from _cluster import PostgresCluster, postgres_bin


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One PostgreSQL server for the whole run, started on first use.

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
