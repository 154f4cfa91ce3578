"""The eslint and tsc detectors on the output of the real tools, installed by
scripts/setup_lint_tools.sh into .tools/lint (skipped with the reason when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aidp.errors import FailureClass, Severity
from aidp.errors.detectors import eslint_report, tsc_report

from .conftest import LINT_BIN, run_check, write

ESLINT = LINT_BIN / "eslint"
TSC = LINT_BIN / "tsc"
needs_eslint = pytest.mark.skipif(not ESLINT.exists(),
                                  reason=f"{ESLINT} missing: run scripts/setup_lint_tools.sh")
needs_tsc = pytest.mark.skipif(not TSC.exists(),
                               reason=f"{TSC} missing: run scripts/setup_lint_tools.sh")

ESLINT_CONFIG = """\
export default [{
  files: ["**/*.js"],
  rules: { "no-unused-vars": "error", "no-undef": "error", "eqeqeq": "warn" },
}];
"""
JS = "const unused = 1;\nundefinedCall();\nconst used = 2;\nif (used == 2) {}\n"


@needs_eslint
@pytest.mark.parametrize("fmt", ["json", "stylish"])
def test_eslint_messages_become_findings(project: Path, fmt: str) -> None:
    """eslint's messages (``-f json`` and the default stylish text) are permanent findings
    with file, line, column and rule id; severity 1 is a warning."""
    write(project, {"eslint.config.js": ESLINT_CONFIG, "src/app.js": JS})
    ev = run_check([str(ESLINT), "-f", fmt, "src/app.js"], project)
    assert ev.exit_code == 1, ev.output
    found = eslint_report.aidp_detect_check(ev)
    assert [(f.file, f.line, f.column, f.code, f.severity) for f in found] == [
        ("src/app.js", 1, 7, "no-unused-vars", Severity.ERROR),
        ("src/app.js", 2, 1, "no-undef", Severity.ERROR),
        ("src/app.js", 4, 10, "eqeqeq", Severity.WARNING),
    ]
    assert all(f.failure_class is FailureClass.PERMANENT for f in found)
    assert found[1].message.startswith("'undefinedCall' is not defined")


@needs_eslint
def test_eslint_parse_error(project: Path) -> None:
    """A file eslint cannot parse is one ``parse-error`` finding at the error."""
    write(project, {"eslint.config.js": ESLINT_CONFIG, "bad.js": "const = ;\n"})
    ev = run_check([str(ESLINT), "-f", "json", "bad.js"], project)
    found = eslint_report.aidp_detect_check(ev)
    assert [(f.file, f.line, f.code) for f in found] == [("bad.js", 1, "parse-error")]
    assert "Parsing error" in found[0].message


# the default lib.d.ts costs seconds per run on a loaded machine; these errors need none of it
FAST = ["--skipLibCheck", "--lib", "es5"]
TS = "let count: number = 'text';\nconst value = missingName;\nexport {};\n"


@needs_tsc
@pytest.mark.parametrize("pretty", [False, True], ids=["plain", "pretty"])
def test_tsc_errors_become_findings(project: Path, pretty: bool) -> None:
    """tsc's ``error TSnnnn`` lines (plain and --pretty, colours stripped) are permanent
    findings with file, line, column and code."""
    write(project, {"src/app.ts": TS})
    ev = run_check([str(TSC), "--noEmit", *FAST, "--strict", "--pretty", str(pretty).lower(),
                    "src/app.ts"], project)
    assert ev.exit_code == 2, ev.output
    found = tsc_report.aidp_detect_check(ev)
    assert [(f.file, f.line, f.column, f.code) for f in found] == [
        ("src/app.ts", 1, 5, "TS2322"), ("src/app.ts", 2, 15, "TS2304")]
    assert found[0].message == "Type 'string' is not assignable to type 'number'."
    assert all(f.failure_class is FailureClass.PERMANENT for f in found)


@needs_tsc
def test_tsc_error_without_a_file(project: Path) -> None:
    """A global tsc error (no file) is still a finding, with its code."""
    ev = run_check([str(TSC), "--noEmit", "-p", "missing-tsconfig.json"], project)
    found = tsc_report.aidp_detect_check(ev)
    assert found and found[0].file is None and found[0].code is not None
    assert found[0].code.startswith("TS")
