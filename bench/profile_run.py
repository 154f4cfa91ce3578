"""cProfile of an ``aidp`` command with every thread profiled, merged into one stats file.

Run: ``.venv/bin/python bench/profile_run.py OUT.prof -- run PLAN --repo REPO --json``, then
``.venv/bin/python -m pstats OUT.prof`` (or let this script print the top entries: ``--top 25``).

``python -m cProfile`` profiles only the main thread, and aidp's main thread mostly waits for the
step threads; here each thread gets its own :class:`cProfile.Profile` (``Thread.run`` is wrapped)
and the profiles are added together at exit. ``--cpu`` times with each thread's CPU clock
(``time.thread_time``) instead of the wall clock: waits (locks, child processes, a busy
machine's run queue) then drop out and what is left is aidp's own work.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import threading
from typing import Any

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()
_timer: list[Any] = []


def _new_profile() -> cProfile.Profile:
    return cProfile.Profile(*_timer)


def _profiled_run(original: Any) -> Any:
    def run(self: threading.Thread) -> None:
        profile = _new_profile()
        with _lock:
            _profiles.append(profile)
        profile.enable()
        try:
            original(self)
        finally:
            profile.disable()

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--cpu", action="store_true", help="per-thread CPU time, not wall time")
    argv = sys.argv[1:]
    if "--" not in argv:
        parser.error("give the aidp arguments after --")
    split = argv.index("--")
    args = parser.parse_args(argv[:split])
    aidp_args = argv[split + 1 :]
    if args.cpu:
        import time

        _timer.append(time.thread_time)
    threading.Thread.run = _profiled_run(threading.Thread.run)  # type: ignore[method-assign]
    from aidp.cli.main import main as aidp_main

    main_profile = _new_profile()
    code = 0
    main_profile.enable()
    try:
        aidp_main(aidp_args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        main_profile.disable()
    stats = pstats.Stats(main_profile, stream=sys.stderr)
    for profile in _profiles:
        stats.add(profile)
    stats.dump_stats(args.out)
    if args.top:
        stats.sort_stats(args.sort).print_stats(args.top)
    return code


if __name__ == "__main__":
    sys.exit(main())
