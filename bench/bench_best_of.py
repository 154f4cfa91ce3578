"""Best-of-N: what a round of N candidates costs beside one attempt, in the same invocation.

Run: ``.venv/bin/python bench/bench_best_of.py [--workstreams 10] [--sleep 0.2] [--n 1,2,3,4]
[--parallel 2] [--reps 3] [--out FILE]``; prints a table and JSON.

The plan: ``workstreams`` one-step workstreams whose step sleeps ``S`` seconds and writes
lines to a file of its own (``seq {candidate}``: the candidates differ, the smallest diff
wins). ``n`` = 1 is a plain step (the floor); ``n`` > 1 gives the step ``best_of: {n: N}``.
Candidates run at once, beside the ``--parallel`` slots, so their sleeps overlap and the ideal
makespan does not grow with ``n``; what grows is aidp's own work per candidate: a pooled
worktree, the attempt's rows, the tool's process, the checkpoint commit, the diff. Reported:
median wall of the run (from its JSON summary), and per extra candidate ``(wall(n) - wall(1))
/ (workstreams x (n - 1))``. Figures, never asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import AIDP, _init, git


def _plan(workstreams: int, sleep: float, n: int) -> dict[str, Any]:
    def step(i: int) -> dict[str, Any]:
        made: dict[str, Any] = {"id": "s", "run": f"sleep {sleep}; seq {{candidate}} > w{i}.txt"
                                if n > 1 else f"sleep {sleep}; echo 1 > w{i}.txt"}
        if n > 1:
            made["best_of"] = {"n": n}
        return made

    return {"version": 1, "workstreams": [
        {"id": f"w{i}", "scope": [f"w{i}.txt"], "steps": [step(i)]} for i in range(workstreams)]}


def _once(root: Path, plan: dict[str, Any], parallel: int) -> float:
    repo = root / "repo"
    _init(repo)
    (repo / "README.md").write_text("bench\n", encoding="utf-8")
    git(["add", "-A"], repo)
    git(["commit", "-q", "-m", "init"], repo)
    path = root / "plan.json"
    path.write_text(json.dumps(plan), encoding="utf-8")
    done = subprocess.run([str(AIDP), "run", str(path), "--repo", str(repo), "--parallel",
                           str(parallel), "--json"], capture_output=True, text=True, check=True,
                          stdin=subprocess.DEVNULL, timeout=600)
    return float(json.loads(done.stdout)["duration_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workstreams", type=int, default=10)
    parser.add_argument("--sleep", type=float, default=0.2)
    parser.add_argument("--n", default="1,2,3,4")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sizes = [int(x) for x in args.n.split(",")]
    walls: dict[int, list[float]] = {n: [] for n in sizes}
    for rep in range(args.reps):  # alternately, so that load moves every row together
        for n in sizes:
            with tempfile.TemporaryDirectory(prefix="aidp-bench-bo-") as tmp:
                walls[n].append(_once(Path(tmp), _plan(args.workstreams, args.sleep, n),
                                      args.parallel))
            print(f"rep {rep + 1} n={n}: {walls[n][-1]:.2f} s", file=sys.stderr)
    floor = statistics.median(walls[sizes[0]])
    rows = []
    for n in sizes:
        wall = statistics.median(walls[n])
        extra = (wall - floor) / (args.workstreams * (n - sizes[0])) if n > sizes[0] else None
        rows.append({"n": n, "wall_s": round(wall, 3), "x_floor": round(wall / floor, 3),
                     "ms_per_extra_candidate": None if extra is None else round(extra * 1000, 1),
                     "walls_s": [round(w, 3) for w in walls[n]]})
    print(f"{'n':>3} {'wall':>8} {'x n=1':>7} {'ms/extra candidate':>19}")
    for row in rows:
        extra = row["ms_per_extra_candidate"]
        print(f"{row['n']:>3} {row['wall_s']:>7.2f}s {row['x_floor']:>7.2f} "
              f"{'-' if extra is None else f'{extra:.1f}':>19}")
    result = {"workstreams": args.workstreams, "sleep_s": args.sleep,
              "parallel": args.parallel, "reps": args.reps, "rows": rows}
    print(json.dumps(result, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
