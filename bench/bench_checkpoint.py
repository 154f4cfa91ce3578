"""Checkpoint cost per step: pygit2 in-process (stage_all + commit_staged) vs the git CLI.

Run: ``.venv/bin/python bench/bench_checkpoint.py [--iterations 300]``; prints JSON.
Each iteration changes one file in a small repository (~50 files) and records a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aidp.workspace import WorktreePool, commit_staged, run_git, stage_all

TRAILERS = {"Aidp-Run": "BENCH", "Aidp-Workstream": "ws", "Aidp-Step": "s", "Aidp-Attempt": "1"}


def _make_repo(path: Path, files: int) -> None:
    path.mkdir()
    run_git(["init", "-q", "-b", "main"], path)
    run_git(["config", "user.name", "Bench"], path)
    run_git(["config", "user.email", "bench@example.com"], path)
    for i in range(files):
        (path / f"dir{i % 5}").mkdir(exist_ok=True)
        (path / f"dir{i % 5}" / f"file{i}.txt").write_text(f"content {i}\n")
    run_git(["add", "-A"], path)
    run_git(["commit", "-q", "-m", "initial"], path)


def _summary(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    return {
        "median_ms": round(statistics.median(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "p90_ms": round(ms[int(len(ms) * 0.9)], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--files", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        _make_repo(repo, args.files)
        pool = WorktreePool(repo)

        wt = pool.acquire("bench/pygit2", "main")
        target = wt.path / "dir0" / "file0.txt"
        pygit2_s = []
        for i in range(args.iterations):
            target.write_text(f"pygit2 {i}\n")
            start = time.perf_counter()
            changed = stage_all(wt)
            commit_staged(wt, message=f"step {i}", trailers=TRAILERS)
            pygit2_s.append(time.perf_counter() - start)
            assert changed == ["dir0/file0.txt"], changed
        pool.release(wt)

        wt = pool.acquire("bench/cli", "main")
        target = wt.path / "dir0" / "file0.txt"
        message = "step\n\n" + "\n".join(f"{k}: {v}" for k, v in TRAILERS.items())
        cli_s = []
        for i in range(args.iterations):
            target.write_text(f"cli {i}\n")
            start = time.perf_counter()
            subprocess.run(["git", "add", "-A"], cwd=wt.path, check=True, stdin=subprocess.DEVNULL)
            subprocess.run(
                ["git", "commit", "-q", "--no-verify", "-m", message],
                cwd=wt.path,
                check=True,
                stdin=subprocess.DEVNULL,
            )
            cli_s.append(time.perf_counter() - start)
        pool.release(wt)

    pygit2_summary = _summary(pygit2_s)
    cli_summary = _summary(cli_s)
    json.dump(
        {
            "benchmark": "checkpoint",
            "iterations": args.iterations,
            "repo_files": args.files,
            "pygit2": pygit2_summary,
            "git_cli": cli_summary,
            "speedup_median": round(cli_summary["median_ms"] / pygit2_summary["median_ms"], 1),
        },
        sys.stdout,
        indent=2,
    )
    print()


if __name__ == "__main__":
    main()
