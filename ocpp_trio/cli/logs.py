"""Log formats of the command line: the plain text line, or one JSON object per line.

The JSON format (``ocpp-trio serve --log-format json``) is a small ``logging.Formatter``: the
standard machinery (loggers, levels, handlers) stays as it is, only the line changes.  Each
object has ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``message``, ``station``
when the record is about one station (the record's ``station_id`` attribute, e.g. from
``extra={"station_id": ...}``, else the station whose task logged it), and ``exception`` when
there is a traceback.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any, Final, TextIO

from ocpp_trio.runtime.station import current_station_id

__all__ = ["LOG_FORMATS", "TEXT_FORMAT", "JsonFormatter", "configure_logging"]

#: the plain text line
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: the values of ``--log-format``
LOG_FORMATS: Final = ("text", "json")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line (see the module docs)."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        out: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        station = getattr(record, "station_id", None) or current_station_id()
        if station is not None:
            out["station"] = str(station)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # ensure_ascii: a station's odd identity or payload cannot break the line's encoding
        return json.dumps(out, ensure_ascii=True, default=str)


def configure_logging(level: str | int, log_format: str, stream: TextIO) -> None:
    """Log to ``stream`` at ``level`` in ``log_format`` (one of :data:`LOG_FORMATS`)."""
    if log_format == "json":
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level, handlers=[handler])
    else:
        logging.basicConfig(level=level, format=TEXT_FORMAT, stream=stream)
