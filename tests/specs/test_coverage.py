"""Scenario coverage: tests tagged with spec:// scenario URIs, their results, the CLI's verdict."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from aidp.exceptions import ValidationError
from aidp.specs import load_project
from aidp.specs.coverage import (
    Outcome,
    ScenarioKey,
    collect_tests,
    map_tests,
    read_junit,
)
from tests.conftest import Cli, init_repo
from tests.specs.corpus import proposal, spec

SPEC = spec("auth", """### Requirement: Login
The system SHALL let a user log in.

#### Scenario: Good password
- **WHEN** the password is right
- **THEN** a session starts

#### Scenario: Bad password
- **WHEN** the password is wrong
- **THEN** an error is shown

#### Scenario: Locked out
- **WHEN** five attempts failed
- **THEN** the account locks
""")

TESTS = '''import pytest


@pytest.mark.spec("spec://auth/Login#Good password")
def test_good():
    assert True


def test_bad():
    """Proves spec://auth/Login#Bad%20password."""
    assert False


class TestMore:
    @pytest.mark.spec("spec://auth/Login#Good password", "spec://auth/Login#Good password")
    def test_again(self):
        assert True


def test_untagged():
    pass
'''

PYTEST_INI = "[pytest]\nmarkers =\n    spec(uri): the OpenSpec scenario this test proves\n"

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="3">
<testcase classname="tests.test_auth" name="test_good" time="0.001"/>
<testcase classname="tests.test_auth" name="test_bad" time="0.001"><failure message="x"/>
</testcase>
<testcase classname="tests.test_auth.TestMore" name="test_again" time="0.001"/>
</testsuite></testsuites>
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git repository with one spec of three scenarios: one proved by a passing test, one
    by a failing test, one by none."""
    return init_repo(tmp_path / "repo", {
        "openspec/specs/auth/spec.md": SPEC,
        "tests/test_auth.py": TESTS,
        "pytest.ini": PYTEST_INI,
        "aidp.toml": f'[specs]\ntest_command = "{sys.executable} -m pytest -q"\n',
    })


def _coverage(project: Path, *args: str) -> tuple[int, dict[str, object], str]:
    result = Cli(project)("specs", "coverage", "--json", *args)
    return result.returncode, json.loads(result.stdout) if result.stdout else {}, result.stderr


def _statuses(document: dict[str, object]) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    rows = document["scenarios"]
    assert isinstance(rows, list)
    return {row["scenario"]: (row["status"], [(t["nodeid"], t["status"]) for t in row["tests"]])
            for row in rows}


def test_markers_and_docstrings_are_found_without_importing(project: Path) -> None:
    """A spec marker (function or class level) and a docstring URI with a #scenario tag a
    test; the file is only parsed (an import-time crash in it changes nothing)."""
    test_file = project / "tests/test_auth.py"
    test_file.write_text("raise SystemExit('imported!')\n" + TESTS)
    found = collect_tests(project)
    assert {(t.nodeid, t.source) for t in found} == {
        ("tests/test_auth.py::test_good", "marker"),
        ("tests/test_auth.py::test_bad", "docstring"),
        ("tests/test_auth.py::TestMore::test_again", "marker")}
    mapping = map_tests(load_project(project), found)
    good = ScenarioKey("auth", "Login", "Good password")
    assert [t.nodeid for t in mapping[good]] == ["tests/test_auth.py::test_good",
                                                 "tests/test_auth.py::TestMore::test_again"]


def test_without_results_scenarios_are_tagged_or_untested(project: Path) -> None:
    """No --junit / --run: a scenario with a proving test is tagged; exit 1 for the one
    without any."""
    code, document, _ = _coverage(project)
    assert code == 1
    assert document["results"] is False
    assert {k: v[0] for k, v in _statuses(document).items()} == {
        "Good password": "tagged", "Bad password": "tagged", "Locked out": "untested"}


def test_junit_results_give_passed_failed_untested(project: Path) -> None:
    """--junit FILE: pass/fail per scenario from the report; exit 1 as two scenarios lack a
    passing test."""
    (project / "junit.xml").write_text(JUNIT)
    code, document, _ = _coverage(project, "--junit", "junit.xml")
    assert code == 1
    assert _statuses(document) == {
        "Good password": ("passed", [("tests/test_auth.py::test_good", "passed"),
                                     ("tests/test_auth.py::TestMore::test_again", "passed")]),
        "Bad password": ("failed", [("tests/test_auth.py::test_bad", "failed")]),
        "Locked out": ("untested", [])}
    assert document["counts"] == {"passed": 1, "failed": 1, "untested": 1, "tagged": 0}


def test_run_executes_only_the_tagged_tests(project: Path) -> None:
    """--run runs the tagged tests with [specs] test_command (the untagged one is not run:
    it would fail) and reports their real results."""
    test_file = project / "tests/test_auth.py"
    test_file.write_text(TESTS.replace("def test_untagged():\n    pass",
                                       "def test_untagged():\n    raise RuntimeError"))
    code, document, stderr = _coverage(project, "--run")
    assert code == 1, stderr
    assert {k: v[0] for k, v in _statuses(document).items()} == {
        "Good password": "passed", "Bad password": "failed", "Locked out": "untested"}
    assert not (project / "junit.xml").exists()


def test_every_scenario_passing_exits_0(project: Path) -> None:
    """When every scenario has a passing proving test, --run exits 0 and says so."""
    (project / "tests/test_auth.py").write_text(
        TESTS.replace("assert False", "assert True")
        + '\n\ndef test_locked():\n    """spec://auth/Login#Locked%20out"""\n')
    code, document, stderr = _coverage(project, "--run")
    assert (code, document["ok"]) == (0, True), stderr
    text = Cli(project)("specs", "coverage", "--junit", "/dev/null")
    assert text.returncode == 2 and "malformed JUnit XML" in text.stderr


def test_text_output_lists_scenarios_and_tests(project: Path) -> None:
    """The text form: one line per scenario with status and file:line, its tests below."""
    (project / "junit.xml").write_text(JUNIT)
    result = Cli(project)("specs", "coverage", "--junit", "junit.xml")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "auth/Login#Good password  passed  (openspec/specs/auth/spec.md:10)"
    assert "    tests/test_auth.py::test_bad  failed" in lines
    assert lines[-1] == "3 scenarios: 1 passed, 1 failed, 1 untested"


@pytest.mark.parametrize("tag,message", [
    ('@pytest.mark.spec("spec://auth/Login#Nope")', "no scenario 'Nope' in auth/Login"),
    ('@pytest.mark.spec("spec://auth/Missing#x")', "no requirement 'Missing'"),
    ('@pytest.mark.spec("spec://auth/Login")', "names no scenario"),
    ("@pytest.mark.spec(URI)", "takes string literals"),
], ids=["unknown-scenario", "unknown-requirement", "no-scenario", "not-a-literal"])
def test_bad_tag_is_one_line_naming_file_and_line(project: Path, tag: str, message: str) -> None:
    """A tag naming no known scenario: exit 2, one stderr line `file:line: ...`, no
    traceback."""
    (project / "tests/test_bad_tag.py").write_text(f"import pytest\n\n\n{tag}\ndef test_x():\n"
                                                   "    pass\n")
    result = Cli(project)("specs", "coverage")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("tests/test_bad_tag.py:4:") and message in line
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("text,line", [
    ("<testsuites><testcase name='a'></testsuites>", 1),
    ("<?xml version='1.0'?>\n<testsuites>\n<testcase name='a'/>\n<oops\n", 4),
], ids=["mismatched-tag", "truncated"])
def test_malformed_junit_names_file_and_line(project: Path, text: str, line: int) -> None:
    """A JUnit file that is not XML: exit 2, `error: FILE:LINE: malformed JUnit XML`."""
    (project / "junit.xml").write_text(text)
    result = Cli(project)("specs", "coverage", "--junit", "junit.xml")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: junit.xml:{line}: malformed JUnit XML")
    assert "Traceback" not in result.stderr


def test_parametrized_cases_fold_into_one_result(tmp_path: Path) -> None:
    """A parametrized test failed when any of its cases failed; skipped alone is skipped."""
    report = tmp_path / "junit.xml"
    report.write_text("<testsuite>"
                      "<testcase classname='t.test_a' name='test_p[1]'/>"
                      "<testcase classname='t.test_a' name='test_p[2]'><error/></testcase>"
                      "<testcase classname='t.test_a' name='test_s'><skipped/></testcase>"
                      "</testsuite>")
    assert read_junit(report) == {("t.test_a", "test_p"): Outcome.FAILED,
                                  ("t.test_a", "test_s"): Outcome.SKIPPED}


def test_unparsable_test_file_is_reported(project: Path) -> None:
    """A test file with a syntax error that mentions spec:// is a file:line problem."""
    (project / "tests/test_broken.py").write_text('"""spec://auth/Login#x"""\ndef (:\n')
    with pytest.raises(ValidationError) as caught:
        collect_tests(project)
    assert caught.value.problems[0].render().startswith("tests/test_broken.py:2:")


def test_change_version_lists_the_scenarios_a_change_adds(project: Path) -> None:
    """--change ID covers the specs as the change would leave them; an unversioned tag of a
    scenario the change adds counts there (and is no error for the current specs)."""
    change = project / "openspec/changes/add-2fa"
    (change / "specs/auth").mkdir(parents=True)
    (change / "proposal.md").write_text(proposal("Add 2FA"))
    (change / "specs/auth/spec.md").write_text(
        "## ADDED Requirements\n### Requirement: Two factor\nThe system SHALL ask for a code."
        "\n\n#### Scenario: Code ok\n- **WHEN** the code is right\n- **THEN** it passes\n")
    (project / "tests/test_2fa.py").write_text(
        'import pytest\n\n\n@pytest.mark.spec("spec://auth/Two factor#Code ok")\n'
        "def test_code():\n    pass\n")
    code, document, stderr = _coverage(project, "--change", "add-2fa")
    assert code == 1, stderr
    assert _statuses(document)["Code ok"] == ("tagged", [("tests/test_2fa.py::test_code",
                                                          "not_run")])
    code, current, stderr = _coverage(project)
    assert code == 1 and "Code ok" not in _statuses(current), stderr


def test_run_timeout_kills_the_whole_process_group(project: Path) -> None:
    """--run --timeout: a hanging test run is killed with its children; exit 2, one line."""
    pid_file = project / "child.pid"
    (project / "tests/test_auth.py").write_text(
        "import subprocess, time\nimport pytest\n\n\n"
        '@pytest.mark.spec("spec://auth/Login#Good password")\n'
        "def test_hangs():\n"
        '    child = subprocess.Popen(["sleep", "60"])\n'
        f"    open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "    time.sleep(60)\n")
    started = time.monotonic()
    result = Cli(project)("specs", "coverage", "--run", "--timeout", "2.5")
    assert result.returncode == 2 and time.monotonic() - started < 20
    assert "did not finish in 2.5 s: killed" in result.stderr.splitlines()[0]
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (this sandbox reaps orphans late)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")
