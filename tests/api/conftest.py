"""The real ``aidp serve`` in a subprocess on a free port, with one token per scope."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Cli


@dataclass
class Served:
    """A running ``aidp serve``: its base URL (``.../api/v1``), tokens by scope, the CLI on
    the same repository and database, and the process."""

    url: str
    tokens: dict[str, str]
    cli: Cli
    proc: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    def client(self, scope: str | None = "admin", *, headers: dict[str, str] | None = None,
               **kwargs: Any) -> httpx.Client:
        """An HTTP client with the token of ``scope`` (None: no token)."""
        sent = {"Authorization": f"Bearer {self.tokens[scope]}"} if scope else {}
        sent.update(headers or {})
        return httpx.Client(base_url=self.url, headers=sent, timeout=30, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, err = self.proc.communicate()
        self.output.append(out + err)
        return self.proc.returncode


def start_served(cli: Cli, *extra: str) -> Served:
    """Create a token per scope and start ``aidp serve --port 0`` (waits for its URL line)."""
    tokens = {}
    quick = replace(cli, in_process=True)  # the token commands are plain: no process needed
    have = {t["name"] for t in json.loads(quick("tokens", "list", "--json", check=True).stdout)}
    for scope in ("read", "operate", "admin"):
        name = f"t-{scope}"
        if name not in have:
            made = quick("tokens", "create", name, "--scope", scope, "--json", check=True)
            tokens[scope] = json.loads(made.stdout)["token"]
    proc = cli.popen("serve", "--port", "0", *extra)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"aidp serve did not start: {line}{err}")
    url = line.split()[2]
    return Served(url, tokens, cli, proc)


@pytest.fixture
def served(cli: Cli) -> Iterator[Served]:
    server = start_served(cli)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api_cli(repo: Path) -> Cli:
    """The CLI on ``repo`` with aidp's default database (SQLite)."""
    return Cli(repo)
