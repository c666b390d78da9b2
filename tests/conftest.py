"""Shared fixtures of the test suite.

Helpers shared between test modules live in the ``helpers`` package next to this file
(``from helpers.station import ...``); test modules never import each other.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# the helpers package is imported by its top-level name, whatever pytest's import mode
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers.station import boot_router

from ocpp_trio import CSMS, open_csms


@pytest.fixture
async def csms() -> AsyncIterator[CSMS]:
    """A CSMS without a listener (stations come in over memory pairs), accepting every boot."""
    async with open_csms(boot_router(), None, None) as running:
        yield running
