"""``aidp breakers [list|reset KEY]`` through the real CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import time

from aidp.resilience.breaker import BreakerPolicy
from aidp.state.breakers import BreakerBook, endpoint_key, profile_key
from aidp.state.store import Store
from tests.cli.test_cli import HEAVY, _modules_after
from tests.conftest import Cli

POLICY = BreakerPolicy(failure_threshold=2, window_s=60.0, cooldown_s=300.0, half_open_probes=1)


def open_breaker(db_url: str, key: str) -> None:
    """Open ``key`` in the database with two transient failures just now."""
    store = Store(db_url)
    try:
        book = BreakerBook(store)
        now = time.time()
        for _ in range(POLICY.failure_threshold):
            admission = book.admit(key, POLICY, now)
            book.record(key, POLICY, admission, success=False, transient=True, now=now)
        book.admit(profile_key("healthy"), POLICY, now)
    finally:
        store.close()


def test_list_without_breakers(cli: Cli) -> None:
    """With no breaker (not even a database), list says so and exits 0; --json prints []."""
    result = cli("breakers", "list")
    assert result.returncode == 0 and "no breakers yet" in result.stdout
    result = cli("breakers", "list", "--json")
    assert result.returncode == 0 and json.loads(result.stdout) == []


def test_list_shows_an_open_breaker(cli: Cli) -> None:
    """list shows key, state, failures, opened_at, reopen in N s; --json has the same."""
    assert cli.db_url is not None
    key = endpoint_key("https://user:secret@API.example.com/v1/")
    open_breaker(cli.db_url, key)
    result = cli("breakers", check=True)
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["KEY", "STATE", "FAILURES", "OPENED", "REOPEN", "PROBES"]
    row = next(line for line in lines if line.startswith(key))
    assert re.search(r" open +- +\S+ +in \d+s +- *$", row), row
    assert "secret" not in result.stdout
    data = json.loads(cli("breakers", "list", "--json", check=True).stdout)
    assert [d["key"] for d in data] == [key, "profile:healthy"]
    assert data[0]["state"] == "open" and 0 < data[0]["reopen_in_s"] <= 300
    assert data[0]["counters"]["transient_failures"] == 2 and data[0]["failures"] == 0
    assert (data[1]["state"], data[1]["in_flight"], data[1]["failure_threshold"]) == (
        "closed", 1, 2)


def test_reset_closes_a_breaker(cli: Cli) -> None:
    """reset KEY closes an open breaker and says what it was."""
    assert cli.db_url is not None
    key = profile_key("codex")
    open_breaker(cli.db_url, key)
    result = cli("breakers", "reset", key, check=True)
    assert result.stdout.strip() == f"reset {key}: closed (was open)"
    data = json.loads(cli("breakers", "--json", check=True).stdout)
    assert {d["key"]: d["state"] for d in data}[key] == "closed"


def test_reset_of_an_unknown_key_is_exit_3(cli: Cli) -> None:
    """reset of an unknown key: exit 3, one 'error:' line naming the key, no traceback."""
    assert cli.db_url is not None
    open_breaker(cli.db_url, profile_key("codex"))
    result = cli("breakers", "reset", "profile:nope")
    assert result.returncode == 3
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: no breaker 'profile:nope'"]
    assert "Traceback" not in result.stderr


def test_breakers_help_imports_nothing_heavy() -> None:
    """aidp breakers --help imports no database, git binding or web module."""
    code, modules, out = _modules_after("breakers", "--help")
    assert code == 0 and "reset" in out
    assert [m for m in modules for heavy in HEAVY if m == heavy or m.startswith(heavy + ".")] == []
