"""Each failure is reported once, by whoever saw it: the tool's detectors read the tool's own
output only (never the checks' output that follows it in the step's log), each check's detectors
read that check's output, and the fix prompt names each failure once. With a real pytest as the
check (no JUnit file), in process on a real repository."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from aidp.engine.diagnosis import detector_text
from tests.conftest import git
from tests.engine.test_honest_outcomes import SHELL, drive

TWO_FAILURES = """\
def add(a, b):
    return a + b


def test_ok():
    assert add(1, 1) == 2


def test_add_wrong():
    assert add(2, 2) == 5


def test_add_negative():
    assert add(-1, -1) == 0
"""


def plan(check: str) -> str:
    return f"""version: 1
workstreams:
  - id: w
    scope: ["**"]
    steps:
      - id: s
        tool: sh
        run: "sed -i 's/^def add/def add/' calc_test.py && echo '# touched' >> calc_test.py"
        retry: {{max_attempts: 1}}
        fix: {{max: 1}}
        checks: [{check!r}]
"""


def test_each_failing_test_is_one_finding_from_its_check(repo: Path, db_url: str,
                                                         tmp_path: Path) -> None:
    """Rule: 2 failing tests are 2 findings, credited to the check, with file and line from
    pytest's own output (no JUnit file), none credited to the tool; the fix prompt names each
    failure once."""
    (repo / "calc_test.py").write_text(TWO_FAILURES)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tests")
    check = (f"{shlex.quote(sys.executable)} -m pytest -q -rf -p no:cacheprovider "
             "-p no:xdist calc_test.py")
    summary, store, run_id = drive(repo, db_url, tmp_path, SHELL, plan(check))
    try:
        assert not summary.ok
        attempts = store.attempts(run_id)
        assert [a.kind for a in attempts] == ["first", "fix"]
        for number in (1, 2):
            found = [f for f in store.findings(run_id) if f.attempt == number]
            assert [f.source for f in found if f.source == "tool"] == []
            tests = sorted((f.file, f.line, f.source) for f in found)
            assert tests == [("calc_test.py", 10, check), ("calc_test.py", 14, check)], found
        prompt = (repo / ".aidp" / "runs" / run_id / "prompts" / "w" / "s.2.md").read_text()
        for name in ("test_add_wrong", "test_add_negative"):
            assert prompt.count(name) == 1, prompt
    finally:
        store.close()


def test_detector_text_ends_where_the_checks_begin() -> None:
    """Rule: what the tool's detectors read stops at the first check's marker."""
    text = ("tool line\n--- check 1: pytest ---\nFAILED t.py::test_x - assert 1 == 2\n")
    assert detector_text(text) == "tool line\n"


def test_model_text_echoed_by_the_tool_is_not_evidence(tmp_path: Path) -> None:
    """Rule: lines of the model's replies (Aider's llm history) are skipped by the tool's
    detectors; Aider's own error lines are still read."""
    from aidp.engine.diagnosis import detect_tool
    from aidp.tools.adapter import AdapterResult
    from aidp.tools.adapters.aider import model_lines

    history = tmp_path / "aider.llm.history"
    history.write_text("TO LLM 2026-01-01T00:00:00\nUSER Only 3 reflections allowed\n"
                       "LLM RESPONSE 2026-01-01T00:00:01\n"
                       "ASSISTANT The API provider is not able to authenticate you.\n"
                       "ASSISTANT   401 Unauthorized  \n")
    echoed = model_lines(history)
    assert echoed == {"The API provider is not able to authenticate you.", "401 Unauthorized"}
    log = tmp_path / "s.1.log"
    log.write_text("The API provider is not able to authenticate you.\n  401 Unauthorized\n"
                   "Applied edit to a.py\n")
    quiet, _ = detect_tool(tool="aider", adapter="aider",
                           result=AdapterResult(0, echoed=echoed), log_path=log,
                           worktree=tmp_path, changed=["a.py"])
    assert quiet == []
    log.write_text("litellm.AuthenticationError: Error code: 401\n")
    (found,), _ = detect_tool(tool="aider", adapter="aider",
                              result=AdapterResult(0, echoed=echoed), log_path=log,
                              worktree=tmp_path, changed=[])
    assert found[1].code == "authentication"
