"""A pooled worktree's start in-process (libgit2) against the git CLI, by repository size.

Run: ``.venv/bin/python bench/bench_native.py [--files 100 1000 5000 20000] [--rounds 20]``;
prints JSON. For each size it makes a repository of that many files and one pooled worktree, then
alternately starts it at two commits that differ in one file (the case of a reused slot), with

* ``native``: :func:`aidp.workspace.native.checkout_clean` (one libgit2 checkout: force, remove
  untracked and ignored files);
* ``cli``: ``git checkout -q -f --detach C --`` + ``git clean -q -ffdx`` (what aidp did before).

For each it reports the median wall time and the longest gap a 1 ms ticker thread saw while the
checkout ran in another thread: how long the checkout kept other Python threads (the other slots'
orchestration) from running. ``MAX_NATIVE_FILES`` in :mod:`aidp.workspace.native` is chosen from
these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pygit2

from aidp.workspace.native import checkout_clean

GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def git(args: list[str], cwd: Path, data: bytes | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True,
                          check=True, env=GIT_ENV).stdout.decode()


def make_repo(root: Path, files: int) -> tuple[Path, str, str]:
    """A repository of ``files`` files in 100-file directories, and two commits one file apart."""
    repo = root / f"repo-{files}"
    repo.mkdir()
    git(["init", "-q", "-b", "main"], repo)
    stream = [b"commit refs/heads/main\ncommitter B <b@example.com> 0 +0000\ndata 2\nA\n"]
    for i in range(files):
        body = b"line of file %d\n" % i * 10
        stream.append(b"M 100644 inline d%03d/f%05d.txt\ndata %d\n%s\n"
                      % (i // 100, i, len(body), body))
    stream.append(b"commit refs/heads/main\ncommitter B <b@example.com> 1 +0000\ndata 2\nB\n"
                  b"M 100644 inline d000/f00000.txt\ndata 8\nchanged\n\n")
    git(["fast-import", "--quiet"], repo, b"".join(stream))
    first = git(["rev-parse", "main~1"], repo).strip()
    second = git(["rev-parse", "main"], repo).strip()
    git(["worktree", "add", "-q", "--detach", str(root / f"slot-{files}"), first], repo)
    return root / f"slot-{files}", first, second


class Ticker:
    """A thread sleeping 1 ms at a time; the longest gap between its wake-ups."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now

    def __enter__(self) -> Ticker:
        self._thread.start()
        time.sleep(0.005)
        self.longest = 0.0
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(slot: Path, commits: tuple[str, str], rounds: int, native: bool) -> dict[str, Any]:
    walls: list[float] = []
    gaps: list[float] = []
    repo = pygit2.Repository(str(slot))
    for i in range(rounds):
        commit = commits[i % 2]
        (slot / "untracked.txt").write_text("left by a step\n")
        with Ticker() as ticker:
            start = time.perf_counter()
            if native:
                checkout_clean(repo, commit)
            else:
                git(["checkout", "-q", "-f", "--detach", commit, "--"], slot)
                git(["clean", "-q", "-ffdx"], slot)
            walls.append(time.perf_counter() - start)
        gaps.append(ticker.longest)
    repo.free()
    return {"median_ms": round(statistics.median(walls) * 1000, 2),
            "max_ticker_gap_ms": round(max(gaps) * 1000, 2),
            "median_ticker_gap_ms": round(statistics.median(gaps) * 1000, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, nargs="+", default=[100, 1_000, 5_000, 20_000])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="aidp-native-") as tmp:
        for files in args.files:
            slot, first, second = make_repo(Path(tmp), files)
            measure(slot, (first, second), 2, native=False)  # warm the page cache
            row: dict[str, Any] = {"files": files}
            for label, native in (("cli", False), ("native", True), ("cli_again", False)):
                row[label] = measure(slot, (first, second), args.rounds, native)
            row["native_over_cli"] = round(
                row["native"]["median_ms"] / row["cli"]["median_ms"], 3)
            rows.append(row)
    print(json.dumps({"loadavg": os.getloadavg()[0], "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
