"""Python tracebacks: the exception that ended a program, where it was raised.

One finding per chain of tracebacks (the last one of a chain is the exception that escaped;
"During handling of the above exception" and "The above exception was the direct cause" link a
chain), plus bare ``SyntaxError`` reports (a script that does not compile prints no
``Traceback`` header). The location is the last frame inside the worktree if any frame is,
else the last frame; the code is the exception type as printed (``ValueError``,
``openai.RateLimitError``).

Class **permanent**, except for exception types that say the network or a provider failed
(``ConnectionError`` and its kin, ``TimeoutError``, the openai / litellm / httpx / requests
transport errors, ``RateLimitError``...) or whose message says so (``[Errno 111] Connection
refused``, ``No space left on device``): **transient**. ``KeyboardInterrupt``: **unknown**.

Output of a pytest session is left to the pytest detector (``--tb=native`` prints tracebacks
of failing tests, which are test failures, not crashes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from aidp.errors.detectors._common import inside_worktree, make_finding, strip_ansi
from aidp.errors.finding import AttemptEvidence, CheckEvidence, FailureClass, Finding
from aidp.errors.hookspecs import hookimpl

NAME = "python-traceback"

TRANSIENT_TYPES = frozenset({
    # builtins
    "ConnectionError", "ConnectionResetError", "ConnectionRefusedError", "ConnectionAbortedError",
    "BrokenPipeError", "TimeoutError", "timeout", "gaierror",
    # http.client, urllib3, requests, httpx
    "RemoteDisconnected", "IncompleteRead", "ProtocolError", "NewConnectionError",
    "MaxRetryError", "ReadTimeoutError", "ConnectTimeoutError", "ConnectTimeout", "ReadTimeout",
    "WriteTimeout", "PoolTimeout", "ConnectError", "ReadError", "WriteError",
    "RemoteProtocolError", "ChunkedEncodingError",
    # openai SDK and litellm
    "APIConnectionError", "APITimeoutError", "RateLimitError", "InternalServerError",
    "ServiceUnavailableError", "Timeout", "RouterRateLimitError",
})
UNKNOWN_TYPES = frozenset({"KeyboardInterrupt"})
_TRANSIENT_MESSAGE = re.compile(
    r"\[Errno (?:28|104|110|111|113|-2|-3)\]|No space left on device|Connection (?:refused|reset)"
    r"|Temporary failure in name resolution|timed out|Network is unreachable"
    r"|HTTP Error (?:429|5\d\d)\b|Error code: (?:429|5\d\d)\b",
    re.IGNORECASE,
)
_HEADER = re.compile(r"^(?P<prefix>[ \t|+]*)Traceback \(most recent call last\):[ \t]*$", re.M)
_FRAME = re.compile(r'^[ \t|+]*File "(?P<file>[^"\n]+)", line (?P<line>\d+)(?:, in .*)?$')
_EXCEPTION = re.compile(
    r"^(?P<type>[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)(?::[ \t]?(?P<message>.*))?$"
)
_CHAIN = re.compile(
    r"^\s*(?:During handling of the above exception, another exception occurred:"
    r"|The above exception was the direct cause of the following exception:)\s*$"
)
_BARE_SYNTAX = re.compile(
    r'^  File "(?P<file>[^"\n]+)", line (?P<line>\d+)\n(?:.*\n){0,4}?'
    r"(?P<type>SyntaxError|IndentationError|TabError): (?P<message>.*)$",
    re.M,
)
_PYTEST_SESSION = re.compile(
    r"^=+ (?:test session starts|FAILURES|ERRORS|short test summary info) =+$", re.M
)
_FRAME_LIMIT = 2000  # lines read per traceback; a runaway recursion prints thousands


@dataclass(frozen=True)
class _Traceback:
    start: int  # offset of the header in the text
    end: int  # offset just after the exception line
    frames: tuple[tuple[str, int], ...]
    exc_type: str
    message: str


def _parse_at(text: str, header: re.Match[str]) -> _Traceback | None:
    prefix = header.group("prefix")
    pos = header.end() + 1
    frames: list[tuple[str, int]] = []
    for _ in range(_FRAME_LIMIT):
        if pos >= len(text):
            return None
        newline = text.find("\n", pos)
        line_end = len(text) if newline < 0 else newline
        raw = text[pos:line_end].rstrip("\r")
        frame = _FRAME.match(raw)
        if frame is not None:
            frames.append((frame.group("file"), int(frame.group("line"))))
        else:
            body = raw[len(prefix):] if raw.startswith(prefix) else raw
            if body and not body[0].isspace() and not body.startswith("[Previous line"):
                exc = _EXCEPTION.match(body)
                if exc is None or not frames:
                    return None
                return _Traceback(header.start(), line_end, tuple(frames), exc.group("type"),
                                  (exc.group("message") or "").strip())
        pos = line_end + 1
    return None


def _classify(exc_type: str, message: str) -> FailureClass:
    short = exc_type.rsplit(".", 1)[-1]
    if short in UNKNOWN_TYPES:
        return FailureClass.UNKNOWN
    if short in TRANSIENT_TYPES or _TRANSIENT_MESSAGE.search(message):
        return FailureClass.TRANSIENT
    return FailureClass.PERMANENT


def _location(frames: tuple[tuple[str, int], ...], worktree: Path | None) -> tuple[str, int]:
    real = [f for f in frames if not f[0].startswith("<")] or list(frames)
    own = [f for f in real if inside_worktree(f[0], worktree)] if worktree is not None else []
    return (own or real)[-1]


def _finding(exc_type: str, message: str, file: str, line: int,
             worktree: Path | None) -> Finding:
    text = f"{exc_type}: {message}" if message else exc_type
    return make_finding(NAME, text, _classify(exc_type, message), worktree=worktree, file=file,
                        line=line, code=exc_type)


def detect(output: str, worktree: Path | None) -> list[Finding]:
    """Findings for the tracebacks and bare syntax errors in ``output``."""
    if "Traceback" not in output and "Error: " not in output:
        return []
    text = strip_ansi(output)
    if _PYTEST_SESSION.search(text):
        return []
    tracebacks = [tb for m in _HEADER.finditer(text) if (tb := _parse_at(text, m)) is not None]
    findings: list[Finding] = []
    for index, tb in enumerate(tracebacks):
        following = tracebacks[index + 1] if index + 1 < len(tracebacks) else None
        if following is not None and _CHAIN.match(text[tb.end: following.start].strip() or "-"):
            continue  # a cause: the chain's last traceback is the one that escaped
        file, line = _location(tb.frames, worktree)
        findings.append(_finding(tb.exc_type, tb.message, file, line, worktree))
    covered = [(tb.start, tb.end) for tb in tracebacks]
    for match in _BARE_SYNTAX.finditer(text):
        if any(start <= match.start() <= end for start, end in covered):
            continue
        findings.append(_finding(match.group("type"), match.group("message").strip(),
                                 match.group("file"), int(match.group("line")), worktree))
    return findings


@hookimpl
def aidp_detect_attempt(evidence: AttemptEvidence) -> list[Finding]:
    return detect(evidence.output, evidence.worktree)


@hookimpl
def aidp_detect_check(evidence: CheckEvidence) -> list[Finding]:
    return detect(evidence.output, evidence.worktree)
