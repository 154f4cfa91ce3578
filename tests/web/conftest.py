"""The real ``aidp serve`` with its dashboard, on a repository holding a small workstream file,
and browser-like HTTP sessions (cookies, forms, CSRF tokens) against it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Served, start_served
from tests.conftest import Cli, init_repo

#: A plan of three steps: one completes, one fails with hostile output (markup and ANSI
#: colours), one depends on the failed workstream (skipped).
HOSTILE = ("printf '\\033[31mred <script>alert(1)</script> "
           "<img src=x onerror=alert(2)>\\033]0;title\\007\\033[2J\\033[0m\\n'; exit 3")
DEMO = f"""version: 1
workstreams:
  - id: alpha
    steps:
      - id: one
        run: "echo one > {{worktree}}/one.txt"
      - id: two
        depends_on: [one]
        run: |-
          {HOSTILE}
  - id: beta
    depends_on: [alpha]
    steps:
      - id: three
        run: "echo three > {{worktree}}/three.txt"
"""


#: A human gate (the manual tool): the step waits in awaiting_approval.
GATE = """version: 1
workstreams:
  - id: docs
    steps:
      - id: review
        tool: manual
        prompt: Write the notes by hand.
"""
#: A step that runs long enough to be cancelled.
SLOW = """version: 1
workstreams:
  - id: slow
    steps:
      - id: nap
        run: "sleep 60"
"""


@dataclass
class Web:
    """A served dashboard: ``base`` (http://HOST:PORT), the API's ``served`` (tokens by scope,
    the CLI), and helpers for sessions."""

    base: str
    served: Served

    def anonymous(self, **kwargs: Any) -> httpx.Client:
        """A client without a session (no redirects followed)."""
        return httpx.Client(base_url=self.base, timeout=30, follow_redirects=False, **kwargs)

    def session(self, scope: str = "operate") -> httpx.Client:
        """A client signed in with the token of ``scope`` (its cookie jar holds the session)."""
        with self.anonymous() as client:
            answer = client.post("/login", data={"token": self.served.tokens[scope]})
            assert answer.status_code == 303, answer.text
            cookies = client.cookies
        return self.anonymous(cookies=cookies)

    def api(self, scope: str = "admin") -> httpx.Client:
        return self.served.client(scope)

    def wait_step(self, run_id: str, step: str, state: str,
                  timeout_s: float = 60) -> dict[str, Any]:
        """The run's view once step ``WS/STEP`` is in ``state``."""
        deadline = time.monotonic() + timeout_s
        with self.api("read") as api:
            while True:
                view: dict[str, Any] = api.get(f"/runs/{run_id}").json()
                states = {f"{w['id']}/{s['id']}": s["status"] for w in view["workstreams"]
                          for s in w["steps"]}
                if states.get(step) == state:
                    return view
                assert time.monotonic() < deadline, (step, state, view)
                time.sleep(0.2)

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """The run's journal as CloudEvents (through the API)."""
        with self.api("read") as api:
            found: list[dict[str, Any]] = api.get(f"/runs/{run_id}/events",
                                                  params={"limit": 1000}).json()
        return found

    def wait_ended(self, run_id: str, timeout_s: float = 60) -> dict[str, Any]:
        """The run's view once it ended (completed, failed, cancelled)."""
        deadline = time.monotonic() + timeout_s
        with self.api("read") as api:
            while True:
                view: dict[str, Any] = api.get(f"/runs/{run_id}").json()
                if view["status"] in ("completed", "failed", "cancelled"):
                    return view
                assert time.monotonic() < deadline, view
                time.sleep(0.2)


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def serve_web(repo: Path, **env: str) -> Web:
    """``aidp serve`` on a new repository at ``repo`` (holding the demo plan) with ``AIDP_*``
    settings ``env``."""
    init_repo(repo, {"README.md": "demo\n", "ws/demo.yaml": DEMO, "ws/gate.yaml": GATE,
                     "ws/slow.yaml": SLOW})
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        served = start_served(Cli(repo))
    return Web(served.url.removesuffix("/api/v1"), served)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """The dashboard with sign-in required (the default); one service per test module."""
    server = serve_web(tmp_path_factory.mktemp("web") / "repo")
    try:
        yield server
    finally:
        server.served.stop()


@pytest.fixture(scope="module")
def web_read_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """The dashboard with anonymous read-only access and no front-end packages installed."""
    repo = tmp_path_factory.mktemp("web-ro") / "repo"
    server = serve_web(repo, AIDP_SERVE__DASHBOARD_READ_ONLY="true",
                       AIDP_NODE_MODULES=str(repo.parent / "no-node-modules"))
    try:
        yield server
    finally:
        server.served.stop()


def start_run(client: httpx.Client, plan: str = "ws/demo.yaml") -> str:
    """Start ``plan`` from the runs page with ``client``'s session; the new run's id."""
    token = csrf_of(client.get("/runs").text)
    answer = client.post("/runs", data={"csrf": token, "source": "files", "files": plan})
    assert answer.status_code == 303, answer.text
    match = re.fullmatch(r"/runs/([0-9A-Z]+)\?done=started", answer.headers["location"])
    assert match, answer.headers["location"]
    return match.group(1)


@pytest.fixture(scope="module")
def failed_run(web: Web) -> tuple[str, dict[str, Any]]:
    """The demo plan started from the dashboard by the operate token, run to its end (failed):
    its id and the API's view of it."""
    with web.session("operate") as client:
        run_id = start_run(client)
    return run_id, web.wait_ended(run_id)
