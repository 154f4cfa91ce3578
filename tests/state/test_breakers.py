"""Circuit breakers in the database (SQLite and PostgreSQL): shared by stores and processes,
surviving restarts, all-or-none admission over several keys, and key normalization."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aidp.exceptions import InputError, NotFoundError
from aidp.resilience.breaker import BreakerPolicy, BreakerState
from aidp.state.breakers import BreakerBook, breaker_keys, endpoint_key, profile_key
from aidp.state.store import Store

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
POLICY = BreakerPolicy(failure_threshold=2, window_s=60.0, cooldown_s=30.0, half_open_probes=1,
                       probe_timeout_s=300.0)
KEY = profile_key("codex")
WORKER = Path(__file__).with_name("breaker_worker.py")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def fail_once(book: BreakerBook, now: float, key: str = KEY) -> bool:
    """Admit one call on ``key`` at ``now`` and record a transient failure; True if admitted."""
    admission = book.admit(key, POLICY, now)
    if admission.allowed:
        book.record(key, POLICY, admission, success=False, transient=True, now=now)
    return admission.allowed


def test_breaker_opens_and_refuses_from_the_database(store: Store) -> None:
    """threshold transient failures open the stored breaker; it refuses until reopen_at."""
    book = BreakerBook(store)
    assert fail_once(book, 100.0) and fail_once(book, 101.0)
    refused = book.admit(KEY, POLICY, 102.0)
    assert not refused.allowed and refused.state is OPEN and refused.retry_at == 131.0
    snap = book.snapshot(KEY, now=102.0)
    assert snap is not None and snap.state is OPEN and snap.counters.rejected == 1


def test_state_survives_a_restart_and_is_shared_by_stores(db_url: str) -> None:
    """A breaker opened through one Store is open for another Store (another engine, as in
    another process) and after the first one is closed."""
    first = Store(db_url)
    assert fail_once(BreakerBook(first), 0.0) and fail_once(BreakerBook(first), 0.0)
    first.close()
    second = Store(db_url)
    try:
        book = BreakerBook(second)
        assert not book.admit(KEY, POLICY, 10.0).allowed
        probe = book.admit(KEY, POLICY, 30.0)
        assert probe.allowed and probe.probe and probe.state is HALF_OPEN
        after = book.record(KEY, POLICY, probe, success=True, transient=False, now=31.0)
        assert after.state is CLOSED
    finally:
        second.close()


def test_half_open_admits_one_probe_across_books(db_url: str) -> None:
    """Two books (two engines) at HALF_OPEN share its single probe slot."""
    one, two = Store(db_url), Store(db_url)
    try:
        a, b = BreakerBook(one), BreakerBook(two)
        fail_once(a, 0.0)
        fail_once(b, 0.0)
        probe = a.admit(KEY, POLICY, 30.0)
        assert probe.allowed and not b.admit(KEY, POLICY, 30.0).allowed
        a.release(KEY, POLICY, probe, 31.0)
        assert b.admit(KEY, POLICY, 31.0).probe
    finally:
        one.close()
        two.close()


def test_admit_all_is_all_or_none(store: Store) -> None:
    """When one key refuses, admit_all keeps no slot on the others; when all allow, each holds
    one, and record_all reports to each."""
    book = BreakerBook(store)
    endpoint = endpoint_key("https://api.example.com/v1")
    fail_once(book, 0.0, endpoint)
    fail_once(book, 0.0, endpoint)
    permit = book.admit_all([KEY, endpoint], POLICY, 1.0)
    assert not permit.allowed and permit.refused_by == [endpoint] and permit.retry_at == 30.0
    assert book.snapshot(KEY, now=1.0).in_flight == ()  # type: ignore[union-attr]
    permit = book.admit_all([KEY, endpoint], POLICY, 30.0)
    assert permit.allowed and permit.probe
    after = book.record_all(permit, POLICY, success=True, transient=False, now=31.0)
    assert after[endpoint].state is CLOSED and after[KEY].in_flight == ()


def test_recording_a_refused_call_is_a_bug(store: Store) -> None:
    """record() and release() of a refused admission raise ValueError."""
    book = BreakerBook(store)
    fail_once(book, 0.0)
    fail_once(book, 0.0)
    refused = book.admit(KEY, POLICY, 1.0)
    with pytest.raises(ValueError, match="refused"):
        book.record(KEY, POLICY, refused, success=False, transient=True, now=1.0)
    with pytest.raises(ValueError, match="refused"):
        book.release(KEY, POLICY, refused, 1.0)


def test_reset_closes_a_stored_breaker(store: Store) -> None:
    """reset(KEY) closes an open breaker; an unknown key is NotFoundError."""
    book = BreakerBook(store)
    fail_once(book, 0.0)
    fail_once(book, 0.0)
    assert book.reset(KEY, now=5.0).state is CLOSED
    assert book.admit(KEY, POLICY, 6.0).allowed
    with pytest.raises(NotFoundError, match="no breaker"):
        book.reset("profile:nope")


def test_list_shows_every_key_and_views_apply_time(store: Store) -> None:
    """list() returns every breaker in key order; a row's view at reopen_at is HALF_OPEN."""
    book = BreakerBook(store)
    fail_once(book, 0.0, "profile:b")
    fail_once(book, 0.0, "profile:b")
    fail_once(book, 0.0, "profile:a")
    rows = book.list()
    assert [r.key for r in rows] == ["profile:a", "profile:b"]
    assert rows[1].snapshot.state is OPEN and rows[1].policy == POLICY
    assert rows[1].view(30.0).state is HALF_OPEN
    assert rows[0].view(100.0).failures == ()
    assert book.row("profile:none") is None and book.snapshot("profile:none") is None


def test_clock_is_read_after_the_lock(store: Store) -> None:
    """Without an explicit now, the book's injected clock stamps the transition."""
    ticks = iter(range(100, 200))
    book = BreakerBook(store, clock=lambda: float(next(ticks)))
    for _ in range(POLICY.failure_threshold):
        admission = book.admit(KEY, POLICY)
        after = book.record(KEY, POLICY, admission, success=False, transient=True)
    assert after.state is OPEN and after.opened_at == 103.0


def test_racing_first_admissions_create_one_row(db_url: str) -> None:
    """Eight threads with their own stores admitting on a new key at once: no error, one row,
    eight admissions counted."""
    stores = [Store(db_url) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def worker(s: Store) -> None:
        try:
            barrier.wait()
            assert BreakerBook(s).admit("endpoint:https://race.example", POLICY, 0.0).allowed
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        rows = BreakerBook(stores[0]).list()
        assert len(rows) == 1 and rows[0].snapshot.counters.admitted == 8
    finally:
        for s in stores:
            s.close()


def test_two_processes_against_an_always_down_provider(db_url: str, tmp_path: Path) -> None:
    """Two OS processes hammering one key whose provider always fails: together they make at
    most threshold + probes per elapsed cooldown calls, and every call is accounted for."""
    Store(db_url).close()  # create the schema once, before the race
    clock = tmp_path / "clock"
    clock.write_text("0")
    policy = dict(failure_threshold=3, window_s=1e6, cooldown_s=40.0, half_open_probes=2,
                  probe_timeout_s=1e6)
    argv = [sys.executable, str(WORKER), db_url, str(clock), json.dumps(policy), "150"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.PIPE) for _ in range(2)]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    store = Store(db_url)
    try:
        row = BreakerBook(store).row(KEY_ALWAYS_DOWN)
    finally:
        store.close()
    assert row is not None
    invoked = sum(r["invoked"] for r in results)
    attempts = sum(r["attempts"] for r in results)
    elapsed = max(r["last_now"] for r in results)
    limit = policy["failure_threshold"] + policy["half_open_probes"] * (elapsed // 40.0)
    assert attempts == 300
    assert row.snapshot.counters.admitted == invoked
    assert row.snapshot.counters.transient_failures == invoked
    assert policy["failure_threshold"] <= invoked <= limit
    assert invoked < attempts / 3  # the breaker did refuse most of them


KEY_ALWAYS_DOWN = "endpoint:http://127.0.0.1:9/v1"


@pytest.mark.parametrize(("url", "key"), [
    ("https://API.Example.com/v1/", "endpoint:https://api.example.com/v1"),
    ("https://api.example.com:443/v1", "endpoint:https://api.example.com/v1"),
    ("http://127.0.0.1:8080/v1", "endpoint:http://127.0.0.1:8080/v1"),
    ("http://127.0.0.1:80", "endpoint:http://127.0.0.1"),
    ("https://user:sk-secret@api.example.com/v1?key=sk-secret#frag",
     "endpoint:https://api.example.com/v1"),
    ("http://[::1]:9000/v1", "endpoint:http://[::1]:9000/v1"),
], ids=["case-and-slash", "default-port", "port", "no-path", "credentials", "ipv6"])
def test_endpoint_key_normalizes_and_drops_credentials(url: str, key: str) -> None:
    """endpoint_key lower-cases scheme and host, drops default ports, trailing slashes, user
    info, query and fragment."""
    assert endpoint_key(url) == key
    assert "secret" not in endpoint_key(url)


@pytest.mark.parametrize("url", ["api.example.com/v1", "", "http://", "http://host:notaport/"])
def test_endpoint_key_rejects_urls_without_host(url: str) -> None:
    """A URL without scheme or host (or with a bad port) is an InputError."""
    with pytest.raises(InputError):
        endpoint_key(url)


def test_profile_key_and_breaker_keys() -> None:
    """A profile's key is profile:<name>; a call of a profile with an endpoint is guarded by
    both keys."""
    assert profile_key("aider-gpt") == "profile:aider-gpt"
    assert breaker_keys("aider-gpt") == ["profile:aider-gpt"]
    assert breaker_keys("aider-gpt", "http://127.0.0.1:8000/v1/") == [
        "profile:aider-gpt", "endpoint:http://127.0.0.1:8000/v1"]
