"""Errors that are both ocpp-trio errors and trio exceptions (kept out of the sans-IO core)."""

from __future__ import annotations

import trio

from ocpp_trio._errors import OCPPError

__all__ = ["CallTimeoutError", "ConnectionLostError"]


class CallTimeoutError(OCPPError, trio.TooSlowError):
    """The station did not answer our CALL within the call timeout."""


class ConnectionLostError(OCPPError, trio.BrokenResourceError):
    """The connection to the station went away while we needed it."""
