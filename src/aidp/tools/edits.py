"""Edits in a model's reply: parse whole-file and SEARCH/REPLACE blocks, check them, apply them.

The OpenAI adapter asks the model to answer in one of two edit formats (the tool profile's
``edit_format``; ``docs/edit-format.md`` is the user's reference). Both have Aider's shape: the
file's path on its own line, then a fenced block.

``diff`` -- SEARCH/REPLACE blocks; the SEARCH text must occur exactly once in the file::

    src/app.py
    ```python
    <<<<<<< SEARCH
    def greet():
        return "hi"
    =======
    def greet():
        return "hello"
    >>>>>>> REPLACE
    ```

An empty SEARCH section creates a new file with the REPLACE text. Several blocks may follow
each other in one fence; a block without its own path line edits the previous block's file.

``whole`` -- the complete new content of each changed file::

    src/app.py
    ```python
    def greet():
        return "hello"
    ```

Parsing (:func:`parse_edits`) is pure. :func:`apply_edits` checks *every* edit before writing
anything -- path relative, without ``..`` or ``.git``, not through a symbolic link, inside the
workstream's scope; SEARCH text found exactly once -- and writes only if all pass
(all-or-nothing; a failed write restores what was written). Every problem is a permanent
:class:`~aidp.errors.finding.Finding` of detector ``openai-edits``.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from aidp.errors.finding import FailureClass, Finding

__all__ = [
    "DETECTOR",
    "Edit",
    "EditFormat",
    "EditResult",
    "ParsedReply",
    "apply_edits",
    "check_path",
    "parse_edits",
]

DETECTOR = "openai-edits"
EditFormat = Literal["diff", "whole"]

_SEARCH = re.compile(r"^\s*<{5,9} SEARCH>?\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9} REPLACE\s*$")
_FENCE_OPEN = re.compile(r"^\s*(`{3,}|~{3,})[^`]*$")
_PATH_DECORATION = "`*#:'\" \t"
_MAX_PATH_CHARS = 1024


@dataclass(frozen=True)
class Edit:
    """One edit: ``search`` None replaces the whole file with ``replace``; ``""`` creates a
    file. ``reply_line`` is the 1-based line of the block in the reply."""

    path: str
    search: str | None
    replace: str
    reply_line: int


@dataclass(frozen=True)
class ParsedReply:
    """The edits found in a reply, and the problems of blocks that could not be read."""

    edits: tuple[Edit, ...]
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class EditResult:
    """What :func:`apply_edits` did: the files written (``changed``, of which ``created`` are
    new), or nothing and the ``findings`` that stopped it."""

    changed: tuple[str, ...] = ()
    created: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.findings


def _finding(message: str, code: str, file: str | None = None) -> Finding:
    return Finding(detector=DETECTOR, message=message, failure_class=FailureClass.PERMANENT,
                   file=file, code=code)


def _as_path(line: str) -> str | None:
    """The path a file-name line names, or None if the line does not look like a path."""
    candidate = line.strip().strip(_PATH_DECORATION)
    if not candidate or len(candidate) > _MAX_PATH_CHARS or any(c.isspace() for c in candidate):
        return None
    if _FENCE_OPEN.match(candidate) or candidate.startswith(("<<<", "===", ">>>")):
        return None
    if not any(c.isalnum() for c in candidate):
        return None
    return candidate


def _path_before(lines: Sequence[str], index: int, look_back: int = 3, *,
                 skip_fences: bool = True) -> str | None:
    """The path named by the nearest non-blank line among the ``look_back`` lines before
    ``index`` (fence lines skipped if ``skip_fences``), or None."""
    for line in reversed(lines[max(0, index - look_back) : index]):
        if not line.strip() or (skip_fences and _FENCE_OPEN.match(line)):
            continue
        return _as_path(line)
    return None


def _join(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _parse_diff(lines: list[str]) -> ParsedReply:
    edits: list[Edit] = []
    findings: list[Finding] = []
    current: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if _DIVIDER.match(line) or _REPLACE.match(line):
            findings.append(_finding(
                f"reply line {i + 1}: {line.strip()[:20]!r} outside a SEARCH/REPLACE block",
                "malformed-block"))
            i += 1
            continue
        if not _SEARCH.match(line):
            i += 1
            continue
        start = i
        path = _path_before(lines, i) or current
        search: list[str] = []
        replace: list[str] = []
        i += 1
        problem = None
        while i < len(lines) and not _DIVIDER.match(lines[i]):
            if _SEARCH.match(lines[i]) or _REPLACE.match(lines[i]):
                problem = f"reply line {i + 1}: expected ======= before {lines[i].strip()!r}"
                break
            search.append(lines[i])
            i += 1
        else:
            if i >= len(lines):
                problem = f"reply line {start + 1}: SEARCH block without ======="
        if problem is None:
            i += 1
            while i < len(lines) and not _REPLACE.match(lines[i]):
                if _SEARCH.match(lines[i]) or _DIVIDER.match(lines[i]):
                    problem = (f"reply line {i + 1}: expected >>>>>>> REPLACE before "
                               f"{lines[i].strip()!r}")
                    break
                replace.append(lines[i])
                i += 1
            else:
                if i >= len(lines):
                    problem = f"reply line {start + 1}: SEARCH block without >>>>>>> REPLACE"
        if problem is not None:
            findings.append(_finding(problem, "malformed-block", path))
            if i < len(lines) and not _SEARCH.match(lines[i]):
                i += 1  # a stray marker: reported once; a new SEARCH starts the next block
            continue
        i += 1
        if path is None:
            findings.append(_finding(
                f"reply line {start + 1}: SEARCH/REPLACE block without a file path line "
                "before it", "missing-path"))
            continue
        current = path
        edits.append(Edit(path, _join(search), _join(replace), start + 1))
    return ParsedReply(tuple(edits), tuple(findings))


def _parse_whole(lines: list[str]) -> ParsedReply:
    edits: list[Edit] = []
    findings: list[Finding] = []
    i = 0
    while i < len(lines):
        opener = _FENCE_OPEN.match(lines[i])
        if not opener:
            i += 1
            continue
        fence = opener.group(1)
        close = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        path = _path_before(lines, i, look_back=2, skip_fences=False)
        end = i + 1
        while end < len(lines) and not close.match(lines[end]):
            end += 1
        if end >= len(lines):
            if path is not None:
                findings.append(_finding(
                    f"reply line {i + 1}: the fence holding {path} is never closed",
                    "malformed-block", path))
            break
        if path is not None:
            edits.append(Edit(path, None, _join(lines[i + 1 : end]), i + 1))
        i = end + 1
    return ParsedReply(tuple(edits), tuple(findings))


def parse_edits(text: str, edit_format: EditFormat) -> ParsedReply:
    """Read the edits of a model's reply in ``edit_format`` (``diff`` or ``whole``).

    Returns the well-formed edits and a finding per malformed block; a reply with no edit at
    all gets a ``no-edits`` finding. Never raises for any text.
    """
    lines = text.splitlines()
    parsed = _parse_diff(lines) if edit_format == "diff" else _parse_whole(lines)
    if not parsed.edits and not parsed.findings:
        shape = "SEARCH/REPLACE blocks" if edit_format == "diff" else "whole-file blocks"
        return ParsedReply((), (_finding(
            f"the reply holds no {shape} (a file path line, then a fenced block)", "no-edits"),))
    return parsed


def check_path(path: str, worktree: Path,
               in_scope: Callable[[str], bool] | None = None) -> tuple[str, Finding | None]:
    """Normalize an edit's path and check it is safe to write inside ``worktree``.

    Returns the normalized relative POSIX path and None, or the path and the finding that
    forbids it: absolute, ``..``, ``.git``, a backslash or NUL, through a symbolic link, or
    outside ``in_scope``.
    """
    def bad(message: str, code: str = "unsafe-path") -> tuple[str, Finding]:
        return path, _finding(f"{path}: {message}", code, path)

    if "\x00" in path or "\\" in path:
        return bad("the path holds a backslash or NUL")
    if path.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", path):
        return bad("absolute paths are not allowed; use a path relative to the repository")
    parts = [p for p in PurePosixPath(path).parts if p != "."]
    if not parts:
        return bad("empty path")
    if ".." in parts:
        return bad("'..' is not allowed in a path")
    if ".git" in parts:
        return bad("files under .git cannot be edited")
    normal = "/".join(parts)
    if in_scope is not None and not in_scope(normal):
        return normal, _finding(f"{normal}: outside the workstream's scope", "out-of-scope",
                                normal)
    root = worktree.resolve()
    node = worktree
    for part in parts:
        node = node / part
        if node.is_symlink():
            return normal, _finding(f"{normal}: the path goes through a symbolic link",
                                    "unsafe-path", normal)
    if not node.resolve().is_relative_to(root):
        return normal, _finding(f"{normal}: resolves outside the worktree", "unsafe-path",
                                normal)
    return normal, None


def _read(target: Path) -> str | None:
    """The file's text, None if it does not exist; ValueError if it cannot be edited."""
    if not target.exists():
        return None
    if not target.is_file():
        raise ValueError("is not a regular file")
    try:
        return target.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("is not UTF-8 text") from exc


def _plan(edit: Edit, current: str | None) -> tuple[str | None, Finding | None]:
    """The file's new text after ``edit``, or the finding that stops it."""
    if edit.search is None:
        return edit.replace, None
    if not edit.search.strip():
        if current:
            return None, _finding(
                f"{edit.path}: an empty SEARCH creates a file, but this file exists; quote the "
                "lines to change in SEARCH", "file-exists", edit.path)
        return edit.replace, None
    if current is None:
        return None, _finding(f"{edit.path}: no such file (an empty SEARCH creates one)",
                              "file-not-found", edit.path)
    count = current.count(edit.search)
    if count == 0:
        first = edit.search.strip().splitlines()[0][:80]
        return None, _finding(
            f"{edit.path}: the SEARCH text of reply line {edit.reply_line} is not in the file "
            f"(it must match exactly, starting {first!r})", "search-not-found", edit.path)
    if count > 1:
        return None, _finding(
            f"{edit.path}: the SEARCH text of reply line {edit.reply_line} occurs {count} times; "
            "include more lines so it matches once", "search-ambiguous", edit.path)
    return current.replace(edit.search, edit.replace, 1), None


def _write(target: Path, text: str) -> None:
    """Replace ``target`` atomically, keeping its permission bits."""
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else None
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".aidp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply_edits(edits: Sequence[Edit], worktree: Path,
                in_scope: Callable[[str], bool] | None = None) -> EditResult:
    """Check every edit, then write them all, or none.

    Args:
        edits: from :func:`parse_edits`; several edits of one file apply in order.
        worktree: the directory the paths are relative to.
        in_scope: the workstream's scope matcher (relative POSIX path -> allowed); None allows
            any path inside the worktree.

    Returns:
        the files written, or the findings of every edit that failed (and nothing written).
    """
    findings: list[Finding] = []
    originals: dict[str, str | None] = {}
    texts: dict[str, str] = {}
    for edit in edits:
        path, problem = check_path(edit.path, worktree, in_scope)
        if problem is not None:
            findings.append(problem)
            continue
        if path not in originals:
            try:
                originals[path] = _read(worktree / path)
            except (OSError, ValueError) as exc:
                findings.append(_finding(f"{path}: {exc}", "unreadable", path))
                originals[path] = None
                texts[path] = ""
                continue
        current = texts.get(path, originals[path])
        new, problem = _plan(Edit(path, edit.search, edit.replace, edit.reply_line), current)
        if problem is not None:
            findings.append(problem)
        elif new is not None:
            texts[path] = new
    if findings:
        return EditResult(findings=tuple(findings))
    changed = [path for path, text in texts.items() if text != originals[path]]
    written: list[str] = []
    try:
        for path in changed:
            _write(worktree / path, texts[path])
            written.append(path)
    except OSError as exc:
        for path in written:  # all-or-nothing: put back what was already written
            before = originals[path]
            if before is None:
                (worktree / path).unlink(missing_ok=True)
            else:
                _write(worktree / path, before)
        failed = changed[len(written)]
        return EditResult(findings=(_finding(f"{failed}: cannot write: {exc.strerror or exc}",
                                             "write-failed", failed),))
    created = tuple(p for p in changed if originals[p] is None)
    return EditResult(tuple(changed), created)
