"""Ctrl-C (SIGINT) stops ``aidp run`` promptly, kills its tools, and leaves a resumable run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from aidp.process.procfs import is_alive
from tests.conftest import Cli

PLAN = """\
version: 1
workstreams:
  - id: w
    scope: ["w/**"]
    steps:
      - id: slow
        run: "echo $$ > {pid}; test -f {flag} || sleep 60; mkdir -p w && echo done > w/x"
      - {id: after, depends_on: [slow], run: "echo after >> w/x"}
"""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sigint_stops_the_run_and_resume_finishes_it(cli: Cli, tmp_path: Path) -> None:
    """SIGINT: exit 130 within seconds, the tool is gone, the step is pending again (its
    interrupted attempt not counted), and `aidp resume` completes the run."""
    pid_file, flag = tmp_path / "pid", tmp_path / "flag"
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.replace("{pid}", str(pid_file)).replace("{flag}", str(flag)))
    proc = cli.popen("run", str(plan))
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    tool_pid = int(pid_file.read_text())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "aidp resume" in err and "Traceback" not in err
    assert not is_alive(tool_pid)
    status = json.loads(cli("status", "--json", check=True).stdout)
    assert status["status"] == "interrupted" and status["recorded_status"] == "running"
    assert not status["live"] and status["resumable"]
    assert f"aidp resume {status['run_id']}" in err  # the run id and how to resume it
    step = status["workstreams"][0]["steps"][0]
    assert step["status"] == "pending" and step["attempts"] == 0
    flag.write_text("go")
    cli("resume", check=True)
    status = json.loads(cli("status", "--json", check=True).stdout)
    assert status["status"] == "completed"
    assert [s["status"] for s in status["workstreams"][0]["steps"]] == ["completed"] * 2


PARALLEL_PLAN = """\
version: 1
workstreams:
  - id: a
    scope: ["a/**"]
    steps:
      - id: slow
        run: "echo $$ > {dir}/pid-a; test -f {flag} || sleep 60; mkdir -p a && echo done > a/x"
  - id: b
    scope: ["b/**"]
    steps:
      - id: slow
        run: "echo $$ > {dir}/pid-b; test -f {flag} || sleep 60; mkdir -p b && echo done > b/x"
"""


def _group_members(pgids: set[int]) -> set[int]:
    """Live pids whose process group is one of ``pgids``."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2:].split()
        if int(fields[2]) in pgids and is_alive(int(name)):
            found.add(int(name))
    return found


def _token_carriers(tokens: set[bytes]) -> set[int]:
    """Live pids whose environment carries one of the AIDP_PROCESS_TOKEN entries ``tokens``."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            env = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if any(t in env.split(b"\0") for t in tokens) and is_alive(int(name)):
            found.add(int(name))
    return found


def _wait_for_tools(pid_files: list[Path], timeout: float = 30) -> tuple[set[int], set[bytes]]:
    """The pids (process groups) and AIDP_PROCESS_TOKEN entries of the started tools."""
    deadline = time.monotonic() + timeout
    while not all(p.exists() and p.read_text().strip() for p in pid_files):
        assert time.monotonic() < deadline, "the steps never started"
        time.sleep(0.05)
    pids = {int(p.read_text()) for p in pid_files}
    tokens = set()
    for pid in pids:
        for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if entry.startswith(b"AIDP_PROCESS_TOKEN="):
                tokens.add(entry)
    return pids, tokens


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_timeout_sigterm_stops_the_tools_and_resume_finishes_it(cli: Cli,
                                                                 tmp_path: Path) -> None:
    """SIGTERM (`timeout N aidp run`) stops the tools like SIGINT: none outlives aidp (exit
    143), the run shows interrupted and resumable, and `aidp resume` completes it."""
    flag = tmp_path / "flag"
    plan = tmp_path / "plan.yaml"
    plan.write_text(PARALLEL_PLAN.replace("{dir}", str(tmp_path)).replace("{flag}", str(flag)))
    proc = subprocess.Popen(["timeout", "10", *cli.popen_argv("run", "-p", "2", str(plan))],
                            cwd=cli.cwd, env=cli.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    pids, tokens = _wait_for_tools([tmp_path / "pid-a", tmp_path / "pid-b"])
    members = _group_members(pids)
    assert len(members) >= 4 and len(tokens) == 2  # two sh, two sleep
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 124, err  # timeout's own code: aidp exited on the signal
    assert "Traceback" not in err and "aidp resume" in err
    assert not _group_members(pids) and not _token_carriers(tokens)
    status = json.loads(cli("status", "--json", check=True).stdout)
    assert status["status"] == "interrupted" and not status["live"] and status["resumable"]
    flag.write_text("go")
    cli("resume", check=True)
    status = json.loads(cli("status", "--json", check=True).stdout)
    assert status["status"] == "completed"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sigterm_and_sighup_exit_128_plus_signal(cli: Cli, tmp_path: Path,
                                                 signum: signal.Signals) -> None:
    """SIGTERM and SIGHUP take the SIGINT path: tools stopped, exit 128+signal, the run id and
    `aidp resume RUN` on stderr."""
    pid_file, flag = tmp_path / "pid", tmp_path / "flag"
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.replace("{pid}", str(pid_file)).replace("{flag}", str(flag)))
    proc = cli.popen("run", str(plan))
    pids, tokens = _wait_for_tools([pid_file])
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert not _group_members(pids) and not _token_carriers(tokens)
    run_id = json.loads(cli("runs", "--json", check=True).stdout)[0]["run_id"]
    assert f"aidp resume {run_id}" in err


QUICK_STEPS = """\
version: 1
workstreams:
  - id: w
    scope: ["w/**"]
    steps:
""" + "".join(f"      - {{id: s{i}, run: \"sleep 0.2; mkdir -p w && echo {i} >> w/x\"}}\n"
              for i in range(12))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_closed_stdout_stops_the_run_quietly(cli: Cli, tmp_path: Path) -> None:
    """`aidp run X | head -3`: a closed stdout stops the run like Ctrl-C -- exit 141
    (128+SIGPIPE), no traceback, the run interrupted and resumable, not a dead 'running'."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(QUICK_STEPS)
    proc = cli.popen("run", str(plan))
    assert proc.stdout is not None and proc.stderr is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    assert all(lines)
    proc.stdout.close()  # head -3 exits
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    status = json.loads(cli("status", "--json", check=True).stdout)
    assert status["status"] == "interrupted" and status["resumable"], status
    assert f"aidp resume {status['run_id']}" in err
    cli("resume", check=True)
    assert json.loads(cli("status", "--json", check=True).stdout)["status"] == "completed"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_eof_at_the_interactive_prompt_leaves_an_interrupted_run(cli: Cli,
                                                                 tmp_path: Path) -> None:
    """EOF at `--interactive`'s prompt stops the run like Ctrl-C: exit 130, the run id and
    `aidp resume RUN` on stderr, the run shown interrupted (not running) and resumable."""
    plan = tmp_path / "plan.yaml"
    plan.write_text("version: 1\nworkstreams:\n  - id: w\n    scope: [\"w/**\"]\n    steps:\n"
                    "      - {id: bad, run: \"exit 1\", retry: {max_attempts: 1}}\n")
    done = cli("run", "--interactive", str(plan))
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    status = json.loads(cli("status", "--json", check=True).stdout)
    assert status["status"] == "interrupted" and status["resumable"] and not status["live"]
    assert f"aidp resume {status['run_id']}" in done.stderr
    assert "interrupted" in cli("runs", check=True).stdout
    assert f"aidp resume {status['run_id']}" in cli("status", check=True).stdout
