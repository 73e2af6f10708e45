"""Structured logging: one JSON object per line, the same fields in every process.

Contract: call ``configure`` once per process, after any fork. Every line has
``ts`` (UTC RFC 3339 with microseconds), ``level``, ``lab``, ``component``,
``node``, ``pid`` and ``event``, plus the call's own keys (object refs use
``kind``, ``namespace``, ``name``, ``uid``). Debug calls below the configured
level cost one method call (structlog's filtering bound logger).
"""
from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def _timestamp(_logger: Any, _name: str, event: dict) -> dict:
    event["ts"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return event


def configure(component: str, *, node: str | None = None, lab: str | None = None,
              level: str = "info", path: str | None = None, stream: TextIO | None = None) -> None:
    """Send this process's logs as JSON lines to ``path`` (appended) or ``stream`` (stderr)."""
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        out: TextIO = open(path, "a", buffering=1)
    else:
        out = stream or sys.stderr
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(lab=lab, component=component, node=node, pid=os.getpid())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _timestamp,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(**bind: Any) -> Any:
    return structlog.get_logger(**bind)
