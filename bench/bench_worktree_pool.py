"""Fresh ``git worktree add`` vs re-preparing a pooled worktree, on a 20,000-file repository.

Run: ``.venv/bin/python bench/bench_worktree_pool.py [--files 20000] [--rounds 3]``; prints JSON.

The repository is generated with ``git fast-import`` (one commit, no working-tree files written),
plus a branch ``variant`` that differs from ``main`` in one file. "fresh" is what creating a
worktree per workstream costs; "pooled" is :meth:`WorktreePool.acquire` on an idle slot for a new
branch at the other start point (``checkout -f -B`` + ``clean -ffdx``). The checkout and clean
parts are also timed on their own.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aidp.workspace import WorktreePool, run_git


def _generate(repo: Path, files: int) -> None:
    """One commit with ``files`` files in 100-file directories, then a one-file variant."""
    run_git(["init", "-q", "-b", "main"], repo)
    run_git(["config", "user.name", "Bench"], repo)
    run_git(["config", "user.email", "bench@example.com"], repo)
    chunks: list[bytes] = []
    body = "".join(f"line {i} of a typical source file\n" for i in range(20)).encode()
    chunks.append(b"blob\nmark :1\ndata %d\n%s\n" % (len(body), body))
    header = b"commit refs/heads/main\nmark :2\ncommitter Bench <b@example.com> 0 +0000\n"
    chunks.append(header + b"data 7\ninitial\n")
    for i in range(files):
        # Distinct content per file would be more realistic for packs but not for checkout
        # cost, which is dominated by writing files; same blob keeps generation fast.
        chunks.append(b"M 100644 :1 src/d%03d/file%05d.py\n" % (i // 100, i))
    variant = b"variant content\n"
    chunks.append(b"\nblob\nmark :3\ndata %d\n%s\n" % (len(variant), variant))
    chunks.append(
        b"commit refs/heads/variant\nmark :4\ncommitter Bench <b@example.com> 1 +0000\n"
        b"data 8\nvariant\nfrom :2\nM 100644 :3 src/d000/file00000.py\n\n"
    )
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input=b"".join(chunks), check=True)
    # The main worktree stays unpopulated: only the object database matters here.
    run_git(["read-tree", "main"], repo)


def _timed(func: object) -> float:
    assert callable(func)
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to build (default: tmp)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(dir=args.dir))
    try:
        repo = tmp / "repo"
        repo.mkdir()
        gen_s = _timed(lambda: _generate(repo, args.files))

        fresh: list[float] = []
        for i in range(args.rounds):
            path = tmp / f"fresh-{i}"
            fresh.append(
                _timed(
                    lambda p=path: run_git(  # type: ignore[misc]
                        ["worktree", "add", "-q", "--detach", str(p), "main"], repo
                    )
                )
            )
            run_git(["worktree", "remove", "--force", str(path)], repo)

        pool = WorktreePool(repo, root=tmp / "pool")
        create_s = _timed(lambda: pool.release(pool.acquire("bench/0", "main")))
        pooled: list[float] = []
        starts = ["variant", "main"]
        for i in range(args.rounds):
            wt = None

            def prepare(index: int = i) -> None:
                nonlocal wt
                wt = pool.acquire(f"bench/{index + 1}", starts[index % 2])

            pooled.append(_timed(prepare))
            assert wt is not None
            # A workstream leaves some untracked output behind, as a real one would.
            (wt.path / "src" / "d001" / "generated.txt").write_text("out\n")
            pool.release(wt)

        wt = pool.acquire("bench/parts", "main")
        checkout_s = _timed(
            lambda: run_git(["checkout", "-q", "-f", "-B", "bench/parts", "variant", "--"], wt.path)
        )
        clean_s = _timed(lambda: run_git(["clean", "-q", "-ffdx"], wt.path))
        status_s = _timed(lambda: run_git(["status", "--porcelain"], wt.path))
        release_s = _timed(lambda: pool.release(wt))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    fresh_median = statistics.median(fresh)
    pooled_median = statistics.median(pooled)
    json.dump(
        {
            "benchmark": "worktree_pool",
            "files": args.files,
            "rounds": args.rounds,
            "generate_repo_s": round(gen_s, 2),
            "fresh_worktree_add_s": [round(s, 3) for s in fresh],
            "pool_first_acquire_s": round(create_s, 3),
            "pooled_acquire_s": [round(s, 3) for s in pooled],
            "fresh_median_s": round(fresh_median, 3),
            "pooled_median_s": round(pooled_median, 3),
            "ratio_pooled_over_fresh": round(pooled_median / fresh_median, 4),
            "target_ratio": 0.2,
            "parts_s": {
                "checkout_f_B_one_file_differs": round(checkout_s, 3),
                "clean_ffdx": round(clean_s, 3),
                "status_porcelain": round(status_s, 3),
                "release_detach_via_update_ref": round(release_s, 3),
            },
        },
        sys.stdout,
        indent=2,
    )
    print()


if __name__ == "__main__":
    main()
