"""Scenario coverage: which tests prove which OpenSpec scenario, and did they pass.

A test *proves* a scenario when it names it with a ``spec://`` URI::

    @pytest.mark.spec("spec://auth/Login#Good password")
    def test_good_password(): ...

    def test_bad_password():
        \"\"\"Proves spec://auth/Login#Bad%20password.\"\"\"

The marker is ``spec`` (:data:`MARKER`); it may carry several URIs and may decorate a ``Test*``
class (it then applies to every test method). In a docstring, any URI with a ``#scenario``
counts; spaces must be percent-encoded there (a URI ends at whitespace). URIs are resolved with
:func:`aidp.specs.resolver.resolve`, so names match exactly as ``aidp specs resolve`` matches
them, renames are followed and ``@version`` works; a URI without a version that names a
scenario only an active change adds is looked up in the active changes too.

Tests are found by reading test files (``test_*.py``, ``*_test.py``) with :mod:`ast`: nothing
of the user's code is imported. Results come from a JUnit XML file (pytest ``--junitxml``) or
from :func:`run_tests`, which runs exactly the tagged tests in their own process group
(:func:`aidp.process.runner.run_captured`).

Errors: :class:`~aidp.exceptions.ValidationError` (exit 2) listing every bad tag or malformed
file as ``file:line``; :class:`~aidp.exceptions.InputError` (exit 2) when the test run times out
or cannot start.
"""

from __future__ import annotations

import ast
import enum
import os
import re
import shlex
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from aidp.exceptions import InputError, NotFoundError, Problem, ValidationError
from aidp.process.runner import run_captured
from aidp.specs.index import find_references
from aidp.specs.model import Project, Scenario
from aidp.specs.resolver import parse_uri, resolve

__all__ = [
    "MARKER",
    "Coverage",
    "Outcome",
    "ProvingTest",
    "ScenarioCoverage",
    "ScenarioKey",
    "Status",
    "TaggedTest",
    "collect_tests",
    "coverage_of",
    "map_tests",
    "read_junit",
    "run_tests",
    "scenario_uri",
]

MARKER = "spec"
_TEST_FILE = re.compile(r"^(test_.*|.*_test)\.py$")
_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".aidp", ".tox"}


class Outcome(enum.Enum):
    """One test's result in a JUnit report."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    NOT_RUN = "not_run"  # tagged, but absent from the report (or no report given)


class Status(enum.Enum):
    """A scenario's coverage."""

    PASSED = "passed"      # proving tests ran and every one that ran passed
    FAILED = "failed"      # a proving test failed
    UNTESTED = "untested"  # no proving test, or none of them ran (skipped, absent)
    TAGGED = "tagged"      # proving tests exist, no results were given


@dataclass(frozen=True, order=True)
class ScenarioKey:
    """A scenario by names: capability, requirement, scenario."""

    capability: str
    requirement: str
    scenario: str

    def __str__(self) -> str:
        return f"{self.capability}/{self.requirement}#{self.scenario}"


def scenario_uri(key: ScenarioKey) -> str:
    """The canonical ``spec://`` URI of ``key`` (names percent-encoded)."""
    return (f"spec://{key.capability}/{quote(key.requirement, safe='')}"
            f"#{quote(key.scenario, safe='')}")


@dataclass(frozen=True)
class TaggedTest:
    """A test naming a ``spec://`` URI: its pytest node id, where the tag is, the URI."""

    nodeid: str
    file: str
    line: int
    uri: str
    source: str  # "marker" or "docstring"


# -- collecting ------------------------------------------------------------------------------


def _test_files(root: Path, paths: Iterable[str]) -> Iterator[Path]:
    for entry in paths:
        base = (root / entry).resolve()
        if base.is_file():
            yield base
            continue
        if not base.is_dir():
            continue
        for directory, subdirs, files in os.walk(base):
            subdirs[:] = sorted(d for d in subdirs if d not in _SKIP_DIRS
                                and not d.startswith("."))
            for name in sorted(files):
                if _TEST_FILE.match(name):
                    yield Path(directory) / name


def _is_spec_marker(node: ast.expr) -> bool:
    """``pytest.mark.spec(...)`` or ``mark.spec(...)``."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return False
    func = node.func
    return (func.attr == MARKER and isinstance(func.value, ast.Attribute)
            and func.value.attr == "mark") or (
        func.attr == MARKER and isinstance(func.value, ast.Name) and func.value.id == "mark")


def _marker_uris(decorators: list[ast.expr], file: str,
                 problems: list[Problem]) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for decorator in decorators:
        if not _is_spec_marker(decorator):
            continue
        assert isinstance(decorator, ast.Call)
        if not decorator.args:
            problems.append(Problem(file, f"@pytest.mark.{MARKER} names no spec:// URI",
                                    decorator.lineno, code="bad-tag"))
        for arg in decorator.args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((arg.value.strip(), arg.lineno))
            else:
                problems.append(Problem(file, f"@pytest.mark.{MARKER} takes string literals "
                                        "(it is read without importing the test)",
                                        arg.lineno, code="bad-tag"))
    return found


def _docstring_uris(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[tuple[str, int]]:
    if not (node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
            and isinstance(node.body[0].value.value, str)):
        return []
    doc = node.body[0].value
    text = doc.value if isinstance(doc.value, str) else ""
    return [(uri, doc.lineno + offset) for uri, offset in find_references(text) if "#" in uri]


def _scan(tree: ast.Module, file: str, problems: list[Problem]) -> list[TaggedTest]:
    tests: list[TaggedTest] = []

    def visit(body: list[ast.stmt], prefix: str, inherited: list[tuple[str, int]]) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                visit(node.body, f"{prefix}::{node.name}",
                      inherited + _marker_uris(node.decorator_list, file, problems))
            elif (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.name.startswith("test")):
                nodeid = f"{prefix}::{node.name}"
                for uri, line in [*inherited,
                                  *_marker_uris(node.decorator_list, file, problems)]:
                    tests.append(TaggedTest(nodeid, file, line, uri, "marker"))
                for uri, line in _docstring_uris(node):
                    tests.append(TaggedTest(nodeid, file, line, uri, "docstring"))

    visit(tree.body, file, [])
    return tests


def collect_tests(root: Path, paths: Iterable[str] = ("tests",)) -> list[TaggedTest]:
    """Every scenario tag in the test files under ``paths`` (relative to ``root``), read with
    :mod:`ast`; node ids are relative to ``root``. Raises ValidationError naming ``file:line``
    for a file that does not parse or a marker that is not a string literal."""
    root = root.resolve()
    problems: list[Problem] = []
    tests: list[TaggedTest] = []
    for path in _test_files(root, paths):
        try:
            file = path.relative_to(root).as_posix()
        except ValueError:
            continue  # a test path outside the repository: its node ids would not match
        try:
            source = path.read_bytes()
            if b"spec" not in source:  # neither a marker nor a URI: skip the parse
                continue
            tree = ast.parse(source, filename=file)
        except SyntaxError as exc:
            problems.append(Problem(file, f"cannot parse: {exc.msg}", exc.lineno,
                                    code="bad-test-file"))
            continue
        except OSError as exc:
            problems.append(Problem(file, f"cannot read: {exc.strerror}", code="bad-test-file"))
            continue
        tests += _scan(tree, file, problems)
    if problems:
        raise ValidationError(problems)
    return tests


# -- mapping ---------------------------------------------------------------------------------


def _resolve_scenario(project: Project, test: TaggedTest) -> ScenarioKey:
    """The scenario a tag names; NotFoundError / InputError from the resolver otherwise."""
    parsed = parse_uri(test.uri)
    if parsed.scenario is None:
        raise InputError(f"{test.uri}: names no scenario (spec://cap/req#scenario)")
    try:
        found = resolve(project, test.uri)
    except NotFoundError:
        # Unversioned: the scenario may be one an active change adds (tests are written
        # before the change is archived).
        if "@" in test.uri:
            raise
        for change_id in sorted(project.changes):
            try:
                found = resolve(project, f"{test.uri}@{change_id}")
                break
            except (NotFoundError, InputError):
                continue
        else:
            raise
    assert found.requirement is not None and found.scenario is not None
    return ScenarioKey(found.capability, found.requirement.name, found.scenario.name)


def map_tests(project: Project, tests: Iterable[TaggedTest],
              ) -> dict[ScenarioKey, list[TaggedTest]]:
    """Group tagged tests by the scenario they name. Raises ValidationError listing every tag
    that names no known scenario, as ``file:line``."""
    mapping: dict[ScenarioKey, list[TaggedTest]] = {}
    problems: list[Problem] = []
    for test in tests:
        try:
            key = _resolve_scenario(project, test)
        except (NotFoundError, InputError) as exc:
            problems.append(Problem(test.file, f"unknown scenario in {test.source} of "
                                    f"{test.nodeid.split('::', 1)[1]}: {exc.message}",
                                    test.line, code="unknown-scenario"))
            continue
        proving = mapping.setdefault(key, [])
        if all(t.nodeid != test.nodeid for t in proving):
            proving.append(test)
    if problems:
        raise ValidationError(problems)
    return mapping


# -- results ---------------------------------------------------------------------------------


def _junit_key(nodeid: str) -> tuple[str, str]:
    """(classname, name) pytest writes for ``nodeid`` (its ``mangle_test_address``)."""
    parts = nodeid.split("::")
    parts[0] = re.sub(r"\.py$", "", parts[0].replace("/", "."))
    return ".".join(parts[:-1]), parts[-1]


def read_junit(path: Path, display: str | None = None) -> dict[tuple[str, str], Outcome]:
    """Test results of a JUnit XML file, keyed ``(classname, name)`` with parameters dropped
    from the name (a parametrized test failed when any case failed). Raises InputError naming
    ``file:line`` for a file that is missing or not JUnit XML."""
    shown = display or str(path)
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        line = exc.position[0]
        raise InputError(f"{shown}:{line}: malformed JUnit XML: "
                         f"{str(exc).split(':')[0]}") from None
    except OSError as exc:
        raise InputError(f"{shown}: cannot read: {exc.strerror}") from None
    top = tree.getroot()
    if top.tag not in ("testsuites", "testsuite"):
        raise InputError(f"{shown}:1: not JUnit XML (root element <{top.tag}>)")
    results: dict[tuple[str, str], Outcome] = {}
    rank = {Outcome.FAILED: 3, Outcome.PASSED: 2, Outcome.SKIPPED: 1}
    for case in top.iter("testcase"):
        name = case.get("name")
        if name is None:
            raise InputError(f"{shown}: <testcase> without a name attribute")
        key = (case.get("classname", ""), name.split("[", 1)[0])
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            status = Outcome.FAILED
        elif "skipped" in tags:
            status = Outcome.SKIPPED
        else:
            status = Outcome.PASSED
        if key not in results or rank[status] > rank[results[key]]:
            results[key] = status
    return results


def run_tests(root: Path, nodeids: list[str], command: str, *,
              timeout_s: float = 600.0) -> dict[tuple[str, str], Outcome]:
    """Run exactly ``nodeids`` with ``command`` (a pytest command line, e.g.
    ``python -m pytest -q``) in ``root``, in its own process group, writing JUnit XML to a
    temporary directory; return its results. The whole group is killed after ``timeout_s``
    (InputError). A failing test is a result, not an error."""
    if not nodeids:
        return {}
    with tempfile.TemporaryDirectory(prefix="aidp-coverage-") as tmp:
        report = Path(tmp) / "junit.xml"
        argv = [*shlex.split(command), f"--junitxml={report}", f"--rootdir={root}",
                "-o", "junit_family=xunit2", *nodeids]
        try:
            done = run_captured(argv, cwd=root, timeout_s=timeout_s, merge_stderr=True,
                                errors="replace")
        except OSError as exc:
            raise InputError(f"cannot run {argv[0]!r}: {exc.strerror}",
                             hint="set [specs] test_command in aidp.toml") from None
        except subprocess.TimeoutExpired:
            raise InputError(f"the tagged tests did not finish in {timeout_s:g} s: killed",
                             hint="pass a larger --timeout") from None
        if not report.is_file():
            tail = done.stdout.strip().splitlines()[-3:]
            raise InputError(f"{command!r} wrote no JUnit report (exit {done.returncode}): "
                             + " | ".join(tail), hint="is it a pytest command line?")
        return read_junit(report, "junit report of the tagged tests")


# -- coverage --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProvingTest:
    """A test proving a scenario, and its result."""

    nodeid: str
    file: str
    line: int
    status: Outcome


@dataclass(frozen=True)
class ScenarioCoverage:
    """One scenario of the specs, where it is written, its proving tests and its status."""

    key: ScenarioKey
    file: str
    line: int
    tests: tuple[ProvingTest, ...]
    status: Status


@dataclass(frozen=True)
class Coverage:
    """Every scenario of the specs at one version, in spec order."""

    version: str
    scenarios: tuple[ScenarioCoverage, ...]

    @property
    def complete(self) -> bool:
        """Every scenario passed (or, without results, has a proving test)."""
        return all(s.status in (Status.PASSED, Status.TAGGED) for s in self.scenarios)

    def counts(self) -> dict[str, int]:
        return {status.value: sum(1 for s in self.scenarios if s.status is status)
                for status in Status}


def _status(tests: list[ProvingTest], have_results: bool) -> Status:
    if not tests:
        return Status.UNTESTED
    if not have_results:
        return Status.TAGGED
    ran = {t.status for t in tests}
    if Outcome.FAILED in ran:
        return Status.FAILED
    return Status.PASSED if Outcome.PASSED in ran else Status.UNTESTED


def _scenarios_at(project: Project, version: str) -> Iterator[tuple[str, str, Scenario]]:
    """(capability, requirement name, scenario) of every scenario of the specs at
    ``version`` (current, or an active change: the specs as archiving it would leave them)."""
    capabilities = sorted(project.specs)
    if version != "current":
        change = project.changes.get(version)
        if change is None:
            raise NotFoundError(f"no active change {version!r}")
        capabilities = sorted({*capabilities, *(d.capability for d in change.deltas)})
    for capability in capabilities:
        spec = (project.specs[capability] if version == "current"
                else resolve(project, f"spec://{capability}@{version}").spec)
        for requirement in spec.requirements:
            for scenario in requirement.scenarios:
                yield capability, requirement.name, scenario


def coverage_of(project: Project, mapping: dict[ScenarioKey, list[TaggedTest]],
                results: dict[tuple[str, str], Outcome] | None,
                version: str = "current") -> Coverage:
    """Each scenario of the specs at ``version`` with its proving tests and their results
    (``results`` None: no results were given, statuses are ``tagged`` / ``untested``)."""
    rows: list[ScenarioCoverage] = []
    for capability, requirement, scenario in _scenarios_at(project, version):
        key = ScenarioKey(capability, requirement, scenario.name)
        tests = [ProvingTest(t.nodeid, t.file, t.line,
                             (results or {}).get(_junit_key(t.nodeid), Outcome.NOT_RUN))
                 for t in mapping.get(key, [])]
        rows.append(ScenarioCoverage(key, scenario.position.file, scenario.position.line,
                                     tuple(tests), _status(tests, results is not None)))
    return Coverage(version, tuple(rows))
