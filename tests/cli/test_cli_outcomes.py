"""Honest outcomes and sharp edges of the inspection commands: empty lists, quoting, the real
attempt count, piped and coloured output, usage lines, typos, ``logs --json``, a missing check
command."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from tests.conftest import Cli

FAILING = "version: 1\nworkstreams: [{id: a, steps: [{id: s, run: 'echo x > f.txt', " \
          "checks: ['false']}]}]\n"


def _run(cli: Cli, tmp_path: Path, text: str) -> str:
    plan = tmp_path / "p.yaml"
    plan.write_text(text)
    result = cli("run", "--json", str(plan))
    assert result.returncode in (0, 1), result.stderr
    return str(json.loads(result.stdout)["run_id"])


def _with_env(cli: Cli, extra: dict[str, str], *args: str) -> str:
    env = {k: v for k, v in cli.env().items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    proc = subprocess.run(cli.popen_argv(*args), cwd=cli.cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env={**env, **extra}, timeout=90,
                          check=True)
    return proc.stdout


def test_status_and_runs_without_runs_are_empty(cli_inproc: Cli) -> None:
    """No runs is not an error: status and runs print an empty table / JSON, exit 0."""
    for args in (("status",), ("runs",)):
        result = cli_inproc(*args)
        assert result.returncode == 0, (args, result.stderr)
    assert json.loads(cli_inproc("runs", "--json", check=True).stdout) == []
    data = json.loads(cli_inproc("status", "--json", check=True).stdout)
    assert data["run_id"] is None and data["workstreams"] == []
    assert "workstream / step" in cli_inproc("status", check=True).stdout
    assert cli_inproc("status", "NOPE").returncode == 3


def test_diagnose_shell_quotes_the_command(cli_inproc: Cli, tmp_path: Path) -> None:
    """diagnose prints the tool's command line shell-quoted (shlex.join)."""
    run_id = _run(cli_inproc, tmp_path, FAILING)
    out = cli_inproc("diagnose", run_id, "a/s", check=True).stdout
    bundle = json.loads(cli_inproc("diagnose", run_id, "a/s", "--json", check=True).stdout)
    assert "command: " + shlex.join(bundle["command_line"]) in out.splitlines()
    assert "'echo x > f.txt'" in out


def test_status_counts_every_attempt(cli_inproc: Cli, tmp_path: Path) -> None:
    """status shows the number of attempts recorded, not the retry counter reset by resume."""
    run_id = _run(cli_inproc, tmp_path, FAILING)
    for _ in range(3):
        assert cli_inproc("resume", run_id).returncode != 0
    data = json.loads(cli_inproc("status", run_id, "--json", check=True).stdout)
    step = data["workstreams"][0]["steps"][0]
    assert (step["attempts"], step["attempts_total"], len(step["attempt_list"])) == (1, 4, 4)
    row = next(line for line in cli_inproc("status", run_id, check=True).stdout.splitlines()
               if line.strip("│ ").startswith("s "))
    assert [cell.strip() for cell in row.split("│")][3] == "4"


def test_status_counts_fix_attempts(cli_inproc: Cli, tmp_path: Path) -> None:
    """status shows attempts_total (first attempt and fix attempts) after a fix loop gives up."""
    run_id = _run(cli_inproc, tmp_path, "version: 1\nworkstreams: [{id: a, steps: [{id: s, "
                  "run: 'echo x >> f.txt', checks: ['false'], fix: {max: 3}}]}]\n")
    step = json.loads(cli_inproc("status", run_id, "--json", check=True).stdout)[
        "workstreams"][0]["steps"][0]
    total = len(step["attempt_list"])
    assert total > 1 and step["attempts_total"] == total, step["attempts"]
    row = next(line for line in cli_inproc("status", run_id, check=True).stdout.splitlines()
               if line.strip("│ ").startswith("s "))
    assert [cell.strip() for cell in row.split("│")][3] == str(total)


def test_piped_status_is_not_cut_at_80_columns(cli: Cli, tmp_path: Path) -> None:
    """status on a pipe keeps every cell whole: rich does not wrap the table to 80 columns."""
    path = "/nonexistent/" + "very-long-directory-name/" * 8 + "flag"
    run_id = _run(cli, tmp_path, "version: 1\nworkstreams: [{id: a, steps: [{id: s, "
                  f"run: 'echo x > f.txt', checks: ['test -f {path}']}}]}}]\n")
    out = cli("status", run_id, check=True).stdout
    assert f"check 'test -f {path}' failed with exit code 1" in out
    assert f"aidp/{run_id}/a" in out or "check" in out


def test_status_colours_failures_and_honours_no_color(cli: Cli, tmp_path: Path) -> None:
    """On a terminal failed is red; NO_COLOR (or a pipe) means no ANSI escape at all."""
    run_id = _run(cli, tmp_path, FAILING)
    coloured = _with_env(cli, {"FORCE_COLOR": "1"}, "status", run_id)
    plain = _with_env(cli, {"FORCE_COLOR": "1", "NO_COLOR": "1"}, "status", run_id)
    assert "\x1b[31mfailed" in coloured
    assert "\x1b" not in plain and "failed" in plain
    assert "\x1b" not in cli("status", run_id, check=True).stdout  # a pipe


def test_optional_run_shows_in_brackets(cli_inproc: Cli) -> None:
    """An optional RUN argument is shown as [RUN] in the usage line."""
    for command in ("status", "findings", "cancel", "usage", "resume"):
        out = cli_inproc(command, "--help", check=True).stdout
        assert f"aidp {command} [OPTIONS] [RUN]" in out, out.splitlines()[0]
    assert "aidp logs [OPTIONS] RUN STEP" in cli_inproc("logs", "--help", check=True).stdout


def test_mistyped_command_suggests_the_closest(cli_inproc: Cli) -> None:
    """A mistyped command exits 2 with "Did you mean" and the closest command."""
    result = cli_inproc("stauts")
    assert result.returncode == 2
    assert "No such command 'stauts'. Did you mean 'status'?" in result.stderr


def test_logs_json(cli_inproc: Cli, tmp_path: Path) -> None:
    """logs --json prints the run, step, attempt, log path and the log's text as JSON."""
    run_id = _run(cli_inproc, tmp_path, FAILING)
    data = json.loads(cli_inproc("logs", run_id, "a/s", "--json", check=True).stdout)
    assert (data["run_id"], data["workstream"], data["step"], data["attempt"]) == (
        run_id, "a", "s", 1)
    assert data["text"] == Path(data["path"]).read_text()
    assert data["text"] == cli_inproc("logs", run_id, "a/s", check=True).stdout


def test_missing_check_command_is_named(cli_inproc: Cli, tmp_path: Path) -> None:
    """A check whose command does not exist (exit 127) says "command not found: NAME"."""
    run_id = _run(cli_inproc, tmp_path, "version: 1\nworkstreams: [{id: a, steps: [{id: s, "
                  "run: 'echo x > f.txt', checks: ['pytset -q']}]}]\n")
    found = json.loads(cli_inproc("findings", run_id, "--json", check=True).stdout)["findings"]
    assert [f["message"] for f in found] == ["command not found: pytset"]
