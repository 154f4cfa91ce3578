"""The log format of ``aidp serve`` and of the run workers it starts: ``text`` (Python's
default, as before) or ``json`` -- one JSON object per line on stderr, for a log shipper.

``aidp serve --log-format json``, ``[serve] log_format = "json"`` or ``AIDP_LOG_FORMAT=json``
choose it. The service hands the choice to its workers through ``AIDP_LOG_FORMAT`` in their
environment (:func:`aidp.app.service_runs.start_worker`), so their worker logs
(``.aidp/serve/RUN.log``) are JSON lines too; ``aidp run`` / ``aidp resume`` started by hand with
that variable log the same way.

Every object has ``ts`` (ISO 8601, UTC, milliseconds), ``level`` (``info``, ``warning``, ...),
``logger`` and ``msg``; a record about a run carries ``run`` and, when they apply,
``workstream``, ``step`` and ``attempt`` (passed with ``extra=``, see :data:`CONTEXT_FIELDS`),
and any other ``extra=`` field as given. An exception is the ``exc`` field (its traceback as
one string), never lines of its own; an uncaught exception of any thread is logged so too.
Nothing here adds a secret: log calls name tokens by their name and secrets by their
variable, never by value.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from types import TracebackType
from typing import IO, Any

__all__ = ["CONTEXT_FIELDS", "ENV", "FORMATS", "JsonFormatter", "configure_logging",
           "format_from_environment"]

#: The formats there are.
FORMATS = ("text", "json")
#: The environment variable that chooses the format (and carries it to the run workers).
ENV = "AIDP_LOG_FORMAT"
#: The ids a record about a run carries, in this order, right after the four fixed fields.
CONTEXT_FIELDS = ("run", "workstream", "step", "attempt")

#: Attributes every LogRecord has: anything else on a record came with ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


def _iso(epoch_s: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s))
    return f"{whole}.{int(epoch_s % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One record as one line of JSON (see the module)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _iso(record.created), "level": record.levelname.lower(),
                               "logger": record.name, "msg": record.getMessage()}
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in out and not name.startswith("_") \
                    and value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # json escapes every control character (a newline in a message stays on this line)
        return json.dumps(out, default=str, ensure_ascii=False)


def format_from_environment() -> str | None:
    """The format ``AIDP_LOG_FORMAT`` asks for, or None when it is unset or not a format."""
    value = os.environ.get(ENV, "").strip().lower()
    return value if value in FORMATS else None


def configure_logging(log_format: str, *, stream: IO[str] | None = None,
                      level: int = logging.INFO) -> None:
    """Send the process's log records to ``stream`` (default stderr) in ``log_format``.

    ``json``: aidp's loggers from ``level`` up, every other library's from WARNING, one JSON
    object per line; warnings and uncaught exceptions (of any thread) become records too.
    ``text``: nothing is changed (Python's and uvicorn's defaults, as before).

    Raises:
        ValueError: ``log_format`` is not one of :data:`FORMATS`.
    """
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {', '.join(FORMATS)}")
    if log_format == "text":
        return
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("aidp").setLevel(level)
    logging.captureWarnings(True)
    crash = logging.getLogger("aidp.crash")

    def uncaught(kind: type[BaseException], exc: BaseException,
                 tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        crash.critical("uncaught %s", kind.__name__, exc_info=(kind, exc, tb))

    def uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or issubclass(args.exc_type, SystemExit):
            return
        crash.critical("uncaught %s in thread %s", args.exc_type.__name__,
                       args.thread.name if args.thread else "?",
                       exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = uncaught
    threading.excepthook = uncaught_in_thread
