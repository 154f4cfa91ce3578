"""A profile's rate limit as one bucket in the store: two stores on one database (two
processes' worth of connections) draw from the same bucket; it refills with time; a settle
takes what a request really cost."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from aidp.state.rate_buckets import RateBook, StoreLimiter
from aidp.state.store import Store

LIMITS = {"requests": 60, "tokens": None}  # one a second, 60 at once


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_two_stores_share_one_bucket_that_refills(db_url: str) -> None:
    clock = Clock()
    one, two = Store(db_url), Store(db_url)
    try:
        a, b = RateBook(one, clock), RateBook(two, clock)
        taken = [a.take("profile:p", LIMITS, {"requests": 1}) for _ in range(30)]
        taken += [b.take("profile:p", LIMITS, {"requests": 1}) for _ in range(30)]
        assert taken == [0.0] * 60
        assert b.take("profile:p", LIMITS, {"requests": 1}) == 1.0  # empty: a second to wait
        assert a.take("profile:q", LIMITS, {"requests": 1}) == 0.0  # another profile's bucket
        clock.now += 2.5
        assert a.take("profile:p", LIMITS, {"requests": 1}) == 0.0
        assert b.take("profile:p", LIMITS, {"requests": 1}) == 0.0
        assert a.take("profile:p", LIMITS, {"requests": 1}) == 0.5
    finally:
        one.close()
        two.close()


def test_tokens_are_settled_with_what_the_request_cost(db_url: str) -> None:
    clock = Clock()
    store = Store(db_url)
    try:
        limiter = StoreLimiter(RateBook(store, clock), "p", None, 6000)  # 100 tokens a second
        assert limiter.try_acquire(1000) == 0.0
        limiter.settle(4000)  # it cost 5,000
        assert limiter.try_acquire(1000) == 0.0  # 1,000 left
        assert limiter.try_acquire(1000) == 10.0  # 0 left: 1,000 tokens = 10 s
        limiter.settle(-6000)  # more given back than the capacity: capped
        assert limiter.try_acquire(6000) == 0.0
    finally:
        store.close()


def test_processes_draw_from_one_bucket(db_url: str, tmp_path: Path) -> None:
    """Three real processes take 25 requests each from a 60-per-minute bucket at once: 60 are
    admitted at once, the other 15 only as it refills (about one a second)."""
    Store(db_url).close()  # migrated once, before the processes race
    code = (
        "import sys, time\n"
        "from aidp.state.rate_buckets import RateBook\n"
        "from aidp.state.store import Store\n"
        "store = Store(sys.argv[1]); book = RateBook(store)\n"
        "waits = [book.take('profile:p', {'requests': 60}, {'requests': 1}) for _ in range(25)]\n"
        "print(sum(1 for w in waits if w == 0.0))\n"
        "store.close()\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url], stdout=subprocess.PIPE,
                              text=True) for _ in range(3)]
    started = time.monotonic()
    admitted = [int(p.communicate(timeout=60)[0]) for p in procs]
    assert sum(admitted) <= 60 + int(time.monotonic() - started) + 1
    assert sum(admitted) >= 60


def test_a_retry_after_holds_every_gateway_on_the_store(db_url: str) -> None:
    """Two gateways (two processes' worth) on one database: after the provider answered one of
    them 429 with ``Retry-After: 1.5``, the other waits too before asking it."""
    from openai import OpenAI, RateLimitError

    from aidp.state.rate_buckets import StoreHolds
    from aidp.testing import FakeLLM
    from aidp.tools.gateway import Gateway, Grant

    hi = [{"role": "user", "content": "hi"}]
    one, two = Store(db_url), Store(db_url)
    script = [{"error": {"status": 429, "message": "slow down", "retry_after": 1.5}}, "fine"]
    try:
        with FakeLLM(script) as llm, Gateway() as first, Gateway() as second:
            a = first.open(Grant(upstream=llm.base_url, key="k", profile="p",
                                 holds=StoreHolds(one)))
            b = second.open(Grant(upstream=llm.base_url, key="k", profile="p",
                                  holds=StoreHolds(two)))
            with OpenAI(base_url=a.base_url, api_key=a.token, max_retries=0) as sdk:
                try:
                    sdk.chat.completions.create(model=llm.model, messages=hi)  # type: ignore[arg-type]
                except RateLimitError:
                    refused_at = time.monotonic()
            with OpenAI(base_url=b.base_url, api_key=b.token, max_retries=0) as sdk:
                sdk.chat.completions.create(model=llm.model, messages=hi)  # type: ignore[arg-type]
            waited = time.monotonic() - refused_at
            first.close(a)
            second.close(b)
        assert StoreHolds(one).wait_s(llm.base_url) == 0.0  # over
    finally:
        one.close()
        two.close()
    assert waited >= 1.4
