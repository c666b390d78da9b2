"""``python -m ocpp_trio``: the ``ocpp-trio`` command (see :mod:`ocpp_trio.cli.main`)."""

from __future__ import annotations

import sys


def main() -> int:
    """Run the ``ocpp-trio`` command with ``sys.argv``; returns the exit status."""
    try:
        from ocpp_trio.cli.main import main as cli_main  # imported here: Ctrl-C while importing
    except KeyboardInterrupt:
        return 0
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
