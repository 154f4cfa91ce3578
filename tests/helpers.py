"""The one place for test helpers: git, a repository builder and the ``aidp`` CLI runner.

``tests/conftest.py`` re-exports these names and builds the ``repo`` and ``cli`` fixtures on
them; test modules import them from here (or, as many do, from ``tests.conftest``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

AIDP = str(Path(sys.executable).parent / "aidp")
IDENTITY = ("aidp tests", "tests@aidp.invalid")
GIT_ENV = {
    "GIT_AUTHOR_NAME": IDENTITY[0], "GIT_AUTHOR_EMAIL": IDENTITY[1],
    "GIT_COMMITTER_NAME": IDENTITY[0], "GIT_COMMITTER_EMAIL": IDENTITY[1],
}
DEFAULT_FILES: Mapping[str, str] = {"README.md": "# test repository\n"}


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` with the test identity; return its stdout.

    A non-zero exit fails the test with git's stderr (``AssertionError``).
    """
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL, env={**os.environ, **GIT_ENV}, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def write(path: Path, text: str | bytes) -> Path:
    """Write ``text`` (``bytes`` are written as they are) to ``path``, creating parents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def commit_files(cwd: Path, files: Mapping[str, str | bytes], message: str) -> str:
    """Write ``files`` (relative path -> text or bytes), commit everything, return the new sha."""
    for name, content in files.items():
        write(cwd / name, content)
    git(cwd, "add", "-A")
    git(cwd, "commit", "-q", "-m", message)
    return git(cwd, "rev-parse", "HEAD").strip()


def init_repo(path: Path, files: Mapping[str, str | bytes] | None = None, *,
              message: str = "initial", branch: str = "main") -> Path:
    """A real git repository at ``path`` (created if missing); returns ``path``.

    It is on ``branch``, has the test identity in its local config (and no commit signing),
    and one commit (``message``) holding exactly ``files`` -- relative path -> ``str`` or
    ``bytes`` -- or, when ``files`` is None, a ``README.md``. More commits: :func:`commit_files`.
    """
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    git(path, "config", "user.name", IDENTITY[0])
    git(path, "config", "user.email", IDENTITY[1])
    git(path, "config", "commit.gpgsign", "false")
    commit_files(path, DEFAULT_FILES if files is None else files, message)
    return path


@dataclass
class CliResult:
    """What one ``aidp`` command did: exit code and captured output (the same in both modes)."""

    returncode: int
    stdout: str
    stderr: str


@dataclass
class Cli:
    """Runs ``aidp`` in ``cwd`` against a chosen database (``None``: aidp's default).

    By default it runs the real installed executable in a subprocess -- use that wherever the
    process is the point (crash, kill, concurrency, live output, TTY, environment). With
    ``in_process=True`` a call goes through :func:`aidp.cli.main.main` (the entry point of the
    script, so the same error handling, exit codes and messages) under click's ``CliRunner``
    isolation, in this process: faster, for plain commands. In-process, an exception that would
    be a traceback in the real script propagates to the test.
    """

    cwd: Path
    db_url: str | None = None
    in_process: bool = False

    def env(self) -> dict[str, str]:
        """The environment of a real ``aidp`` process: ours, the git identity, the database."""
        env = {**os.environ, **GIT_ENV}
        env.pop("AIDP_DATABASE_URL", None)
        if self.db_url:
            env["AIDP_DATABASE_URL"] = self.db_url
        return env

    def __call__(self, *args: str, timeout: float = 90, check: bool = False) -> CliResult:
        """Run ``aidp *args``; ``check`` fails the test on a non-zero exit."""
        if self.in_process:
            result = self._run_in_process(args)
        else:
            proc = subprocess.run([AIDP, *args], cwd=self.cwd, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, env=self.env(), timeout=timeout)
            result = CliResult(proc.returncode, proc.stdout, proc.stderr)
        if check and result.returncode != 0:
            raise AssertionError(f"aidp {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def _run_in_process(self, args: tuple[str, ...]) -> CliResult:
        from click.testing import CliRunner

        from aidp.cli.main import main

        env: dict[str, str | None] = {**GIT_ENV, "AIDP_DATABASE_URL": self.db_url or None}
        before = Path.cwd()
        with CliRunner().isolation(env=env) as (out, err, _):
            os.chdir(self.cwd)
            try:
                main(list(args))
                code = 0
            except SystemExit as exc:
                code = _exit_code(exc.code)
            finally:
                os.chdir(before)
                sys.stdout.flush()
                sys.stderr.flush()
            stdout = out.getvalue().decode("utf-8", errors="replace")
            stderr = err.getvalue().decode("utf-8", errors="replace")
        return CliResult(code, stdout, stderr)

    def popen_argv(self, *args: str) -> list[str]:
        """The argv of the real ``aidp *args`` (for tests that start the process themselves)."""
        return [AIDP, *args]

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start the real ``aidp *args`` in its own session, stdout and stderr piped."""
        return subprocess.Popen([AIDP, *args], cwd=self.cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                                env=self.env(), start_new_session=True)


def _exit_code(code: object) -> int:
    """The process exit status ``sys.exit(code)`` would give."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
