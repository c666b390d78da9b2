"""Connections: the :class:`~ocpp_trio.transport.base.Transport` protocol the runtime runs over,
in-memory pairs, and the WebSocket server and client.  The only package that imports a WebSocket
library."""
