"""How many ``git`` processes a command starts: a counting ``git`` first on ``PATH``.

:func:`count_git` runs a command with a directory holding a tiny ``git`` shell script first on
``PATH``. The script records its arguments in a file named after its own process id, then
``exec``\\ s the real git (``shutil.which("git")``, resolved before ``PATH`` is changed), so the
command runs as usual, a little slower (one ``sh`` start per git process): count with it, never
time with it. Git processes started by an absolute path, git's own children (which git finds in
its exec path, not on ``PATH``) and in-process libgit2 (pygit2) calls are not counted.

``python bench/gitcount.py -- CMD ARGS...`` prints the counts of one command as JSON.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

# One record per git process: the arguments, each followed by a unit separator (\037), then a
# record separator (\036; arguments may hold newlines: `commit -m`). A file per process id (a
# pid is not reused while its process lives) so that concurrent git processes never interleave
# their records; a reused pid appends its record after the first.
_SHIM = """#!/bin/sh
{{ printf '%s\\037' "$@"; printf '\\036'; }} >> "{log}/$$"
exec {git} "$@"
"""

# git's global options that take a value as the next argument (`git -C DIR status`).
_OPTIONS_WITH_VALUE = {"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--exec-path",
                       "--super-prefix", "--config-env"}


def subcommand(args: list[str]) -> str:
    """The git subcommand of one invocation's arguments: the first word after global options."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _OPTIONS_WITH_VALUE:
            skip = True
        elif arg and not arg.startswith("-"):
            return arg
    return "(none)"


def count_git(argv: list[str], cwd: Path, env: dict[str, str] | None = None,
              *, top: int = 8) -> dict[str, Any]:
    """Run ``argv`` in ``cwd`` and count the git processes it (or its children) started.

    ``env`` is added to this process's environment (its ``PATH``, if any, still gets the shim
    first). Returns ``returncode``, ``stdout``, ``stderr``, ``git_processes`` (the total),
    ``by_subcommand`` (the ``top`` most frequent subcommands with their counts, most first)
    and ``subcommands`` (every subcommand's count).
    """
    real_git = shutil.which("git")
    if real_git is None:
        raise FileNotFoundError("git is not on PATH")
    with tempfile.TemporaryDirectory(prefix="aidp-gitcount-") as tmp:
        shim_dir, log_dir = Path(tmp) / "bin", Path(tmp) / "log"
        shim_dir.mkdir()
        log_dir.mkdir()
        shim = shim_dir / "git"
        shim.write_text(_SHIM.format(log=shlex.quote(str(log_dir)), git=shlex.quote(real_git)),
                        encoding="utf-8")
        shim.chmod(0o755)
        full_env = {**os.environ, **(env or {})}
        full_env["PATH"] = f"{shim_dir}{os.pathsep}{full_env.get('PATH', os.defpath)}"
        proc = subprocess.run(argv, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, check=False)
        calls: list[list[str]] = []
        for record in log_dir.iterdir():
            text = record.read_text(encoding="utf-8", errors="replace")
            calls.extend(line.split("\x1f")[:-1] for line in text.split("\x1e")[:-1])
    counts = Counter(subcommand(args) for args in calls)
    return {"returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr,
            "git_processes": len(calls), "by_subcommand": dict(counts.most_common(top)),
            "subcommands": dict(counts.most_common())}


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: gitcount.py -- CMD ARGS...", file=sys.stderr)
        return 2
    result = count_git(argv, Path.cwd())
    print(json.dumps({k: v for k, v in result.items() if k not in ("stdout", "stderr")}))
    return int(result["returncode"] != 0)


if __name__ == "__main__":
    sys.exit(main())
