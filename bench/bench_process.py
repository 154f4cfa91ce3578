"""Per-step overhead of ``run_process`` over a bare ``subprocess.run``.

Runs ``true`` N times each way (interleaved, after a warm-up) and prints JSON with the means and
medians in milliseconds. Run: ``.venv/bin/python bench/bench_process.py [N]``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aidp.process.runner import CappedLog, build_env, run_process


def main() -> None:
    """Measure and print the figures."""
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    env = build_env(os.environ, [], {})
    cwd = Path.cwd()
    bare: list[float] = []
    ours: list[float] = []
    ours_new_log: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        shared = CappedLog(Path(tmp) / "shared.log")
        for i in range(iterations + 20):
            t0 = time.perf_counter()
            subprocess.run(["true"], cwd=cwd, env=env, check=False)
            t1 = time.perf_counter()
            run_process(["true"], cwd=cwd, env=env, timeout_s=30, log=shared)
            t2 = time.perf_counter()
            with CappedLog(Path(tmp) / f"{i}.log") as log:
                run_process(["true"], cwd=cwd, env=env, timeout_s=30, log=log, mask=["s3cret"])
            t3 = time.perf_counter()
            if i >= 20:  # warm-up
                bare.append(t1 - t0)
                ours.append(t2 - t1)
                ours_new_log.append(t3 - t2)
        shared.close()

    def ms(values: list[float]) -> dict[str, float]:
        return {
            "mean_ms": round(statistics.fmean(values) * 1000, 3),
            "median_ms": round(statistics.median(values) * 1000, 3),
        }

    result = {
        "iterations": iterations,
        "subprocess_run_true": ms(bare),
        "run_process_true": ms(ours),
        "run_process_true_new_log_and_mask": ms(ours_new_log),
        "overhead_mean_ms": round((statistics.fmean(ours) - statistics.fmean(bare)) * 1000, 3),
        "overhead_median_ms": round((statistics.median(ours) - statistics.median(bare)) * 1000, 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
