"""Structured JSON logs on stdout. Secrets and personal data never reach them.

Values under keys that name secrets are replaced before rendering, whoever logged them; the
code logs ids and field names, never decrypted values, and request logs carry the route
template, never the query string (it could hold a search term).
"""

from __future__ import annotations

import logging
import re
import sys

import structlog

SECRET_KEY = re.compile(r"pass(word)?|secret|token|authorization|cookie|api[_-]?key|master|credential", re.I)
REDACTED = "[redacted]"


# Tracebacks as data, without the frames' local variables: a local can hold a patron's record, a
# password or a key, and a log line must never carry them (structlog's default shows them, slowly).
TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False, use_rich=False)
)


def redact_secrets(_logger, _method, event: dict) -> dict:
    for key in list(event):
        if key != "event" and SECRET_KEY.search(key):
            event[key] = REDACTED
    return event


class _Following:
    """sys.stdout or sys.stderr as it is at each write, not as it was at configure() time."""

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, text: str) -> int:
        return getattr(sys, self.name).write(text)

    def flush(self) -> None:
        getattr(sys, self.name).flush()


class _Handler(logging.StreamHandler):
    def __init__(self, name: str) -> None:
        super().__init__(_Following(name))

    @property
    def stream(self):
        return self._following

    @stream.setter
    def stream(self, value) -> None:
        self._following = value


def configure(level: str = "INFO", stream: str = "stdout") -> None:
    """JSON logs to `stream`: stdout for the services; stderr for console commands, whose stdout is output."""
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    # Libraries that log through the standard library (uvicorn, SQLAlchemy) get the same JSON lines.
    handler = _Handler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    structlog.configure(
        processors=[*shared, TRACEBACKS, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(_Following(stream)),
        # Not cached: module-level loggers then follow a later configure() (tests, embedding apps).
        cache_logger_on_first_use=False,
    )
