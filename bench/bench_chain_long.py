"""Does a step cost the same at the end of a long chain as at its start? ``aidp run`` on chains
of 200 and 2,000 ``true`` steps (one workstream, a checkpoint commit per step), beside a no-git
floor.

Run: ``.venv/bin/python bench/bench_chain_long.py [--sizes 200 2000] [--reps 3]``; prints one
line per run and a summary (medians), ``--json`` for the figures as JSON.

Per step, for aidp: the gaps between consecutive ``step.completed`` events of the run's own
journal (so start-up, validation, preparing the worktree and the summary are left out), over
all steps and over the first and the last 10 % of them. The **no-git floor** does in one
process what aidp must do per step besides git: :mod:`graphlib` orders the steps, a worker
thread runs each one with :func:`subprocess.run` (``/bin/sh -c true``, output to a log file)
and every state change is one SQLite commit (WAL, ``synchronous=NORMAL``, ``BEGIN IMMEDIATE``):
``running``, then ``completed``. Its per-step figure is its own timer over the steps.

Also for aidp, **CPU** ms per step (aidp and the processes it ran, from ``/proc``), sampled
every 50 ms against the number of steps completed: on a shared machine the wall clock moves
with the load, the CPU spent per step much less.

Figures: ``growth`` = last 10 % / first 10 % (1.0: flat), ``ratio`` = 2,000-step per step /
200-step per step (target <= 1.1), ``above_floor`` = aidp per step - floor per step at 200
steps (target <= 2.5 ms). aidp and the floor run alternately, on fresh repositories, so a busy
machine moves both.
"""

from __future__ import annotations

import argparse
import bisect
import graphlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
AIDP = Path(sys.executable).with_name("aidp")


def make_repo(where: Path, steps: int) -> tuple[Path, Path]:
    """A one-commit repository and a plan of one workstream: a chain of ``steps`` steps."""
    repo = where / "repo"
    (repo / "chain").mkdir(parents=True)
    (repo / "README.md").write_text("a\n")
    (repo / "chain" / "x.txt").write_text("b\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run([*git, *args], cwd=repo, check=True)
    chain = [{"id": "s0", "run": "true"}] + [
        {"id": f"s{i}", "run": "true", "depends_on": [f"s{i - 1}"]} for i in range(1, steps)]
    plan = where / "plan.json"
    plan.write_text(json.dumps({"version": 1, "workstreams": [
        {"id": "chain", "scope": ["chain/**"], "steps": chain}]}))
    return repo, plan


def per_step(times: list[float]) -> dict[str, float]:
    """ms per step from the completion times of consecutive steps: all, first and last 10 %."""
    k = max(1, len(times) // 10)
    return {"all": (times[-1] - times[0]) / (len(times) - 1) * 1000,
            "first": (times[k] - times[0]) / k * 1000,
            "last": (times[-1] - times[-1 - k]) / k * 1000}


def _cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and of its children it reaped (user + system)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _cpu_per_step(samples: list[tuple[int, float]], steps: int) -> dict[str, float]:
    """CPU ms per step between completion counts, from (steps completed, CPU s) samples."""

    def cpu_at(count: int) -> tuple[int, float]:
        return next(((n, c) for n, c in samples if n >= count), samples[-1])

    k = max(1, steps // 10)
    figures = {}
    for name, (lo, hi) in {"cpu_all": (1, steps - 1), "cpu_first": (1, 1 + k),
                           "cpu_last": (steps - 1 - k, steps - 1)}.items():
        (n0, c0), (n1, c1) = cpu_at(lo), cpu_at(hi)
        figures[name] = (c1 - c0) / max(1, n1 - n0) * 1000
    return figures


def run_aidp(steps: int, pythonpath: str | None) -> dict[str, float]:
    """One ``aidp run``: wall ms per step from its journal; CPU ms per step (aidp and the
    processes it ran) from /proc, sampled every 50 ms against the steps completed so far."""
    with tempfile.TemporaryDirectory(prefix="aidp-chainlong-") as tmp:
        repo, plan = make_repo(Path(tmp), steps)
        env = dict(os.environ)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        db = repo / ".aidp" / "aidp.db"
        samples: list[tuple[int, float]] = []
        with subprocess.Popen([str(AIDP), "run", str(plan), "--repo", str(repo),
                               "--parallel", "2", "--json"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) as proc:
            out: list[str] = []
            reader = threading.Thread(target=lambda: out.append(proc.stdout.read()
                                                                if proc.stdout else ""))
            reader.start()
            watch: sqlite3.Connection | None = None
            while proc.poll() is None:
                time.sleep(0.05)
                if watch is None and db.exists():
                    watch = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                if watch is None:
                    continue
                try:  # the journal's last id: one index lookup, not a scan of the events
                    last = watch.execute("SELECT max(id) FROM events").fetchone()[0]
                    samples.append((last or 0, _cpu_s(proc.pid)))
                except (sqlite3.OperationalError, FileNotFoundError, ProcessLookupError):
                    continue
            reader.join()
            if watch is not None:
                watch.close()
        if proc.returncode != 0:
            raise RuntimeError(f"aidp run exited {proc.returncode}")
        summary = json.loads(out[0])
        conn = sqlite3.connect(db)
        rows = conn.execute(
            "SELECT id, ts FROM events WHERE kind = 'step.completed' ORDER BY id").fetchall()
        conn.close()
    if len(rows) != steps:
        raise RuntimeError(f"{len(rows)} of {steps} steps completed")
    ids = [row[0] for row in rows]
    counted = [(bisect.bisect_right(ids, last), cpu) for last, cpu in samples]
    return {**per_step([row[1] for row in rows]), **_cpu_per_step(counted, steps),
            "duration_s": summary["duration_s"]}


def run_floor(steps: int) -> dict[str, float]:
    """The no-git floor (see the module docstring) in this process."""
    with tempfile.TemporaryDirectory(prefix="aidp-chainlong-floor-") as tmp:
        where = Path(tmp)
        (where / "logs").mkdir()
        conn = sqlite3.connect(where / "floor.db", isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("CREATE TABLE steps (step TEXT PRIMARY KEY, status TEXT)")
        lock = threading.Lock()

        def set_state(step: str, status: str) -> None:
            with lock:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("UPDATE steps SET status = ? WHERE step = ?", (status, step))
                conn.execute("COMMIT")

        ids = [f"s{i}" for i in range(steps)]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO steps VALUES (?, 'pending')", [(i,) for i in ids])
        conn.execute("COMMIT")
        order = list(graphlib.TopologicalSorter(
            {ids[i]: [ids[i - 1]] if i else [] for i in range(steps)}).static_order())
        times: list[float] = []

        def work() -> None:
            for step in order:
                set_state(step, "running")
                with open(where / "logs" / f"{step}.log", "wb") as log:
                    subprocess.run(["/bin/sh", "-c", "true"], cwd=where,
                                   stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, check=True)
                set_state(step, "completed")
                times.append(time.time())

        started = time.perf_counter()
        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
        duration = time.perf_counter() - started
        conn.close()
    return {**per_step(times), "duration_s": duration}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--pythonpath", default=None,
                        help="PYTHONPATH for aidp (a worktree's src); default: the installed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    samples: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.reps):
        for steps in args.sizes:
            for name in ("aidp", "floor"):
                figures = (run_aidp(steps, args.pythonpath) if name == "aidp"
                           else run_floor(steps))
                samples.setdefault(f"{name}/{steps}", []).append(figures)
                cpu = (f"  CPU ms/step all {figures['cpu_all']:6.2f}  first 10% "
                       f"{figures['cpu_first']:6.2f}  last 10% {figures['cpu_last']:6.2f}"
                       if "cpu_all" in figures else "")
                print(f"{name:5} {steps:5} steps: ms/step all {figures['all']:6.2f}  first 10% "
                      f"{figures['first']:6.2f}  last 10% {figures['last']:6.2f}{cpu}  "
                      f"(load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    medians = {key: {f: statistics.median(s[f] for s in runs) for f in runs[0]}
               for key, runs in samples.items()}
    result: dict[str, Any] = {"medians": medians, "samples": samples}
    for m in medians.values():
        m["growth"] = m["last"] / m["first"]
        if "cpu_all" in m:
            m["cpu_growth"] = m["cpu_last"] / m["cpu_first"]
    small, large = min(args.sizes), max(args.sizes)
    if small != large:
        result["ratio"] = medians[f"aidp/{large}"]["all"] / medians[f"aidp/{small}"]["all"]
        result["cpu_ratio"] = (medians[f"aidp/{large}"]["cpu_all"]
                               / medians[f"aidp/{small}"]["cpu_all"])
    result["above_floor_ms"] = medians[f"aidp/{small}"]["all"] - medians[f"floor/{small}"]["all"]
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        for key, m in medians.items():
            cpu = (f"  CPU ms/step {m['cpu_all']:6.2f}  first 10% {m['cpu_first']:6.2f}  "
                   f"last 10% {m['cpu_last']:6.2f}  growth {m['cpu_growth']:.2f}"
                   if "cpu_all" in m else "")
            print(f"{key:12} ms/step {m['all']:6.2f}  first 10% {m['first']:6.2f}  "
                  f"last 10% {m['last']:6.2f}  growth {m['growth']:.2f}{cpu}")
        if "ratio" in result:
            print(f"aidp per step, {large} / {small} steps: {result['ratio']:.2f}, CPU "
                  f"{result['cpu_ratio']:.2f} (target <= 1.1)")
        print(f"aidp above the no-git floor at {small} steps: {result['above_floor_ms']:.2f} "
              "ms/step (target <= 2.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
