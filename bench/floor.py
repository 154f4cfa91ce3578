"""The plain-Python floor: the git, subprocess and SQLite work of ``aidp run``, nothing more.

Run: ``.venv/bin/python bench/floor.py PLAN.json --repo REPO --parallel N [--no-git]``; prints
JSON (``{"duration_s": ..., "steps": ..., "ok": true}``) on stdout.

It reads the same plan file that ``aidp run`` gets (the JSON subset of a workstream file: ids,
``depends_on``, steps with a string ``run``) and does, the cheapest honest way, what aidp must do:

* the workstream DAG with :mod:`graphlib`, executed by a ``ThreadPoolExecutor(max_workers=N)``;
  a workstream runs its steps one after another (aidp never runs two steps of one workstream at
  once either), in the static order of its step DAG;
* per workstream: a pooled worktree under ``<repo>/.floor/worktrees`` (created on first use with
  ``git worktree add --detach --no-checkout``), prepared like aidp's pool prepares one:
  ``git checkout -q -f -B <branch> <start> --`` then ``git clean -q -ffdx``; the start is the
  base commit, or the head of the first dependency (as aidp does);
* per step: ``subprocess.run(["/bin/sh", "-c", run])`` in the worktree, stdin closed, output to
  a per-step log file; then a checkpoint the way aidp makes it -- in-process with pygit2
  (``index.add_all`` + ``write`` + ``write_tree`` + ``create_commit``), an empty commit when
  nothing changed;
* one SQLite commit (WAL, ``synchronous=NORMAL``, ``BEGIN IMMEDIATE``) per state change: every
  step inserted ``pending`` in one transaction, then ``running`` and ``completed`` per step.

Not done (aidp does them; they are its overhead by definition): the run lease and heartbeat,
events and attempts rows, scope checks, process sessions and kill-on-timeout, log capping,
releasing (detaching) worktrees, the summary.

``--no-git`` is the floor of an orchestrator without isolation: the same DAG, threads, step
processes and SQLite commits, but every step runs in one shared scratch directory
(``<repo>/.floor/work``), with no worktree, no checkout and no checkpoint; pygit2 is not even
imported, so the start-up and peak RSS are those of such a tool. Beside the git floor it shows
the full price of aidp's isolation.
"""

from __future__ import annotations

import argparse
import graphlib
import json
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any


def _git(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout


class _Store:
    """One connection shared by the threads; one transaction per state change."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS steps (ws TEXT, step TEXT, status TEXT, "
                          "sha TEXT, PRIMARY KEY (ws, step))")
        self.lock = threading.Lock()

    def insert_pending(self, keys: list[tuple[str, str]]) -> None:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany("INSERT INTO steps VALUES (?, ?, 'pending', NULL)", keys)
            self.conn.execute("COMMIT")

    def set(self, ws: str, step: str, status: str, sha: str | None = None) -> None:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("UPDATE steps SET status = ?, sha = ? WHERE ws = ? AND step = ?",
                              (status, sha, ws, step))
            self.conn.execute("COMMIT")


class _Pool:
    """Pooled worktrees: a free list of slot directories, a new slot when none is free."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.root = repo / ".floor" / "worktrees"
        self.free: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self.count = 0
        self.lock = threading.Lock()

    def acquire(self, branch: str, start: str) -> Path:
        try:
            path = self.free.get_nowait()
        except queue.Empty:
            # Concurrent `git worktree add` calls race on the repository's admin files (exit
            # 128), so slots are created one at a time; it happens once per slot.
            with self.lock:
                path = self.root / f"slot-{self.count}"
                self.count += 1
                _git(["worktree", "add", "-q", "--detach", "--no-checkout", str(path), start],
                     self.repo)
        _git(["checkout", "-q", "-f", "-B", branch, start, "--"], path)
        _git(["clean", "-q", "-ffdx"], path)
        return path

    def release(self, path: Path) -> None:
        self.free.put(path)


def _step_order(ws: dict[str, Any]) -> list[dict[str, Any]]:
    by_id = {s["id"]: s for s in ws["steps"]}
    sorter = graphlib.TopologicalSorter({s["id"]: s.get("depends_on", []) for s in ws["steps"]})
    return [by_id[i] for i in sorter.static_order()]


def _run_step(ws: dict[str, Any], step: dict[str, Any], cwd: Path, logs: Path) -> None:
    with open(logs / f"{ws['id']}.{step['id']}.log", "wb") as log:
        proc = subprocess.run(["/bin/sh", "-c", step["run"]], cwd=cwd,
                              stdin=subprocess.DEVNULL, stdout=log,
                              stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{ws['id']}/{step['id']} exited {proc.returncode}")


def _execute(workstreams: dict[str, dict[str, Any]], parallel: int,
             run_workstream: Callable[[dict[str, Any], list[str]], str]) -> None:
    """The workstream DAG on ``parallel`` threads; ``run_workstream`` gets its deps' results."""
    results: dict[str, str] = {}
    sorter = graphlib.TopologicalSorter({i: ws.get("depends_on", [])
                                         for i, ws in workstreams.items()})
    sorter.prepare()
    running: dict[Future[str], str] = {}
    with ThreadPoolExecutor(max_workers=parallel) as executor:
        while sorter.is_active():
            for ws_id in sorter.get_ready():
                ws = workstreams[ws_id]
                deps = [results[d] for d in ws.get("depends_on", [])]
                running[executor.submit(run_workstream, ws, deps)] = ws_id
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                ws_id = running.pop(future)
                results[ws_id] = future.result()
                sorter.done(ws_id)


def run_plan_nogit(plan: dict[str, Any], repo: Path, parallel: int) -> dict[str, Any]:
    """``plan`` without git: every step in one shared directory; DAG, processes, SQLite only."""
    started = time.perf_counter()
    logs = repo / ".floor" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    work = repo / ".floor" / "work"
    work.mkdir(exist_ok=True)
    store = _Store(repo / ".floor" / "floor.db")
    workstreams = {ws["id"]: ws for ws in plan["workstreams"]}
    store.insert_pending([(ws["id"], s["id"]) for ws in workstreams.values() for s in ws["steps"]])

    def run_workstream(ws: dict[str, Any], deps: list[str]) -> str:
        for step in _step_order(ws):
            store.set(ws["id"], step["id"], "running")
            _run_step(ws, step, work, logs)
            store.set(ws["id"], step["id"], "completed")
        return ws["id"]

    _execute(workstreams, parallel, run_workstream)
    steps = sum(len(ws["steps"]) for ws in workstreams.values())
    return {"duration_s": round(time.perf_counter() - started, 4), "steps": steps,
            "workstreams": len(workstreams), "slots": 0, "git": False, "ok": True}


def run_plan(plan: dict[str, Any], repo: Path, parallel: int) -> dict[str, Any]:
    """Execute ``plan`` in ``repo`` with ``parallel`` threads; return the timings."""
    # Imported here: the --no-git floor must not pay for it (start-up, RSS).
    import pygit2

    started = time.perf_counter()
    (repo / ".floor" / "logs").mkdir(parents=True, exist_ok=True)
    with open(repo / ".git" / "info" / "exclude", "a", encoding="utf-8") as exclude:
        exclude.write("/.floor/\n")
    store = _Store(repo / ".floor" / "floor.db")
    workstreams = {ws["id"]: ws for ws in plan["workstreams"]}
    store.insert_pending([(ws["id"], s["id"]) for ws in workstreams.values() for s in ws["steps"]])
    base = _git(["rev-parse", "HEAD^{commit}"], repo).strip()
    pool = _Pool(repo)
    signature = pygit2.Signature("Bench", "bench@example.com")
    logs = repo / ".floor" / "logs"

    def run_workstream(ws: dict[str, Any], deps: list[str]) -> str:
        start = deps[0] if deps else base
        branch = f"floor/{ws['id']}"
        path = pool.acquire(branch, start)
        try:
            git = pygit2.Repository(str(path))
            head = git.head.target
            for step in _step_order(ws):
                store.set(ws["id"], step["id"], "running")
                _run_step(ws, step, path, logs)
                index = git.index
                index.read(False)
                index.add_all()
                index.write()
                tree = index.write_tree()
                head = git.create_commit("HEAD", signature, signature,
                                         f"floor: {ws['id']}/{step['id']}\n", tree, [head])
                store.set(ws["id"], step["id"], "completed", str(head))
            git.free()
            return str(head)
        finally:
            pool.release(path)

    _execute(workstreams, parallel, run_workstream)
    steps = sum(len(ws["steps"]) for ws in workstreams.values())
    return {"duration_s": round(time.perf_counter() - started, 4), "steps": steps,
            "workstreams": len(workstreams), "slots": pool.count, "git": True, "ok": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("plan", type=Path)
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--no-git", action="store_true",
                        help="no worktrees, no checkpoints: steps share <repo>/.floor/work")
    args = parser.parse_args()
    plan = json.loads(args.plan.read_text(encoding="utf-8"))
    run = run_plan_nogit if args.no_git else run_plan
    result = run(plan, args.repo.resolve(), args.parallel)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
