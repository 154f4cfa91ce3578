"""The GitHub Actions workflows: aidp's own (``.github/workflows/ci.yml``) and the example a team
copies (``examples/ci/aidp-workstreams.yml``) use only commands, options, scripts and markers
that exist, and the example's shell steps really run a plan against the fake LLM."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import xmlschema
import yaml
from click.testing import CliRunner

from aidp.cli.main import cli
from tests.helpers import AIDP, git, init_repo

ROOT = Path(__file__).resolve().parents[2]
PROJECT_CI = ROOT / ".github" / "workflows" / "ci.yml"
EXAMPLE = ROOT / "examples" / "ci" / "aidp-workstreams.yml"
QUICKSTART = ROOT / "examples" / "quickstart"
SCHEMA = xmlschema.XMLSchema(ROOT / "tests" / "data" / "junit.xsd")
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    # YAML 1.1 reads the key `on` as True; GitHub reads it as "on"
    assert "on" in data or True in data, f"{path}: no trigger"
    return data


def _run_steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every step with a ``run:`` script, with its job's name."""
    return [(name, step) for name, job in workflow["jobs"].items()
            for step in job["steps"] if "run" in step]


def _aidp_calls(script: str) -> list[tuple[str, list[str]]]:
    """``(subcommand, options)`` of every ``aidp`` command line in a shell script."""
    calls = []
    for line in script.replace("\\\n", " ").splitlines():
        for part in re.split(r"&&|\|\||;|\|", EXPRESSION.sub("X", line)):
            try:
                words = shlex.split(part, comments=True)
            except ValueError:  # a quote opened in another part of the line
                continue
            if words and Path(words[0]).name == "aidp" and len(words) > 1:
                options = [w.split("=", 1)[0] for w in words[2:] if w.startswith("-")]
                calls.append((words[1], options))
    return calls


@pytest.mark.parametrize("path", [PROJECT_CI, EXAMPLE], ids=lambda p: p.name)
def test_workflow_is_well_formed(path: Path) -> None:
    """Each workflow parses; every job has steps, every step a `uses` or a bash `run`."""
    workflow = _load(path)
    assert workflow["defaults"]["run"]["shell"] == "bash"
    assert workflow["jobs"]
    for name, job in workflow["jobs"].items():
        assert job.get("runs-on") and job["steps"], name
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step


@pytest.mark.parametrize("path", [PROJECT_CI, EXAMPLE], ids=lambda p: p.name)
def test_every_aidp_command_and_option_exists(path: Path) -> None:
    """Every `aidp SUBCOMMAND --option` a workflow runs is a command whose --help lists the
    option."""
    calls = [call for _, step in _run_steps(_load(path)) for call in _aidp_calls(step["run"])]
    if path == EXAMPLE:
        assert {"ci", "fake-llm", "validate"} <= {sub for sub, _ in calls}
    for sub, options in calls:
        if sub.startswith("-"):  # aidp --version
            assert sub in ("--version", "--help"), sub
            continue
        shown = CliRunner().invoke(cli, [sub, "--help"])
        assert shown.exit_code == 0, f"aidp {sub}: {shown.output}"
        for option in options:
            assert re.search(rf"(^|[\s,]){re.escape(option)}\b", shown.output), (sub, option)


def test_project_ci_uses_real_scripts_markers_and_postgres_settings() -> None:
    """ci.yml runs the README's commands: scripts/setup.sh exists, every pytest -m marker is
    declared, and the PostgreSQL job's URL matches its service (image postgres:16, port,
    password) and the variables tests/conftest.py reads, with the server required."""
    workflow = _load(PROJECT_CI)
    scripts = [step["run"] for _, step in _run_steps(workflow)]
    assert any("bash scripts/setup.sh && .venv/bin/ruff check src tests && .venv/bin/mypy" in s
               for s in scripts)
    for script in scripts:
        for name in re.findall(r"bash (\S+\.sh)", script):
            assert (ROOT / name).is_file(), name
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = {m.split(":")[0] for m in pyproject["tool"]["pytest"]["ini_options"]["markers"]}
    for script in scripts:
        for expression in re.findall(r'-m "([^"]+)"', script):
            used = set(re.findall(r"\w+", expression)) - {"and", "or", "not"}
            assert used <= declared, expression
    job = workflow["jobs"]["tests-postgres"]
    service = job["services"]["postgres"]
    assert service["image"] == "postgres:16"
    url = urlsplit(job["env"]["AIDP_TEST_POSTGRES_URL"].replace("+psycopg", ""))
    assert f"{url.port}:5432" in service["ports"]
    assert url.password == service["env"]["POSTGRES_PASSWORD"]
    assert job["env"]["AIDP_REQUIRE_POSTGRES"] == "1"
    conftest = (ROOT / "tests" / "conftest.py").read_text(encoding="utf-8")
    assert '"AIDP_TEST_POSTGRES_URL"' in conftest and '"AIDP_REQUIRE_POSTGRES"' in conftest


def _substitute(text: str, context: dict[str, str]) -> str:
    """``text`` with each ``${{ expr }}`` replaced from ``context`` (an unknown one fails)."""
    def value(match: re.Match[str]) -> str:
        assert match.group(1) in context, f"no value for ${{{{ {match.group(1)} }}}}"
        return context[match.group(1)]
    return EXPRESSION.sub(value, text)


def _read_github_env(path: Path) -> dict[str, str]:
    """The ``NAME=value`` lines steps appended to ``$GITHUB_ENV``."""
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines()
                if "=" in line)


def _team_repository(path: Path) -> Path:
    """A team's repository as the example expects it: aidp.toml with a model profile (no
    base_url), a workstreams/ directory (the quickstart's model step and a shell step) and the
    fake LLM's script; checked out on a detached HEAD, as actions/checkout does for a pull
    request."""
    files = {
        "aidp.toml": '[tools.model]\nadapter = "openai"\nmodel = "fake-model"\n'
                     'edit_format = "whole"\n',
        "workstreams/model.yaml": (QUICKSTART / "model.yaml").read_text(encoding="utf-8"),
        "workstreams/notes.yaml": "version: 1\nworkstreams:\n  - id: notes\n"
                                  "    scope: ['NOTES.md']\n    steps:\n      - id: write\n"
                                  "        run: 'echo hi > NOTES.md'\n",
        "ci/llm-script.yaml": (QUICKSTART / "llm-script.yaml").read_text(encoding="utf-8"),
    }
    repo = init_repo(path, {"README.md": "# team\n", **files})
    git(repo, "checkout", "-q", "--detach")
    return repo


def test_example_workflow_runs_the_plan_against_the_fake_llm(tmp_path: Path) -> None:
    """The example's shell steps, run in order with their ${{ }} expressions substituted and
    $GITHUB_ENV carried between steps (the install step aside: aidp is installed here), start
    the fake LLM, run the plan with aidp ci (the model step fixed once) and leave an XSD-valid
    JUnit file and the summary on the job's page; the fake LLM is stopped at the end."""
    workflow = _load(EXAMPLE)
    repo = _team_repository(tmp_path / "team")
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    github_env, step_summary = tmp_path / "github_env", tmp_path / "step_summary.md"
    context = {"runner.temp": str(runner_temp), "github.workspace": str(repo),
               "github.run_id": "1", "vars.AIDP_PIP_SPEC": "aidp"}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIDP_", "GITHUB_", "OPENAI_"))}
    env.update({"PATH": f"{Path(AIDP).parent}{os.pathsep}{env.get('PATH', '')}",
                "RUNNER_TEMP": str(runner_temp), "GITHUB_ENV": str(github_env),
                "GITHUB_STEP_SUMMARY": str(step_summary), "GITHUB_WORKSPACE": str(repo),
                "CI": "true", "GITHUB_ACTIONS": "true"})
    (job,) = workflow["jobs"].values()
    for scope in (workflow.get("env", {}), job.get("env", {})):
        env.update({k: _substitute(str(v), {**context, **_env_context(env)})
                    for k, v in scope.items()})
    ran, skipped = [], []
    try:
        for step in job["steps"]:
            if "run" not in step:
                continue
            if step.get("id") == "install":
                skipped.append(step["name"])
                continue
            step_env = {**env, **_read_github_env(github_env)}
            step_env.update({k: _substitute(str(v), {**context, **_env_context(step_env)})
                             for k, v in step.get("env", {}).items()})
            script = _substitute(step["run"], {**context, **_env_context(step_env)})
            done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                                   script], cwd=repo, env=step_env, capture_output=True,
                                  text=True, timeout=120, stdin=subprocess.DEVNULL)
            assert done.returncode == 0, f"{step['name']}:\n{done.stdout}\n{done.stderr}"
            ran.append(step["name"])
    finally:
        _stop(runner_temp / "fake-llm.pid")
    assert skipped == ["Install aidp"]
    assert "Run the workstreams" in ran and ran[-1] == "Stop the fake LLM"
    assert _read_github_env(github_env)["AIDP_TOOLS__MODEL__BASE_URL"].startswith(
        "http://127.0.0.1:")
    junit = repo / env["AIDP_JUNIT"]
    SCHEMA.validate(str(junit))
    root = ET.fromstring(junit.read_text(encoding="utf-8"))
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("2", "0", "0")
    (suite,) = [s for s in root.iter("testsuite") if s.get("name") == "changelog"]
    props = {p.get("name"): p.get("value") for p in suite.iter("property")
             if p.get("name") in ("aidp.attempts", "aidp.input_tokens")}
    assert props == {"aidp.attempts": "2", "aidp.input_tokens": "1030"}  # first try + one fix
    assert step_summary.read_text(encoding="utf-8") == (
        repo / env["AIDP_SUMMARY"]).read_text(encoding="utf-8")


def _env_context(env: dict[str, str]) -> dict[str, str]:
    return {f"env.{k}": v for k, v in env.items()}


def _stop(pid_file: Path) -> None:
    """Stop the fake LLM the workflow started (by the id it wrote), if it still runs."""
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
