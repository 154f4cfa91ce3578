"""The git-conflict, process-exit and disk-full detectors on real git merges, real signals and a
real ENOSPC (writing to /dev/full)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aidp.errors import FailureClass, default_manager
from aidp.errors.detectors import disk_full, git_conflict, process_exit
from tests.conftest import git, init_repo

from .conftest import attempt, run_check

WRITE_FULL = "with open('/dev/full', 'w') as f:\n    f.write('x' * 10)\n"


def _conflicting_repo(root: Path) -> Path:
    """main and 'other' both changed a.txt; 'other' deleted b.txt that main changed."""
    repo = init_repo(root, {"a.txt": "one\n", "b.txt": "b\n", "c.txt": "c\n"})
    git(repo, "checkout", "-q", "-b", "other")
    (repo / "a.txt").write_text("two\n")
    git(repo, "rm", "-q", "b.txt")
    git(repo, "commit", "-q", "-am", "other")
    git(repo, "checkout", "-q", "main")
    (repo / "a.txt").write_text("three\n")
    (repo / "b.txt").write_text("bb\n")
    git(repo, "commit", "-q", "-am", "main")
    return repo


@pytest.mark.parametrize("argv", [
    pytest.param(["git", "merge", "--no-edit", "other"], id="merge"),
    pytest.param(["git", "merge-tree", "--write-tree", "main", "other"], id="merge-tree"),
    pytest.param(["git", "merge-tree", "--write-tree", "--name-only", "main", "other"],
                 id="merge-tree-names"),
])
def test_git_conflicts_are_permanent_per_file(tmp_path: Path, argv: list[str]) -> None:
    """Every CONFLICT line of a real merge is a permanent finding naming the file and kind."""
    repo = _conflicting_repo(tmp_path / "repo")
    ev = run_check(argv, repo)
    assert ev.exit_code == 1, ev.output
    found = git_conflict.aidp_detect_check(ev)
    assert sorted((f.file, f.code) for f in found) == [
        ("a.txt", "conflict-content"), ("b.txt", "conflict-modify/delete")]
    assert all(f.failure_class is FailureClass.PERMANENT for f in found)


def test_git_conflict_fingerprint_ignores_branch_names(tmp_path: Path) -> None:
    """The same conflict merged from differently named branches keeps its fingerprint."""
    repo = _conflicting_repo(tmp_path / "repo")
    git(repo, "branch", "aidp/01JRUNA/ws", "other")
    git(repo, "branch", "aidp/01JRUNB/ws", "other")
    prints = []
    for branch in ("aidp/01JRUNA/ws", "aidp/01JRUNB/ws"):
        ev = run_check(["git", "merge-tree", "--write-tree", "main", branch], repo)
        assert branch in ev.output
        prints.append(sorted(f.fingerprint for f in git_conflict.aidp_detect_check(ev)))
    assert prints[0] == prints[1]


def test_killed_by_sigkill_is_transient_possibly_oom(tmp_path: Path) -> None:
    """A process killed by SIGKILL (not by our timeout) is transient; the message names the
    OOM killer."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    proc.kill()
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    found = process_exit.aidp_detect_attempt(attempt("", "shell", exit_code=None,
                                                     signal=signal.SIGKILL))
    assert [(f.code, f.failure_class) for f in found] == [("SIGKILL", FailureClass.TRANSIENT)]
    assert "OOM killer" in found[0].message


def test_exit_137_from_a_shell_is_sigkill(tmp_path: Path) -> None:
    """A shell reporting its child's SIGKILL as exit status 137 is read the same way."""
    ev = run_check(["sh", "-c", "sh -c 'kill -9 $$'; exit $?"], tmp_path)
    assert ev.exit_code == 137
    found = process_exit.aidp_detect_check(ev)
    assert [(f.code, f.failure_class) for f in found] == [("SIGKILL", FailureClass.TRANSIENT)]


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGTERM, signal.SIGABRT],
                         ids=lambda s: s.name)
def test_other_signals_are_unknown(tmp_path: Path, sig: signal.Signals) -> None:
    """A death by another signal is a finding of class unknown naming the signal."""
    ev = run_check([sys.executable, "-c", f"import os; os.kill(os.getpid(), {int(sig)})"],
                   tmp_path)
    assert ev.signal == sig
    found = process_exit.aidp_detect_check(ev)
    assert [(f.code, f.failure_class) for f in found] == [(sig.name, FailureClass.UNKNOWN)]


def test_timeout_is_transient(tmp_path: Path) -> None:
    """A tool killed by the wall-clock timeout is transient, whatever signal killed it."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        proc.wait(timeout=0.2)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    found = process_exit.aidp_detect_attempt(attempt("", "shell", exit_code=None,
                                                     signal=-proc.returncode, timed_out=True))
    assert [(f.code, f.failure_class) for f in found] == [("timeout", FailureClass.TRANSIENT)]


@pytest.mark.parametrize("exit_code", [0, 1, 2, 127, 200])
def test_ordinary_exits_are_not_findings(exit_code: int) -> None:
    """A plain non-zero exit (or an exit above 128 that names no signal) says nothing alone."""
    assert process_exit.aidp_detect_attempt(attempt("", "shell", exit_code=exit_code)) == []


@pytest.mark.parametrize("argv", [
    pytest.param([sys.executable, "-c", WRITE_FULL], id="python"),
    pytest.param(["bash", "-c", "echo data > /dev/full"], id="bash"),
    pytest.param(["cp", "/etc/hostname", "/dev/full"], id="cp"),
    pytest.param(["dd", "if=/dev/zero", "of=/dev/full", "bs=1k", "count=1"], id="dd"),
])
def test_disk_full_is_transient(tmp_path: Path, argv: list[str]) -> None:
    """A real ENOSPC (a write to /dev/full) is one transient finding, code ENOSPC."""
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is missing on this machine")
    ev = run_check(argv, tmp_path)
    assert ev.exit_code != 0
    found = disk_full.aidp_detect_check(ev)
    assert [(f.code, f.failure_class) for f in found] == [("ENOSPC", FailureClass.TRANSIENT)]
    assert "No space left on device" in found[0].message


def test_disk_full_python_crash_is_transient_overall(tmp_path: Path) -> None:
    """A Python crash on ENOSPC is transient as a whole: the traceback detector agrees with
    the disk-full detector."""
    from aidp.errors import classify

    ev = run_check([sys.executable, "-c", WRITE_FULL], tmp_path)
    detection = default_manager().detect_check(ev)
    assert {f.detector for f in detection.findings} == {"disk-full", "python-traceback"}
    assert classify(detection.findings) is FailureClass.TRANSIENT


@pytest.mark.parametrize(("argv", "expected"), [
    pytest.param(["sh", "-c", "pytset -q"], ["command not found: pytset"], id="dash"),
    pytest.param(["bash", "-c", "X=1 nosuchtool --flag"], ["command not found: nosuchtool"],
                 id="bash"),
    pytest.param(["sh", "-c", "exit 127"], ["command not found: sh"], id="silent-first-word"),
    pytest.param(["sh", "-c", "echo the tests said a lot; exit 127"], [], id="own-127"),
])
def test_missing_check_command_is_named(tmp_path: Path, argv: list[str],
                                        expected: list[str]) -> None:
    """A check exiting 127 with the shell's "not found" says "command not found: NAME"."""
    ev = run_check(argv, tmp_path)
    assert ev.exit_code == 127
    found = process_exit.aidp_detect_check(ev)
    assert [f.message for f in found] == expected
    assert all(f.failure_class is FailureClass.PERMANENT for f in found)
