"""Sans-IO protocol core: versions, OCPP-J frames, one connection's RPC state, the registration
state machine.  Nothing here imports trio or does I/O; the runtime drives it."""
