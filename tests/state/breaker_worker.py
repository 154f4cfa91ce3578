"""One process of the two-process breaker test (run as a script, not collected by pytest).

``python breaker_worker.py DB_URL CLOCK_FILE POLICY_JSON ITERATIONS``: admits ITERATIONS calls on
one key whose provider always fails, recording a transient failure for each admitted call. The
two processes start together (each prints ``ready`` and waits for a line on stdin). The
fake clock is a counter in CLOCK_FILE shared by both processes (each reading advances it by one
second, under a file lock), so time is ordered like the breaker's transactions. Then prints
``{"attempts", "invoked", "last_now"}`` as JSON.
"""

from __future__ import annotations

import fcntl
import json
import sys

from aidp.resilience.breaker import BreakerPolicy
from aidp.state.breakers import BreakerBook
from aidp.state.store import Store

KEY = "endpoint:http://127.0.0.1:9/v1"


def main(db_url: str, clock_file: str, policy_json: str, iterations: int) -> None:
    last = [0.0]

    def clock() -> float:
        with open(clock_file, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            now = float(f.read()) + 1.0
            f.seek(0)
            f.write(repr(now))
            f.truncate()
        last[0] = max(last[0], now)
        return now

    policy = BreakerPolicy(**json.loads(policy_json))
    store = Store(db_url, create=False)
    book = BreakerBook(store, clock=clock)
    invoked = 0
    # Start together: say "ready" once set up, then wait for the parent's "go".
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        for _ in range(iterations):
            admission = book.admit(KEY, policy)
            if admission.allowed:
                invoked += 1  # the provider is called here -- and it is down
                book.record(KEY, policy, admission, success=False, transient=True)
    finally:
        store.close()
    print(json.dumps({"attempts": iterations, "invoked": invoked, "last_now": last[0]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
