"""Helpers for the adapter tests: an Invocation for one attempt (the repository each test
builds with ``tests.helpers.init_repo(tmp_path / "repo", {"hello.py": GREETING})``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from aidp.config import ToolProfile
from aidp.process.capped_log import CappedLog
from aidp.process.runner import build_env, new_token
from aidp.tools.adapter import Invocation

SECRET = "sk-test-Secret-4242"
KEY_ENV = "AIDP_TEST_LLM_KEY"
GREETING = 'def greet():\n    return "hello"\n'


@contextmanager
def invocation(
    tmp_path: Path,
    repo: Path,
    profile: ToolProfile,
    *,
    prompt: str = "Make greet() return 'hello, world'.",
    timeout_s: float = 60.0,
    grace_s: float = 3.0,
    extra_env: dict[str, str] | None = None,
    scope_files: Sequence[str] = ("hello.py",),
    context_files: Sequence[Path] = (),
    cancel: threading.Event | None = None,
    extra_secrets: Sequence[str] = (),
) -> Iterator[Invocation]:
    """An Invocation for one attempt (attempt dir and log under ``tmp_path``); the log is
    closed on exit."""
    attempt_dir = tmp_path / "attempt"
    attempt_dir.mkdir(exist_ok=True)
    prompt_file = attempt_dir / "prompt.md"
    prompt_file.write_text(prompt)
    env = build_env(os.environ, [], {KEY_ENV: SECRET, **(extra_env or {})})
    with CappedLog(attempt_dir / "attempt.log") as log:
        yield Invocation(
            run_id="01RUN", ws_id="ws", step_id="edit", attempt=1, profile_name=profile.adapter,
            profile=profile, worktree=repo, prompt=prompt, prompt_file=prompt_file,
            scope=["*.py"], scope_files=list(scope_files), context_files=list(context_files),
            command=None, values={}, env=env, secrets=[SECRET, *extra_secrets], timeout_s=timeout_s,
            grace_s=grace_s, attempt_dir=attempt_dir, token=new_token(), log=log,
            cancel=cancel or threading.Event(),
        )


def log_text(tmp_path: Path) -> str:
    """The attempt's log as text."""
    return (tmp_path / "attempt" / "attempt.log").read_text(encoding="utf-8", errors="replace")
