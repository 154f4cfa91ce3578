"""The systemd units of ``deploy/systemd`` (docs/deploy.md), checked as far as a machine without
a running systemd allows: ``systemd-analyze verify`` accepts them, and their own command lines --
read from the files, with only the install paths and the port changed -- start the service,
refuse an old schema, stop it resumably the way ``KillMode=mixed`` does, and back the database
up so that ``pg_restore`` brings every run back."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.api.conftest import Served
from tests.api.test_service_runs import _assert_each_step_once, _plan, _start, _wait
from tests.conftest import PG_URL, Cli
from tests.helpers import GIT_ENV

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
VENV_BIN = Path(sys.executable).parent


def _install(name: str, repo: Path, etc: Path) -> str:
    """The unit as it would be installed here: our venv, ``repo``, ``etc`` for /etc/aidp, no
    User= (the test runs as whoever it is), and any free port."""
    text = (UNITS / name).read_text()
    text = (text.replace("/opt/aidp/.venv/bin/", f"{VENV_BIN}/")
            .replace("/srv/aidp/repo", str(repo)).replace("/etc/aidp/", f"{etc}/")
            .replace("--port 8765", "--port 0"))
    return "\n".join(line for line in text.splitlines()
                     if not line.startswith(("User=", "Group=")))


def _service(unit: str) -> dict[str, list[str]]:
    """The [Service] section's settings (a key may repeat)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in unit.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines()
                if line and not line.startswith("#"))


def _exec(command: str) -> list[str]:
    """A unit's command line as argv (systemd's ``%%`` is a literal ``%``)."""
    return shlex.split(command.replace("%%", "%"))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd itself reads every unit without a complaint (syntax, kill mode, executables)."""
    (tmp_path / "aidp.env").write_text("")
    (tmp_path / "backup.env").write_text("")
    names = sorted(p.name for p in UNITS.iterdir())
    assert {"aidp-serve.service", "aidp-backup.service", "aidp-backup.timer"} <= set(names)
    for name in names:
        (tmp_path / name).write_text(_install(name, tmp_path, tmp_path))
    result = subprocess.run(["systemd-analyze", "verify", *names], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def _start_unit(cli: Cli, etc: Path) -> tuple[subprocess.Popen[str], str]:
    """ExecStartPre, then ExecStart, in the unit's working directory and environment."""
    unit = _service(_install("aidp-serve.service", cli.cwd, etc))
    env = {**os.environ, **GIT_ENV, **_env_file(Path(unit["EnvironmentFile"][0]))}
    env.pop("AIDP_DATABASE_URL", None)
    env.update(_env_file(Path(unit["EnvironmentFile"][0])))
    for pre in unit.get("ExecStartPre", []):
        subprocess.run(_exec(pre), cwd=unit["WorkingDirectory"][0], env=env, check=True,
                       capture_output=True, timeout=60)
    proc = subprocess.Popen(_exec(unit["ExecStart"][0]), cwd=unit["WorkingDirectory"][0],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "http://" in line, line + proc.stderr.read() if proc.poll() is not None else line
    return proc, line.split()[2]


def _tokens(cli: Cli) -> dict[str, str]:
    from dataclasses import replace

    quick = replace(cli, in_process=True)
    return {scope: json.loads(quick("tokens", "create", f"u-{scope}", "--scope", scope,
                                    "--json", check=True).stdout)["token"]
            for scope in ("read", "operate")}


def test_the_serve_unit_starts_and_stops_resumably(cli: Cli, tmp_path: Path) -> None:
    """The unit's commands start the service on the configured database; SIGTERM to the main
    process alone (KillMode=mixed) stops it and its workers within TimeoutStopSec, the run
    resumable; started again, it finishes the run with every step done once."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "aidp.env").write_text(f"AIDP_DATABASE_URL={cli.db_url}\nAIDP_RUN__LEASE_TTL=5\n")
    unit = _service(_install("aidp-serve.service", cli.cwd, etc))
    assert unit["KillMode"] == ["mixed"]
    stop_timeout = float(unit["TimeoutStopSec"][0])
    tokens = _tokens(cli)
    shape = {"a": 5}
    path = _plan(cli.cwd, "unit", shape, sleep=0.5)

    proc, url = _start_unit(cli, etc)
    served = Served(url, tokens, cli, proc)
    run_id = _start(served, {"files": [path]})
    _wait(served, run_id, lambda v: sum(s["status"] == "completed"
                                        for w in v["workstreams"] for s in w["steps"]) >= 1)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # KillMode=mixed: the main process only
    proc.communicate(timeout=stop_timeout)
    assert time.monotonic() - started < stop_timeout
    # uvicorn ends by re-raising the signal; systemd counts death by KillSignal as a clean stop
    assert proc.returncode in (0, -signal.SIGTERM), proc.returncode
    view = json.loads(cli("status", run_id, "--json", check=True).stdout)
    assert view["status"] != "completed" and not view["live"], view

    proc, url = _start_unit(cli, etc)
    served = Served(url, tokens, cli, proc)
    try:
        _wait(served, run_id, lambda v: v["status"] == "completed" and not v["live"])
        _assert_each_step_once(cli.cwd, run_id, shape)
    finally:
        served.stop()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_the_serve_unit_does_not_start_on_an_old_schema(cli: Cli, db_url: str,
                                                        tmp_path: Path) -> None:
    """ExecStartPre (`aidp db status`) fails on a schema older than this aidp, so systemd
    never starts the service on it."""
    from tests.cli.test_db import _at

    _at(db_url, "0008")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "aidp.env").write_text(f"AIDP_DATABASE_URL={db_url}\n")
    with pytest.raises(subprocess.CalledProcessError) as failed:
        _start_unit(cli, etc)
    assert failed.value.returncode == 1
    assert b"pending 0009" in failed.value.stdout


@pytest.mark.postgres
@pytest.mark.skipif(shutil.which("pg_dump") is None or shutil.which("pg_restore") is None,
                    reason="needs pg_dump and pg_restore")
def test_the_backup_unit_dump_restores_every_run(repo: Path, tmp_path: Path) -> None:
    """The backup unit's command dumps aidp's database; pg_restore into an empty database
    brings every run and its steps back (docs/deploy.md's restore commands)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from tests.conftest import _postgres_unavailable

    if (reason := _postgres_unavailable()) is not None:
        pytest.skip(reason)
    base = make_url(PG_URL)
    names = [f"aidp_backup_{uuid.uuid4().hex[:8]}", f"aidp_restored_{uuid.uuid4().hex[:8]}"]
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        source = base.set(database=names[0]).render_as_string(hide_password=False)
        cli = Cli(repo, source)
        path = _plan(repo, "backup", {"a": 2}, sleep=0.0)
        cli("run", path, check=True)
        before = json.loads(cli("status", "--json", check=True).stdout)

        etc = tmp_path / "etc"
        etc.mkdir()
        backups = tmp_path / "backups"
        (etc / "backup.env").write_text(
            f"PGHOST={base.host}\nPGPORT={base.port or 5432}\nPGUSER={base.username}\n"
            f"PGDATABASE={names[0]}\nAIDP_BACKUP_DIR={backups}\n")
        unit = _service(_install("aidp-backup.service", repo, etc))
        env = {**os.environ, **_env_file(Path(unit["EnvironmentFile"][0]))}
        subprocess.run(_exec(unit["ExecStart"][0]), env=env, check=True, timeout=120)
        dumps = list(backups.glob("aidp-*.dump"))
        assert len(dumps) == 1, dumps
        subprocess.run(["pg_restore", "--no-owner", f"--dbname={names[1]}", str(dumps[0])],
                       env=env, check=True, timeout=120)

        restored = Cli(repo, base.set(database=names[1]).render_as_string(hide_password=False))
        after = json.loads(restored("status", "--json", check=True).stdout)
        assert after == before
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
