"""A full disk or an exhausted quota: ``No space left on device``, ``ENOSPC``, ``[Errno 28]``,
``Disk quota exceeded`` / ``EDQUOT``.

Class **transient**, on purpose. The fix loop cannot help: no edit of the code frees a disk, so
*permanent* (fix, then escalate) would spend model calls on a problem of the machine. The
condition is often temporary here: the worktrees, builds and logs of the other steps of the same
run are released as they finish, and the operator can free space while the run waits. The retry
policy bounds the attempts, so a disk that stays full still fails the step, with this message
saying why.
"""

from __future__ import annotations

import re
from pathlib import Path

from aidp.errors.detectors._common import make_finding, strip_ansi
from aidp.errors.finding import AttemptEvidence, CheckEvidence, FailureClass, Finding
from aidp.errors.hookspecs import hookimpl

NAME = "disk-full"
_PATTERN = re.compile(
    r"No space left on device|\bENOSPC\b|\[Errno 28\]|Disk quota exceeded|\bEDQUOT\b",
    re.IGNORECASE,
)


_KEYS = ("no space left", "enospc", "errno 28", "quota exceeded", "edquot")


def detect(output: str, worktree: Path | None) -> list[Finding]:
    """One finding naming the first line that says the disk (or quota) is full."""
    lowered = output.lower()
    if not any(key in lowered for key in _KEYS):
        return []
    match = _PATTERN.search(output)
    if match is None:
        return []
    start = output.rfind("\n", 0, match.start()) + 1
    end = output.find("\n", match.end())
    line = strip_ansi(output[start: None if end < 0 else end]).strip()
    quota = "quot" in match.group(0).lower()
    return [make_finding(NAME, line, FailureClass.TRANSIENT,
                         code="EDQUOT" if quota else "ENOSPC", worktree=worktree)]


@hookimpl
def aidp_detect_attempt(evidence: AttemptEvidence) -> list[Finding]:
    return detect(evidence.output, evidence.worktree)


@hookimpl
def aidp_detect_check(evidence: CheckEvidence) -> list[Finding]:
    return detect(evidence.output, evidence.worktree)
