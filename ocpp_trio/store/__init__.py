"""Persistence: the Store protocol, the SQLite and memory stores, and the group-commit writer.
It does not import the runtime."""
