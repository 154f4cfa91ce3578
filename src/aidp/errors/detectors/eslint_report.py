"""ESLint: one finding per message, **permanent**, with file, line, column and the rule id
(``no-undef``; ``parse-error`` for a fatal parsing error). Severity 2 is an error, 1 a warning.

Reads ``-f json`` (an array of ``{filePath, messages: [...]}``) and the default ``stylish``
text (a file name line, then ``  line:col  error  message  rule-id`` lines).
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
from aidp.errors.finding import AttemptEvidence, CheckEvidence, FailureClass, Finding, Severity
from aidp.errors.hookspecs import hookimpl

NAME = "eslint"
_STYLISH_FILE = re.compile(r"^(?P<file>/\S.*|[^\s✖].*\.(?:[cm]?[jt]sx?|vue|svelte|json|md))$")
_STYLISH_MESSAGE = re.compile(
    r"^\s+(?P<line>\d+):(?P<col>\d+)\s+(?P<severity>error|warning)\s+(?P<message>.+?)"
    r"(?:\s{2,}(?P<rule>[@\w/-]+))?\s*$"
)


def _from_json_message(file: str, item: dict[str, Any], worktree: Path | None) -> Finding | None:
    message = item.get("message")
    if not isinstance(message, str):
        return None
    rule = item.get("ruleId")
    code = rule if isinstance(rule, str) and rule else (
        "parse-error" if item.get("fatal") else "eslint")
    severity = Severity.WARNING if item.get("severity") == 1 else Severity.ERROR
    return make_finding(NAME, message, FailureClass.PERMANENT, worktree=worktree, file=file,
                        line=to_int(item.get("line")), column=to_int(item.get("column")),
                        code=code, severity=severity)


def _from_json(text: str, worktree: Path | None) -> list[Finding]:
    findings: list[Finding] = []
    for doc in iter_json_documents(text, "["):
        if not isinstance(doc, list):
            continue
        for result in doc:
            if not isinstance(result, dict) or not isinstance(result.get("filePath"), str):
                continue
            messages = result.get("messages")
            for item in messages if isinstance(messages, list) else []:
                if isinstance(item, dict) and (f := _from_json_message(
                        result["filePath"], item, worktree)):
                    findings.append(f)
    return findings


def _from_stylish(text: str, worktree: Path | None) -> list[Finding]:
    findings: list[Finding] = []
    file: str | None = None
    for line in text.splitlines():
        if not line.strip():
            file = None
            continue
        message = _STYLISH_MESSAGE.match(line) if file is not None else None
        if message is not None and file is not None:
            severity = Severity.WARNING if message.group("severity") == "warning" else \
                Severity.ERROR
            findings.append(make_finding(
                NAME, message.group("message"), FailureClass.PERMANENT, worktree=worktree,
                file=file, line=int(message.group("line")), column=int(message.group("col")),
                code=message.group("rule") or "eslint", severity=severity))
        elif (head := _STYLISH_FILE.match(line)) is not None:
            file = head.group("file").strip()
        else:
            file = None
    return findings


def detect(text: str, worktree: Path | None) -> list[Finding]:
    """Findings for every ESLint message in ``text`` (JSON or stylish)."""
    if '"filePath"' in text:
        found = _from_json(text, worktree)
        if found:
            return found
    if re.search(r"^\s+\d+:\d+\s+(?:error|warning)\s", text, re.M):
        return _from_stylish(text, worktree)
    return []


@hookimpl
def aidp_detect_attempt(evidence: AttemptEvidence) -> list[Finding]:
    text = code_tool_output(evidence)
    return detect(text, evidence.worktree) if text else []


@hookimpl
def aidp_detect_check(evidence: CheckEvidence) -> list[Finding]:
    text = code_tool_output(evidence)
    return detect(text, evidence.worktree) if text else []
