"""A WebSocket client over a stream the test owns (plain TCP or TLS)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio
from trio_websocket import WebSocketConnection, wrap_client_stream

__all__ = ["ws_station"]


@asynccontextmanager
async def ws_station(
    port: int,
    path: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
    subprotocols: Sequence[str] = ("ocpp2.0.1",),
) -> AsyncIterator[WebSocketConnection]:
    """A WebSocket client whose stream the test owns (closed whatever happens)."""
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
    if ssl_context is None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    else:
        stream = await trio.open_ssl_over_tcp_stream(
            "127.0.0.1", port, ssl_context=ssl_context, https_compatible=True
        )
    async with stream, trio.open_nursery() as nursery:
        with trio.fail_after(5):
            ws = await wrap_client_stream(
                nursery,
                stream,
                "127.0.0.1",
                path,
                subprotocols=list(subprotocols),
                extra_headers=list(headers),
            )
        try:
            yield ws
        finally:
            with trio.move_on_after(2):
                await ws.aclose()
            nursery.cancel_scope.cancel()
