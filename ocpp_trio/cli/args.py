"""Checking the command line before anything runs, and reporting failures on one line.

Everything the user can get wrong on the command line (a port out of range, a URL that is not a
WebSocket one, a file that is not there) is refused by the parser with one line naming the
option and the value, and exit status 2 (argparse's), before a socket is opened or a database is
created.  :func:`stopped_by_user` and :func:`new_database` / :func:`remove_new_database` help the
commands end cleanly: Ctrl-C without a traceback, and no empty database left behind by a server
that could not listen.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import Any, NoReturn

import trio

from ocpp_trio.runtime.groups import leaves

__all__ = [
    "OneLineParser",
    "check_files",
    "client_ssl_context",
    "new_database",
    "package_version",
    "port_number",
    "remove_new_database",
    "stopped_by_user",
    "websocket_url",
]


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (and exit status 2), not the
    usage block first: ``ocpp-trio serve: error: argument --port: '99999' is not a port:
    ports are 0 to 65535 (see --help)``.  Its subcommands' parsers are of this class too.

    It also keeps what was added to it (:attr:`options`, :meth:`subcommand`), from the values
    ``add_argument`` and ``add_subparsers`` return, so that nothing needs argparse's private
    attributes to find them again.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: each option added: its action object, and the ``action=`` it was added with
        self.options: list[tuple[argparse.Action, str]] = []
        self._commands: argparse.Action | None = None
        super().__init__(*args, **kwargs)  # adds --help through add_argument

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.options.append((action, str(kwargs.get("action", "store"))))
        return action

    def add_subparsers(self, **kwargs: Any) -> Any:
        # the object argparse returns is its (private) subparsers action: kept as an Action
        commands = super().add_subparsers(**kwargs)
        self._commands = commands
        return commands

    def subcommand(self, name: str) -> OneLineParser:
        """The parser of subcommand ``name`` (of this class, as argparse makes them).

        Raises:
            LookupError: there is no such subcommand.
        """
        choices = self._commands.choices if self._commands is not None else None
        parser = choices.get(name) if isinstance(choices, Mapping) else None
        if parser is None:
            raise LookupError(name)
        assert isinstance(parser, OneLineParser)  # argparse makes them of the parent's class
        return parser

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def package_version() -> str:
    """The installed version of ocpp-trio (``"unknown"`` when run from a bare checkout)."""
    try:
        return importlib.metadata.version("ocpp-trio")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535 (0: any free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: ports are 0 to 65535")
    return value


def websocket_url(text: str) -> str:
    """An argparse type: a ``ws://`` or ``wss://`` URL with a host (and a valid port)."""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("ws", "wss"):
        raise argparse.ArgumentTypeError(f"{text!r}: the CSMS URL must start with ws:// or wss://")
    try:
        parts.port  # noqa: B018 - urllib checks the port when it is read
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the port must be 0 to 65535") from None
    if not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r}: no host in the URL")
    return text


def check_files(parser: argparse.ArgumentParser, files: Mapping[str, str | None]) -> None:
    """Exit (status 2) naming the option and the file when a file option names no file.

    ``files`` maps each option (``"--tls-cert"``) to its value; unset ones are skipped.
    """
    for option, path in files.items():
        if path is None:
            continue
        if not os.path.exists(path):
            parser.error(f"{option} {path}: no such file")
        if os.path.isdir(path):
            parser.error(f"{option} {path}: a directory, not a file")


def client_ssl_context(
    parser: argparse.ArgumentParser, url: str, ca_file: str | None
) -> ssl.SSLContext | None:
    """The TLS context a client of ``url`` uses: the system's CAs plus ``ca_file`` when given;
    ``None`` for ``ws://``.  Exits (status 2) when ``ca_file`` cannot be used."""
    if ca_file is None:
        return None
    option = f"--ca-file {ca_file}"
    if not url.startswith("wss://"):
        parser.error(f"{option}: a CA file needs a wss:// URL")
    if not os.path.isfile(ca_file):
        parser.error(f"{option}: no such file")
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, OSError, ValueError) as exc:
        parser.error(f"{option}: not a PEM certificate file ({exc})")


def stopped_by_user(exc: BaseException) -> bool:
    """Whether ``exc`` (maybe a group) is only Ctrl-C (and the cancellations it caused)."""
    found = leaves(exc)
    return any(isinstance(e, KeyboardInterrupt) for e in found) and all(
        isinstance(e, KeyboardInterrupt | trio.Cancelled) for e in found
    )


def new_database(path: str) -> bool:
    """Whether opening ``path`` would create the database."""
    return path != ":memory:" and not os.path.exists(path)


def remove_new_database(path: str) -> None:
    """Remove the database a command created at ``path`` (with its WAL files) when it could
    not start, so that a failed start leaves nothing behind."""
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)
