"""cProfile of an ``aidp`` command with every thread profiled, merged into one stats file.

Run: ``.venv/bin/python bench/profile_run.py OUT.prof -- run PLAN --repo REPO --json``, then
``.venv/bin/python -m pstats OUT.prof`` (or let this script print the top entries: ``--top 25``).

``python -m cProfile`` profiles only the main thread, and aidp's main thread mostly waits for the
step threads; here each thread gets its own :class:`cProfile.Profile` (``Thread.run`` is wrapped)
and the profiles are added together at exit.
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


def _profiled_run(original: Any) -> Any:
    def run(self: threading.Thread) -> None:
        profile = cProfile.Profile()
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
    argv = sys.argv[1:]
    if "--" not in argv:
        parser.error("give the aidp arguments after --")
    split = argv.index("--")
    args = parser.parse_args(argv[:split])
    aidp_args = argv[split + 1 :]
    threading.Thread.run = _profiled_run(threading.Thread.run)  # type: ignore[method-assign]
    from aidp.cli.main import main as aidp_main

    main_profile = cProfile.Profile()
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
