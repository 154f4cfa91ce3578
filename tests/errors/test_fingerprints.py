"""Fingerprints stay the same across runs: other tmp paths, moved lines, other timings (the
engine compares them to see a fix loop going in circles). Plus: no detector crashes on any
input."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aidp.errors import AttemptEvidence, CheckEvidence, FailureClass, Finding, default_manager

from .conftest import LINT_BIN, fixture_text, python_bin, run_check, write

PAD = "\n\n\n# padding that moves every line down\n\n"

CASES = {
    "ruff": (lambda root: [python_bin("ruff"), "check", "--no-cache", "--isolated",
                           "--output-format", "json", str(root / "m.py")],
             {"m.py": "import os\n"}),
    "mypy": (lambda root: [python_bin("mypy"), "--cache-dir", "/dev/null", "m.py"],
             {"m.py": "x: int = 'a'\n"}),
    "pytest": (lambda root: [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                             "--junitxml=" + str(root / "r.xml"), "test_m.py"],
               {"test_m.py": "import time\n\ndef test_x():\n    assert time.time() == 1\n"}),
    "python-traceback": (lambda root: [sys.executable, str(root / "m.py")],
                         {"m.py": "import os\nopen(os.path.join(os.getcwd(), 'missing.txt'))\n"}),
    "tsc": (lambda root: [str(LINT_BIN / "tsc"), "--noEmit", "--skipLibCheck", "--lib", "es5",
                        "m.ts"],
            {"m.ts": "let n: number = 'a';\nexport {};\n"}),
}


def _prints(tmp_path: Path, name: str, run: str, pad: bool) -> list[str]:
    make_argv, files = CASES[name]
    root = tmp_path / run / "worktree"
    root.mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    write(root, {k: (PAD + v if pad and not k.endswith(".ts") else v) for k, v in files.items()})
    ev = run_check(make_argv(root), root)
    found = [f for f in default_manager().detect_check(ev).findings if f.detector == name]
    assert found, ev.output
    return sorted(f.fingerprint for f in found)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fingerprints_survive_other_paths_and_moved_lines(tmp_path: Path, name: str) -> None:
    """The same error from a real tool, run in another tmp worktree with its lines moved and
    at another time, has the same fingerprint."""
    if name == "tsc" and not (LINT_BIN / "tsc").exists():
        pytest.skip("tsc missing: run scripts/setup_lint_tools.sh")
    first = _prints(tmp_path, name, "run-1", pad=False)
    second = _prints(tmp_path, name, "run-2-elsewhere", pad=True)
    assert first == second


def test_fingerprint_ignores_the_worktree_outside_tmp(tmp_path: Path) -> None:
    """A worktree path outside /tmp, quoted in a message, does not reach the fingerprint."""
    prints = []
    for root in (Path("/work/a/.aidp/worktrees/run1/ws"), Path("/srv/b/wt")):
        text = (f'Traceback (most recent call last):\n  File "{root}/app.py", line 3, in <module>\n'
                f"FileNotFoundError: [Errno 2] No such file or directory: '{root}/data.csv'\n")
        ev = CheckEvidence(name="c", command="python app.py", exit_code=1, signal=None,
                           timed_out=False, output=text, worktree=root)
        (finding,) = default_manager().detect_check(ev).findings
        assert finding.file == "app.py"
        prints.append(finding.fingerprint)
    assert prints[0] == prints[1]


def test_fingerprint_changes_with_the_error() -> None:
    """Different errors (another code or file) get different fingerprints."""
    def make(code: str, file: str) -> Finding:
        return Finding("mypy", "Incompatible types", FailureClass.PERMANENT, code=code, file=file)

    a, b, c = make("assignment", "a.py"), make("return-value", "a.py"), make("assignment", "b.py")
    assert len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3


# -- parsers never crash ---------------------------------------------------------------------

FRAGMENTS = [
    "Traceback (most recent call last):\n", '  File "x.py", line 3, in f\n', "ValueError: x\n",
    "FAILED t.py::t - boom\n", "ERROR t.py\n", "_____ t _____\n", "E   assert 1\n",
    "t.py:3: AssertionError\n", "===== short test summary info =====\n",
    "a.py:1:2: F401 [*] unused\n", "F401 x\n --> a.py:1:1\n", "a.py:3: error: bad  [x]\n",
    "a.ts(1,2): error TS2322: no\n", "a.ts:1:2 - error TS1: no\n", "error TS5058: no\n",
    "/a.js\n  1:2  error  bad  rule\n", '[{"filePath": "a.js", "messages": [{}]}]\n',
    '[{"filename": 1, "location": null}]\n', "CONFLICT (content): Merge conflict in a\n",
    "Error code: 429 - {}\n", "try again in 1m2.5s\n", "Retry-After: 99999999999\n",
    '{"type":"turn.failed","error":null}\n', '{"type":"item.completed","item":[]}\n',
    '{"type":"error","message":7}\n', "Only 3 reflections allowed, stopping.\n",
    "## SearchReplaceNoExactMatch: This SEARCH block failed to exactly match lines in \n",
    "No space left on device\n", "\x1b[31m", "[", "{", "\x00", "\n",
]
texts = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=40), max_size=25).map("".join)
events = st.lists(st.dictionaries(st.sampled_from(["type", "error", "item", "message"]),
                                  st.sampled_from(["turn.failed", "error", "item.completed"])
                                  | st.none() | st.integers() | st.text(max_size=10),
                                  max_size=4), max_size=3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(output=texts, adapter=st.sampled_from(["shell", "aider", "codex"]), events=events,
       code=st.none() | st.integers(-20, 300), sig=st.none() | st.integers(-5, 70),
       timed_out=st.booleans(), command=st.text(max_size=30) | st.just("pytest --junitxml"))
def test_no_detector_crashes_on_any_input(output: str, adapter: str,
                                          events: list[dict[str, object]], code: int | None,
                                          sig: int | None, timed_out: bool,
                                          command: str) -> None:
    """Every built-in detector accepts any output, events and exit status without raising."""
    manager = default_manager()
    worktree = Path("/nonexistent/worktree")
    att = AttemptEvidence(tool="t", adapter=adapter, exit_code=code, signal=sig,
                          timed_out=timed_out, duration_s=1.0, output=output, worktree=worktree,
                          events=tuple(events))
    chk = CheckEvidence(name="c", command=command, exit_code=code, signal=sig,
                        timed_out=timed_out, output=output, worktree=worktree)
    for detection in (manager.detect_attempt(att), manager.detect_check(chk)):
        assert detection.failures == ()
        for finding in detection.findings:
            assert len(finding.fingerprint) == 16


def test_fixtures_are_stable_across_two_reads() -> None:
    """Findings of a captured fixture are the same object values on every run."""
    ev = AttemptEvidence(tool="a", adapter="aider", exit_code=0, signal=None, timed_out=False,
                         duration_s=1.0, output=fixture_text("aider_reflections.txt"))
    assert default_manager().detect_attempt(ev) == default_manager().detect_attempt(ev)
