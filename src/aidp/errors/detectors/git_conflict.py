"""git merge conflicts, as ``git merge``, ``rebase``, ``cherry-pick``, ``pull`` and
``git merge-tree --write-tree`` print them: ``CONFLICT (content): Merge conflict in a.txt``,
``CONFLICT (modify/delete): b.txt deleted in other and modified in HEAD. ...``.

One finding per conflict line, **permanent** (the same merge conflicts again until someone
changes one side), code ``conflict-<kind>`` (``conflict-content``, ``conflict-modify/delete``),
file = the conflicted path.
"""

from __future__ import annotations

import re
from pathlib import Path

from aidp.errors.detectors._common import make_finding, strip_ansi
from aidp.errors.finding import AttemptEvidence, CheckEvidence, FailureClass, Finding
from aidp.errors.hookspecs import hookimpl

NAME = "git-conflict"
_CONFLICT = re.compile(r"^CONFLICT \((?P<kind>[^)\n]+)\): (?P<detail>.+)$", re.M)
_MERGE_IN = re.compile(r"Merge conflict in (?P<file>.+?)\s*$")
_FIRST_PATH = re.compile(r"^(?:[Ff]ile )?(?P<file>\S+)")


def detect(output: str, worktree: Path | None) -> list[Finding]:
    """Findings for every CONFLICT line in ``output``."""
    if "CONFLICT (" not in output:
        return []
    findings: list[Finding] = []
    for match in _CONFLICT.finditer(strip_ansi(output)):
        detail = match.group("detail").strip()
        where = _MERGE_IN.search(detail) or _FIRST_PATH.match(detail)
        file = where.group("file") if where else None
        findings.append(make_finding(
            NAME, f"CONFLICT ({match.group('kind')}): {detail}", FailureClass.PERMANENT,
            worktree=worktree, file=file, code=f"conflict-{match.group('kind').strip()}",
            # branch names in the detail carry the run's id: the fingerprint is kind + file
            fingerprint_basis="CONFLICT"))
    return findings


@hookimpl
def aidp_detect_attempt(evidence: AttemptEvidence) -> list[Finding]:
    return detect(evidence.output, evidence.worktree)


@hookimpl
def aidp_detect_check(evidence: CheckEvidence) -> list[Finding]:
    return detect(evidence.output, evidence.worktree)
