"""``ocpp-trio export transactions``: the transaction ledger of a database, as CSV.

``ocpp-trio export transactions --since 2024-05-01 [--until 2024-06-01] [--station ID]
[--id-token TOKEN] [--db FILE] [--output FILE]`` writes one row per finished transaction that
ended in ``[since, until)``, oldest end first, with a header row naming the columns
(:data:`~ocpp_trio.csms.ledger.FIELDS`): times in UTC (RFC 3339), energies in Wh, an unknown
value as an empty cell, ``provisional`` as ``true``/``false``, ``missing_seq_nos`` space-
separated, ``samples`` the number of meter samples kept.  It reads the database of a running
``ocpp-trio serve`` safely (SQLite in WAL mode lets readers in while the server writes).

Exit status: 0 done, 1 the database is missing or unreadable, 2 a command-line error.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from typing import Any, TextIO

import trio

from ocpp_trio.csms.ledger import FIELDS, Ledger, entry_fields, parse_time
from ocpp_trio.errors import StoreError
from ocpp_trio.store.sqlite import open_sqlite_store

__all__ = ["add_export_parser", "export_transactions", "run_export"]

log = logging.getLogger("ocpp_trio.cli")


def _time(text: str) -> Any:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_export_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``export`` subcommand to the subparsers ``commands``."""
    export: argparse.ArgumentParser = commands.add_parser(
        "export",
        help="export what the CSMS keeps (the finished transactions) as CSV",
        description="Export what a CSMS database keeps, as CSV.",
    )
    what = export.add_subparsers(dest="what", required=True, metavar="WHAT")
    transactions = what.add_parser(
        "transactions",
        help="the finished transactions (the ledger)",
        description=(
            "Write the finished transactions that ended from --since (included) to --until "
            "(excluded) as CSV, one row each, oldest end first.  Times are ISO 8601 "
            "(2024-05-01, 2024-05-01T12:00:00Z); without an offset they are UTC."
        ),
    )
    transactions.add_argument(
        "--since", type=_time, required=True, metavar="TIME", help="first end time included"
    )
    transactions.add_argument(
        "--until", type=_time, metavar="TIME", help="end time excluded (default: none)"
    )
    transactions.add_argument("--station", metavar="ID", help="only this station's")
    transactions.add_argument("--id-token", metavar="TOKEN", help="only this idToken's")
    transactions.add_argument(
        "--db",
        default="./ocpp-trio.db",
        metavar="FILE",
        help="the SQLite file of `ocpp-trio serve` (default %(default)s)",
    )
    transactions.add_argument(
        "--output", "-o", metavar="FILE", help="write to FILE (default: standard output)"
    )
    transactions.set_defaults(log_level="WARNING")
    return export


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


async def export_transactions(args: argparse.Namespace, out: TextIO) -> int:
    """Write the CSV of ``args`` to ``out``; returns how many rows.

    Waits for: the database.  Raises: ``StoreError``.
    """
    writer = csv.writer(out)
    writer.writerow(FIELDS)
    rows = 0
    async with open_sqlite_store(args.db) as store:
        ledger = Ledger(store)
        async for entry in ledger.iterate(
            station=args.station, id_token=args.id_token, since=args.since, until=args.until
        ):
            fields = entry_fields(entry)
            writer.writerow([_cell(fields[name]) for name in FIELDS])
            rows += 1
    return rows


def run_export(args: argparse.Namespace) -> int:
    """Run ``ocpp-trio export``; returns the exit status."""
    if args.db == ":memory:" or not os.path.isfile(args.db):
        # opening would create an empty database: say what is wrong instead
        log.error("cannot export: no database at %s", args.db)
        return 1
    try:
        if args.output is None:
            rows = trio.run(export_transactions, args, sys.stdout)
        else:
            with open(args.output, "w", encoding="utf-8", newline="") as file:
                rows = trio.run(export_transactions, args, file)
    except StoreError as exc:
        log.error("cannot export from %s: %s", args.db, exc)  # noqa: TRY400
        return 1
    except OSError as exc:
        log.error("cannot export: %s", exc)  # noqa: TRY400
        return 1
    log.info("%d transaction(s) exported", rows)
    return 0
