"""Spec index: incremental reindex after one file changed vs a full rebuild, same run.

Run: ``.venv/bin/python bench/bench_specs_index.py [--specs 1000] [--reps 5]``; prints JSON.
Each repetition edits one spec of ``--specs`` capabilities (two requirements, three scenarios
each) and measures ``SpecIndex.update`` (hashes every file, reparses one) against
``SpecIndex.rebuild`` (reparses all) on the same tree, plus a no-change update. The floor is
reading and hashing every file in plain Python, which an incremental update cannot avoid.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aidp.specs.index import SpecIndex
from tests.specs.test_index import many_specs


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--specs", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = many_specs(Path(tmp), args.specs)
        files = sorted((root / "openspec").rglob("*.md"))
        target = root / "openspec" / "specs" / "cap-0000" / "spec.md"
        original = target.read_text()
        incremental: list[float] = []
        unchanged: list[float] = []
        full: list[float] = []
        floor: list[float] = []
        rows: list[int] = []
        with SpecIndex.for_root(root) as index:
            index.update(root)
            for rep in range(args.reps):
                target.write_text(original.replace("end sessions", f"end sessions ({rep})"))
                start = time.perf_counter()
                stats = index.update(root)
                incremental.append(time.perf_counter() - start)
                rows.append(stats.rows_written)
                start = time.perf_counter()
                index.update(root)
                unchanged.append(time.perf_counter() - start)
                start = time.perf_counter()
                index.rebuild(root)
                full.append(time.perf_counter() - start)
                start = time.perf_counter()
                for path in files:
                    hashlib.sha256(path.read_bytes()).hexdigest()
                floor.append(time.perf_counter() - start)
        result = {
            "specs": args.specs, "files": len(files), "reps": args.reps,
            "incremental_ms": _median_ms(incremental),
            "unchanged_ms": _median_ms(unchanged),
            "full_rebuild_ms": _median_ms(full),
            "hash_floor_ms": _median_ms(floor),
            "rows_written_incremental": statistics.median(rows),
            "incremental_vs_full": round(statistics.median(incremental)
                                         / statistics.median(full), 4),
            "incremental_vs_floor": round(statistics.median(incremental)
                                          / statistics.median(floor), 2),
        }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
