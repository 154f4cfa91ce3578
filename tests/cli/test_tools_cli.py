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
        second = aidp(repo, "tools", "check", "codex",
                      env={**llm.proxy_env(), "AIDP_TEST_LLM_KEY": "sk-test-key-1234"})
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


FAKE_AIDER = "#!/bin/sh\necho 'aider 0.86.2'\n"
KEYLESS = """\
[tools.aider]
adapter = "aider"
command = "{aider}"
model = "gpt-4.1"

[tools.local]
adapter = "codex"
command = "{aider}"
model = "fake-model"
base_url = "{url}"
api_key_env = "AIDP_TEST_LLM_KEY"

[tools.gpt]
adapter = "openai"
model = "fake-model"
"""


def keyless(tmp_path: Path, url: str = "http://127.0.0.1:9/v1") -> Path:
    """A repository with an aider profile without key or base_url, a codex-like profile on a
    local endpoint naming its key variable, and an openai profile (the binaries: a stub
    printing a version)."""
    stub = tmp_path / "bin" / "aider"
    stub.parent.mkdir()
    stub.write_text(FAKE_AIDER)
    stub.chmod(0o755)
    repo = init_repo(tmp_path / "repo", {"hello.py": GREETING})
    (repo / "aidp.toml").write_text(KEYLESS.format(aider=stub, url=url))
    return repo


def no_keys(**extra: str) -> dict[str, str]:
    """The environment without any key variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "AIDP_TEST_LLM_KEY", "OPENAI_BASE_URL")}
    return {**env, **GIT_ENV, **extra}


def run_env(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIDP, *args], cwd=repo, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False, env=env)


def test_check_never_says_ok_for_a_profile_missing_its_key(tmp_path: Path) -> None:
    """A model tool without the key it needs is FAILED, the variable named, nothing sent, exit
    1 -- never "ok" with nothing asked; the text and --json say the same."""
    repo = keyless(tmp_path)
    result = run_env(repo, no_keys(), "tools", "check", "aider")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ("aider  FAILED  aider 0.86.2; not checked: no API key in "
                             "OPENAI_API_KEY (no base_url: aider would call "
                             "https://api.openai.com/v1)\n")
    as_json = run_env(repo, no_keys(), "tools", "check", "--json")
    assert as_json.returncode == 1
    rows = {row["profile"]: row for row in json.loads(as_json.stdout)}
    for name, variable in (("aider", "OPENAI_API_KEY"), ("local", "AIDP_TEST_LLM_KEY"),
                           ("gpt", "OPENAI_API_KEY")):
        row = rows[name]
        assert row["status"] == "failed" and row["ok"] is False, row
        assert row["canary_ok"] is None and variable in row["not_checked"], row
    assert rows["shell"]["status"] == "ok"  # no endpoint, no key: nothing to ask
    listed = run_env(repo, no_keys(), "tools", "list").stdout.splitlines()[1]
    assert listed.split()[0] == "aider" and "FAILED" in listed


def test_offline_check_says_what_it_did_not_ask(tmp_path: Path) -> None:
    """With its key but --offline, a profile calling the provider is "unchecked" with the
    reason (exit 0: nothing known wrong), never "ok"; the key is shown nowhere."""
    repo = keyless(tmp_path)
    secret = "sk-offline-secret-5678"
    result = run_env(repo, no_keys(OPENAI_API_KEY=secret), "tools", "check", "--offline",
                     "aider")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ("aider  unchecked  aider 0.86.2; not checked: --offline and "
                             "https://api.openai.com/v1 is not on 127.0.0.1\n")
    as_json = run_env(repo, no_keys(OPENAI_API_KEY=secret), "tools", "check", "--offline",
                      "--json", "gpt")
    (row,) = json.loads(as_json.stdout)
    assert as_json.returncode == 0 and row["status"] == "unchecked" and row["canary_ok"] is None
    assert "--offline" in row["not_checked"]
    stored = (repo / ".aidp" / "tool-checks.json").read_text()
    assert secret not in result.stdout + as_json.stdout + stored


def test_check_sends_the_canary_with_the_key_the_tool_gets(tmp_path: Path) -> None:
    """With its key set, a profile on a local endpoint is asked for real (the fake LLM): ok,
    the key sent as the tool would send it and shown nowhere; a wrong endpoint FAILS."""
    secret = "sk-canary-secret-9012"
    with FakeLLM(["unused"]) as llm:
        repo = keyless(tmp_path, url=llm.base_url)
        result = run_env(repo, no_keys(AIDP_TEST_LLM_KEY=secret, **llm.proxy_env()),
                         "tools", "check", "--json", "--offline", "local")
        requests = list(llm.requests)
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = json.loads(result.stdout)
    assert row["status"] == "ok" and row["canary_ok"] is True and row["not_checked"] is None
    assert [(r["path"], r["headers"].get("authorization")) for r in requests] == [
        ("/v1/models", "Bearer ***")]
    assert secret not in result.stdout + (repo / ".aidp" / "tool-checks.json").read_text()
    down = run_env(repo, no_keys(AIDP_TEST_LLM_KEY=secret), "tools", "check", "local")
    assert down.returncode == 1 and down.stdout.startswith("local  FAILED  ")
    assert "unreachable" in down.stdout and secret not in down.stdout
