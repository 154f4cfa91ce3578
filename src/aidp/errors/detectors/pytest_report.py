"""pytest: failed and erroring tests, collection errors, "no tests ran", usage errors.

Preferred source: the JUnit XML report, when the check's command names one
(``--junitxml=PATH``, ``--junit-xml PATH``, read relative to ``evidence.worktree``). Otherwise
the text: the short summary lines ``FAILED nodeid - message`` / ``ERROR nodeid - message``,
located by the failure sections above them (``tests/test_a.py:8: AssertionError``).

Every finding is **permanent**: a failing test needs a change. The code is the exception type
when pytest shows one (``AssertionError``, ``ValueError``), else ``failed`` / ``error``; the file
is the test's module and the line where the test failed, when the report says.
"""

from __future__ import annotations

import os
import re
import shlex
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from aidp.errors.detectors._common import code_tool_output, inside_worktree, make_finding
from aidp.errors.finding import AttemptEvidence, CheckEvidence, FailureClass, Finding
from aidp.errors.hookspecs import hookimpl

NAME = "pytest"
REPORT_MAX_BYTES = 32 * 1024 * 1024

_SUMMARY = re.compile(r"^(?P<kind>FAILED|ERROR) (?P<nodeid>\S.*?)(?: - (?P<message>.*))?$", re.M)
_SECTION = re.compile(r"^_{3,} (?P<title>.+?) _{3,}$", re.M)
_BANNER = re.compile(r"^={3,} .* ={3,}$", re.M)
_LOCATION = re.compile(r"^(?P<file>[^\s:][^:\n]*?\.py):(?P<line>\d+): (?P<tail>.*)$"
                       r'|^\s*File "(?P<nfile>[^"\n]+)", line (?P<nline>\d+)', re.M)
_E_LINE = re.compile(r"^E {3}(?P<text>.*)$", re.M)
_EXC = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Failed|Interrupt|Warning))"
                  r"(?::|$)")
_NO_TESTS = re.compile(r"^=* ?no tests ran in [\d.]+s ?=*$", re.M)
_USAGE = re.compile(r"^(?:ERROR: (?P<message>(?:file or directory not found|not found): .*)"
                    r"|(?:pytest|py\.test|__main__\.py): error: (?P<usage>.*))$", re.M)
_SESSION = re.compile(r"^=+ (?:test session starts|short test summary info) =+$|"
                      r"^\d+ (?:failed|passed|errors?)\b.* in [\d.]+s\b", re.M)


@dataclass(frozen=True)
class _Where:
    file: str | None
    line: int | None
    exc_type: str | None
    message: str | None = None  # the first ``E   `` line: the exception as pytest shows it


def junit_path(command: str) -> str | None:
    """The JUnit XML path a pytest command line asks for, if any."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    for index, word in enumerate(words):
        for flag in ("--junitxml", "--junit-xml"):
            if word == flag and index + 1 < len(words):
                return words[index + 1]
            if word.startswith(flag + "="):
                return word[len(flag) + 1:]
    return None


def _exc_type(text: str | None) -> str | None:
    if not text:
        return None
    match = _EXC.match(text.strip())
    if match:
        return match.group("type")
    return "AssertionError" if text.lstrip().startswith("assert ") else None


def _where_in(body: str, worktree: Path | None) -> _Where:
    """The failure's location and exception type in one section (or JUnit failure text)."""
    locations = [(m.group("file") or m.group("nfile"), int(m.group("line") or m.group("nline")),
                  m.group("tail")) for m in _LOCATION.finditer(body)]
    own = [loc for loc in locations if inside_worktree(loc[0], worktree)] or locations
    file = line = None
    tail_type = None
    if own:
        file, line, tail = own[-1]
        tail_type = _exc_type(tail)
    e_lines = [m.group("text").strip() for m in _E_LINE.finditer(body)]
    exc = next((t for t in (_exc_type(e) for e in e_lines) if t), None) or tail_type
    return _Where(file, line, exc, e_lines[0] if e_lines else None)


def _sections(text: str, worktree: Path | None) -> dict[str, _Where]:
    """Failure sections by title (``test_fail``, ``TestK.test_m``, ``tests/test_bad.py``)."""
    found: dict[str, _Where] = {}
    heads = list(_SECTION.finditer(text))
    for index, head in enumerate(heads):
        end = heads[index + 1].start() if index + 1 < len(heads) else len(text)
        banner = _BANNER.search(text, head.end(), end)
        body = text[head.end(): banner.start() if banner else end]
        title = head.group("title")
        for lead in ("ERROR at setup of ", "ERROR at teardown of ", "ERROR collecting "):
            if title.startswith(lead):
                title = title[len(lead):]
        found.setdefault(title, _where_in(body, worktree))
    return found


def _title_of(nodeid: str) -> str:
    parts = nodeid.split("::")
    return ".".join(parts[1:]) if len(parts) > 1 else parts[0]


def _finding(kind: str, nodeid: str, message: str | None, where: _Where,
             worktree: Path | None) -> Finding:
    module = nodeid.split("::", 1)[0]
    message = message or where.message
    file = module if module.endswith(".py") else where.file
    line = where.line if where.file is None or file is None or where.file == file or \
        os.path.basename(where.file) == os.path.basename(file) else None
    exc = _exc_type(message) or where.exc_type
    code = exc or ("failed" if kind == "FAILED" else "error")
    text = f"{nodeid}: {message}" if message else f"{nodeid} {kind.lower()}"
    return make_finding(NAME, text, FailureClass.PERMANENT, worktree=worktree, file=file,
                        line=line, code=code)


def from_text(text: str, worktree: Path | None) -> list[Finding]:
    """Findings from pytest's terminal output."""
    findings: list[Finding] = []
    summary = list(_SUMMARY.finditer(text))
    if summary:
        sections = _sections(text, worktree)
        for match in summary:
            nodeid = match.group("nodeid").strip()
            if "::" not in nodeid and not nodeid.endswith(".py"):
                continue  # not a pytest node id (unittest prints "FAILED (failures=1)")
            where = sections.get(_title_of(nodeid)) or sections.get(nodeid) or \
                _Where(None, None, None)
            findings.append(_finding(match.group("kind"), nodeid, match.group("message"),
                                     where, worktree))
    for usage in _USAGE.finditer(text):
        message = usage.group("message") or usage.group("usage")
        findings.append(make_finding(NAME, message, FailureClass.PERMANENT,
                                     worktree=worktree, code="usage-error"))
    if not findings and _NO_TESTS.search(text):
        findings.append(make_finding(NAME, "no tests ran", FailureClass.PERMANENT,
                                     code="no-tests"))
    return findings


def from_junit(path: Path, worktree: Path | None) -> list[Finding] | None:
    """Findings from a JUnit XML report; None if it cannot be read."""
    try:
        if path.stat().st_size > REPORT_MAX_BYTES:
            return None
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    findings: list[Finding] = []
    for case in root.iter("testcase"):
        for kind_tag in ("failure", "error"):
            for problem in case.findall(kind_tag):
                findings.append(_junit_finding(case, problem, kind_tag, worktree))
    return findings


def _junit_finding(case: ElementTree.Element, problem: ElementTree.Element, tag: str,
                   worktree: Path | None) -> Finding:
    classname = case.get("classname") or ""
    name = case.get("name") or ""
    where = _where_in(problem.text or "", worktree)
    if classname:
        module_parts = classname.split(".")
        # classname is the dotted module plus any classes: find the module by its file
        module = _module_file(module_parts, worktree, case.get("file"), where.file)
        classes = module_parts[len(Path(module).with_suffix("").parts):] if module else []
        nodeid = "::".join([module or classname, *classes, name])
    else:  # a collection error: name is the dotted module
        nodeid = _module_file(name.split("."), worktree, case.get("file"), where.file) or name
    message = problem.get("message") or None
    if tag == "error" and message == "collection failure":
        first_e = _E_LINE.search(problem.text or "")
        message = first_e.group("text").strip() if first_e else message
    if tag == "error" and message and message.startswith("failed on setup with "):
        message = message[len("failed on setup with "):].strip('"')
    if where.line is None and (line := case.get("line")) and line.isdigit():
        # pytest writes the JUnit line 0-based
        where = _Where(where.file, int(line) + 1, where.exc_type, where.message)
    kind = "FAILED" if tag == "failure" else "ERROR"
    return _finding(kind, nodeid, message, where, worktree)


def _module_file(parts: list[str], worktree: Path | None, file_attr: str | None,
                 located: str | None) -> str | None:
    """The test module's path for a dotted JUnit classname (longest prefix that is a file)."""
    if file_attr:
        return file_attr
    for size in range(len(parts), 0, -1):
        candidate = "/".join(parts[:size]) + ".py"
        if located is not None and (located == candidate or located.endswith("/" + candidate)):
            return candidate
        if worktree is not None and (worktree / candidate).is_file():
            return candidate
    return None


def detect_check(evidence: CheckEvidence) -> list[Finding]:
    """Findings of a pytest check: its JUnit report if named and readable, else its output."""
    report = junit_path(evidence.command) if evidence.worktree is not None else None
    if report is not None and evidence.worktree is not None:
        path = Path(report)
        found = from_junit(path if path.is_absolute() else evidence.worktree / path,
                           evidence.worktree)
        if found:
            return found
    text = code_tool_output(evidence) or ""
    return from_text(text, evidence.worktree) if _SESSION.search(text) or \
        _NO_TESTS.search(text) or _USAGE.search(text) else []


@hookimpl
def aidp_detect_attempt(evidence: AttemptEvidence) -> list[Finding]:
    text = code_tool_output(evidence)
    if text is None or not _SESSION.search(text):
        return []
    return from_text(text, evidence.worktree)


@hookimpl
def aidp_detect_check(evidence: CheckEvidence) -> list[Finding]:
    return detect_check(evidence)
