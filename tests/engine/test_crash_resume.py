"""Crash and resume through the real CLI: ``kill -9`` of ``aidp run`` at random moments, then
``aidp resume``, must lose no completed step, commit no step twice and end with the branches an
uninterrupted run makes.

The plan has 50 steps: five workstreams of ten chained steps, each appending one line to a file
of its own directory; ``delta`` fans in ``alpha`` and ``beta`` (a dependency merge) and is merged
into ``crash/integration``; ``omega`` follows ``gamma``. Steps sleep 0-50 ms and some have
acceptance checks, so kills land while tools run, checks run, checkpoints are committed, the
database is written, worktrees are prepared and branches are merged.

Kills are timed by the run's journal, not by the clock, so that they land inside the run however
busy the machine: an uninterrupted reference run counts its events, and a trial kills ``aidp run``
once the journal holds a random number of them, short of the last few; in about a third of the
trials the first ``aidp resume`` is killed the same way. Every trial asserts that its run was
killed before it finished, and reports whether its resume was.

Branch names carry the run id, so runs are compared by trees and by the ordered ``Aidp-Step``
trailers of each branch, never by shas. Seeds are fixed and named in every failure; a seed fixes
the kill schedule in events (the machine's timing does the rest). Three trials run by default,
many more under ``-m slow``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from aidp.state.store import Store
from aidp.state.tables import attempts, checkpoints, leases, runs, steps, workstreams
from tests.conftest import Cli, git, init_repo

WORKSTREAMS: list[tuple[str, list[str]]] = [
    ("alpha", []),
    ("beta", []),
    ("gamma", []),
    ("delta", ["alpha", "beta"]),
    ("omega", ["gamma"]),
]
STEPS_PER_WS = 10
INTEGRATION = "crash/integration"
PARALLEL = "3"
CLI_TIMEOUT_S = 180.0
# A kill is aimed no later than this many events before the end of the journal: the last events
# come within milliseconds of each other, and the kill lands a poll (and a random delay) late.
KILL_MARGIN_EVENTS = 6
POLL_S = 0.01
KILL_DELAY_MAX_S = 0.02  # after the aimed-at event, so that kills also land between events


# -- the plan ------------------------------------------------------------------------------------


def write_plan(path: Path) -> Path:
    """The 50-step plan (JSON is YAML) at ``path``; every step's effect is deterministic."""
    items = []
    for i, (ws_id, deps) in enumerate(WORKSTREAMS):
        ws_steps: list[dict[str, Any]] = []
        for j in range(STEPS_PER_WS):
            command = (f"sleep 0.0{(i * 7 + j * 3) % 6}; mkdir -p {ws_id} && "
                       f"echo step-{j} >> {ws_id}/log.txt")
            if ws_id == "delta" and j == 0:  # proves both dependencies were merged in
                command += " && cat alpha/log.txt beta/log.txt | wc -l > delta/inputs.txt"
            step: dict[str, Any] = {"id": f"s{j}", "run": command}
            if j:
                step["depends_on"] = [f"s{j - 1}"]
            if j % 3 == 2:
                step["checks"] = [f"grep -qx step-{j} {ws_id}/log.txt",
                                  {"name": "slow check", "run": "sleep 0.02"}]
            ws_steps.append(step)
        ws: dict[str, Any] = {"id": ws_id, "scope": [f"{ws_id}/**"], "steps": ws_steps}
        if deps:
            ws["depends_on"] = deps
        if ws_id == "delta":
            ws["merge"] = {"into": INTEGRATION, "strategy": "merge"}
        items.append(ws)
    path.write_text(json.dumps({"version": 1, "workstreams": items}, indent=1))
    return path


def write_small_plan(path: Path, workstreams: dict[str, list[dict[str, Any]]]) -> Path:
    """A plan of the given workstreams (id -> steps), each scoped to its own directory."""
    items = [{"id": ws_id, "scope": [f"{ws_id}/**"], "steps": ws_steps}
             for ws_id, ws_steps in workstreams.items()]
    path.write_text(json.dumps({"version": 1, "workstreams": items}, indent=1))
    return path


# -- reading git and the store -------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """What a finished run left in git, independent of its run id and commit times."""

    trees: dict[str, str]  # workstream id (or INTEGRATION) -> tree sha
    steps: dict[str, list[str]]  # workstream id -> its Aidp-Step trailers, oldest first
    integration_merges: int


def checkpoint_commits(repo: Path, branch: str) -> list[tuple[str, str, str]]:
    """(sha, workstream, step) of every commit on ``branch`` carrying an Aidp-Step trailer."""
    out = git(repo, "log", "--topo-order", "--reverse",
              "--format=%H%x1f%(trailers:key=Aidp-Workstream,valueonly,separator=%x2c)"
              "%x1f%(trailers:key=Aidp-Step,valueonly,separator=%x2c)%x1e",
              f"refs/heads/{branch}", "^main", "--")
    found = []
    for record in out.split("\x1e"):
        record = record.strip("\n")
        if record:
            sha, ws_id, step_id = record.split("\x1f")
            if step_id:
                found.append((sha, ws_id, step_id))
    return found


def branch_exists(repo: Path, branch: str) -> bool:
    return subprocess.run(["git", "rev-parse", "-q", "--verify", f"refs/heads/{branch}"],
                          cwd=repo, capture_output=True, check=False).returncode == 0


def shape_of(repo: Path, run_id: str) -> Shape:
    trees: dict[str, str] = {}
    step_lists: dict[str, list[str]] = {}
    for ws_id, _ in WORKSTREAMS:
        branch = f"aidp/{run_id}/{ws_id}"
        trees[ws_id] = git(repo, "rev-parse", f"refs/heads/{branch}^{{tree}}").strip()
        step_lists[ws_id] = [s for _, w, s in checkpoint_commits(repo, branch) if w == ws_id]
    trees[INTEGRATION] = git(repo, "rev-parse", f"refs/heads/{INTEGRATION}^{{tree}}").strip()
    merges = git(repo, "rev-list", "--first-parent", "--merges", f"refs/heads/{INTEGRATION}",
                 "^main", "--").split()
    return Shape(trees, step_lists, len(merges))


def run_ids(store: Store, repo: Path) -> list[str]:
    """Ids of the runs made in ``repo`` (several repositories may share one database)."""
    with store.engine.connect() as conn:  # cheap: polled while a run is to be killed
        return list(conn.execute(select(runs.c.id).where(runs.c.repo == str(repo))
                                 .order_by(runs.c.created_at)).scalars())


def committed_steps(store: Store, repo: Path, run_id: str) -> dict[tuple[str, str], str]:
    """(ws, step) -> checkpoint sha, for every step completed in the store or committed in git."""
    found: dict[tuple[str, str], str] = {}
    for row in store.steps(run_id):
        if row.status == "completed" and row.checkpoint_sha:
            found[(row.ws_id, row.step_id)] = row.checkpoint_sha
    for ws_id, _ in WORKSTREAMS:
        branch = f"aidp/{run_id}/{ws_id}"
        if branch_exists(repo, branch):
            for sha, w, s in checkpoint_commits(repo, branch):
                if w == ws_id:
                    found.setdefault((w, s), sha)
    return found


def leftover_processes(run_id: str) -> list[tuple[int, str]]:
    """Live processes (not zombies) whose environment names ``run_id`` (tools and checks)."""
    needle = f"\0AIDP_RUN_ID={run_id}\0".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in b"\0" + environ:
            found.append((int(name), cmdline.replace(b"\0", b" ").decode(errors="replace")))
    return found


def kill_leftovers(run_id: str) -> None:
    """End what this test's runs left behind (so that one failure does not leak processes)."""
    for pid, _ in leftover_processes(run_id):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill9(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGKILL the process group of ``proc`` (the orchestrator; its tools have their own)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return proc.communicate(timeout=60)


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def status_json(cli: Cli, run_id: str) -> dict[str, Any]:
    done = cli("status", run_id, "--json", timeout=CLI_TIMEOUT_S, check=True)
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def assert_git_and_store_agree(cli: Cli, run_id: str, context: str) -> dict[str, Any]:
    """``aidp status --json`` names, for every step, the commit on its branch carrying it."""
    data = status_json(cli, run_id)
    for ws in data["workstreams"]:
        head = git(cli.cwd, "rev-parse", f"refs/heads/{ws['branch']}").strip()
        assert ws["head"] == head, f"{context}: {ws['id']} head in the store != branch head"
        on_branch = {s: sha for sha, w, s in checkpoint_commits(cli.cwd, ws["branch"])
                     if w == ws["id"]}
        for step in ws["steps"]:
            assert step["checkpoint"] == on_branch.get(step["id"]), (
                f"{context}: {ws['id']}/{step['id']} checkpoint {step['checkpoint']} is not the "
                f"commit carrying its trailer ({on_branch.get(step['id'])})")
    return data


def assert_clean_worktrees(repo: Path, context: str) -> None:
    porcelain = git(repo, "worktree", "list", "--porcelain")
    junk = [line for line in porcelain.splitlines()
            if line.startswith(("locked", "prunable"))]
    assert not junk, f"{context}: git worktree list shows {junk}:\n{porcelain}"


# -- the reference and the trials ----------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    plan: Path
    shape: Shape
    events: int  # the length of an uninterrupted run's journal


def make_reference(tmp_path: Path, db_url: str) -> Reference:
    """Run the plan uninterrupted once and record what it made and how many events it journalled."""
    plan = write_plan(tmp_path / "plan.yaml")
    repo = init_repo(tmp_path / "reference")
    Cli(repo, db_url)("run", "--parallel", PARALLEL, str(plan), timeout=CLI_TIMEOUT_S, check=True)
    store = Store(db_url)
    try:
        (run_id,) = run_ids(store, repo)
        events = len(store.events(run_id))
    finally:
        store.close()
    shape = shape_of(repo, run_id)
    assert all(s == [f"s{j}" for j in range(STEPS_PER_WS)] for s in shape.steps.values()), shape
    assert shape.integration_merges == 1, shape
    return Reference(plan, shape, events)


@dataclass(frozen=True)
class Kill:
    live: bool  # the kill landed before the run finished
    what: str  # where it landed, or why it did not land in a live run
    output: str  # what the process printed


def kill9_after_events(proc: subprocess.Popen[str], store: Store, repo: Path, count: int,
                       delay_s: float, after_id: int = 0) -> Kill:
    """kill -9 ``proc`` ``delay_s`` after the run in ``repo`` journalled ``count`` events past
    ``after_id`` (at once if ``proc`` exits first)."""
    run_id = None
    journalled: list[Any] = []
    while proc.poll() is None and len(journalled) < count:
        time.sleep(POLL_S)
        run_id = run_id or next(iter(run_ids(store, repo)), None)
        if run_id is not None:
            journalled += store.events(run_id, after_id=journalled[-1].id if journalled
                                       else after_id)
    time.sleep(delay_s)
    out, err = kill9(proc)
    events = store.events(run_id, after_id=after_id) if run_id else []
    if proc.returncode != -signal.SIGKILL:
        return Kill(False, f"exited {proc.returncode} after {len(events)} events", out + err)
    if any(e.kind == "run.finished" for e in events):
        return Kill(False, f"finished the run before the kill ({len(events)} events)", out + err)
    return Kill(True, f"after {count} events (journal at {len(events)})", out + err)


@dataclass
class Trial:
    seed: int
    kills: list[str] = field(default_factory=list)  # what was killed, and when
    resume_killed: bool = False  # the first resume was killed too, before it finished

    def __str__(self) -> str:
        return f"seed {self.seed} (kills: {', '.join(self.kills) or 'none'})"


def crash_trial(tmp_path: Path, db_url: str, ref: Reference, seed: int,
                *, then_run_again: bool = False) -> Trial:
    """kill -9 `aidp run` at a random moment, maybe kill the first resume too, resume to the end.

    Asserts every rule of crash recovery and returns what happened (for the report).
    """
    rng = random.Random(seed)
    trial = Trial(seed)
    repo = init_repo(tmp_path / f"trial-{seed}")
    cli = Cli(repo, db_url)
    store = Store(db_url)
    run_id: str | None = None
    try:
        # 1. `aidp run`, killed somewhere between its first event and the last few.
        run_kill_at = rng.randint(1, ref.events - KILL_MARGIN_EVENTS)
        proc = cli.popen("run", "--parallel", PARALLEL, str(ref.plan))
        kill = kill9_after_events(proc, store, repo, run_kill_at,
                                  rng.uniform(0, KILL_DELAY_MAX_S))
        trial.kills.append(f"run {kill.what}")
        assert kill.live, f"{trial}: `aidp run` was not killed while live:\n{kill.output}"
        ids = run_ids(store, repo)
        assert len(ids) == 1, f"{trial}: expected one run, found {ids}"
        run_id = ids[0]
        before = committed_steps(store, repo, run_id)

        # 2. Resume to the end; in about a third of the trials the first resume is killed too,
        # after a random part of what the run had left to journal.
        resume_kill_at = rng.randint(1, max(1, ref.events - KILL_MARGIN_EVENTS - run_kill_at))
        if rng.random() < 0.35:
            last_event = store.events(run_id)[-1].id
            proc = cli.popen("resume", run_id)
            kill = kill9_after_events(proc, store, repo, resume_kill_at,
                                      rng.uniform(0, KILL_DELAY_MAX_S), last_event)
            trial.kills.append(f"resume {kill.what}")
            trial.resume_killed = kill.live
            assert kill.live or proc.returncode in (0, -signal.SIGKILL), (
                f"{trial}: resume exited {proc.returncode}:\n{kill.output}")
            now = committed_steps(store, repo, run_id)
            redone = {k: (sha, now.get(k)) for k, sha in before.items() if now.get(k) != sha}
            assert not redone, f"{trial}: the first resume redid or lost {redone}"
            before.update(now)
        if store.run(run_id).status != "completed":
            done = cli("resume", run_id, timeout=CLI_TIMEOUT_S)
            assert done.returncode == 0, (
                f"{trial}: resume exited {done.returncode}:\n{done.stdout}\n{done.stderr}")

        # 3. The rules.
        row = store.run(run_id)
        assert row.status == "completed", f"{trial}: run status {row.status}"
        shape = shape_of(repo, run_id)
        for ws_id, expected in ref.shape.steps.items():
            assert shape.steps[ws_id] == expected, (
                f"{trial}: {ws_id} checkpoints {shape.steps[ws_id]} != {expected} "
                "(a step lost or committed twice)")
        assert shape.trees == ref.shape.trees, f"{trial}: trees differ from the reference"
        assert shape.integration_merges == 1, f"{trial}: {shape.integration_merges} merges"
        data = assert_git_and_store_agree(cli, run_id, str(trial))
        final = {(ws["id"], s["id"]): s["checkpoint"]
                 for ws in data["workstreams"] for s in ws["steps"]}
        redone = {key: (sha, final.get(key)) for key, sha in before.items()
                  if final.get(key) != sha}
        assert not redone, f"{trial}: completed steps were redone or lost: {redone}"
        succeeded: dict[tuple[str, str], int] = {}
        for a in store.attempts(run_id):
            assert a.outcome is not None, f"{trial}: attempt {a.ws_id}/{a.step_id} still open"
            if a.outcome == "succeeded":
                succeeded[(a.ws_id, a.step_id)] = succeeded.get((a.ws_id, a.step_id), 0) + 1
        twice = {k: n for k, n in succeeded.items() if n > 1}
        assert not twice, f"{trial}: steps succeeded more than once: {twice}"
        leftovers = leftover_processes(run_id)
        assert not leftovers, f"{trial}: processes of the run still alive: {leftovers}"
        assert_clean_worktrees(repo, str(trial))
        if then_run_again:
            again = write_small_plan(tmp_path / f"again-{seed}.yaml", {
                ws_id: [{"id": "again", "run": f"mkdir -p {ws_id} && echo again > {ws_id}/x"}]
                for ws_id in ("alpha", "beta", "gamma")
            })
            cli("run", "--parallel", PARALLEL, str(again), timeout=CLI_TIMEOUT_S, check=True)
        return trial
    except BaseException as exc:  # any failure (a CLI error, a timeout) must name the trial
        exc.add_note(f"in crash trial {trial}")
        raise
    finally:
        store.close()
        if run_id is not None:
            kill_leftovers(run_id)


def run_trials(tmp_path: Path, db_url: str, seeds: list[int]) -> None:
    """Run the reference, then one crash trial per seed; the first failure fails the test."""
    ref = make_reference(tmp_path, db_url)
    done = [crash_trial(tmp_path, db_url, ref, seed, then_run_again=index == 0)
            for index, seed in enumerate(seeds)]
    resumes = sum(t.resume_killed for t in done)
    print(f"{len(done)} crash trials ({ref.events} events uninterrupted): each killed a live run, "
          f"{resumes} also a live resume", *done, sep="\n  ")


# -- random kills ----------------------------------------------------------------------------


@pytest.mark.timeout(300)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_kill9_at_random_moments_then_resume_quick(tmp_path: Path, db_url: str) -> None:
    """kill -9 of `aidp run` then `aidp resume`: no step lost or doubled, reference branches."""
    run_trials(tmp_path, db_url, [13, 17, 19])  # runs killed midway, late, early


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_kill9_at_random_moments_then_resume_many_sqlite(tmp_path: Path, db_url: str) -> None:
    """30 random kill -9 trials on SQLite: every rule of crash recovery holds in each."""
    run_trials(tmp_path, db_url, list(range(1000, 1030)))


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_kill9_at_random_moments_then_resume_postgres(tmp_path: Path, db_url: str) -> None:
    """Random kill -9 trials on PostgreSQL: every rule of crash recovery holds in each."""
    run_trials(tmp_path, db_url, list(range(2000, 2008)))


# -- adoption ------------------------------------------------------------------------------------


def rewind_store(db_url: str, run_id: str, ws_id: str, names: list[str], lost: str | None
                 ) -> None:
    """Make the store look as if the run died right after git committed step ``lost``.

    Steps before ``lost`` stay completed; ``lost`` is running with its attempt open and no
    checkpoint row; later steps never started (their attempts and checkpoints are deleted).
    With ``lost`` None every step stays completed: the run died before it recorded that the
    workstream was complete. Either way the workstream and the run are running and the lease
    names a dead process.
    """
    index = len(names) if lost is None else names.index(lost)
    keep, later = names[:index], names[index + 1:]
    store = Store(db_url)
    try:
        head = next((r.checkpoint_sha for r in store.steps(run_id)
                     if r.ws_id == ws_id and r.step_id == keep[-1]), None) if keep else None
        with store.engine.begin() as conn:
            if lost is not None:
                conn.execute(delete(checkpoints).where(checkpoints.c.run_id == run_id,
                                                       checkpoints.c.ws_id == ws_id,
                                                       checkpoints.c.step_id.in_([lost, *later])))
                conn.execute(delete(attempts).where(attempts.c.run_id == run_id,
                                                    attempts.c.ws_id == ws_id,
                                                    attempts.c.step_id.in_(later)))
                conn.execute(update(attempts).where(attempts.c.run_id == run_id,
                                                    attempts.c.ws_id == ws_id,
                                                    attempts.c.step_id == lost)
                             .values(outcome=None, finished_at=None, exit_code=None))
                conn.execute(update(steps).where(steps.c.run_id == run_id,
                                                 steps.c.ws_id == ws_id, steps.c.step_id == lost)
                             .values(status="running", checkpoint_sha=None, finished_at=None))
                conn.execute(update(steps).where(steps.c.run_id == run_id,
                                                 steps.c.ws_id == ws_id,
                                                 steps.c.step_id.in_(later))
                             .values(status="pending", checkpoint_sha=None, attempts=0,
                                     started_at=None, finished_at=None))
            conn.execute(update(workstreams).where(workstreams.c.run_id == run_id,
                                                   workstreams.c.ws_id == ws_id)
                         .values(status="running", head_sha=head, finished_at=None,
                                 merged_sha=None))
            conn.execute(update(runs).where(runs.c.id == run_id)
                         .values(status="running", finished_at=None))
            conn.execute(update(leases).where(leases.c.run_id == run_id)
                         .values(released=False, pid=2**22 - 1, pid_start=1))
    finally:
        store.close()


def rewind_case(cli: Cli, repo: Path, tmp_path: Path, db_url: str, lost: str | None,
                *, dependant: bool = False) -> None:
    """Run ``solo`` (s0..s3), rewind store and branch to "git committed ``lost``, then died"
    (``lost`` None: "recorded every step, then died before completing the workstream"), resume.

    With ``dependant``, workstream ``after`` depends on ``solo`` and never started.
    """
    plan_ws: dict[str, list[dict[str, Any]]] = {"solo": [
        {"id": f"s{j}", "run": f"mkdir -p solo && echo step-{j} >> solo/log.txt",
         **({"depends_on": [f"s{j - 1}"]} if j else {})}
        for j in range(4)
    ]}
    if dependant:
        plan_ws["after"] = [{"id": "use", "run": "mkdir -p after && cp solo/log.txt after/"}]
    plan = write_small_plan(tmp_path / "plan.yaml", plan_ws)
    if dependant:
        data = json.loads(plan.read_text())
        data["workstreams"][1]["depends_on"] = ["solo"]
        plan.write_text(json.dumps(data))
    cli("run", str(plan), check=True)
    store = Store(db_url)
    try:
        (run_id,) = run_ids(store, repo)
        branch = f"aidp/{run_id}/solo"
        commits = {s: sha for sha, _, s in checkpoint_commits(repo, branch)}
        names = [f"s{j}" for j in range(4)]
        index = len(names) if lost is None else names.index(lost)
        if lost is not None:  # git as the dead run left it: the branch ends at `lost`
            git(repo, "update-ref", f"refs/heads/{branch}", commits[lost])
        rewind_store(db_url, run_id, "solo", names, lost)
        if dependant:  # `after` never started: back to pending, its branch never made
            with store.engine.begin() as conn:
                conn.execute(delete(checkpoints).where(checkpoints.c.run_id == run_id,
                                                       checkpoints.c.ws_id == "after"))
                conn.execute(delete(attempts).where(attempts.c.run_id == run_id,
                                                    attempts.c.ws_id == "after"))
                conn.execute(update(steps).where(steps.c.run_id == run_id,
                                                 steps.c.ws_id == "after")
                             .values(status="pending", checkpoint_sha=None, attempts=0,
                                     started_at=None, finished_at=None))
                conn.execute(update(workstreams).where(workstreams.c.run_id == run_id,
                                                       workstreams.c.ws_id == "after")
                             .values(status="pending", base_sha=None, head_sha=None,
                                     worktree=None, started_at=None, finished_at=None))
            git(repo, "branch", "-D", f"aidp/{run_id}/after")
        attempts_before = {(a.step_id, a.number) for a in store.attempts(run_id)}
        last_event = store.events(run_id)[-1].id

        done = cli("resume", run_id, timeout=CLI_TIMEOUT_S)
        assert done.returncode == 0, done.stdout + done.stderr
        assert store.run(run_id).status == "completed"
        assert {w.ws_id: w.status for w in store.workstreams(run_id)} == dict.fromkeys(
            plan_ws, "completed")
        adopted = [e for e in store.events(run_id, after_id=last_event)
                   if e.kind == "step.adopted"]
        assert [(e.step_id, json.loads(e.data)["sha"]) for e in adopted] == (
            [] if lost is None else [(lost, commits[lost])])
        new_attempts = {(a.step_id, a.number) for a in store.attempts(run_id)} - attempts_before
        assert all(step_id != lost for step_id, _ in new_attempts), new_attempts
        assert sorted(s for s, _ in new_attempts) == sorted(
            names[index + 1:] + (["use"] if dependant else []))
        if lost is not None:
            (row,) = [c for c in store.checkpoints(run_id) if c.step_id == lost]
            assert (row.sha, bool(row.adopted)) == (commits[lost], True)
        assert [s for _, _, s in checkpoint_commits(repo, branch)] == names
        assert not (repo / "solo").exists()  # the main checkout is never touched
        assert git(repo, "show", f"{branch}:solo/log.txt") == "".join(
            f"step-{j}\n" for j in range(4))
        assert_git_and_store_agree(cli, run_id, f"adopt {lost}")
        assert not leftover_processes(run_id)
    finally:
        store.close()


@pytest.mark.parametrize("db_url", ["sqlite",
                                    pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_checkpoint_in_git_but_not_in_store_is_adopted(
    cli: Cli, repo: Path, tmp_path: Path, db_url: str
) -> None:
    """A checkpoint committed in git but missing from the store is adopted on resume, not redone."""
    rewind_case(cli, repo, tmp_path, db_url, lost="s1")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_adopted_last_step_finishes_its_workstream(
    cli: Cli, repo: Path, tmp_path: Path, db_url: str
) -> None:
    """Adopting a workstream's last checkpoint completes the workstream (and the run) on resume."""
    rewind_case(cli, repo, tmp_path, db_url, lost="s3")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_adopted_last_step_lets_dependant_workstreams_run(
    cli: Cli, repo: Path, tmp_path: Path, db_url: str
) -> None:
    """After adopting a workstream's last checkpoint, resume runs the workstreams depending
    on it."""
    rewind_case(cli, repo, tmp_path, db_url, lost="s3", dependant=True)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_workstream_left_running_with_every_step_done_is_finished_before_its_dependants(
    cli: Cli, repo: Path, tmp_path: Path, db_url: str
) -> None:
    """A crash after the last step's record but before the workstream's lets dependants run."""
    rewind_case(cli, repo, tmp_path, db_url, lost=None, dependant=True)


# -- one orchestrator at a time ------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite",
                                    pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_resume_of_a_live_run_is_refused_and_names_the_holder(
    cli: Cli, repo: Path, tmp_path: Path, db_url: str
) -> None:
    """`aidp resume` of a run whose orchestrator is alive exits 4 naming pid and host."""
    plan = write_small_plan(tmp_path / "plan.yaml", {"slow": [
        {"id": "nap", "run": "sleep 5; mkdir -p slow && echo rested > slow/out.txt"}]})
    store = Store(db_url)
    proc = cli.popen("run", str(plan))
    run_id = None
    try:
        wait_for(lambda: bool(run_ids(store, repo)), "the run row")
        (run_id,) = run_ids(store, repo)
        wait_for(lambda: any(a.outcome is None for a in store.attempts(run_id)),
                 "the step to start")
        refused = cli("resume", run_id)
        assert refused.returncode == 4, refused.stdout + refused.stderr
        assert f"pid {proc.pid} on {socket.gethostname()}" in refused.stderr, refused.stderr
        out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
        assert proc.returncode == 0, out + err
        assert store.run(run_id).status == "completed"
        assert [a.number for a in store.attempts(run_id)] == [1]
    finally:
        if proc.poll() is None:
            kill9(proc)
        store.close()
        if run_id is not None:
            kill_leftovers(run_id)


# -- what a dead process leaves behind -----------------------------------------------------------


def start_and_kill_during(cli: Cli, repo: Path, store: Store, plan: Path, marker: Path
                          ) -> tuple[str, str]:
    """Start `aidp run`, kill -9 it once ``marker`` exists; return (run id, worktree path)."""
    proc = cli.popen("run", str(plan))
    try:
        wait_for(marker.exists, f"{marker.name} (the step to be under way)")
        (run_id,) = run_ids(store, repo)
        wait_for(lambda: store.workstreams(run_id)[0].worktree is not None, "the worktree")
        worktree = store.workstreams(run_id)[0].worktree
    finally:
        kill9(proc)
    return run_id, worktree


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_stale_index_lock_of_a_dead_process_does_not_block_resume(
    cli: Cli, repo: Path, tmp_path: Path, db_url: str
) -> None:
    """A stale index.lock in the worktree's gitdir, left by a killed process, is cleaned on
    resume."""
    marker = tmp_path / "first-attempt"
    plan = write_small_plan(tmp_path / "plan.yaml", {"locked": [
        {"id": "first", "run": "mkdir -p locked && echo one > locked/a.txt"},
        {"id": "second", "depends_on": ["first"],
         "run": f"if [ ! -e {marker} ]; then touch {marker}; sleep 60; fi; "
                "echo two > locked/b.txt"},
    ]})
    store = Store(db_url)
    run_id = None
    try:
        run_id, worktree = start_and_kill_during(cli, repo, store, plan, marker)
        gitdir = git(Path(worktree), "rev-parse", "--absolute-git-dir").strip()
        assert Path(gitdir).parent == repo / ".git" / "worktrees"
        lock = Path(gitdir) / "index.lock"
        lock.write_text("")

        done = cli("resume", run_id, timeout=CLI_TIMEOUT_S)
        assert done.returncode == 0, done.stdout + done.stderr
        assert store.run(run_id).status == "completed"
        assert not lock.exists()
        branch = f"aidp/{run_id}/locked"
        assert [s for _, _, s in checkpoint_commits(repo, branch)] == ["first", "second"]
        assert git(repo, "show", f"{branch}:locked/b.txt") == "two\n"
        assert not leftover_processes(run_id)  # the first attempt's `sleep 60` was killed
        assert_clean_worktrees(repo, "after the stale lock")
    finally:
        store.close()
        if run_id is not None:
            kill_leftovers(run_id)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_resume_starts_a_fresh_workstream_beside_an_interrupted_one(
    cli: Cli, repo: Path, tmp_path: Path, db_url: str
) -> None:
    """On resume, a fresh workstream and an interrupted one both get their worktrees.

    The race this guards against was lost one round in a few, so the case is repeated.
    """
    store = Store(db_url)
    started: list[str] = []
    try:
        for round_no in range(24):
            marker = tmp_path / f"slow-once-{round_no}"
            plan = write_small_plan(tmp_path / f"plan-{round_no}.yaml", {
                "first": [
                    {"id": "a", "run": "mkdir -p first && echo a > first/a.txt"},
                    {"id": "b", "depends_on": ["a"],
                     "run": f"if [ ! -e {marker} ]; then touch {marker}; sleep 60; fi; "
                            "echo b > first/b.txt"},
                ],
                "second": [{"id": "c", "run": "mkdir -p second && echo c > second/c.txt"}],
            })
            # One slot: `second` waits while `first` (the longer chain) runs; killed in b.
            proc = cli.popen("run", "--parallel", "1", str(plan))
            try:
                wait_for(marker.exists, "first/b to be under way")
            finally:
                kill9(proc)
            run_id = run_ids(store, repo)[0]
            started.append(run_id)
            done = cli("resume", run_id, "--parallel", "2", timeout=CLI_TIMEOUT_S)
            assert done.returncode == 0, f"round {round_no}:\n{done.stdout}{done.stderr}"
            assert store.run(run_id).status == "completed"
            assert [s for _, _, s in checkpoint_commits(repo, f"aidp/{run_id}/first")] == [
                "a", "b"]
            assert [s for _, _, s in checkpoint_commits(repo, f"aidp/{run_id}/second")] == [
                "c"]
    finally:
        store.close()
        for run_id in started:
            kill_leftovers(run_id)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_resume_kills_an_acceptance_check_left_running_by_the_dead_run(
    cli: Cli, repo: Path, tmp_path: Path, db_url: str
) -> None:
    """An acceptance check still running after kill -9 of the orchestrator is killed on resume."""
    marker = tmp_path / "first-check"
    slow_once = f"if [ ! -e {marker} ]; then touch {marker}; sleep 60; fi"
    plan = write_small_plan(tmp_path / "plan.yaml", {"checked": [
        {"id": "only", "run": "mkdir -p checked && echo ok > checked/a.txt",
         "checks": [f"{slow_once}; grep -q ok checked/a.txt"]},
    ]})
    store = Store(db_url)
    run_id = None
    try:
        run_id, _ = start_and_kill_during(cli, repo, store, plan, marker)
        done = cli("resume", run_id, timeout=CLI_TIMEOUT_S)
        assert done.returncode == 0, done.stdout + done.stderr
        assert store.run(run_id).status == "completed"
        leftovers = leftover_processes(run_id)
        assert not leftovers, f"still running after resume: {leftovers}"
    finally:
        store.close()
        if run_id is not None:
            kill_leftovers(run_id)
