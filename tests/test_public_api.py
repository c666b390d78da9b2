"""The public surface: everything in ``__all__`` exists, and nothing private leaks into it."""

import importlib
import inspect
import pathlib

import pytest

import ocpp_trio
import ocpp_trio.messages

PUBLIC_MODULES = ["ocpp_trio", "ocpp_trio.messages", "ocpp_trio.errors", "ocpp_trio.testing"]
SNAPSHOTS = pathlib.Path(__file__).parent / "snapshots"


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_matches_the_snapshot(name: str) -> None:
    """The public surface changes only on purpose: a name added or removed must also be added
    to or removed from ``tests/snapshots/<module>.txt``, in the same change."""
    snapshot = SNAPSHOTS / f"{name}.txt"
    expected = snapshot.read_text(encoding="utf-8").split()
    assert sorted(importlib.import_module(name).__all__) == expected


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_names_exist_and_are_sorted_unique(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported))
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr} is in __all__ but missing"
        assert not attr.startswith("_")


def test_public_objects_come_from_the_package() -> None:
    for attr in ocpp_trio.__all__:
        obj = getattr(ocpp_trio, attr)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # type aliases such as StationEvent (a Union)
        mod = inspect.getmodule(obj)
        if mod is not None:
            assert mod.__name__.startswith("ocpp_trio"), (attr, mod.__name__)


def test_core_api_is_exported() -> None:
    for attr in [
        "open_csms",
        "start_csms",
        "serve_csms",
        "Router",
        "Station",
        "CallError",
        "CallTimeoutError",
        "ConnectionLostError",
        "StateError",
        "ErrorCode",
        "Version",
    ]:
        assert attr in ocpp_trio.__all__


def test_versions_have_generated_modules() -> None:
    for mod in ("v1_6", "v2_0_1", "v2_1"):
        module = importlib.import_module(f"ocpp_trio.messages.{mod}")
        assert module.ACTIONS
        assert isinstance(module.VERSION, ocpp_trio.Version)


def test_postgres_names_load_on_first_use() -> None:
    """The PostgreSQL store and the cluster are public, but psycopg is an optional dependency:
    ``import ocpp_trio`` must work without it, and using one of those names then says which
    extra to install."""
    import subprocess
    import sys

    script = "\n".join(
        [
            "import sys",
            "sys.modules['psycopg'] = None  # as if it were not installed",
            "import ocpp_trio",
            "assert 'ocpp_trio.store.postgres' not in sys.modules",
            "assert 'open_postgres_store' in dir(ocpp_trio)",
            "try:",
            "    from ocpp_trio import serve_cluster",
            "except ImportError as exc:",
            "    print(exc)",
            "try:",
            "    ocpp_trio.no_such_name",
            "except AttributeError as exc:",
            "    print(exc)",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "the PostgreSQL store needs psycopg: pip install 'ocpp-trio[postgres]'",
        "module 'ocpp_trio' has no attribute 'no_such_name'",
    ]


def test_postgres_names_are_the_modules_own() -> None:
    from ocpp_trio.csms import cluster
    from ocpp_trio.store import postgres

    assert ocpp_trio.open_postgres_store is postgres.open_postgres_store
    assert ocpp_trio.PostgresStore is postgres.PostgresStore
    assert ocpp_trio.serve_cluster is cluster.serve_cluster
    assert ocpp_trio.ClusterNode is cluster.ClusterNode
