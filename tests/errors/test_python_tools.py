"""The pytest, ruff, mypy and Python-traceback detectors on the output of the real tools, run here
in a tmp project (aidp's own .venv holds them)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from aidp.errors import FailureClass, Finding, default_manager
from aidp.errors.detectors import (
    mypy_report,
    pytest_report,
    python_traceback,
    ruff_report,
)

from .conftest import as_attempt, attempt, python_bin, run_check, write

LINT_ME = "import sys\nimport os\n\nx: int = 'text'\n"
TESTS = '''\
import pytest


def test_ok():
    assert True


def test_fail():
    value = 3
    assert value == 2


class TestGroup:
    def test_method(self):
        raise ValueError("bad value 42")


@pytest.fixture
def broken():
    raise RuntimeError("fixture boom")


def test_error(broken):
    pass
'''


def by_code(findings: list[Finding]) -> dict[str | None, Finding]:
    return {f.code: f for f in findings}


# -- ruff ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["json", "full", "concise"])
def test_ruff_findings_have_file_line_column_code(project: Path, fmt: str) -> None:
    """ruff's diagnostics (JSON, full and concise formats) become permanent findings with
    the file relative to the worktree, line, column and rule code."""
    write(project, {"pkg/mod.py": LINT_ME})
    ev = run_check([python_bin("ruff"), "check", "--no-cache", "--isolated", "--select", "F,I",
                    "--output-format", fmt, str(project / "pkg")], project)
    assert ev.exit_code == 1
    found = by_code(ruff_report.aidp_detect_check(ev))
    assert set(found) == {"F401", "I001"}
    unused = [f for f in ruff_report.aidp_detect_check(ev) if f.code == "F401"]
    assert [(f.file, f.line, f.column) for f in unused] == [("pkg/mod.py", 1, 8),
                                                            ("pkg/mod.py", 2, 8)]
    assert all(f.failure_class is FailureClass.PERMANENT for f in found.values())
    assert "`sys` imported but unused" in unused[0].message


@pytest.mark.parametrize("fmt", ["json", "full", "concise"])
def test_ruff_syntax_error_is_a_finding(project: Path, fmt: str) -> None:
    """A file ruff cannot parse gives an ``invalid-syntax`` finding at the error's place."""
    write(project, {"bad.py": "def f(:\n    pass\n"})
    ev = run_check([python_bin("ruff"), "check", "--no-cache", "--isolated", "--output-format",
                    fmt, "bad.py"], project)
    found = ruff_report.aidp_detect_check(ev)
    assert found and found[0].code == "invalid-syntax"
    assert (found[0].file, found[0].line) == ("bad.py", 1)


# -- mypy ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, column", [
    pytest.param([], None, id="plain"),
    pytest.param(["--show-column-numbers"], 10, id="columns"),
    pytest.param(["--show-column-numbers", "--show-error-end"], 10, id="error-end"),
])
def test_mypy_errors_have_file_line_code(project: Path, flags: list[str],
                                         column: int | None) -> None:
    """mypy's ``error:`` lines become permanent findings with file, line, (column) and the
    bracketed error code; notes are not findings."""
    write(project, {"pkg/typed.py": "def f(a: int) -> str:\n    return a\n\nb: int = f(1)\n"})
    ev = run_check([python_bin("mypy"), "--cache-dir", "/dev/null",
                    "--no-error-summary", *flags, "pkg/typed.py"], project)
    assert ev.exit_code == 1
    found = mypy_report.aidp_detect_check(ev)
    assert [(f.file, f.line, f.code) for f in found] == [
        ("pkg/typed.py", 2, "return-value"), ("pkg/typed.py", 4, "assignment")]
    assert found[0].column == (12 if column else None)
    assert found[0].message == 'Incompatible return value type (got "int", expected "str")'
    assert all(f.failure_class is FailureClass.PERMANENT for f in found)


def test_mypy_syntax_error(project: Path) -> None:
    """mypy on a file that does not parse: ``syntax`` findings, the first at the error."""
    write(project, {"bad.py": "def f(:\n"})
    ev = run_check([python_bin("mypy"), "--cache-dir", "/dev/null",
                    "bad.py"], project)
    found = mypy_report.aidp_detect_check(ev)
    assert (found[0].file, found[0].line) == ("bad.py", 1)
    assert {f.code for f in found} == {"syntax"}


# -- pytest --------------------------------------------------------------------------------------

def _pytest(project: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]


@pytest.mark.parametrize("extra", [
    pytest.param([], id="long"),
    pytest.param(["--tb=short"], id="short"),
    pytest.param(["--tb=native"], id="native"),
    pytest.param(["--tb=no"], id="no-traceback"),
])
def test_pytest_text_failures(project: Path, extra: list[str]) -> None:
    """pytest's summary lines become one permanent finding per failed or erroring test, with
    the module, the failing line (when a traceback is shown) and the exception type."""
    write(project, {"tests/test_a.py": TESTS})
    ev = run_check(_pytest(project, *extra, "tests"), project)
    assert ev.exit_code == 1
    found = pytest_report.aidp_detect_check(ev)
    assert len(found) == 3, found
    codes = {f.code for f in found}
    assert codes == {"AssertionError", "ValueError", "RuntimeError"}
    assert all(f.file == "tests/test_a.py" for f in found)
    assert all(f.failure_class is FailureClass.PERMANENT for f in found)
    lines = {f.code: f.line for f in found}
    if extra != ["--tb=no"]:
        assert lines == {"AssertionError": 10, "ValueError": 15, "RuntimeError": 20}
    assert any(f.message == "tests/test_a.py::TestGroup::test_method: ValueError: bad value 42"
               for f in found), found
    # the traceback detector leaves a pytest session alone, even with --tb=native
    assert python_traceback.aidp_detect_check(ev) == []


def test_pytest_junit_report_is_preferred(project: Path) -> None:
    """With ``--junitxml=PATH`` in the command, findings come from the report (relative to the
    worktree), with the same files, lines and codes as the text."""
    write(project, {"tests/test_a.py": TESTS})
    ev = run_check(_pytest(project, "--junitxml=out/report.xml", "tests"), project)
    from_xml = pytest_report.aidp_detect_check(ev)
    from_text = pytest_report.from_text(ev.output, project)
    assert (project / "out" / "report.xml").is_file()
    key = sorted((f.file, f.line, f.code, f.message) for f in from_xml)
    assert key == sorted((f.file, f.line, f.code, f.message) for f in from_text)
    # the report wins even when the output says nothing
    quiet = type(ev)(name=ev.name, command=ev.command, exit_code=1, signal=None,
                     timed_out=False, output="", worktree=project)
    assert len(pytest_report.aidp_detect_check(quiet)) == 3


def test_pytest_junit_path_as_separate_argument(project: Path) -> None:
    """``--junit-xml PATH`` (two words) is read too."""
    write(project, {"tests/test_a.py": "def test_x():\n    assert 1 == 2\n"})
    ev = run_check(_pytest(project, "--junit-xml", "r.xml", "tests"), project)
    assert pytest_report.junit_path(ev.command) == "r.xml"
    found = pytest_report.aidp_detect_check(ev)
    assert [(f.file, f.line, f.code) for f in found] == [("tests/test_a.py", 2,
                                                          "AssertionError")]


@pytest.mark.parametrize("junit", [False, True], ids=["text", "junit"])
def test_pytest_collection_error(project: Path, junit: bool) -> None:
    """A module that fails to import is one permanent finding naming the module and the error."""
    write(project, {"tests/test_bad.py": "import nonexistent_module_xyz\n"})
    args = ["--junitxml=r.xml"] if junit else []
    ev = run_check(_pytest(project, *args, "tests"), project)
    found = pytest_report.aidp_detect_check(ev)
    assert len(found) == 1
    assert found[0].file == "tests/test_bad.py"
    assert found[0].line == 1
    assert found[0].code == "ModuleNotFoundError"
    assert "No module named 'nonexistent_module_xyz'" in found[0].message


def test_pytest_no_tests_and_usage_errors(project: Path) -> None:
    """"no tests ran" and a missing test path are permanent findings too."""
    (project / "empty").mkdir()
    empty = run_check(_pytest(project, "empty"), project)
    assert empty.exit_code == 5
    assert [f.code for f in pytest_report.aidp_detect_check(empty)] == ["no-tests"]
    missing = run_check(_pytest(project, "nothere.py"), project)
    assert missing.exit_code == 4
    assert [f.code for f in pytest_report.aidp_detect_check(missing)] == ["usage-error"]


def test_code_tools_read_shell_attempts_only(project: Path) -> None:
    """A shell step's output is parsed like a check's; an AI tool's log is not (it echoes
    model text)."""
    write(project, {"tests/test_a.py": TESTS})
    ev = run_check(_pytest(project, "tests"), project)
    assert len(pytest_report.aidp_detect_attempt(as_attempt(ev, "shell"))) == 3
    assert pytest_report.aidp_detect_attempt(as_attempt(ev, "aider")) == []


# -- Python tracebacks ---------------------------------------------------------------------------

def _python(project: Path, code: str) -> list[str]:
    write(project, {"app/main.py": code})
    return [sys.executable, "app/main.py"]


def test_traceback_last_frame_inside_the_worktree(project: Path) -> None:
    """A crash is one permanent finding: exception type as code, location the last frame in the
    worktree (not the standard library's)."""
    code = "import json\n\ndef load():\n    return json.loads('{')\n\nload()\n"
    ev = run_check(_python(project, code), project)
    found = python_traceback.aidp_detect_check(ev)
    assert [(f.code, f.file, f.line, f.failure_class) for f in found] == [
        ("json.decoder.JSONDecodeError", "app/main.py", 4, FailureClass.PERMANENT)]
    assert found[0].message.startswith("json.decoder.JSONDecodeError: Expecting property name")


def test_traceback_chain_reports_the_escaping_exception(project: Path) -> None:
    """Of a chain (raise ... from, or during handling), only the exception that escaped counts."""
    code = ("def f():\n    try:\n        {}['k']\n    except KeyError as e:\n"
            "        raise ValueError('wrapped') from e\n\nf()\n")
    ev = run_check(_python(project, code), project)
    assert "direct cause" in ev.output
    found = python_traceback.aidp_detect_check(ev)
    assert [(f.code, f.line, f.message) for f in found] == [("ValueError", 5,
                                                            "ValueError: wrapped")]


def test_traceback_of_a_network_error_is_transient(project: Path) -> None:
    """A refused connection (a real one, to a closed port on 127.0.0.1) is transient."""
    code = ("import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\n"
            "port = s.getsockname()[1]\ns.close()\n"
            "socket.create_connection(('127.0.0.1', port), timeout=5)\n")
    ev = run_check(_python(project, code), project)
    found = python_traceback.aidp_detect_check(ev)
    assert [(f.code, f.failure_class) for f in found] == [
        ("ConnectionRefusedError", FailureClass.TRANSIENT)]
    assert found[0].file == "app/main.py"


def test_bare_syntax_error(project: Path) -> None:
    """A script that does not compile prints no Traceback header; still one finding."""
    ev = run_check(_python(project, "x = 1\ndef f(:\n    pass\n"), project)
    found = python_traceback.aidp_detect_check(ev)
    assert [(f.code, f.file, f.line) for f in found] == [("SyntaxError", "app/main.py", 2)]


def test_keyboard_interrupt_is_unknown(project: Path) -> None:
    """KeyboardInterrupt says nothing about the code: class unknown."""
    ev = run_check(_python(project, "raise KeyboardInterrupt\n"), project)
    found = python_traceback.aidp_detect_check(ev)
    assert [(f.code, f.failure_class) for f in found] == [
        ("KeyboardInterrupt", FailureClass.UNKNOWN)]


def test_traceback_in_an_attempt_log(project: Path) -> None:
    """Tracebacks count in any tool's log (a crashing tool), not only in shell steps."""
    ev = run_check(_python(project, "raise SystemError('boom')\n"), project)
    found = python_traceback.aidp_detect_attempt(attempt(ev.output, worktree=project))
    assert [f.code for f in found] == ["SystemError"]


def test_manager_runs_every_python_detector(project: Path) -> None:
    """Through the default manager, a failing check yields the detectors' findings, once each."""
    write(project, {"pkg/mod.py": LINT_ME})
    ev = run_check([python_bin("ruff"), "check", "--no-cache", "--isolated",
                    "--output-format", "concise", "pkg"], project)
    detection = default_manager().detect_check(ev)
    assert detection.failures == ()
    assert {f.detector for f in detection.findings} == {"ruff"}
    assert len({f.fingerprint for f in detection.findings}) == len(detection.findings)


def test_ruff_json_amid_other_output(project: Path) -> None:
    """ruff's JSON is found inside a check's merged output (a Makefile echoing commands, other
    tools' lines before and after)."""
    write(project, {"m.py": "import os\n"})
    ev = run_check([python_bin("ruff"), "check", "--no-cache", "--isolated", "--output-format",
                    "json", "m.py"], project)
    noisy = type(ev)(name=ev.name, command="make lint", exit_code=2, signal=None,
                     timed_out=False, output="ruff check m.py\n[warn] starting\n" + ev.output
                     + "make: *** [lint] Error 1\n", worktree=project)
    assert [(f.file, f.line, f.code) for f in ruff_report.aidp_detect_check(noisy)] == [
        ("m.py", 1, "F401")]
