"""``aidp specs gh-sync``: a CCPM epic pushed to GitHub issues through a ``gh`` stand-in.

The stand-in (``gh_standin/gh.py``) is put first on PATH; it records every call and keeps the
issues in a JSON file. The repositories are real git repositories with a real ``origin`` URL;
nothing fetches, so no network is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aidp.specs.ccpm import load_epic
from aidp.specs.github import is_template_remote, repo_from_remote
from tests.conftest import AIDP, GIT_ENV, git, init_repo

STANDIN = Path(__file__).parent / "gh_standin" / "gh.py"
WRITES = {("issue", "create"), ("issue", "edit"), ("issue", "close"), ("issue", "reopen"),
          ("issue", "comment"), ("label", "create"), ("sub-issue", "create")}
EPIC = ("---\nname: auth\nstatus: in-progress\ncreated: 2026-11-24T18:00:00Z\n"
        "progress: 0%\nprd: .claude/prds/auth.md\ngithub:\n---\n# Epic: auth\n\n"
        "## Overview\nLog users in and out.\n")


def task(name: str, status: str = "open", depends: str = "[]") -> str:
    return (f"---\nname: {name}\nstatus: {status}\ncreated: 2026-11-24T18:00:00Z\n"
            f"updated: 2026-11-24T18:00:00Z\ngithub:\ndepends_on: {depends}\nparallel: true\n"
            f"conflicts_with: []\n---\n## Description\nDo {name}.\n\n"
            "## Acceptance Criteria\n- [ ] it works\n")


TASKS = {"001.md": task("Add table"), "002.md": task("Login endpoint", depends="[1]"),
         "003.md": task("Logout endpoint", depends="[1, 2]")}


@dataclass
class Gh:
    """The stand-in's call log and state, and the CLI run with it on PATH."""

    repo: Path
    log: Path
    state: Path
    bin_dir: Path

    def env(self, path: str | None = None) -> dict[str, str]:
        env = {**os.environ, **GIT_ENV, "GH_STANDIN_LOG": str(self.log),
               "GH_STANDIN_STATE": str(self.state)}
        env["PATH"] = path if path is not None else f"{self.bin_dir}{os.pathsep}{env['PATH']}"
        for name in list(env):
            if name.startswith("AIDP_"):
                env.pop(name)
        return env

    def aidp(self, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([AIDP, "specs", *args], cwd=self.repo, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, env=self.env(path),
                              timeout=60, check=False)

    def sync(self, *args: str) -> dict[str, Any]:
        proc = self.aidp("gh-sync", "auth", "--json", *args)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        return json.loads(proc.stdout)  # type: ignore[no-any-return]

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.is_file():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def writes(self) -> list[dict[str, Any]]:
        return [c for c in self.calls() if tuple(c["argv"][:2]) in WRITES]

    def issues(self) -> dict[str, dict[str, Any]]:
        return json.loads(self.state.read_text())["issues"]  # type: ignore[no-any-return]

    def reset_log(self) -> None:
        self.log.unlink(missing_ok=True)


def make_gh(tmp_path: Path, origin: str = "git@github.com:acme/widgets.git",
            enabled: bool = True, extensions: tuple[str, ...] = ()) -> Gh:
    files = {".claude/epics/auth/epic.md": EPIC,
             **{f".claude/epics/auth/{n}": t for n, t in TASKS.items()}}
    if enabled:
        files["aidp.toml"] = "[ccpm]\ngithub_sync = true\n"
    repo = init_repo(tmp_path / "repo", files)
    git(repo, "remote", "add", "origin", origin)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "gh"
    wrapper.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{STANDIN}' \"$@\"\n")
    wrapper.chmod(0o755)
    state = tmp_path / "gh-state.json"
    state.write_text(json.dumps({"repo": "acme/widgets", "extensions": list(extensions)}))
    return Gh(repo, tmp_path / "gh-calls.jsonl", state, bin_dir)


def epic_dir(gh: Gh) -> Path:
    return gh.repo / ".claude" / "epics" / "auth"


def test_first_sync_creates_labelled_issues_and_records_urls(tmp_path: Path) -> None:
    """The first sync creates the labels, one epic issue and one issue per task, writes the
    URLs into github:, renames task files to issue numbers with depends_on rewritten, and
    keeps aidp's task keys."""
    gh = make_gh(tmp_path)
    before = {t.key: t.name for t in load_epic(epic_dir(gh), gh.repo).tasks}
    report = gh.sync()
    creates = [c for c in gh.calls() if c["argv"][:2] == ["issue", "create"]]
    titles = [c["argv"][c["argv"].index("--title") + 1] for c in creates]
    labels = [c["argv"][c["argv"].index("--label") + 1] for c in creates]
    assert titles == ["Epic: auth", "Add table", "Login endpoint", "Logout endpoint"]
    assert labels == ["epic,epic:auth,feature"] + ["task,epic:auth"] * 3
    assert all("--repo" in c["argv"] and "acme/widgets" in c["argv"] for c in gh.calls()
               if c["argv"][0] in ("issue", "label"))
    assert sorted(c["argv"][2] for c in gh.writes() if c["argv"][:2] == ["label", "create"]) \
        == ["epic", "epic:auth", "feature", "task"]
    assert all("<!-- SYNCED: " in c["body"] for c in creates)
    assert [c["number"] for c in report["created"]] == ["1", "2", "3", "4"]
    epic = load_epic(epic_dir(gh), gh.repo)
    assert epic.github == "https://github.com/acme/widgets/issues/1"
    assert {t.key: t.name for t in epic.tasks} == before
    assert sorted(p.name for p in epic_dir(gh).glob("[0-9]*.md")) == ["2.md", "3.md", "4.md"]
    by_name = {t.name: t for t in epic.tasks}
    assert by_name["Logout endpoint"].depends_on == ("2", "3")
    assert by_name["Logout endpoint"].issue == "4"
    assert "github: https://github.com/acme/widgets/issues/3" in \
        (epic_dir(gh) / "3.md").read_text()
    epic_issue = gh.issues()["1"]
    assert "- [ ] #2 Add table" in epic_issue["body"]
    assert "github-mapping.md" in " ".join(report["files"])


def test_second_sync_creates_and_edits_nothing(tmp_path: Path) -> None:
    """Run again with no change: no create, no edit, no write call at all; no local edit."""
    gh = make_gh(tmp_path)
    gh.sync()
    snapshot = {p.name: p.read_text() for p in epic_dir(gh).iterdir()}
    gh.reset_log()
    report = gh.sync()
    assert gh.writes() == []
    assert report["created"] == report["edited"] == report["closed"] == []
    assert {p.name: p.read_text() for p in epic_dir(gh).iterdir()} == snapshot
    text = gh.aidp("gh-sync", "auth")
    assert text.returncode == 0 and "up to date" in text.stdout


def test_changed_task_body_makes_exactly_one_edit(tmp_path: Path) -> None:
    """A task whose body changed locally is edited once, with a refreshed SYNCED marker."""
    gh = make_gh(tmp_path)
    gh.sync()
    path = epic_dir(gh) / "3.md"
    path.write_text(path.read_text().replace("Do Login endpoint.", "Do Login, with 2FA."))
    gh.reset_log()
    gh.sync()
    writes = gh.writes()
    assert [w["argv"][:3] for w in writes] == [["issue", "edit", "3"]]
    assert "--title" not in writes[0]["argv"]
    body = gh.issues()["3"]["body"]
    assert "Do Login, with 2FA." in body and body.count("<!-- SYNCED: ") == 1


def test_closed_task_gets_closed(tmp_path: Path) -> None:
    """A task closed locally has its issue closed (one close call; the epic's checklist is
    ticked in the same sync)."""
    gh = make_gh(tmp_path)
    gh.sync()
    path = epic_dir(gh) / "2.md"
    path.write_text(path.read_text().replace("status: open", "status: closed"))
    gh.reset_log()
    gh.sync()
    ops = [tuple(w["argv"][:3]) for w in gh.writes()]
    assert ops == [("issue", "close", "2"), ("issue", "edit", "1")]
    assert gh.issues()["2"]["state"] == "CLOSED"
    assert "- [x] #2 Add table" in gh.issues()["1"]["body"]
    gh.reset_log()
    gh.sync()
    assert gh.writes() == []


@pytest.mark.parametrize("origin", [
    "https://github.com/automazeio/ccpm",
    "https://github.com/automazeio/ccpm.git",
    "git@github.com:automazeio/ccpm.git",
    "ssh://git@github.com/automazeio/ccpm",
    "https://me:ghp_secret@github.com/automazeio/ccpm.git",
], ids=["https", "https-dot-git", "scp-ssh", "ssh-url", "https-with-token"])
def test_template_origin_is_refused_before_any_call(tmp_path: Path, origin: str) -> None:
    """origin = the CCPM template repository: a clear error, exit 2, no gh call at all."""
    gh = make_gh(tmp_path, origin=origin)
    for extra in ((), ("--dry-run",)):
        proc = gh.aidp("gh-sync", "auth", *extra)
        assert proc.returncode == 2
        assert "CCPM template repository" in proc.stderr and "Traceback" not in proc.stderr
        assert "ghp_secret" not in proc.stderr
    assert gh.calls() == []
    assert "github:\n" in (epic_dir(gh) / "001.md").read_text()


def test_template_repository_recognised_in_every_url_form() -> None:
    """is_template_remote knows the template in https / ssh / scp forms, any case; not forks."""
    for url in ("https://github.com/automazeio/ccpm", "https://github.com/AutomazeIO/CCPM.git/",
                "git@github.com:automazeio/ccpm", "ssh://git@github.com:22/automazeio/ccpm.git"):
        assert is_template_remote(url), url
    for url in ("https://github.com/me/ccpm.git", "git@github.com:automazeio/ccpm-fork.git"):
        assert not is_template_remote(url), url
    assert repo_from_remote("git@github.com:acme/widgets.git") == "acme/widgets"


def test_disabled_by_default(tmp_path: Path) -> None:
    """Without [ccpm] github_sync = true: one clear error line, exit 2, no gh call."""
    gh = make_gh(tmp_path, enabled=False)
    proc = gh.aidp("gh-sync", "auth")
    assert proc.returncode == 2
    assert "GitHub sync is off" in proc.stderr and "github_sync = true" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert gh.calls() == []


def test_missing_gh_is_refused(tmp_path: Path) -> None:
    """No gh on PATH: a clear error naming gh, exit 2."""
    gh = make_gh(tmp_path)
    only_git = tmp_path / "only-git"
    only_git.mkdir()
    git_binary = shutil.which("git")
    assert git_binary is not None
    (only_git / "git").symlink_to(git_binary)
    proc = gh.aidp("gh-sync", "auth", path=str(only_git))
    assert proc.returncode == 2
    assert "gh (the GitHub CLI) is not on PATH" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dry_run_prints_calls_and_writes_nothing(tmp_path: Path) -> None:
    """--dry-run prints the write calls it would make; no write reaches gh, no file changes."""
    gh = make_gh(tmp_path)
    before = {p.name: p.read_text() for p in epic_dir(gh).iterdir()}
    proc = gh.aidp("gh-sync", "auth", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("would run: gh issue create") == 4
    assert "would run: gh label create epic:auth" in proc.stdout
    assert "would run: gh issue edit new1 --repo acme/widgets --body-file" in proc.stdout
    assert gh.writes() == []
    assert {p.name: p.read_text() for p in epic_dir(gh).iterdir()} == before


@pytest.mark.parametrize("value,message", [
    ("not-a-url", "is not an issue URL"),
    ("https://github.com/other/repo/issues/7", "the issue is in other/repo"),
], ids=["not-a-url", "other-repo"])
def test_bad_github_field_names_file_and_line(tmp_path: Path, value: str, message: str) -> None:
    """A github: field that is no issue URL of the target repository: one line naming file
    and line, exit 2, no write call."""
    gh = make_gh(tmp_path)
    path = epic_dir(gh) / "002.md"
    path.write_text(path.read_text().replace("github:\n", f"github: {value}\n"))
    proc = gh.aidp("gh-sync", "auth")
    assert proc.returncode == 2
    assert ".claude/epics/auth/002.md:6: [login-endpoint] github: " in proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert gh.writes() == []


def test_bad_task_file_is_one_line_exit_2(tmp_path: Path) -> None:
    """Broken front matter: one line naming file and line, exit 2, no write call."""
    gh = make_gh(tmp_path)
    (epic_dir(gh) / "002.md").write_text("---\nname: [unclosed\n---\nbody\n")
    proc = gh.aidp("gh-sync", "auth")
    assert proc.returncode == 2
    assert ".claude/epics/auth/002.md:2" in proc.stderr and "Traceback" not in proc.stderr
    assert gh.writes() == []


def test_sub_issues_when_the_extension_is_installed(tmp_path: Path) -> None:
    """With yahsan2/gh-sub-issue installed, tasks are created as sub-issues of the epic and
    the epic body carries no task list."""
    gh = make_gh(tmp_path, extensions=("yahsan2/gh-sub-issue",))
    gh.sync()
    subs = [c["argv"] for c in gh.calls() if c["argv"][:2] == ["sub-issue", "create"]]
    assert len(subs) == 3 and all(a[a.index("--parent") + 1] == "1" for a in subs)
    assert "## Tasks" not in gh.issues()["1"]["body"]
    gh.reset_log()
    gh.sync()
    assert gh.writes() == []


def test_keys_survive_renames_across_digit_widths(tmp_path: Path) -> None:
    """Two tasks with one name keep their keys (docs, docs-2) when their issue numbers cross a
    digit width (9, 10): the renamed files are zero-padded so their order is kept."""
    gh = make_gh(tmp_path)
    for name in TASKS:
        (epic_dir(gh) / name).unlink()
    (epic_dir(gh) / "001.md").write_text(task("Docs").replace("Do Docs.", "First docs."))
    (epic_dir(gh) / "002.md").write_text(task("Docs").replace("Do Docs.", "Second docs."))
    state = json.loads(gh.state.read_text())
    gh.state.write_text(json.dumps({**state, "next": 8}))
    before = {t.key: t.body for t in load_epic(epic_dir(gh), gh.repo).tasks}
    gh.sync()
    epic = load_epic(epic_dir(gh), gh.repo)
    assert {t.key: t.body for t in epic.tasks} == before
    assert sorted(p.name for p in epic_dir(gh).glob("[0-9]*.md")) == ["09.md", "10.md"]
    assert {t.key: t.issue for t in epic.tasks} == {"docs": "9", "docs-2": "10"}
    gh.reset_log()
    gh.sync()
    assert gh.writes() == []


def test_closed_task_and_completed_epic_close_their_issues(tmp_path: Path) -> None:
    """A task already closed at the first sync is created then closed; an epic marked
    completed has its issue closed."""
    gh = make_gh(tmp_path)
    path = epic_dir(gh) / "001.md"
    path.write_text(path.read_text().replace("status: open", "status: closed"))
    gh.sync()
    assert gh.issues()["2"]["state"] == "CLOSED" and gh.issues()["3"]["state"] == "OPEN"
    epic = epic_dir(gh) / "epic.md"
    epic.write_text(epic.read_text().replace("status: in-progress", "status: completed"))
    gh.reset_log()
    gh.sync()
    assert [tuple(w["argv"][:3]) for w in gh.writes()] == [("issue", "close", "1")]


def test_gh_failure_is_one_line_exit_6(tmp_path: Path) -> None:
    """gh failing (an unknown repository): one error line with gh's reason, exit 6."""
    gh = make_gh(tmp_path)
    proc = gh.aidp("gh-sync", "auth", "--github-repo", "acme/missing")
    assert proc.returncode == 6
    assert "Could not resolve to a Repository" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert gh.writes() == []


def test_hanging_gh_is_killed_at_the_timeout(tmp_path: Path) -> None:
    """A gh call that never returns is killed (its whole process group) at gh_timeout."""
    gh = make_gh(tmp_path)
    (gh.repo / "aidp.toml").write_text('[ccpm]\ngithub_sync = true\ngh_timeout = "1s"\n')
    state = json.loads(gh.state.read_text())
    gh.state.write_text(json.dumps({**state, "hang_on": ["label", "list"]}))
    proc = gh.aidp("gh-sync", "auth")
    assert proc.returncode == 6
    assert "timed out after 1s" in proc.stderr and "Traceback" not in proc.stderr


def test_failed_sync_resumes_without_duplicates(tmp_path: Path) -> None:
    """A create failing half-way keeps the issues made so far in github:; the next sync
    creates only the missing one, then renames."""
    gh = make_gh(tmp_path)
    state = json.loads(gh.state.read_text())
    gh.state.write_text(json.dumps({**state, "fail_title": "Logout endpoint"}))
    proc = gh.aidp("gh-sync", "auth")
    assert proc.returncode == 6 and "HTTP 502" in proc.stderr
    assert "issues/3" in (epic_dir(gh) / "002.md").read_text()
    state = json.loads(gh.state.read_text())
    gh.state.write_text(json.dumps({**state, "fail_title": None}))
    gh.reset_log()
    gh.sync()
    creates = [c["argv"] for c in gh.writes() if c["argv"][:2] == ["issue", "create"]]
    assert [a[a.index("--title") + 1] for a in creates] == ["Logout endpoint"]
    assert sorted(gh.issues()) == ["1", "2", "3", "4"]
    assert sorted(p.name for p in epic_dir(gh).glob("[0-9]*.md")) == ["2.md", "3.md", "4.md"]
