"""Logging: JSON lines in production, short readable lines in a terminal; both carry trace and request ids."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime

from opentelemetry import trace

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def _trace_ids() -> tuple[str, str]:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return "", ""
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        trace_id, span_id = _trace_ids()
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "trace_id": trace_id,
            "span_id": span_id,
            "request_id": request_id_var.get(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        trace_id, _ = _trace_ids()
        ids = f" trace={trace_id[:8]}" if trace_id else ""
        rid = request_id_var.get()
        ids += f" req={rid[:8]}" if rid else ""
        extra = getattr(record, "fields", None)
        fields = " " + " ".join(f"{k}={v}" for k, v in extra.items()) if isinstance(extra, dict) else ""
        when = datetime.now().strftime("%H:%M:%S")
        line = f"{when} {record.levelname:<5} {record.name}: {record.getMessage()}"
        line += fields + ids
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kafka-python logs every reconnect attempt at WARNING; the spool already reports outages once.
    logging.getLogger("kafka").setLevel(logging.ERROR)


def log_fields(**fields: object) -> dict[str, dict[str, object]]:
    """``logger.info("msg", extra=log_fields(doc=..))`` keeps structured fields structured in JSON logs."""
    return {"fields": fields}
