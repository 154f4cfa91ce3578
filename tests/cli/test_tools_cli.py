"""``aidp tools list|check`` through the real executable, in real repositories."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from aidp.testing import FakeLLM
from tests.cli.test_cli import HEAVY, _modules_after
from tests.conftest import AIDP, GIT_ENV
from tests.helpers import git, init_repo
from tests.tools._adapters import GREETING
from tests.tools.test_realtools import require

CONFIG = """\
[tools.aider]
adapter = "aider"
command = "{aider}"
model = "fake-model"
base_url = "{url}"
capabilities = ["code_edit"]
fallback = ["codex"]
priority = 2

[tools.codex]
adapter = "codex"
command = "{codex}"
model = "fake-model"
base_url = "{url}"
api_key_env = "AIDP_TEST_LLM_KEY"
capabilities = ["code_edit", "test_write"]
"""


def aidp(repo: Path, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    """Run the real aidp executable in ``repo``."""
    return subprocess.run([AIDP, *args], cwd=repo, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False,
                          env={**os.environ, **GIT_ENV, **(env or {})})


def configured(tmp_path: Path, *, aider: str = "/nonexistent/aider",
               codex: str = "/nonexistent/codex", url: str = "http://127.0.0.1:9/v1") -> Path:
    """A repository whose aidp.toml declares an aider and a codex profile."""
    repo = init_repo(tmp_path / "repo", {"hello.py": GREETING})
    (repo / "aidp.toml").write_text(CONFIG.format(aider=aider, codex=codex, url=url))
    return repo


def test_tools_help_imports_nothing_heavy() -> None:
    """aidp tools --help imports no database, git binding or web module, nor any adapter."""
    code, modules, out = _modules_after("tools", "--help")
    assert code == 0 and "check" in out and "list" in out
    assert [m for m in modules for heavy in (*HEAVY, "aidp.tools.adapters")
            if m == heavy or m.startswith(heavy + ".")] == []


def test_list_shows_each_profile(tmp_path: Path) -> None:
    """list shows adapter, model, endpoint, capabilities, priority and fallback per profile."""
    repo = configured(tmp_path)
    result = aidp(repo, "tools", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["PROFILE", "ADAPTER", "MODEL", "ENDPOINT", "CAPABILITIES",
                                "PRIORITY", "FALLBACK", "LAST", "CHECK"]
    assert lines[1].split() == ["aider", "aider", "fake-model", "http://127.0.0.1:9/v1",
                                "code_edit", "2", "codex", "never"]
    assert lines[2].split()[:5] == ["codex", "codex", "fake-model", "http://127.0.0.1:9/v1",
                                    "code_edit,test_write"]
    assert {line.split()[0] for line in lines[3:]} >= {"shell"}  # the built-in profiles


def test_list_json_names_the_key_variable_never_a_value(tmp_path: Path) -> None:
    """list --json gives every field of each profile, the key by variable name only."""
    repo = configured(tmp_path)
    result = aidp(repo, "tools", "list", "--json", env={"AIDP_TEST_LLM_KEY": "sk-never-shown"})
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["codex"]["api_key_env"] == "AIDP_TEST_LLM_KEY"
    assert rows["aider"]["fallback"] == ["codex"] and rows["aider"]["last_check"] is None
    assert "sk-never-shown" not in result.stdout


def test_check_of_a_missing_binary_fails_in_one_line_and_is_stored(tmp_path: Path) -> None:
    """check reports a missing binary on one line, exits 1, and list then shows the result."""
    repo = configured(tmp_path)
    result = aidp(repo, "tools", "check", "aider")
    assert result.returncode == 1
    assert result.stdout.startswith("aider  FAILED  aider not found: '/nonexistent/aider'")
    assert len(result.stdout.splitlines()) == 1 and "Traceback" not in result.stderr
    stored = json.loads((repo / ".aidp" / "tool-checks.json").read_text())["profiles"]
    assert stored["aider"]["ok"] is False and stored["aider"]["checked_at"].endswith("Z")
    listed = aidp(repo, "tools", "list").stdout.splitlines()[1]
    assert "FAILED at 20" in listed
    assert git_status(repo) == "?? aidp.toml\n"  # .aidp/ is kept out of git


def git_status(repo: Path) -> str:
    """``git status --porcelain`` of ``repo``."""
    return git(repo, "status", "--porcelain")


def test_check_of_an_unknown_profile_is_a_one_line_error(tmp_path: Path) -> None:
    """Naming a profile that does not exist exits 3 with one error line and a hint."""
    repo = configured(tmp_path)
    result = aidp(repo, "tools", "check", "gemini")
    assert result.returncode == 3
    error, hint = result.stderr.splitlines()
    assert error == "error: no tool profile named 'gemini'"
    assert hint.startswith("hint: known: aider, codex, ") and "shell" in hint


def test_a_crashing_plugin_probe_is_reported_not_raised(tmp_path: Path) -> None:
    """A third-party adapter whose probe raises shows up as a failed check, not a traceback."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "aidp_crashy.py").write_text(textwrap.dedent("""\
        class CrashyAdapter:
            name = "crashy"

            def run(self, invocation):
                raise NotImplementedError

            def probe(self, profile_name, profile, env):
                raise RuntimeError("probe exploded")
        """))
    dist = plugins / "aidp_crashy-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: aidp-crashy\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[aidp.adapters]\ncrashy = aidp_crashy:CrashyAdapter\n")
    repo = init_repo(tmp_path / "repo", {"hello.py": GREETING})
    (repo / "aidp.toml").write_text('[tools.boom]\nadapter = "crashy"\n')
    result = aidp(repo, "tools", "check", "boom", env={"PYTHONPATH": str(plugins)})
    assert result.returncode == 1
    assert result.stdout == "boom  FAILED  probe crashed: RuntimeError: probe exploded\n"


@pytest.mark.realtools
def test_check_runs_the_real_tools_against_their_endpoint(tmp_path: Path) -> None:
    """check finds the real Aider and Codex, their versions, and a canary answer from the
    endpoint; nothing goes anywhere else."""
    with FakeLLM(["unused"]) as llm:
        repo = configured(tmp_path, aider=require("aider"), codex=require("codex"),
                          url=llm.base_url)
        result = aidp(repo, "tools", "check", "aider", "--json", env=llm.proxy_env())
        second = aidp(repo, "tools", "check", "codex", env=llm.proxy_env())
        paths = [request["path"] for request in llm.requests]
        stray = llm.stray
    assert result.returncode == 0, result.stdout + result.stderr
    (entry,) = json.loads(result.stdout)
    assert entry["profile"] == "aider" and entry["ok"] and entry["canary_ok"]
    assert entry["version"] == "0.86.2"
    assert second.returncode == 0, second.stdout
    assert second.stdout.startswith("codex  ok      codex 0.169.0; ")
    assert paths == ["/v1/models", "/v1/models"] and stray == []
    stored = json.loads((repo / ".aidp" / "tool-checks.json").read_text())["profiles"]
    assert stored["aider"]["ok"] and stored["codex"]["version"] == "0.169.0"
