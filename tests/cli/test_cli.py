"""Pure CLI behaviour: --help stays light, --version, one-line errors with exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aidp import __version__
from tests.conftest import Cli, init_repo

HEAVY = ("sqlalchemy", "pygit2", "alembic", "fastapi", "uvicorn", "starlette", "httpx", "jinja2",
         "rich.live")

PROBE = """
import json, sys
from aidp.cli.main import main
sys.argv = ["aidp"] + sys.argv[1:]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
sys.stdout.flush()
print("\\nMODULES=" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _modules_after(*args: str) -> tuple[int, list[str], str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, check=False)
    out, _, tail = proc.stdout.rpartition("\nMODULES=")
    data = json.loads(tail)
    return data["code"], data["modules"], out


@pytest.mark.parametrize("args", [("--help",), ("run", "--help"), ("status", "--help")],
                         ids=" ".join)
def test_help_imports_nothing_heavy(args: tuple[str, ...]) -> None:
    """aidp --help (and a command's --help) imports no database, git binding or web module."""
    code, modules, out = _modules_after(*args)
    assert code == 0
    assert "Usage:" in out
    loaded = [m for m in modules for heavy in HEAVY if m == heavy or m.startswith(heavy + ".")]
    assert loaded == []


def test_empty_run_on_sqlite_imports_no_sqlalchemy_or_pygit2(tmp_path: Path) -> None:
    """`aidp run` of an empty plan on SQLite (a new database, then an existing one) needs
    neither SQLAlchemy nor pygit2: the start-up the empty-plan benchmark measures."""
    repo = init_repo(tmp_path / "repo")
    plan = tmp_path / "empty.json"
    plan.write_text('{"version": 1, "workstreams": []}')
    for _ in range(2):
        code, modules, out = _modules_after("run", str(plan), "--repo", str(repo), "--json")
        assert code == 0, out
        assert json.loads(out)["status"] == "completed"
        loaded = [m for m in modules for heavy in HEAVY
                  if m == heavy or m.startswith(heavy + ".")]
        assert loaded == []


def test_help_lists_every_command() -> None:
    """aidp --help lists every command with its one-line help."""
    _, _, out = _modules_after("--help")
    from aidp.cli.main import COMMANDS

    assert len(COMMANDS) >= 20
    for name in COMMANDS:
        assert f"  {name} " in out, name


def test_version(tmp_path: Path) -> None:
    """aidp --version prints the package version."""
    proc = Cli(tmp_path, in_process=True)("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"aidp, version {__version__}"


def test_unknown_run_is_exit_3(cli: Cli) -> None:
    """aidp status NOPE: exit 3, one 'error:' line plus a hint, no traceback."""
    result = cli("status", "NOPE")
    assert result.returncode == 3
    assert result.stderr.startswith("error:") and "NOPE" in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


@pytest.mark.parametrize("args", [("status",), ("runs",), ("run", "x.yaml"),
                                  ("worktrees", "list"), ("init",)], ids=" ".join)
def test_outside_a_git_repository(tmp_path: Path, args: tuple[str, ...]) -> None:
    """Outside a git repository: exit 2, 'error: not a git repository' and a hint."""
    where = tmp_path / "plain"
    where.mkdir()
    (where / "x.yaml").write_text("version: 1\nworkstreams: [{id: a, steps: [{id: s}]}]\n")
    db = f"sqlite+pysqlite:///{tmp_path / 'db.sqlite'}"
    result = Cli(where, db, in_process=True)(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: not a git repository")
    assert "hint:" in result.stderr and "Traceback" not in result.stderr


def test_no_database_yet(repo: Path) -> None:
    """aidp status in a repository without runs (default SQLite): an empty table, exit 0, and
    no database created."""
    result = Cli(repo, in_process=True)("status")
    assert result.returncode == 0, result.stderr
    assert "workstream / step" in result.stdout and "no runs yet" in result.stderr
    assert not (repo / ".aidp" / "aidp.db").exists()


def test_no_runs_yet(cli: Cli) -> None:
    """aidp runs on an empty database prints nothing; aidp status an empty table (exit 0)."""
    assert json.loads(cli("runs", "--json", check=True).stdout) == []
    result = cli("status")
    assert result.returncode == 0 and "no runs" in result.stderr


def test_unknown_step_in_logs(cli: Cli, tmp_path: Path) -> None:
    """aidp logs with an unknown step: exit 3, one line."""
    plan = tmp_path / "p.yaml"
    plan.write_text("version: 1\nworkstreams: [{id: a, steps: [{id: s, run: 'true'}]}]\n")
    run_id = json.loads(cli("run", "--json", str(plan), check=True).stdout)["run_id"]
    result = cli("logs", run_id, "a/nope")
    assert result.returncode == 3 and result.stderr.startswith("error: no step 'a/nope'")
    assert cli("logs", run_id[:10].lower(), "s", check=True).returncode == 0  # prefix, any case


def test_bad_database_url_is_a_config_error(repo: Path) -> None:
    """An unusable database URL: exit 2 and an error that does not show the password."""
    result = Cli(repo, "nosuchdialect://user:hunter2@host/db")("runs")
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr


def test_init_refuses_to_overwrite(repo: Path) -> None:
    """A second aidp init exits 2 naming the existing files; --force overwrites."""
    cli = Cli(repo, in_process=True)
    assert cli("init").returncode == 0
    (repo / "aidp.toml").write_text("# mine\n")
    again = cli("init")
    assert again.returncode == 2 and "aidp.toml exists" in again.stderr
    assert (repo / "aidp.toml").read_text() == "# mine\n"
    assert cli("init", "--force").returncode == 0
    assert "[run]" in (repo / "aidp.toml").read_text()
