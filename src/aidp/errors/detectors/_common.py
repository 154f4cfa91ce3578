"""Helpers the built-in detectors share: stable findings, paths relative to the worktree,
JSON documents embedded in text, durations as providers print them."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aidp.errors.finding import (
    AttemptEvidence,
    CheckEvidence,
    FailureClass,
    Finding,
    Severity,
    fingerprint_of,
)

MESSAGE_MAX = 500  # characters of a finding's message; the log keeps the rest
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Adapters whose attempt output is a code tool's own output (see code_tool_output).
CODE_TOOL_ADAPTERS = frozenset({"shell"})


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour and cursor sequences."""
    return _ANSI.sub("", text) if "\x1b" in text else text


def code_tool_output(evidence: AttemptEvidence | CheckEvidence) -> str | None:
    """The output a code tool (pytest, ruff, mypy, eslint, tsc) printed, or None.

    A check's output is always the tool's own. An attempt's output is only for the ``shell``
    adapter: an AI tool's log echoes model text and diffs, in which a line that looks like a
    compiler error proves nothing.
    """
    if isinstance(evidence, CheckEvidence):
        return strip_ansi(evidence.output)
    if evidence.adapter in CODE_TOOL_ADAPTERS:
        return strip_ansi(evidence.output)
    return None


def relative_file(path: str, worktree: Path | None) -> str:
    """``path`` relative to ``worktree`` (POSIX separators) when it lies inside it, else as
    printed but without a leading ``./``."""
    path = path.strip()
    if worktree is not None and os.path.isabs(path):
        for root in _roots(worktree):
            try:
                rel = os.path.relpath(path, root)
            except ValueError:
                continue
            if not rel.startswith(".."):
                return Path(rel).as_posix()
    while path.startswith("./"):
        path = path[2:]
    return path


def inside_worktree(path: str, worktree: Path | None) -> bool:
    """Whether ``path`` (absolute, or relative to the worktree) names a file of the worktree."""
    if not os.path.isabs(path):
        return not path.startswith("..") and not path.startswith("<")
    return worktree is not None and relative_file(path, worktree) != path.strip()


def _roots(worktree: Path) -> list[str]:
    plain = os.path.normpath(str(worktree))
    real = os.path.realpath(plain)
    return [plain] if real == plain else [plain, real]


def make_finding(
    detector: str,
    message: str,
    failure_class: FailureClass,
    *,
    worktree: Path | None = None,
    file: str | None = None,
    line: int | None = None,
    column: int | None = None,
    code: str | None = None,
    severity: Severity = Severity.ERROR,
    retry_after: float | None = None,
    fingerprint_basis: str | None = None,
) -> Finding:
    """A finding whose file is relative to the worktree and whose fingerprint ignores the
    worktree's location (the message keeps the path as printed). ``fingerprint_basis``
    replaces the message in the fingerprint when the message holds run-specific names."""
    message = " ".join(message.split()) if "\n" in message else message.strip()
    if len(message) > MESSAGE_MAX:
        message = message[: MESSAGE_MAX - 1] + "…"
    rel = relative_file(file, worktree) if file else None
    basis = message if fingerprint_basis is None else fingerprint_basis
    if worktree is not None:
        for root in _roots(worktree):
            basis = basis.replace(root + os.sep, "").replace(root, ".")
    return Finding(
        detector=detector, message=message, failure_class=failure_class, severity=severity,
        file=rel or None, line=line, column=column, code=code, retry_after=retry_after,
        fingerprint=fingerprint_of(detector, code, rel, basis),
    )


def to_int(value: Any) -> int | None:
    """``value`` as an int when it is one (or a string of digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def iter_json_documents(text: str, openers: str = "[{") -> Iterator[Any]:
    """Every JSON value that starts at the beginning of a line of ``text`` (after blanks) with
    one of ``openers``; text around and between them is skipped."""
    decoder = json.JSONDecoder()
    pos = 0
    end = len(text)
    while pos < end:
        newline = text.find("\n", pos)
        line_end = end if newline < 0 else newline
        start = pos
        while start < line_end and text[start] in " \t\r":
            start += 1
        if start < line_end and text[start] in openers:
            try:
                value, stop = decoder.raw_decode(text, start)
            except (ValueError, RecursionError):
                value, stop = None, -1
            if stop > 0:
                yield value
                pos = stop
                continue
        pos = line_end + 1


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|h|m|s))+$")


def parse_duration_s(text: str) -> float | None:
    """Seconds in a duration as providers print it: ``20``, ``1.5s``, ``20ms``, ``1m30s``,
    ``2 seconds``, ``1 minute``; None if it is not one."""
    text = text.strip().lower()
    words = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?"
                         r"|h|hours?)?", text)
    if words:
        value = float(words.group(1))
        unit = words.group(2) or "s"
        if unit.startswith("ms") or unit.startswith("milli"):
            return value / 1000
        if unit.startswith("h"):
            return value * 3600
        if unit == "m" or unit.startswith("min"):
            return value * 60
        return value
    if _DURATION.match(text):
        total = 0.0
        for number, unit in _DURATION_PART.findall(text):
            total += float(number) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
        return total
    return None
