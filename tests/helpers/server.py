"""A WebSocket server configuration for fast tests, and an echo station handler."""

from __future__ import annotations

from ocpp_trio.transport.server import ServerConfig, StationConnection

#: no keepalive, short close and handshake timeouts
FAST = ServerConfig(ping_interval=0, close_timeout=0.5, handshake_timeout=1.0)


async def echo(station: StationConnection) -> None:
    """Say who and which version, then echo every message back."""
    await station.transport.send_message(f"{station.identity}|{station.version}")
    while True:
        message = await station.transport.get_message()
        assert isinstance(message, str)
        await station.transport.send_message(message)
