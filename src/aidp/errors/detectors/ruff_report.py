"""ruff check: one finding per diagnostic, **permanent**, with file, line, column and the rule
code (``F401``; ``invalid-syntax`` for syntax errors).

Reads ``--output-format json`` (a JSON array of diagnostics), the default ``full`` format
(``F401 [*] message`` then `` --> file:line:col``) and ``concise`` (``file:line:col: F401 message``;
flake8 prints the same shape).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aidp.errors.detectors._common import (
    code_tool_output,
    iter_json_documents,
    make_finding,
    to_int,
)
from aidp.errors.finding import AttemptEvidence, CheckEvidence, FailureClass, Finding
from aidp.errors.hookspecs import hookimpl

NAME = "ruff"
_RULE = r"[A-Z]{1,4}[0-9]{2,4}"
_CONCISE = re.compile(
    rf"^(?P<file>[^\s:][^:\n]*):(?P<line>\d+):(?P<col>\d+): (?:(?P<rule>{_RULE})(?: \[\*\])? "
    r"|(?P<kind>invalid-syntax|SyntaxError): )(?P<message>.+)$",
    re.M,
)
_FULL = re.compile(
    rf"^(?:(?P<rule>{_RULE})(?: \[\*\])? |(?P<kind>invalid-syntax|SyntaxError): )(?P<message>.+)\n"
    r"[ \t]*--> (?P<file>[^\n]+?):(?P<line>\d+):(?P<col>\d+)[ \t]*$",
    re.M,
)


def _from_json(item: dict[str, Any], worktree: Path | None) -> Finding | None:
    location = item.get("location") or {}
    message = item.get("message")
    file = item.get("filename")
    if not isinstance(message, str) or not isinstance(file, str) or not isinstance(location,
                                                                                   dict):
        return None
    code = item.get("code")
    code = code if isinstance(code, str) and code else "invalid-syntax"
    return make_finding(NAME, message, FailureClass.PERMANENT, worktree=worktree, file=file,
                        line=to_int(location.get("row")), column=to_int(location.get("column")),
                        code=code)


def _is_ruff_json(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, dict) and "filename" in item and "location" in item for item in value)


def detect(text: str, worktree: Path | None) -> list[Finding]:
    """Findings for every ruff diagnostic in ``text``."""
    findings: list[Finding] = []
    if '"filename"' in text:
        for doc in iter_json_documents(text, "["):
            if _is_ruff_json(doc):
                findings.extend(f for item in doc if (f := _from_json(item, worktree)))
    for pattern in (_CONCISE, _FULL):
        for match in pattern.finditer(text):
            code = match.group("rule") or "invalid-syntax"
            findings.append(make_finding(
                NAME, match.group("message"), FailureClass.PERMANENT, worktree=worktree,
                file=match.group("file"), line=int(match.group("line")),
                column=int(match.group("col")), code=code))
    return findings


@hookimpl
def aidp_detect_attempt(evidence: AttemptEvidence) -> list[Finding]:
    text = code_tool_output(evidence)
    return detect(text, evidence.worktree) if text else []


@hookimpl
def aidp_detect_check(evidence: CheckEvidence) -> list[Finding]:
    text = code_tool_output(evidence)
    return detect(text, evidence.worktree) if text else []
