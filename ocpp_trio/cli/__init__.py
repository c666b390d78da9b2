"""The ``ocpp-trio`` command: ``serve``, ``simulate`` and ``demo``."""
