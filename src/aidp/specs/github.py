"""Push a CCPM epic and its tasks to GitHub issues through the ``gh`` CLI, as CCPM's
``/pm:epic-sync`` does -- optional, off unless ``[ccpm] github_sync = true``.

One sync:

1. refuses (before any ``gh`` call) when the ``origin`` remote -- or the target repository --
   is the CCPM template repository ``automazeio/ccpm``;
2. creates the labels ``epic``, ``feature``, ``task`` and ``epic:<name>`` that are missing;
3. creates the epic issue (``Epic: <name>``, labels ``epic``, ``epic:<name>``, ``feature``) and
   one issue per task (``task``, ``epic:<name>``) -- sub-issues of the epic when the
   ``yahsan2/gh-sub-issue`` extension is installed, otherwise listed in the epic's body as a
   ``## Tasks`` checklist;
4. writes each new issue's URL into the ``github:`` front-matter field at once (so a failed sync
   resumes without duplicates), then renames ``001.md`` to ``<issue>.md`` and rewrites
   ``depends_on`` / ``conflicts_with`` to issue numbers -- unless that would change the stable
   task keys of :mod:`aidp.specs.ccpm`, in which case the file names stay -- and writes
   ``github-mapping.md``;
5. on later syncs creates nothing: it reads the issues back (one ``gh issue list``), edits an
   issue only when its title or body differs (the trailing ``<!-- SYNCED: <timestamp> -->``
   marker is ignored when comparing and refreshed when editing) and closes the issues of
   closed tasks. Nothing changed: no write call at all.

Every ``gh`` call is an argument list (no shell), run by
:func:`aidp.process.runner.run_captured`: stdin closed, in its own session, with a wall-clock
timeout that kills the process group. The environment is passed through (``gh`` reads its token
from it) and never logged.

::

    AidpError
    +-- InputError                   exit 2
    |   +-- GithubSyncRefused        exit 2   disabled, template repository, no gh, bad github:
    +-- ToolError                    exit 6
        +-- GhError                  exit 6   a gh call failed or timed out (argv, stderr)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aidp.exceptions import InputError, Problem, ToolError, ValidationError
from aidp.process.runner import run_captured
from aidp.specs.bridge import step_id
from aidp.specs.ccpm import Epic, EpicTask, load_epic
from aidp.specs.project import read_text
from aidp.specs.sync import _set_field

__all__ = [
    "TEMPLATE_REPOSITORY",
    "GhCall",
    "GhError",
    "GhRunner",
    "GithubSyncRefused",
    "SyncReport",
    "is_template_remote",
    "repo_from_remote",
    "sync_epic",
]

TEMPLATE_REPOSITORY = "automazeio/ccpm"
SUB_ISSUE_EXTENSION = "yahsan2/gh-sub-issue"
BODY_FILE = "<body>"  # placeholder in a call's argv for the temporary file holding its body
_MARKER = re.compile(r"\s*<!-- SYNCED: [^>]*-->\s*$")
_URL_ISSUE = re.compile(r"https?://[^/\s]+/([^/\s]+/[^/\s]+)/issues/(\d+)")
_LABEL_COLORS = {"epic": "3e4b9e", "feature": "0e8a16", "task": "d4c5f9"}
_WRITES = {("issue", "create"), ("issue", "edit"), ("issue", "close"), ("issue", "reopen"),
           ("issue", "comment"), ("label", "create"), ("sub-issue", "create")}


class GithubSyncRefused(InputError):
    """The sync will not write: disabled, the template repository, no ``gh``, or bad input."""


class GhError(ToolError):
    """A ``gh`` call failed or timed out; ``argv`` and ``stderr`` say which and why."""

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        lines = stderr.strip().splitlines()
        detail = lines[-1] if lines else f"exit code {returncode}"
        super().__init__(f"gh {' '.join(argv[:2])} failed: {detail}",
                         hint="check `gh auth status`; issues created so far are recorded in "
                              "the github: fields, so running the sync again resumes")
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True)
class GhCall:
    """One ``gh`` invocation: ``argv`` after ``gh``; ``body`` goes to ``--body-file``."""

    argv: tuple[str, ...]
    body: str | None = None

    @property
    def write(self) -> bool:
        """Whether the call changes GitHub."""
        return tuple(self.argv[:2]) in _WRITES

    def render(self) -> str:
        """The command line a user could paste (the body file shown as ``<body>``)."""
        import shlex

        return "gh " + shlex.join(self.argv)


class GhRunner:
    """Runs ``gh`` (found on PATH) with a timeout; with ``dry_run``, writes are only recorded.

    Args:
        timeout_s: wall-clock limit of one call in seconds; the process group is killed then.
        dry_run: record write calls in ``calls`` without running them (reads still run).
    """

    def __init__(self, *, timeout_s: float = 60.0, dry_run: bool = False,
                 cwd: Path | None = None) -> None:
        binary = shutil.which("gh")
        if binary is None:
            raise GithubSyncRefused("gh (the GitHub CLI) is not on PATH",
                                    hint="install it from https://cli.github.com and run "
                                         "`gh auth login`")
        self.binary = binary
        self.timeout_s = timeout_s
        self.dry_run = dry_run
        self.cwd = cwd
        self.calls: list[GhCall] = []
        self._placeholder = 0

    def __call__(self, call: GhCall) -> str:
        """Run ``call`` and return its stdout; GhError on failure."""
        self.calls.append(call)
        if self.dry_run and call.write:
            if tuple(call.argv[:2]) in (("issue", "create"), ("sub-issue", "create")):
                self._placeholder += 1
                return f"https://github.com/dry-run/issues/new{self._placeholder}\n"
            return ""
        with tempfile.TemporaryDirectory(prefix="aidp-gh-") as tmp:
            argv = list(call.argv)
            if call.body is not None:
                body_file = Path(tmp) / "body.md"
                body_file.write_text(call.body, encoding="utf-8")
                argv = [str(body_file) if a == BODY_FILE else a for a in argv]
            return self._run(argv)

    def _run(self, argv: list[str]) -> str:
        env = {**os.environ, "GH_PROMPT_DISABLED": "1", "GH_NO_UPDATE_NOTIFIER": "1",
               "NO_COLOR": "1", "GH_PAGER": "cat"}
        try:
            done = run_captured([self.binary, *argv], cwd=self.cwd, env=env,
                                timeout_s=self.timeout_s, errors="replace")
        except OSError as exc:
            raise GhError(argv, 127, f"cannot run gh: {exc}") from exc
        except subprocess.TimeoutExpired:
            raise GhError(argv, -signal.SIGKILL,
                          f"timed out after {self.timeout_s:g}s") from None
        if done.returncode != 0:
            raise GhError(argv, done.returncode, done.stderr)
        return done.stdout


@dataclass
class SyncReport:
    """What one sync did (or, dry, would do)."""

    repo: str
    dry_run: bool
    calls: list[GhCall] = field(default_factory=list)
    created: list[dict[str, str]] = field(default_factory=list)  # number, title, file
    edited: list[dict[str, str]] = field(default_factory=list)  # number, what
    closed: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # local files written
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "dry_run": self.dry_run,
                "calls": [{"argv": ["gh", *c.argv], "write": c.write} for c in self.calls],
                "created": self.created, "edited": self.edited, "closed": self.closed,
                "labels": self.labels, "renamed": [list(r) for r in self.renamed],
                "files": self.files, "notes": self.notes}


def repo_from_remote(url: str) -> str | None:
    """``owner/name`` of a GitHub remote URL (https, ssh, scp-like; ``.git`` optional)."""
    match = re.match(r"^(?:[a-z+]+://)?(?:[^@/]+@)?github\.com[:/]+([^/]+)/([^/]+?)(?:\.git)?/*$",
                     url.strip(), re.IGNORECASE)
    return f"{match.group(1)}/{match.group(2)}" if match else None


def is_template_remote(url: str) -> bool:
    """True when ``url`` names the CCPM template repository, in any URL form."""
    slug = repo_from_remote(url)
    if slug is not None:
        return slug.lower() == TEMPLATE_REPOSITORY
    return re.search(r"(^|[/:])automazeio/ccpm(\.git)?/*$", url.strip(), re.IGNORECASE) is not None


def _origin_url(root: Path) -> str | None:
    from aidp.workspace.git import run_git

    done = run_git(["remote", "get-url", "origin"], root, check=False, timeout_s=30)
    return done.stdout.strip() or None if done.returncode == 0 else None


def _redact(url: str) -> str:
    """``url`` without credentials (``https://user:token@host/...`` -> ``https://host/...``)."""
    return re.sub(r"^([a-z+]+://)[^@/]*@", r"\1", url, flags=re.IGNORECASE)


def _label_name(name: str) -> str:
    """CCPM's sanitised epic label name: runs of other characters become one hyphen."""
    return re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9-]", "-", name)).strip("-") or "epic"


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _strip_marker(body: str) -> str:
    return _MARKER.sub("", body.replace("\r\n", "\n")).strip()


def _with_marker(body: str, stamp: str) -> str:
    return f"{body.strip()}\n\n<!-- SYNCED: {stamp} -->\n"


def _epic_body(epic: Epic, task_issues: list[tuple[EpicTask, str]], listed: bool) -> str:
    """The epic issue's body: epic.md's body without CCPM's local ``## Tasks Created`` section,
    plus (without sub-issues) a ``## Tasks`` checklist of the task issues."""
    kept: list[str] = []
    skipping = False
    for line in epic.body.split("\n"):
        if re.match(r"^##\s+Tasks Created\s*$", line):
            skipping = True
            continue
        if skipping and line.startswith("## "):
            skipping = False
        if not skipping:
            kept.append(line)
    body = "\n".join(kept).strip()
    if listed and task_issues:
        items = [f"- [{'x' if t.status == 'closed' else ' '}] #{number} {t.name}"
                 for t, number in task_issues]
        body = f"{body}\n\n## Tasks\n" + "\n".join(items)
    return body.strip()


def _github_line(path: Path) -> int:
    lines = read_text(path).split("\n")
    return next((i + 1 for i, line in enumerate(lines) if re.match(r"^github\s*:", line)), 1)


def _check_urls(root: Path, epic: Epic, repo: str) -> None:
    """A ``github:`` field must be an issue URL of the target repository."""
    problems: list[Problem] = []
    fields = [(epic.file, epic.github, None)] + [(t.file, _raw_github(root / t.file), t.key)
                                                 for t in epic.tasks]
    for file, value, key in fields:
        if not value:
            continue
        match = _URL_ISSUE.search(value)
        line = _github_line(root / file)
        if match is None:
            problems.append(Problem(file, f"github: {value!r} is not an issue URL", line, key,
                                    "ccpm-github"))
        elif match.group(1).lower() != repo.lower():
            problems.append(Problem(file, f"github: the issue is in {match.group(1)}, not in "
                                    f"{repo}", line, key, "ccpm-github"))
    if problems:
        raise ValidationError(problems)


def _raw_github(path: Path) -> str | None:
    for line in read_text(path).split("\n")[1:]:
        if line.strip() == "---":
            return None
        match = re.match(r"^github\s*:\s*(.*?)\s*$", line)
        if match:
            value = match.group(1).strip("'\"")
            return value or None
    return None


def _number(url_output: str, call: GhCall) -> str:
    """The issue number printed by ``gh issue create`` / ``gh sub-issue create``."""
    match = re.search(r"/issues/(\d+|new\d+)\b", url_output) or re.search(r"#(\d+)\b",
                                                                          url_output)
    if match is None:
        raise GhError(list(call.argv), 0, f"no issue URL in its output: {url_output.strip()!r}")
    return match.group(1)


def _write_field(path: Path, updates: dict[str, str]) -> bool:
    text = read_text(path)
    changed = False
    for name, value in updates.items():
        text, line = _set_field(text, name, value)
        changed = changed or (line is not None and name != "updated")
    if changed:
        path.write_text(text, encoding="utf-8")
    return changed


def sync_epic(root: Path, directory: Path, *, run: Callable[[GhCall], str], repo: str | None,
              dry_run: bool = False, now: datetime | None = None) -> SyncReport:
    """Push the epic in ``directory`` (under the repository ``root``) to GitHub.

    Args:
        root: the repository's top directory (its ``origin`` remote is checked).
        directory: the epic directory (``.claude/epics/<name>``).
        run: runs one ``gh`` call and returns its stdout (a :class:`GhRunner`).
        repo: ``owner/name`` of the target repository; None: from ``origin`` or ``gh``.
        dry_run: change no local file (``run`` records the writes without running them).
        now: the clock, for the SYNCED markers and ``updated:`` fields.

    Raises:
        GithubSyncRefused: the origin or target is the CCPM template repository.
        ValidationError: the epic's files are invalid (each problem names file and line).
        GhError: a ``gh`` call failed.
    """
    origin = _origin_url(root)
    if origin is not None and is_template_remote(origin):
        raise GithubSyncRefused(
            f"refusing to sync: origin ({_redact(origin)}) is the CCPM template repository "
            f"{TEMPLATE_REPOSITORY}", hint="point origin at your own repository: "
            "git remote set-url origin https://github.com/YOU/YOUR_REPO.git")
    epic = load_epic(directory, root)
    if repo is None and origin is not None:
        repo = repo_from_remote(origin)
    if repo is None:
        out = run(GhCall(("repo", "view", "--json", "nameWithOwner", "-q", ".nameWithOwner")))
        repo = out.strip() or None
    if repo is None or not re.match(r"^[\w.-]+/[\w.-]+$", repo):
        raise GithubSyncRefused(f"cannot tell the GitHub repository (got {repo!r})",
                                hint="pass --github-repo OWNER/NAME")
    if repo.lower() == TEMPLATE_REPOSITORY:
        raise GithubSyncRefused(f"refusing to sync to the CCPM template repository {repo}")
    _check_urls(root, epic, repo)
    return _Sync(root, directory, epic, repo, run, dry_run, _stamp(now or datetime.now(UTC)))()


class _Sync:
    """One sync's state: the reads done once, then the writes."""

    def __init__(self, root: Path, directory: Path, epic: Epic, repo: str,
                 run: Callable[[GhCall], str], dry_run: bool, stamp: str) -> None:
        self.root, self.directory, self.epic, self.repo = root, directory, epic, repo
        self.run, self.dry_run, self.stamp = run, dry_run, stamp
        self.label = f"epic:{_label_name(directory.name)}"
        self.report = SyncReport(repo, dry_run)

    def call(self, *argv: str, body: str | None = None) -> str:
        call = GhCall(argv, body)
        self.report.calls.append(call)
        return self.run(call)

    def __call__(self) -> SyncReport:
        self.ensure_labels()
        extensions = self.call("extension", "list")
        sub_issues = SUB_ISSUE_EXTENSION in extensions
        remote = self.remote_issues()
        epic_number = self.sync_epic_issue(remote)
        task_issues: list[tuple[EpicTask, str]] = []
        created: dict[str, str] = {}  # task key -> new issue number
        for task in self.epic.tasks:
            number = task.issue
            if number is None:
                number = self.create_task(task, epic_number, sub_issues)
                created[task.key] = number
            else:
                self.update_issue(number, task.name, task.body, remote, closed=task.status ==
                                  "closed", what=task.file)
            task_issues.append((task, number))
            if task.issue is None and task.status == "closed":
                self.close(number)
        epic_body = _epic_body(self.epic, task_issues, listed=not sub_issues)
        self.update_issue(epic_number, f"Epic: {self.directory.name}", epic_body, remote,
                          closed=self.epic.status == "completed", what=self.epic.file)
        if not self.dry_run:
            self.rename(task_issues)
            self.write_mapping(epic_number)
        return self.report

    def ensure_labels(self) -> None:
        out = self.call("label", "list", "--repo", self.repo, "--json", "name", "--limit", "1000")
        existing = {str(item.get("name", "")).lower() for item in self._json(out, "label list")}
        for name in ("epic", "feature", "task", self.label):
            if name.lower() not in existing:
                color = _LABEL_COLORS.get(name, "c5def5")
                self.call("label", "create", name, "--repo", self.repo, "--color", color,
                          "--description", "CCPM " + ("epic " + name[5:] if ":" in name
                                                       else name))
                self.report.labels.append(name)

    def remote_issues(self) -> dict[str, dict[str, Any]]:
        """The epic's issues on GitHub by number (one list call; views for the missing)."""
        out = self.call("issue", "list", "--repo", self.repo, "--label", self.label, "--state",
                        "all", "--json", "number,title,body,state", "--limit", "1000")
        issues = {str(i["number"]): i for i in self._json(out, "issue list") if "number" in i}
        wanted = [t.issue for t in self.epic.tasks if t.issue]
        if self.epic.github:
            match = _URL_ISSUE.search(self.epic.github)
            if match:
                wanted.append(match.group(2))
        for number in wanted:
            if number not in issues:
                out = self.call("issue", "view", number, "--repo", self.repo, "--json",
                                "number,title,body,state")
                issues[number] = self._json_object(out, "issue view")
        return issues

    def _json(self, out: str, what: str) -> list[dict[str, Any]]:
        try:
            data = json.loads(out or "[]")
        except json.JSONDecodeError as exc:
            raise GhError([what], 0, f"gh printed no JSON: {exc}") from exc
        return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []

    def _json_object(self, out: str, what: str) -> dict[str, Any]:
        try:
            data = json.loads(out)
        except json.JSONDecodeError as exc:
            raise GhError([what], 0, f"gh printed no JSON: {exc}") from exc
        return data if isinstance(data, dict) else {}

    def sync_epic_issue(self, remote: dict[str, dict[str, Any]]) -> str:
        if self.epic.github:
            match = _URL_ISSUE.search(self.epic.github)
            assert match is not None  # _check_urls proved it
            return match.group(2)
        title = f"Epic: {self.directory.name}"
        body = _epic_body(self.epic, [], listed=False)
        number = self.create(title, body, ("epic", self.label, "feature"), self.epic.file)
        remote[number] = {"number": number, "title": title, "body": body, "state": "OPEN"}
        if not self.dry_run:
            self.set_fields(self.root / self.epic.file, number)
        return number

    def create_task(self, task: EpicTask, epic_number: str, sub_issues: bool) -> str:
        labels = ("task", self.label)
        number = self.create(task.name, task.body, labels, task.file,
                             parent=epic_number if sub_issues else None)
        if not self.dry_run:
            self.set_fields(self.root / task.file, number)
        return number

    def create(self, title: str, body: str, labels: tuple[str, ...], file: str,
               parent: str | None = None) -> str:
        head = ("sub-issue", "create", "--parent", parent) if parent else ("issue", "create")
        argv = (*head, "--repo", self.repo, "--title", title, "--body-file", BODY_FILE,
                "--label", ",".join(labels))
        call = GhCall(argv, _with_marker(body, self.stamp))
        self.report.calls.append(call)
        number = _number(self.run(call), call)
        self.report.created.append({"number": number, "title": title, "file": file})
        return number

    def set_fields(self, path: Path, number: str) -> None:
        url = f"https://github.com/{self.repo}/issues/{number}"
        if _write_field(path, {"github": url, "updated": self.stamp}):
            self.report.files.append(path.relative_to(self.root).as_posix())

    def update_issue(self, number: str, title: str, body: str,
                     remote: dict[str, dict[str, Any]], *, closed: bool, what: str) -> None:
        current = remote.get(number)
        if current is None:  # just created in a dry run
            return
        argv: list[str] = []
        changes = []
        if str(current.get("title", "")) != title:
            argv += ["--title", title]
            changes.append("title")
        if _strip_marker(str(current.get("body") or "")) != body.strip():
            argv += ["--body-file", BODY_FILE]
            changes.append("body")
        if argv:
            self.call("issue", "edit", number, "--repo", self.repo, *argv,
                      body=_with_marker(body, self.stamp) if "body" in changes else None)
            self.report.edited.append({"number": number, "what": ",".join(changes),
                                       "file": what})
        state = str(current.get("state", "OPEN")).upper()
        if closed and state == "OPEN":
            self.close(number)
        elif not closed and state == "CLOSED":
            self.report.notes.append(f"#{number} is closed on GitHub but open in {what}: "
                                     "left closed")

    def close(self, number: str) -> None:
        self.call("issue", "close", number, "--repo", self.repo, "--comment",
                  f"Closed by aidp: task closed in the CCPM epic.\n\n"
                  f"<!-- SYNCED: {self.stamp} -->")
        self.report.closed.append(number)

    def rename(self, task_issues: list[tuple[EpicTask, str]]) -> None:
        """CCPM's renames (``001.md`` -> ``<issue>.md``, references rewritten), when the
        stable keys survive them."""
        moves = {t.key: n for t, n in task_issues if t.number != n}
        if not moves:
            return
        names = {t.key: f"{n}.md" for t, n in task_issues}
        if not _keys_survive(task_issues, names):
            width = max(len(n) for _, n in task_issues)
            names = {t.key: f"{int(n):0{width}d}.md" for t, n in task_issues}
            if not _keys_survive(task_issues, names):
                self.report.notes.append("task files keep their names (renaming them to issue "
                                         "numbers would change task keys); see "
                                         "github-mapping.md")
                return
        by_number: dict[str, str] = {}
        for task, number in task_issues:
            by_number.setdefault(task.number, number)
        for _task, number in task_issues:
            by_number.setdefault(number, number)
        texts: dict[str, str] = {}
        for task, _ in task_issues:
            text = read_text(self.root / task.file)
            for name, values in (("depends_on", task.depends_on),
                                 ("conflicts_with", task.conflicts_with)):
                if values:
                    rewritten = ", ".join(by_number.get(v, v) for v in values)
                    text, _line = _set_field(text, name, f"[{rewritten}]")
            texts[task.key] = text
        old_paths = {self.root / t.file for t, _ in task_issues}
        new_paths = {}
        for task, _ in task_issues:
            target = self.directory / names[task.key]
            new_paths[task.key] = target
            if target.exists() and target not in old_paths:
                self.report.notes.append(f"not renamed: {target.name} already exists")
                return
        for task, _ in task_issues:
            source = self.root / task.file
            target = new_paths[task.key]
            if source != target or texts[task.key] != read_text(source):
                target.write_text(texts[task.key], encoding="utf-8")
                self.report.files.append(target.relative_to(self.root).as_posix())
        for task, _ in task_issues:
            source = self.root / task.file
            if source not in new_paths.values():
                source.unlink()
            if source != new_paths[task.key]:
                self.report.renamed.append((task.file, new_paths[task.key].relative_to(
                    self.root).as_posix()))

    def write_mapping(self, epic_number: str) -> None:
        epic = load_epic(self.directory, self.root)
        base = f"https://github.com/{self.repo}/issues"
        lines = ["# GitHub Issue Mapping", "",
                 f"Epic: #{epic_number} - {base}/{epic_number}", "", "Tasks:"]
        lines += [f"- #{t.issue}: {t.name} - {base}/{t.issue}  (file {Path(t.file).name}, "
                  f"key {t.key})" for t in epic.tasks if t.issue]
        path = self.directory / "github-mapping.md"
        old = read_text(path)
        if re.sub(r"\nSynced: .*\n?$", "", old).rstrip("\n") == "\n".join(lines):
            return
        path.write_text("\n".join(lines) + f"\n\nSynced: {self.stamp}\n", encoding="utf-8")
        self.report.files.append(path.relative_to(self.root).as_posix())


def _keys_survive(task_issues: list[tuple[EpicTask, str]], names: dict[str, str]) -> bool:
    """Whether ``load_epic`` would give every task the same key with files named ``names``
    (keys are name slugs, made unique in file-name order)."""
    taken: set[str] = set()
    for task, _ in sorted(task_issues, key=lambda pair: names[pair[0].key]):
        if step_id(re.sub(r"[^a-z0-9]+", "-", task.name.lower()), taken) != task.key:
            return False
    return True
