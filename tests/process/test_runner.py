"""Tests for aidp.process.runner: real processes, real pipes, real /proc -- no mocks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aidp.exceptions import ToolError
from aidp.process.capped_log import CappedLog
from aidp.process.runner import (
    CARRY_LIMIT,
    TOKEN_ENV,
    ProcessResult,
    SecretMasker,
    build_env,
    is_alive,
    kill_by_token,
    new_token,
    process_start_time,
    run_captured,
    run_process,
)

HELPERS = Path(__file__).parent / "helpers"
SECRET = "s3cret-Value-42"


@pytest.fixture
def token() -> Iterator[str]:
    """A process token; whatever still carries it at teardown is killed."""
    value = new_token()
    yield value
    kill_by_token(value)


@pytest.fixture
def env() -> dict[str, str]:
    """A minimal child environment."""
    return build_env(os.environ, [], {})


def run(
    argv: list[str], tmp_path: Path, env: dict[str, str], token: str, **kwargs: Any
) -> tuple[ProcessResult, bytes]:
    """Run ``argv`` with a fresh log in ``tmp_path``; return the result and the log's bytes."""
    log_path = tmp_path / "attempt.log"
    kwargs.setdefault("timeout_s", 60.0)
    with CappedLog(log_path) as log:
        result = run_process(argv, cwd=tmp_path, env=env, log=log, token=token, **kwargs)
    return result, log_path.read_bytes()


def read_pids(path: Path) -> list[int]:
    """The pids a helper script wrote, one per line."""
    return [int(line) for line in path.read_text().split()]


def wait_until_dead(pids: list[int], within_s: float = 5.0) -> list[int]:
    """Those of ``pids`` still alive after ``within_s`` (signal delivery is asynchronous)."""
    end = time.monotonic() + within_s
    alive = [p for p in pids if is_alive(p)]
    while alive and time.monotonic() < end:
        time.sleep(0.01)
        alive = [p for p in alive if is_alive(p)]
    return alive


# -- timeout, cancel, leftovers ------------------------------------------------------------------


def test_timeout_kills_group_and_escaped_descendants(
    tmp_path: Path, env: dict[str, str], token: str
) -> None:
    """At the timeout a TERM-ignoring tool, its background child and its setsid grandchild die."""
    pidfile = tmp_path / "pids"
    started = time.monotonic()
    result, output = run(
        ["sh", str(HELPERS / "tree.sh"), str(pidfile)],
        tmp_path,
        env,
        token,
        timeout_s=1.0,
        grace_s=0.5,
    )
    assert time.monotonic() - started < 1.0 + 0.5 + 5.0
    assert result.timed_out and not result.cancelled
    assert result.exit_code is None and result.signal == 9
    assert b"ready" in output
    pids = read_pids(pidfile)
    assert len(pids) == 3 and result.pid in pids
    assert wait_until_dead(pids) == []


def test_cancel_kills_everything(tmp_path: Path, env: dict[str, str], token: str) -> None:
    """Setting the cancel event kills the whole tree and reports cancelled, not timed out."""
    pidfile = tmp_path / "pids"
    cancel = threading.Event()

    def on_output(data: bytes) -> None:
        if b"ready" in data:
            cancel.set()

    result, _ = run(
        ["sh", str(HELPERS / "tree.sh"), str(pidfile)],
        tmp_path,
        env,
        token,
        timeout_s=60.0,
        grace_s=0.2,
        cancel=cancel,
        on_output=on_output,
    )
    assert result.cancelled and not result.timed_out
    assert wait_until_dead(read_pids(pidfile)) == []


def test_timeout_sends_sigterm_first(tmp_path: Path, env: dict[str, str], token: str) -> None:
    """At the timeout the group gets SIGTERM first: a tool that traps it exits cleanly in grace."""
    started = time.monotonic()
    result, output = run(
        ["sh", "-c", "trap 'echo bye; exit 7' TERM; echo hi; sleep 1000 & wait"],
        tmp_path,
        env,
        token,
        timeout_s=0.5,
        grace_s=60.0,
    )
    assert result.timed_out and result.exit_code == 7
    assert output == b"hi\n--- [aidp] stopping the tool: sending SIGTERM (timeout) ---\nbye\n"
    assert time.monotonic() - started < 30.0  # the grace period ended when the tool exited


def test_interrupt_signal_replaces_sigterm(tmp_path: Path, env: dict[str, str], token: str) -> None:
    """With interrupt_signal=SIGINT, a cancel sends SIGINT first (Aider saves its state on it)."""
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    result, output = run(
        ["sh", "-c", "trap 'echo int; exit 3' INT; trap 'echo term; exit 4' TERM; echo hi; "
         "while :; do sleep 0.05; done"],
        tmp_path,
        env,
        token,
        grace_s=60.0,
        cancel=cancel,
        interrupt_signal=signal.SIGINT,
    )
    assert result.cancelled and result.exit_code == 3
    assert output == b"hi\n--- [aidp] stopping the tool: sending SIGINT (cancelled) ---\nint\n"


def test_failing_on_start_leaves_nothing_running(
    tmp_path: Path, env: dict[str, str], token: str
) -> None:
    """If on_start raises (say the database write failed), the started process is killed."""
    pids: list[int] = []

    def on_start(pid: int) -> None:
        pids.append(pid)
        raise RuntimeError("cannot record the pid")

    with pytest.raises(RuntimeError, match="cannot record"):
        run(["sleep", "1000"], tmp_path, env, token, on_start=on_start)
    assert len(pids) == 1 and wait_until_dead(pids) == []


def test_on_start_gets_the_live_pid_before_waiting(
    tmp_path: Path, env: dict[str, str], token: str
) -> None:
    """on_start receives the pid of the running child, which sits in its own fresh session."""
    seen: list[tuple[int, bool, int, int]] = []
    cancel = threading.Event()

    def on_start(pid: int) -> None:
        seen.append((pid, is_alive(pid), os.getsid(pid), os.getpgid(pid)))
        cancel.set()

    result, _ = run(["sleep", "1000"], tmp_path, env, token, on_start=on_start, cancel=cancel)
    assert seen == [(result.pid, True, result.pid, result.pid)]
    assert result.cancelled


def test_background_child_does_not_outlive_a_normal_exit(
    tmp_path: Path, env: dict[str, str], token: str
) -> None:
    """A `sleep &` left in the group (holding the pipe) is killed when the leader exits."""
    result, output = run(["sh", "-c", "sleep 1000 & echo $!"], tmp_path, env, token)
    assert result.exit_code == 0 and not result.timed_out
    assert wait_until_dead([int(output.split()[0])]) == []


def test_escaped_descendant_holding_the_pipe_is_killed(
    tmp_path: Path, env: dict[str, str], token: str
) -> None:
    """A setsid grandchild that keeps the output pipe open is found by token and killed."""
    pidfile = tmp_path / "escaped"
    result, output = run(["sh", str(HELPERS / "escape.sh"), str(pidfile)], tmp_path, env, token)
    assert result.exit_code == 0 and not result.timed_out
    assert output == b"done\n"
    assert wait_until_dead(read_pids(pidfile)) == []


def test_failing_callback_leaves_nothing_running(
    tmp_path: Path, env: dict[str, str], token: str
) -> None:
    """If on_output raises, the error propagates and the process tree is killed."""
    pidfile = tmp_path / "pids"

    def on_output(data: bytes) -> None:
        if b"ready" in data:
            raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        run(
            ["sh", str(HELPERS / "tree.sh"), str(pidfile)],
            tmp_path,
            env,
            token,
            on_output=on_output,
        )
    assert wait_until_dead(read_pids(pidfile)) == []


# -- output volume -------------------------------------------------------------------------------


def _memory_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} missing from /proc/self/status")


def test_one_gigabyte_of_output_is_capped_with_flat_memory(
    tmp_path: Path, env: dict[str, str], token: str
) -> None:
    """1 GiB of output: the log keeps cap + tail + marker, counts every byte, memory stays flat."""
    cap, tail = 2**20, 64 * 2**10
    try:  # reset the peak RSS so VmHWM measures this test alone
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    rss_before = _memory_kib("VmRSS")
    log_path = tmp_path / "big.log"
    with CappedLog(log_path, cap_bytes=cap, tail_bytes=tail) as log:
        result = run_process(
            ["dd", "if=/dev/zero", "bs=1M", "count=1024", "status=none"],
            cwd=tmp_path,
            env=env,
            timeout_s=100,
            log=log,
            mask=[SECRET],
            token=token,
        )
        assert log.truncated and log.bytes_seen == 2**30
    growth_kib = _memory_kib("VmHWM") - rss_before
    assert result.exit_code == 0 and result.output_bytes == 2**30
    size = log_path.stat().st_size
    assert cap + tail <= size <= cap + tail + 200
    marker = f"--- [aidp] output truncated: {2**30 - cap - tail} bytes omitted ---\n".encode()
    with log_path.open("rb") as fh:
        fh.seek(cap)
        assert fh.read(len(marker) + 1) == b"\n" + marker
        fh.seek(-tail, os.SEEK_END)
        assert fh.read() == b"\0" * tail
    assert growth_kib < 50 * 1024


# -- masking -------------------------------------------------------------------------------------


def test_secret_is_masked_whole_split_and_repeated(
    tmp_path: Path, env: dict[str, str], token: str
) -> None:
    """A secret printed whole, split across two writes, and repeated never reaches log or
    callback."""
    pieces: list[bytes] = []
    argv = [
        sys.executable,
        str(HELPERS / "chunks.py"),
        f"whole {SECRET} abc\n",
        f"split {SECRET[:5]}",
        f"{SECRET[5:]} end\nrepeat {SECRET}{SECRET} {SECRET}\n",
        f"no newline {SECRET[:9]}",
        SECRET[9:],
    ]
    result, output = run(
        argv, tmp_path, env, token, mask=[SECRET, "", "abc"], on_output=pieces.append
    )
    assert result.exit_code == 0
    expected = b"whole *** abc\nsplit *** end\nrepeat ****** ***\nno newline ***"
    assert output == expected
    assert b"".join(pieces) == expected
    assert SECRET.encode() not in output


@pytest.mark.parametrize(
    "offset",
    [CARRY_LIMIT - 20, CARRY_LIMIT - 3, CARRY_LIMIT, CARRY_LIMIT + 1, 2 * CARRY_LIMIT - 7],
    ids=lambda n: f"at-{n}",
)
def test_secret_across_the_carry_flush_is_masked(
    tmp_path: Path, env: dict[str, str], token: str, offset: int
) -> None:
    """A secret inside one very long line, around the 64 KiB carry flush, is still masked."""
    pieces: list[bytes] = []
    argv = [sys.executable, str(HELPERS / "chunks.py"), f"@{offset}", SECRET[:7], SECRET[7:] + "\n"]
    _, output = run(argv, tmp_path, env, token, mask=[SECRET], on_output=pieces.append)
    assert output == b"x" * offset + b"***\n"
    assert b"".join(pieces) == output


@settings(deadline=None)
@given(
    text=st.lists(st.sampled_from(["ab", "\n", "s3cr", "et", "s3cret", "x" * 500]), max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=20000), max_size=20),
)
def test_masker_masks_whatever_the_chunking(text: list[str], cuts: list[int]) -> None:
    """Whatever the chunk boundaries, the masked stream equals the text with the secret replaced."""
    data = "".join(text).encode()
    masker = SecretMasker(["s3cret"])
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    out = b"".join(masker.feed(data[a:b]) for a, b in pairwise(bounds))
    out += masker.flush()
    assert out == data.replace(b"s3cret", b"***")


def test_masker_handles_multiline_and_overlapping_secrets() -> None:
    """A secret with a newline in it is masked, and overlapping secrets are masked as one."""
    masker = SecretMasker(["line1\nline2", "abcdef", "defghi"])
    out = masker.feed(b"key: line1\n") + masker.feed(b"line2\nx abcdefghi y\n") + masker.flush()
    assert out == b"key: ***\nx *** y\n"


# -- exit status, errors, environment ------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "exit_code", "sig"),
    [
        ("exit 0", 0, None),
        ("exit 3", 3, None),
        ("kill -9 $$", None, 9),
        ("kill -TERM $$", None, 15),
    ],
    ids=["ok", "exit-3", "sigkill", "sigterm"],
)
def test_exit_code_and_signal(
    tmp_path: Path,
    env: dict[str, str],
    token: str,
    script: str,
    exit_code: int | None,
    sig: int | None,
) -> None:
    """A normal exit reports its code; death by a signal reports the signal and no exit code."""
    result, _ = run(["sh", "-c", script], tmp_path, env, token)
    assert (result.exit_code, result.signal) == (exit_code, sig)
    assert not result.timed_out and not result.cancelled


def test_missing_or_unexecutable_command_raises_tool_error(
    tmp_path: Path, env: dict[str, str], token: str
) -> None:
    """A missing binary, a bare unknown name and a non-executable file all raise ToolError."""
    plain = tmp_path / "not-executable"
    plain.write_text("echo hi\n")
    for argv0, message in [
        ("/nonexistent/aidp-tool", "command not found: /nonexistent/aidp-tool"),
        ("aidp-no-such-tool-xyz", "command not found: aidp-no-such-tool-xyz"),
        (str(plain), "command not executable"),
    ]:
        with pytest.raises(ToolError, match=message):
            run([argv0], tmp_path, env, token)


def test_missing_working_directory_raises_tool_error(
    tmp_path: Path, env: dict[str, str], token: str
) -> None:
    """A working directory that does not exist is named in the ToolError."""
    with CappedLog(tmp_path / "log") as log, pytest.raises(ToolError, match="working directory"):
        run_process(["true"], cwd=tmp_path / "gone", env=env, timeout_s=10, log=log, token=token)


def test_stdin_is_closed(tmp_path: Path, env: dict[str, str], token: str) -> None:
    """stdin is /dev/null, so a tool reading it (cat) sees end-of-file at once."""
    result, output = run(["cat"], tmp_path, env, token)
    assert result.exit_code == 0 and output == b""


def test_child_runs_in_its_own_session(tmp_path: Path, env: dict[str, str], token: str) -> None:
    """The child leads its own session and process group."""
    code = "import os; print(os.getsid(0), os.getpgid(0), os.getpid())"
    result, output = run([sys.executable, "-c", code], tmp_path, env, token)
    assert output.split() == [str(result.pid).encode()] * 3


def test_token_is_in_the_child_environment(tmp_path: Path, env: dict[str, str], token: str) -> None:
    """The given token reaches the child as AIDP_PROCESS_TOKEN; without one a random one is used."""
    result, output = run(["sh", "-c", f'echo "${TOKEN_ENV}"'], tmp_path, env, token)
    assert output == f"{token}\n".encode() and result.token == token
    with CappedLog(tmp_path / "second.log") as log:
        second = run_process(["true"], cwd=tmp_path, env=env, timeout_s=10, log=log)
    assert len(second.token) >= 16 and second.token != token


def test_build_env_keeps_only_the_basics_and_declared_names() -> None:
    """build_env drops unrelated variables, keeps the basics, declared names and extras."""
    base = {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LC_ALL": "C.UTF-8",
        "UNRELATED": "x",
        "AWS_SECRET_ACCESS_KEY": "leak",
        "MY_API_KEY": "k",
    }
    env = build_env(base, ["MY_API_KEY", "ABSENT_NAME"], {"AIDP_STEP": "s1"})
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LC_ALL": "C.UTF-8",
        "MY_API_KEY": "k",
        "AIDP_STEP": "s1",
    }


# -- /proc helpers and crash recovery ------------------------------------------------------------


def test_kill_by_token_kills_an_orphaned_setsid_process(env: dict[str, str], token: str) -> None:
    """An orphan that escaped into its own session is found by its token and killed."""
    out = subprocess.run(
        ["sh", "-c", "setsid sleep 1000 >/dev/null 2>&1 & echo $!"],
        env={**env, TOKEN_ENV: token},
        capture_output=True,
        check=True,
    )
    orphan = int(out.stdout)
    assert is_alive(orphan)
    assert kill_by_token(token) == 1
    assert wait_until_dead([orphan]) == []
    assert kill_by_token(token) == 0


def test_kill_by_token_with_pid_hint_kills_the_group(env: dict[str, str], token: str) -> None:
    """With a pid hint, group members that cleared their environment die with the leader."""
    proc = subprocess.Popen(
        ["sh", "-c", "env -i sleep 1000 & echo $!; exec sleep 1000"],
        env={**env, TOKEN_ENV: token},
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    cleared = int(proc.stdout.readline())
    proc.stdout.close()
    assert kill_by_token(token, pid_hint=proc.pid) >= 1
    assert proc.wait() == -9
    assert wait_until_dead([cleared]) == []


def test_a_zombie_is_not_alive() -> None:
    """A process that exited but is not yet reaped counts as dead."""
    proc = subprocess.Popen(["true"])
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    assert process_start_time(proc.pid) is not None
    assert not is_alive(proc.pid)
    proc.wait()


def test_process_start_time_tells_processes_apart() -> None:
    """The start time identifies this process; an impossible pid has none."""
    me = os.getpid()
    started = process_start_time(me)
    assert started is not None
    assert is_alive(me) and is_alive(me, started) and not is_alive(me, started + 1)
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert process_start_time(pid_max + 1) is None and not is_alive(pid_max + 1)


# -- CappedLog -----------------------------------------------------------------------------------


def test_log_under_the_cap_is_verbatim_with_notes(tmp_path: Path) -> None:
    """Below the cap, output and note lines are written as they come, notes on their own line."""
    path = tmp_path / "log"
    with CappedLog(path, cap_bytes=1000, tail_bytes=10) as log:
        log.write(b"tool output")
        log.note("check 1: pytest -q")
        log.write(b"1 passed\n")
        assert not log.truncated and log.bytes_seen == 20
    assert path.read_bytes() == b"tool output\n--- check 1: pytest -q ---\n1 passed\n"
    assert log.bytes_written == path.stat().st_size


def test_log_past_the_cap_keeps_head_marker_and_tail(tmp_path: Path) -> None:
    """Past the cap the head stays, then a marker counting the omitted bytes, then the tail."""
    path = tmp_path / "log"
    log = CappedLog(path, cap_bytes=10, tail_bytes=5)
    for i in range(100):
        log.write(b"%03d\n" % i)
    assert log.truncated and log.bytes_seen == 400 and log.bytes_written == 10
    log.close()
    omitted = 400 - 10 - 5
    expected = (
        b"000\n001\n00" + f"\n--- [aidp] output truncated: {omitted} bytes omitted ---\n".encode()
    )
    assert path.read_bytes() == expected + b"\n099\n"
    assert log.bytes_written == path.stat().st_size


def test_notes_past_the_cap_keep_each_sections_tail(tmp_path: Path) -> None:
    """A note past the cap is always written, after the previous section's tail, and bounded."""
    path = tmp_path / "log"
    with CappedLog(path, cap_bytes=4, tail_bytes=3) as log:
        log.write(b"abcdefghij")
        log.note("check 1: " + "very long " * 500)
        log.write(b"KLMNOP")
    lines = path.read_bytes().split(b"\n")
    assert lines[0] == b"abcd"
    assert lines[1] == b"--- [aidp] output truncated: 3 bytes omitted ---"
    assert lines[2] == b"hij"
    assert lines[3].startswith(b"--- check 1: very long") and len(lines[3]) < 1100
    assert lines[4:] == [b"--- [aidp] output truncated: 3 bytes omitted ---", b"NOP"]


# -- capture mode --------------------------------------------------------------------------------


def test_captured_output_and_exit_code(tmp_path: Path) -> None:
    """stdout and stderr come back separately as text, with the exit code; cwd is honoured."""
    done = run_captured(
        ["sh", "-c", "pwd; echo oops >&2; exit 3"], cwd=tmp_path, timeout_s=30.0
    )
    assert done.returncode == 3
    assert done.stdout == f"{tmp_path}\n"
    assert done.stderr == "oops\n"
    assert done.args == ["sh", "-c", "pwd; echo oops >&2; exit 3"]


def test_captured_merge_stderr_and_undecodable_bytes(tmp_path: Path) -> None:
    """merge_stderr sends stderr into stdout; invalid UTF-8 survives as surrogate escapes."""
    done = run_captured(
        ["sh", "-c", "printf 'a\\377'; printf b >&2"], cwd=tmp_path, timeout_s=30.0,
        merge_stderr=True,
    )
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == "a\udcffb"
    assert done.stdout.encode("utf-8", "surrogateescape") == b"a\xffb"


def test_captured_input_is_fed_and_stdin_closed_without_it(tmp_path: Path) -> None:
    """input reaches stdin; without input stdin is /dev/null (a reader sees EOF at once)."""
    fed = run_captured(["cat"], cwd=tmp_path, timeout_s=30.0, input="héllo\n")
    assert fed.stdout == "héllo\n"
    closed = run_captured(["cat"], cwd=tmp_path, timeout_s=30.0)
    assert closed.returncode == 0 and closed.stdout == ""


def test_captured_env_and_own_session(tmp_path: Path) -> None:
    """The child gets exactly ``env`` and runs as the leader of its own session."""
    code = "import os; print(os.environ['ONLY'], len(os.environ), os.getsid(0) == os.getpid())"
    done = run_captured(
        [sys.executable, "-c", code], cwd=tmp_path, timeout_s=30.0, env={"ONLY": "this"}
    )
    # The interpreter may add LC_CTYPE on its own; nothing of ours leaks in.
    value, count, leader = done.stdout.split()
    assert (value, leader) == ("this", "True") and int(count) <= 2


def test_captured_missing_command_raises_file_not_found(tmp_path: Path) -> None:
    """A missing command is an OSError (FileNotFoundError) from the runner, nothing started."""
    with pytest.raises(FileNotFoundError):
        run_captured(["aidp-no-such-command-xyz"], cwd=tmp_path, timeout_s=30.0)


def test_captured_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    """At the timeout the leader and its background grandchild are killed, fast."""
    script = "echo $$; sleep 30 & echo $!; sleep 30"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        run_captured(["sh", "-c", script], cwd=tmp_path, timeout_s=0.5)
    elapsed = time.monotonic() - started
    assert elapsed < 5.0
    assert caught.value.timeout == 0.5 and caught.value.cmd == ["sh", "-c", script]
    output = caught.value.output
    assert isinstance(output, str)
    pids = [int(line) for line in output.split()]
    assert len(pids) == 2  # the shell, then its background sleep
    assert wait_until_dead(pids, within_s=2.0) == []
    assert _group_members(pids[0]) == []


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``, from /proc/PID/stat."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{name}/stat").read_text(errors="replace")
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X", "x"):
            members.append(int(name))
    return members
