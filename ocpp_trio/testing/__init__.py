"""Helpers for testing applications built on ocpp-trio, as ``trio.testing`` is for trio.

* :func:`memory_transport_pair` / :class:`MemoryTransport`: two connected in-memory ends of a
  connection (bounded, with backpressure), for running a CSMS or a charge point without
  sockets;
* :class:`FakeStation`: a station driven step by step by a test (send a CALL, get the typed
  answer or the :class:`~ocpp_trio.CallError`; boot in one line; answer the CSMS's CALLs with
  a handler or one by one; send broken frames; close);
* :func:`open_fake_station` connects one to a :class:`~ocpp_trio.CSMS`,
  :func:`open_station_pair` to a single :class:`~ocpp_trio.Station`.

Use them with pytest-trio and ``autojump_clock``: nothing here waits on wall-clock time.
"""

from ocpp_trio.testing.fake_station import (
    CSMSCallHandler,
    FakeStation,
    boot_request,
    open_fake_station,
    open_station_pair,
)
from ocpp_trio.transport.base import MemoryTransport, memory_transport_pair

__all__ = [
    "CSMSCallHandler",
    "FakeStation",
    "MemoryTransport",
    "boot_request",
    "memory_transport_pair",
    "open_fake_station",
    "open_station_pair",
]
