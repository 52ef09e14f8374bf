"""Logging, configured in one place: text for people, one JSON object per line for log collectors.

Every process configures it the same way (the app, ``make serve``, the CLIs), and
uvicorn's loggers go through the same handler. A record's ``fields`` (``extra={"fields": {...}}``)
become keys of the JSON object, or ``key=value`` pairs after the text.
"""

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
# uvicorn's access log repeats what the request log line says (src/core/request_context.py); Alembic's
# context says which dialect it uses each time /ready or /metrics reads a schema's revision.
QUIET_LOGGERS = {"uvicorn.access": logging.WARNING, "alembic.runtime.migration": logging.WARNING}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = getattr(record, "fields", {})
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        pairs = " ".join(f"{key}={value}" for key, value in _fields(record).items() if value is not None)
        return f"{super().formatMessage(record)} {pairs}" if pairs else super().formatMessage(record)


HANDLER_NAME = "app"


def configure_logging(log_format: LogFormat, level: str = "INFO") -> None:
    """Send every logger, uvicorn's included, to one handler on stderr in ``log_format``.

    Configuring again replaces only the handler made here: others (a test runner's) stay.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers = [*(kept for kept in root.handlers if kept.get_name() != HANDLER_NAME), handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", *QUIET_LOGGERS):
        named = logging.getLogger(name)
        named.handlers = []
        named.propagate = True
        named.setLevel(QUIET_LOGGERS.get(name, logging.NOTSET))
