"""Runs the service drives (``aidp serve``): submitting, resuming and retrying them, and the run
workers that drive them.

A run started through the API is recorded like ``aidp run`` records one (same validation, same
:func:`~aidp.app.commands.create_run`), then marked *active* in ``service_runs``: the run
supervisor of the service (:mod:`aidp.api.supervisor`) keeps a worker process on every active
run until the run ends. A worker is aidp's own ``resume`` of the run (:func:`start_worker`), so
it holds the run's lease, and it never redoes a completed step; the CLI sees and controls it
like any run (``aidp status``, ``aidp cancel``). Who asked is journaled (``run.requested``).
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aidp.app import queries
from aidp.exceptions import InputError, StateError

if TYPE_CHECKING:
    from aidp.app.context import AppContext
    from aidp.app.views import StepRef
    from aidp.model.plan import Plan

__all__ = [
    "ENDED",
    "RunSources",
    "ServiceRun",
    "Worker",
    "active_service_runs",
    "claim_service_run",
    "finish_service_run",
    "note_restart",
    "prepare_resume",
    "prepare_retry",
    "run_sources",
    "start_worker",
    "submit_run",
    "worker_log",
]

#: Run statuses after which nothing is left to drive.
ENDED = frozenset({"completed", "failed", "cancelled"})
#: Step states a retry reopens (``aidp resume`` tries every such step of the run again).
_RETRYABLE = frozenset({"failed", "timeout", "skipped"})


@dataclass(frozen=True)
class ServiceRun:
    """An active service run as the supervisor sees it: the run's status, and whether some
    orchestrator (ours, an orphan of a dead service, or the CLI) holds its lease now."""

    run_id: str
    status: str
    live: bool
    restarts: int


def submit_run(app: AppContext, *, files: list[str] | None = None, change: str | None = None,
               epic: str | None = None, parallel: int | None = None, by: str) -> str:
    """Validate and record a run like ``aidp run`` (from workstream ``files`` inside the
    repository, an OpenSpec ``change`` or a CCPM ``epic``: exactly one), mark it active for the
    service and return its id. Nothing is written when the input is bad.

    Raises:
        InputError: not exactly one source, a path outside the repository, uncommitted changes
            under ``[run] dirty = "refuse"``. ValidationError: the plan (every problem, with
            file and line). StateError: the change is not approved.
    """
    from aidp.app.commands import create_run, uncommitted_changes

    if sum(x is not None for x in (files, change, epic)) != 1:
        raise InputError("give exactly one of files, change or epic")
    if change is not None:
        from aidp.app.changes import compile_change

        paths = [compile_change(app.repo, app.settings, _name(change, "change"), None)]
    elif epic is not None:
        paths = [_compile_epic(app, _name(epic, "epic"))]
    else:
        paths = [_inside(app.repo, f) for f in files or ()]
        if not paths:
            raise InputError("files is empty: name at least one workstream file")
    plan = _load(app, paths)
    uncommitted_changes(app)  # refuses under [run] dirty = "refuse", before any write
    run_id = create_run(app, plan, parallel=parallel or app.settings.run.parallel,
                        change_id=change, by=by)
    _activate(app, run_id, by, "start")
    return run_id


@dataclass(frozen=True)
class RunSources:
    """What a run could be started from in the repository (suggestions for a form): workstream
    files (YAML/JSON files whose top level names ``workstreams``), OpenSpec changes
    (``openspec/changes/ID``) and CCPM epics (``.claude/epics/NAME``)."""

    files: tuple[str, ...]
    changes: tuple[str, ...]
    epics: tuple[str, ...]


#: Directories never searched for workstream files.
_SKIP_DIRS = frozenset({".git", ".aidp", "node_modules", ".venv", "venv", "__pycache__",
                        ".tox", "dist", "build", ".mypy_cache", ".ruff_cache", ".tools"})


def run_sources(app: AppContext, *, limit: int = 200) -> RunSources:
    """The workstream files, OpenSpec changes and CCPM epics of ``app``'s repository, each
    sorted and at most ``limit`` long. Reads only the first 4 KiB of a candidate file."""
    root = app.repo
    files: list[str] = []
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(names):
            if len(files) >= limit:
                break
            if not name.endswith((".yaml", ".yml", ".json")):
                continue
            path = Path(directory) / name
            try:
                with path.open("rb") as head:
                    start = head.read(4096)
            except OSError:
                continue
            if b"workstreams" in start:
                files.append(path.relative_to(root).as_posix())
    changes_dir = root / "openspec" / "changes"
    changes = sorted(d.name for d in changes_dir.iterdir()
                     if d.is_dir() and d.name != "archive") if changes_dir.is_dir() else []
    epics_dir = root / ".claude" / "epics"
    epics = sorted(d.name for d in epics_dir.iterdir()
                   if (d / "epic.md").is_file()) if epics_dir.is_dir() else []
    return RunSources(tuple(files), tuple(changes[:limit]), tuple(epics[:limit]))


def prepare_resume(app: AppContext, run_ref: str, *, by: str) -> str:
    """Mark run ``run_ref`` active for the service (its supervisor then resumes it).

    Raises:
        NotFoundError: no such run. StateError: an orchestrator drives it now, or
            it completed or was cancelled: nothing to resume.
    """
    run_id = queries.resolve_run(app, run_ref)
    view = queries.get_run(app, run_id)
    _refuse_live(view)
    if not view.resumable:
        raise StateError(f"run {run_id} is {view.status}: nothing to resume")
    _activate(app, run_id, by, "resume")
    return run_id


def prepare_retry(app: AppContext, run_ref: str, step_ref: str, *, by: str) -> StepRef:
    """Run failed (timed out, skipped) step ``step_ref`` of run ``run_ref`` again: the run is
    marked active for the service, whose worker resumes it -- a resume tries every failed and
    skipped step of the run again (with fresh attempt counts), completed steps are kept.

    Raises:
        NotFoundError: unknown run or step. StateError: the run is live, or the step did
            not fail (nothing to retry).
    """
    step = queries.resolve_step(app, run_ref, step_ref)
    view = queries.get_run(app, step.run_id)
    _refuse_live(view)
    found = view.step(step.ws_id, step.step_id)
    state = found.status if found is not None else None
    if state not in _RETRYABLE:
        raise StateError(f"step {step.ws_id}/{step.step_id} of run {step.run_id} is {state}: "
                         "only a failed, timed-out or skipped step is retried")
    _activate(app, step.run_id, by, "retry", f"{step.ws_id}/{step.step_id}")
    return step


def _refuse_live(view: Any) -> None:
    if view.live:
        raise StateError(f"run {view.run_id} is live: {view.holder or 'an orchestrator'} "
                         "drives it", hint="wait for it to end, or cancel it")


def _activate(app: AppContext, run_id: str, by: str, action: str,
              step: str | None = None) -> None:
    from aidp.state import service

    with app.store(create=True).write() as tx:
        service.activate_service_run(tx, run_id, by)
        tx.event(run_id, "run.requested", action=action, by=by,
                 **({"step": step} if step else {}))


def _name(value: str, what: str) -> str:
    """An OpenSpec change id or CCPM epic name: a plain name, never a path."""
    if not value or "/" in value or "\\" in value or value.startswith(".") or "\0" in value:
        raise InputError(f"{what} {value!r} is not a {what} name")
    return value


def _inside(repo: Path, name: str) -> Path:
    """``name`` (relative to the repository) as a path that stays inside it."""
    if "\0" in name or not name.strip():
        raise InputError(f"bad file name {name!r}")
    path = (repo / name).resolve()
    if not path.is_relative_to(repo.resolve()):
        raise InputError(f"{name}: outside the repository", hint="name files relative to it")
    return path


def _load(app: AppContext, paths: list[Path]) -> Plan:
    """The plan of ``paths``; its problems name the files relative to the repository (a
    client names them so, and the service's paths are none of its business)."""
    from dataclasses import replace

    from aidp.exceptions import ValidationError
    from aidp.model.loader import load_plan

    try:
        return load_plan(paths, repo=app.repo)
    except ValidationError as exc:
        root = f"{app.repo.resolve()}/"
        raise ValidationError([replace(p, file=p.file.removeprefix(root))
                               for p in exc.problems]) from None


def _compile_epic(app: AppContext, name: str) -> Path:
    """``.aidp/epics/NAME.yaml`` from the CCPM epic ``.claude/epics/NAME`` (one workstream per
    open task, the tool ``[specs] tool``), as ``aidp specs epic NAME`` writes it."""
    import yaml

    from aidp.specs.ccpm import epic_to_workstreams, find_epic, load_epic

    epic = load_epic(find_epic(app.repo, name), app.repo)
    document = epic_to_workstreams(epic, tool=app.settings.specs.tool,
                                   checks=list(app.settings.specs.checks))
    if not document.get("workstreams"):
        raise InputError(f"epic {name!r} has no open task: nothing to run")
    path = app.repo / ".aidp" / "epics" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# compiled by aidp from .claude/epics/{name}/\n"
                    + yaml.safe_dump(document, sort_keys=False, allow_unicode=True),
                    encoding="utf-8")
    return path


# -- the supervisor's side ---------------------------------------------------------------------

def active_service_runs(app: AppContext) -> list[ServiceRun]:
    """The runs the service should be driving, oldest first, each with its run's status and
    whether its lease is live."""
    from aidp.state import service
    from aidp.state.lease import lease_is_live

    store = app.store(create=True)
    found = []
    for row in service.service_runs(store, "active"):
        runs = store.read("SELECT status FROM runs WHERE id = :id", {"id": row.run_id})
        status = runs[0].status if runs else "cancelled"  # the run is gone: nothing to drive
        found.append(ServiceRun(row.run_id, status, lease_is_live(store.lease(row.run_id)),
                                int(row.restarts)))
    return found


def claim_service_run(app: AppContext, run_id: str, owner: str) -> bool:
    """Reserve the active run for the service ``owner`` (see
    :func:`aidp.state.service.claim_service_run`) for one lease lifetime: True when this
    service may start its worker. Several services on one database race through this."""
    from aidp.state import service

    with app.store().write() as tx:
        return service.claim_service_run(tx, run_id, owner, app.settings.run.lease_ttl)


def finish_service_run(app: AppContext, run_id: str, *, unchanged_since: float) -> None:
    """The run ended: the service stops driving it -- unless it was asked for again (a retry,
    a resume) after ``unchanged_since`` (epoch seconds)."""
    from aidp.state import service

    with app.store().write() as tx:
        service.update_service_run(tx, run_id, state="done", unchanged_since=unchanged_since)


def give_up(app: AppContext, run_id: str) -> None:
    """The run's workers keep dying: the service stops driving it until someone asks for it
    again (resume, retry); the run itself stays as it is, resumable. Its service row is
    ``done`` though the run has not ended: that is what :func:`given_up_runs` lists."""
    from aidp.state import service

    with app.store().write() as tx:
        service.update_service_run(tx, run_id, state="done")


def given_up_runs(app: AppContext) -> list[str]:
    """The runs the service gave up on (oldest first): no longer driven by it, not ended."""
    from aidp.state import service

    if not app.has_database():
        return []
    store = app.store()
    given_up = []
    for row in service.service_runs(store, "done"):
        runs = store.read("SELECT status FROM runs WHERE id = :id", {"id": row.run_id})
        if runs and runs[0].status not in ENDED:
            given_up.append(row.run_id)
    return given_up


def note_restart(app: AppContext, run_id: str) -> None:
    """A worker of the run died and is started again: count it."""
    from aidp.state import service

    with app.store().write() as tx:
        service.update_service_run(tx, run_id, restarted=True)


def worker_log(app: AppContext, run_id: str) -> Path:
    """Where the output of the run's workers goes (appended, one file per run)."""
    return app.repo / ".aidp" / "serve" / f"{run_id}.log"


class Worker:
    """A run worker: ``aidp resume RUN`` in its own process group, output in
    :func:`worker_log`."""

    def __init__(self, run_id: str, proc: Any) -> None:
        self.run_id, self._proc = run_id, proc

    @property
    def pid(self) -> int:
        return int(self._proc.pid)

    def poll(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while it runs."""
        code = self._proc.poll()
        return None if code is None else int(code)

    def signal(self, sig: int = signal.SIGTERM) -> bool:
        """Signal the worker's whole process group (SIGTERM: stop the tools, leave the run
        resumable, exit 143)."""
        from aidp.process.runner import signal_group

        return signal_group(self.pid, sig)

    def wait(self, timeout_s: float) -> int | None:
        """Wait up to ``timeout_s`` for the exit; its code, or None."""
        import time

        deadline = time.monotonic() + timeout_s
        while (code := self.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return code


def start_worker(app: AppContext, run_id: str, config_path: Path | None = None) -> Worker:
    """Start ``aidp resume RUN`` on ``app``'s repository (the same interpreter, environment and
    settings file as the service, and its log format: ``AIDP_LOG_FORMAT``) in its own
    session.

    Raises:
        OSError: the interpreter cannot be started.
    """
    from aidp.process.runner import spawn

    argv = [sys.executable, "-c", "import sys; from aidp.cli.main import main; "
            "main(sys.argv[1:])", "resume", run_id, "--repo", str(app.repo)]
    if config_path is not None:
        argv += ["--config", str(config_path)]
    from aidp.app.logs import ENV

    env = {**os.environ, ENV: app.settings.serve.log_format}  # it logs as the service does
    proc = spawn(argv, cwd=app.repo, env=env, output=worker_log(app, run_id))
    return Worker(run_id, proc)
