"""Real parts for the cluster tests and benchmark: a throwaway PostgreSQL cluster and HAProxy.

Both are started from their binaries in a temporary directory, on free loopback ports, and
stopped (and their directories removed) by :meth:`stop`.  PostgreSQL refuses to run as root: when
this process is root, ``initdb`` and ``postgres`` run as the ``postgres`` system user (which the
Debian package creates) through ``setpriv``, in a directory that user owns.

Binaries: ``$OCPP_TRIO_PG_BIN`` or the newest ``/usr/lib/postgresql/*/bin`` (Debian's layout) or
``initdb`` on ``$PATH``; ``haproxy`` on ``$PATH`` or in ``/usr/sbin``.  ``.ci/run`` installs them.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import trio
from interop.harness import serve_on_loopback

#: where the repository's deployment files are
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
#: the admin API token every node of a test cluster shares
ADMIN_TOKEN = "a-test-cluster-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def postgres_bin() -> Path | None:
    """The directory of PostgreSQL's server binaries, or ``None``."""
    given = os.environ.get("OCPP_TRIO_PG_BIN")
    if given:
        return Path(given)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for directory in candidates:
        if (directory / "initdb").exists():
            return directory
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def haproxy_bin() -> Path | None:
    """The ``haproxy`` binary, or ``None``."""
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    return Path(found) if found else None


def _as_postgres_user() -> list[str]:
    """The prefix that runs a command as the ``postgres`` user when we are root."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", "--"]


class PostgresCluster:
    """A PostgreSQL server of its own (see the module docstring).

    Args:
        fsync: keep PostgreSQL's disk syncs (off by default: the tests kill nodes, not the
            database, and a test run need not survive a power cut).
    """

    def __init__(self, *, fsync: bool = False) -> None:
        binaries = postgres_bin()
        if binaries is None:
            raise FileNotFoundError("PostgreSQL's initdb and postgres binaries are not installed")
        self.bin = binaries
        self.fsync = fsync
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ocpp-trio-pg-"))
        self.process: subprocess.Popen[bytes] | None = None
        self._databases = 0

    @property
    def dsn(self) -> str:
        return self.dsn_of("postgres")

    def dsn_of(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        prefix = _as_postgres_user()
        if prefix:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        data = self.dir / "data"
        subprocess.run(
            [
                *prefix,
                str(self.bin / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.dir),
            "max_connections": "200",
            "fsync": "on" if self.fsync else "off",
            "synchronous_commit": "on" if self.fsync else "off",
            "full_page_writes": "on" if self.fsync else "off",
        }
        options = [f"-c{key}={value}" for key, value in settings.items()]
        log = open(self.dir / "postgres.log", "wb")  # noqa: SIM115 - kept for the process
        self.process = subprocess.Popen(
            [*prefix, str(self.bin / "postgres"), "-D", str(data), *options],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "PostgreSQL did not start:\n" + (self.dir / "postgres.log").read_text()
                    ) from None
                time.sleep(0.1)

    def create_database(self) -> str:
        """A new empty database; returns its DSN."""
        self._databases += 1
        name = f"t{self._databases}"
        with psycopg.connect(self.dsn, autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
        return self.dsn_of(name)

    def drop_database(self, dsn: str) -> None:
        name = dsn.rsplit("/", 1)[1]
        with psycopg.connect(self.dsn, autocommit=True) as db:
            db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # "fast" shutdown
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- nodes, HAProxy and the simulator, as processes of a trio test ------------------------------


#: the admin API token every node is given
ADMIN_TOKEN = "cluster-test-admin-token"


def node_command(node: str, port: int, admin_port: int, dsn: str, *extra: str) -> list[str]:
    """``ocpp-trio serve`` as one node of the cluster."""
    return serve_on_loopback(
        "--port",
        str(port),
        "--admin-port",
        str(admin_port),
        "--db",
        dsn,
        "--node",
        node,
        "--payload-chars",
        "0",
        "--admin-token",
        ADMIN_TOKEN,
        *extra,
    )


def haproxy_command(front: int, nodes: list[tuple[int, int]], stats: int) -> list[str]:
    """HAProxy with the repository's ``deploy/haproxy.cfg``, its addresses given through the
    environment (``nodes``: OCPP and admin port of each of the three nodes)."""
    binary = haproxy_bin()
    if binary is None:
        raise FileNotFoundError("haproxy is not installed")
    env = [f"OCPP_FRONT=127.0.0.1:{front}", f"OCPP_STATS=127.0.0.1:{stats}"]
    for n, (port, admin) in enumerate(nodes, 1):
        env += [f"OCPP_NODE{n}=127.0.0.1:{port}", f"OCPP_NODE{n}_HEALTH={admin}"]
    return ["env", *env, str(binary), "-db", "-f", str(DEPLOY / "haproxy.cfg")]


def simulate_command(url: str, stations: int, duration: float, *extra: str) -> list[str]:
    """``ocpp-trio simulate`` printing its JSON summary at the end."""
    return [
        sys.executable,
        "-m",
        "ocpp_trio",
        "simulate",
        "--url",
        url,
        "--stations",
        str(stations),
        "--duration",
        str(duration),
        "--quiet",
        *extra,
    ]


async def http_json(
    port: int, method: str, path: str, body: object = None, *, limit: float = 10.0
) -> tuple[int, Any]:
    """One HTTP/1.1 request to 127.0.0.1:``port`` (the admin API); ``(status, JSON body)``.

    Raises:
        OSError: the connection failed.
        trio.TooSlowError: no complete answer within ``limit`` seconds.
    """
    data = b"" if body is None else json.dumps(body).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Authorization: Bearer {ADMIN_TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    with trio.fail_after(limit):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(head + data)
            answer = b""
            while chunk := await stream.receive_some(65536):
                answer += chunk
    header, _, payload = answer.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    return status, json.loads(payload) if payload else None
