"""Settings: aidp.toml plus AIDP_* environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from aidp.config import load_settings
from aidp.exceptions import ConfigError
from tests.conftest import Cli


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without aidp.toml: SQLite in .aidp/, the shell profile, parallel 4."""
    monkeypatch.delenv("AIDP_DATABASE_URL", raising=False)
    settings = load_settings(tmp_path)
    assert settings.database_url(tmp_path) == f"sqlite+pysqlite:///{tmp_path}/.aidp/aidp.db"
    assert settings.run.parallel == 4
    assert settings.profile("shell") is not None


def test_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """aidp.toml sets values; AIDP_RUN__PARALLEL and AIDP_DATABASE_URL override them."""
    (tmp_path / "aidp.toml").write_text(
        '[run]\nparallel = 3\nkill_grace = "500ms"\n'
        '[tools.fmt]\nadapter = "shell"\ncommand = "true"\nconcurrency = 1\ntimeout = "2m"\n'
    )
    settings = load_settings(tmp_path)
    assert settings.run.parallel == 3 and settings.run.kill_grace == 0.5
    profile = settings.profile("fmt")
    assert profile is not None and profile.concurrency == 1 and profile.timeout == 120.0
    assert settings.profile("shell") is not None
    monkeypatch.setenv("AIDP_RUN__PARALLEL", "9")
    monkeypatch.setenv("AIDP_DATABASE_URL", "postgresql+psycopg://u@127.0.0.1/x")
    settings = load_settings(tmp_path)
    assert settings.run.parallel == 9
    assert settings.database_url(tmp_path) == "postgresql+psycopg://u@127.0.0.1/x"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[run\nparallel = 2\n", "aidp.toml"),
        ("[run]\nparallel = 0\n", "run.parallel"),
        ("[run]\nparalel = 2\n", "run.paralel"),
        ('[tools.x]\nadapter = "nope"\n', "tools.x.adapter"),
    ],
    ids=["syntax", "range", "unknown-key", "unknown-adapter"],
)
def test_bad_config_names_the_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    """A bad aidp.toml is a ConfigError naming the file and the key."""
    (tmp_path / "aidp.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    assert needle in str(info.value)
    assert str(tmp_path / "aidp.toml") in str(info.value)
    assert info.value.exit_code == 2


def test_bad_config_on_the_command_line_is_one_line(repo: Path) -> None:
    """The CLI prints one `error:` line and exits 2; no traceback."""
    (repo / "aidp.toml").write_text("[run]\nparallel = -1\n")
    result = Cli(repo)("runs")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
