"""``aidp serve`` for the benchmarks: started on a free port in its own session, stopped with
SIGTERM (SIGKILL after 30 s). Used by ``bench_api.py``, ``bench_dag.py`` and
``bench_dashboard.py``."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path


def start(argv: list[str], repo: Path, env: Mapping[str, str] | None, log: Path
          ) -> tuple[subprocess.Popen[bytes], str]:
    """Run ``argv`` (an ``aidp`` command line ending in ``serve --port 0``) in ``repo``, its
    output to ``log``; return the process and the API's URL it printed (within 60 s)."""
    with log.open("w") as sink:
        proc = subprocess.Popen(argv, cwd=repo, env=None if env is None else dict(env),
                                stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 60
    while "http://" not in (line := log.read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise SystemExit(f"aidp serve did not start: {line}")
        time.sleep(0.05)
    return proc, line.split()[2]


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the service's process group, SIGKILL if it is still there after 30 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
