"""From a failed attempt to findings, a fix prompt and a diagnostics bundle.

The executor calls :func:`detect` with what the tool and the checks left behind (the detectors
of :mod:`aidp.errors` read it; a detector that raises is reported, never fatal), adds the
engine's own findings for what only it knows (changes outside the scope, no change, a failed
check nobody explained), builds the prompt of a fix attempt from the findings, and writes the
diagnostics bundle that ``aidp diagnose`` prints. It never writes the store and never decides
what follows a failure (:func:`aidp.resilience.recovery.decide` does).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aidp.core.states import AttemptKind
from aidp.errors.finding import AttemptEvidence, CheckEvidence, FailureClass, Finding
from aidp.process.runner import STOP_MARKER
from aidp.tools.adapter import AdapterResult
from aidp.workspace.git import run_git

__all__ = [
    "Detected",
    "build_fix_prompt",
    "check_finding",
    "classify",
    "dedupe",
    "dedupe_sourced",
    "detect",
    "detect_tool",
    "detector_text",
    "finding_rows",
    "no_change_finding",
    "read_log_text",
    "scope_findings",
    "without_echo",
    "write_bundle",
]

#: How much of a log the detectors read: its head and its tail (where tools print summaries).
LOG_HEAD_BYTES = 64 * 1024
LOG_TAIL_BYTES = 448 * 1024
#: Log lines kept in a diagnostics bundle.
BUNDLE_LOG_LINES = 80
BUNDLE_DIFF_BYTES = 64 * 1024


@dataclass(frozen=True)
class Detected:
    findings: tuple[tuple[str, Finding], ...]  # (source: "tool" or the check's name, finding)
    failures: tuple[str, ...]  # "detector: message" of detectors that raised


def read_log_text(path: Path) -> str:
    """The log's head and tail as text (undecodable bytes replaced)."""
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size <= LOG_HEAD_BYTES + LOG_TAIL_BYTES:
                data = fh.read()
            else:
                head = fh.read(LOG_HEAD_BYTES)
                fh.seek(size - LOG_TAIL_BYTES)
                data = head + b"\n[aidp] ...\n" + fh.read()
    except OSError:
        return ""
    return data.decode("utf-8", "replace")


#: A line aidp wrote into the log itself (``CappedLog.note``: ``--- [aidp] ... ---``, an adapter's
#: ``--- [openai] ... ---``, ``--- check 1: NAME ---``) or between a long log's head and tail.
_OWN_LINE = re.compile(r"^(?:--- (?:\[[\w.-]+\] |check \d+: ).*---|\[aidp\] \.\.\.)\r?$")


#: The first line of the acceptance checks' part of a step's log (``--- check 1: NAME ---``).
_CHECKS_START = re.compile(r"^--- check 1: .*---\r?$", re.M)


def detector_text(text: str) -> str:
    """What the detectors read of a tool's log: the tool's own output, up to where aidp stopped
    it (a timeout or cancel; what follows -- a ``KeyboardInterrupt`` traceback after aidp's
    SIGINT -- is the tool's reaction to aidp, not evidence) or where the checks began (their
    output is each check's evidence, never the tool's: a failing test is found once, by its
    check), without aidp's own lines."""
    for end in (text.find(f"--- {STOP_MARKER}"),
                (m.start() if (m := _CHECKS_START.search(text)) else -1)):
        if end >= 0:
            text = text[:end]
    if "[" not in text and "--- check" not in text:
        return text
    return "".join(line for line in text.splitlines(keepends=True)
                   if not _OWN_LINE.match(line.rstrip("\n")))


def without_echo(text: str, echoed: frozenset[str]) -> str:
    """``text`` without the lines that repeat the model's own text (``AdapterResult.echoed``,
    compared stripped): a reply quoting "401 Unauthorized" is not the provider refusing."""
    if not echoed:
        return text
    return "".join(line for line in text.splitlines(keepends=True)
                   if line.strip() not in echoed)


def detect(attempt: AttemptEvidence | None, checks: Sequence[CheckEvidence]) -> Detected:
    """Run the detectors over the tool's output and over each failed check's output."""
    from aidp.errors.manager import default_manager

    manager = default_manager()
    found: list[tuple[str, Finding]] = []
    failures: list[str] = []
    results = ([("tool", manager.detect_attempt(attempt))] if attempt is not None else []) + [
        (check.name, manager.detect_check(check)) for check in checks]
    for source, result in results:
        found.extend((source, finding) for finding in result.findings)
        failures.extend(f"{f.detector}: {f.message}" for f in result.failures)
    return Detected(tuple(dedupe_sourced(found)), tuple(failures))


def detect_tool(*, tool: str, adapter: str, result: AdapterResult, log_path: Path,
                worktree: Path, changed: Sequence[str]) -> tuple[list[tuple[str, Finding]],
                                                                 tuple[str, ...]]:
    """The findings on what the tool did -- the adapter's own, then the detectors' on its log
    (:func:`detector_text` of it) -- as ``("tool", finding)`` pairs, and the detectors that
    failed. Run for every attempt that was not cancelled, successful or not."""
    evidence = AttemptEvidence(
        tool=tool, adapter=adapter, exit_code=result.exit_code, signal=result.signal,
        timed_out=result.timed_out, duration_s=result.duration_s,
        output=without_echo(detector_text(read_log_text(log_path)), result.echoed),
        worktree=worktree, log_path=log_path,
        events=tuple({"kind": e.kind, **e.data} for e in result.events),
        changed_files=tuple(changed),
    )
    detected = detect(evidence, [])
    guessed = detected.findings
    if result.via_gateway:  # the gateway saw every answer: no guessing from the output
        from aidp.errors.detectors.provider_http import NAME as provider_detector

        guessed = tuple(p for p in guessed if p[1].detector != provider_detector)
    pairs = dedupe_sourced([*(("tool", f) for f in result.findings), *guessed])
    return pairs, detected.failures


def dedupe_sourced(pairs: Iterable[tuple[str, Finding]]) -> list[tuple[str, Finding]]:
    """``(source, finding)`` pairs, the first of each fingerprint kept, in order."""
    seen: set[str] = set()
    unique = []
    for source, finding in pairs:
        if finding.fingerprint not in seen:
            seen.add(finding.fingerprint)
            unique.append((source, finding))
    return unique


def finding_rows(run_id: str, ws_id: str, step_id: str, attempt: int,
                 sourced: Iterable[tuple[str, Finding]]) -> list[dict[str, Any]]:
    """The findings table's rows of one attempt (``created_at`` apart)."""
    return [
        {"run_id": run_id, "ws_id": ws_id, "step_id": step_id, "attempt": attempt,
         "source": source[:255], "detector": f.detector, "file": f.file, "line": f.line,
         "col": f.column, "code": f.code, "message": f.message[:4000],
         "severity": f.severity.value, "failure_class": f.failure_class.value,
         "fingerprint": f.fingerprint, "retry_after": f.retry_after}
        for source, f in sourced
    ]


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """Findings, the first of each fingerprint kept, in order."""
    return [f for _, f in dedupe_sourced(("", f) for f in findings)]


def classify(findings: Sequence[Finding]) -> FailureClass | None:
    """The class of a failure from its findings; None when there are none."""
    if not findings:
        return None
    from aidp.errors.classify import classify as by_findings

    return by_findings(findings)


def scope_findings(paths: Sequence[str]) -> list[Finding]:
    return [Finding("scope", "changed a file outside the workstream's scope",
                    FailureClass.PERMANENT, file=path, code="outside-scope") for path in paths]


def no_change_finding() -> Finding:
    return Finding("aidp", "the step changed no file but requires a change",
                   FailureClass.PERMANENT, code="no-change")


def check_finding(name: str, exit_code: int | None, output: str) -> Finding:
    """A failed check that no detector explained: its name and the end of its output."""
    tail = "\n".join(output.rstrip().splitlines()[-15:])
    status = f"exit code {exit_code}" if exit_code is not None else "no exit code"
    return Finding("check", f"check {name!r} failed ({status})" + (f":\n{tail}" if tail else ""),
                   FailureClass.PERMANENT, code=name[:128],
                   fingerprint=_check_fingerprint(name, exit_code))


def _check_fingerprint(name: str, exit_code: int | None) -> str:
    import hashlib

    return hashlib.sha256(f"check\x1f{name}\x1f{exit_code}".encode()).hexdigest()[:16]


def build_fix_prompt(prompt: str | None, findings: Sequence[Finding], *, kind: str) -> str:
    """The prompt of a fix (or escalation) attempt: the step's prompt, then the findings
    grouped by file and deduped by fingerprint."""
    by_file: dict[str, list[Finding]] = {}
    for finding in dedupe(findings):
        by_file.setdefault(finding.file or "(no file)", []).append(finding)
    lines = [prompt.rstrip() if prompt else "Make the step's acceptance checks pass.", ""]
    lines.append("## The previous attempt failed" + (
        " (another tool tried first)" if kind == AttemptKind.ESCALATE.value else ""))
    lines.append("Fix these problems, changing only files inside the scope:")
    for path in sorted(by_file):
        lines.append("")
        lines.append(f"### {path}")
        for finding in sorted(by_file[path], key=lambda f: (f.line or 0, f.column or 0)):
            where = f"line {finding.line}: " if finding.line else ""
            code = f"[{finding.code}] " if finding.code else ""
            lines.append(f"- {where}{code}{finding.message}")
    return "\n".join(lines) + "\n"


def write_bundle(path: Path, data: dict[str, Any], *, worktree: Path | None,
                 log_path: Path | None) -> Path:
    """Write the diagnostics bundle of a failed attempt (JSON) and return its path.

    ``data`` holds what the executor knows (tool, version, command line -- already masked --,
    environment names, findings, breaker state); this adds the git state and diff of the
    worktree and the last lines of the log.
    """
    bundle = dict(data)
    if worktree is not None and worktree.exists():
        status = _git(worktree, "status", "--porcelain=v1", "--untracked-files=all")
        diff = _git(worktree, "diff", "HEAD", "--stat", "--patch") + _new_files_diff(
            worktree, status)
        bundle["git"] = {
            "head": _git(worktree, "rev-parse", "HEAD").strip(),
            "status": status,
            "diff": diff[:BUNDLE_DIFF_BYTES],
            "diff_cut": len(diff) > BUNDLE_DIFF_BYTES,  # only the start was kept
        }
    if log_path is not None:
        text = read_log_text(log_path)
        bundle["log_tail"] = text.splitlines()[-BUNDLE_LOG_LINES:]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(bundle, indent=2, default=str, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
    return path


def _new_files_diff(worktree: Path, status: str) -> str:
    """The patch of the first untracked files (``git diff HEAD`` leaves them out, and new
    files are most of what a tool writes), up to the bundle's cap."""
    out: list[str] = []
    size = 0
    for line in status.splitlines()[:200]:
        if not line.startswith("?? ") or size > BUNDLE_DIFF_BYTES:
            continue
        name = line[3:].strip('"')
        text = _git(worktree, "diff", "--no-index", "--", "/dev/null", name)
        out.append(text)
        size += len(text)
    return "".join(out)


def _git(worktree: Path, *args: str) -> str:
    try:
        return run_git(list(args), worktree, check=False, timeout_s=30).stdout
    except Exception as exc:  # noqa: BLE001 -- diagnostics must never fail the bookkeeping
        return f"(git {' '.join(args)} failed: {exc})"
