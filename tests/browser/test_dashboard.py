"""The dashboard in Debian's headless Chromium against the real ``aidp serve`` (issue 20's
must-show): sign-in, live DAG over server-sent events, a failing step's log, a gate, retry,
cancel -- each action through its confirmation dialog -- and hostile tool output rendered inert.

Every test fails on any console error of any page it opened (``browse`` in the conftest), and
keeps screenshots of its steps (``$AIDP_TEST_ARTIFACTS`` or the test's ``tmp_path``).
"""

from __future__ import annotations

import html
import http.server
import json
import re
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import Browse, Dashboard, sign_in
from tests.helpers import commit_files

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.browser

SPEC = """# greet Specification

## Purpose
Say hello.

## Requirements
### Requirement: Greeting
The system SHALL greet the user by name.

#### Scenario: Named user
- **WHEN** Ada signs in
- **THEN** the page says "Hello, Ada"
"""
HOSTILE = ("<script>alert('xss-script')</script>"
           "<img src=x onerror=\"alert('xss-img')\">")


def _plan(repo: Path, name: str, workstreams: list[dict[str, Any]]) -> str:
    """Commit ``workstreams/NAME.json`` in ``repo``; returns its path relative to the repo."""
    path = f"workstreams/{name}.json"
    commit_files(repo, {path: json.dumps({"version": 1, "workstreams": workstreams})}, name)
    return path


def _start(dashboard: Dashboard, path: str) -> str:
    """Start a run of ``path`` through the API (operate token); returns its id."""
    with dashboard.served.client("operate") as client:
        answer = client.post("/runs", json={"files": [path]})
    assert answer.status_code in (200, 201, 202), answer.text
    return str(answer.json()["run_id"])


def _start_in_page(page: Page, path: str) -> str:
    """Start a run of ``path`` from the runs page's form (confirmed); returns its id."""
    page.goto("/runs")
    page.fill("textarea[name=files]", path)
    _confirm(page, page.get_by_role("button", name="Start run"))
    page.wait_for_url(re.compile(r"/runs/[0-9A-Z]{26}"))
    return page.url.split("/runs/", 1)[1].split("?")[0]


def _run_view(dashboard: Dashboard, run_id: str) -> dict[str, Any]:
    with dashboard.served.client("read") as client:
        view: dict[str, Any] = client.get(f"/runs/{run_id}").json()
    return view


def _wait_api(dashboard: Dashboard, run_id: str, done: Callable[[dict[str, Any]], bool],
              timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        view = _run_view(dashboard, run_id)
        if done(view):
            return view
        assert time.monotonic() < deadline, f"run {run_id} never got there: {view}"
        time.sleep(0.2)


def _state(page: Page, step: str, within: str = "") -> Locator:
    """The first element of ``step`` (``ws/step``) that carries its state (inside ``within``,
    a CSS selector, when given)."""
    return page.locator(f'{within} [data-step="{step}"][data-state]'.strip()).first


def _wait_state(page: Page, step: str, states: set[str], timeout_ms: int = 30_000,
                within: str = "") -> str:
    """Wait (without reloading) until ``step`` shows one of ``states`` in the page."""
    page.wait_for_function(
        """([step, states, within]) => [...document.querySelectorAll(
               (within + ' [data-step][data-state]').trim())]
             .some(e => e.dataset.step === step && states.includes(e.dataset.state))""",
        arg=[step, sorted(states), within], timeout=timeout_ms)
    return str(_state(page, step, within).get_attribute("data-state"))


def _confirm(page: Page, button: Locator) -> str:
    """Click ``button``, accept the confirmation it must ask; returns the question."""
    asked: list[str] = []

    def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    button.click()
    page.wait_for_load_state()
    assert asked, "the action ran without asking for confirmation"
    return asked[0]


def _navigations(page: Page) -> list[str]:
    """The main frame's navigations from now on (a reload would add one)."""
    seen: list[str] = []
    page.on("framenavigated",
            lambda frame: seen.append(frame.url) if frame == page.main_frame else None)
    return seen


def test_a_wrong_token_is_refused_at_the_login(browse: Browse, dashboard: Dashboard) -> None:
    """The login form refuses an unknown token: it stays on /login, says so, sets no cookie."""
    page = browse.new_page()
    page.goto("/login")
    assert page.locator("input[name=token]").is_visible()
    browse.shot("login")
    page.fill("input[name=token]", "aidp_not-a-real-token")
    with page.expect_response(lambda r: r.url.endswith("/login")
                              and r.request.method == "POST") as answer:
        page.locator("form [type=submit]").first.click()
    assert answer.value.status == 401
    page.wait_for_load_state()
    assert "/login" in page.url
    assert page.get_by_role("alert").inner_text().strip()
    browse.shot("refused")
    assert "aidp_session" not in {c["name"] for c in browse.context.cookies()}


def test_a_page_without_a_session_goes_to_the_login(browse: Browse, dashboard: Dashboard) -> None:
    """Without a session no dashboard page is shown: /runs sends the browser to /login."""
    page = browse.new_page()
    page.goto("/runs")
    assert re.search(r"/login", page.url), page.url
    assert page.locator("input[name=token]").is_visible()
    browse.shot("login")


def test_every_page_renders_without_console_errors_and_none_without_a_session(
        browse: Browse, dashboard: Dashboard) -> None:
    """Each page answers 200 to an admin session with no console error (the fixture fails the
    test on any); signed out, each one sends the browser to the login instead."""
    commit_files(dashboard.cli.cwd, {"openspec/specs/greet/spec.md": SPEC}, "a spec")
    path = _plan(dashboard.cli.cwd, "tour", [{"id": "t", "scope": ["t/**"], "steps": [
        {"id": "s", "run": "mkdir -p t && echo tour > t/tour.txt"}]}])
    run_id = _start(dashboard, path)
    _wait_api(dashboard, run_id, _ended)
    pages = ["/runs", f"/runs/{run_id}", f"/runs/{run_id}/steps/t/s", "/tools", "/specs",
             "/specs/spec/greet", "/specs/coverage", "/specs/validate", "/settings"]
    page = browse.new_page()
    sign_in(page, dashboard.token("admin"))
    for where in pages:
        answer = page.goto(where)
        assert answer is not None and answer.status == 200, (where, answer and answer.status)
        page.wait_for_load_state("load")  # scripts ran: their errors are in by now
        browse.shot(where.strip("/").replace("/", "-") or "home")
    browse.context.clear_cookies()
    for where in pages:
        page.goto(where)
        assert "/login" in page.url, f"{where} was shown without a session: {page.url}"
        assert page.locator("input[name=token]").is_visible()


def test_sign_in_sets_an_httponly_strict_cookie(browse: Browse, dashboard: Dashboard) -> None:
    """Signing in with a token keeps the session in an HttpOnly, SameSite=Strict cookie."""
    page = browse.new_page()
    sign_in(page, dashboard.token("operate"))
    browse.shot("signed-in")
    session = [c for c in browse.context.cookies() if c["name"] == "aidp_session"]
    assert session, browse.context.cookies()
    assert session[0]["httpOnly"] and session[0]["sameSite"] == "Strict"
    assert dashboard.token("operate") not in page.content()
    assert page.evaluate("document.cookie").find("aidp_session") == -1


def test_dag_recolours_live_through_sse_without_a_reload(browse: Browse, signed_in: Page,
                                                         dashboard: Dashboard) -> None:
    """A run's page follows its steps through server-sent events: states change, no reload."""
    repo = dashboard.cli.cwd
    path = _plan(repo, "live", [
        {"id": "a", "scope": ["a/**"], "steps": [
            {"id": "s1", "run": "sleep 1 && mkdir -p a && echo 1 > a/one"},
            {"id": "s2", "run": "sleep 1 && echo 2 > a/two", "depends_on": ["s1"]}]},
        {"id": "b", "scope": ["b/**"], "depends_on": ["a"], "steps": [
            {"id": "s1", "run": "mkdir -p b && echo 3 > b/three"}]}])
    page = signed_in
    _start_in_page(page, path)
    browse.shot("started")
    navigations = _navigations(page)
    dag = "#dag-nodes"  # the drawn graph's nodes, mirrored in the DOM with state and colour
    page.wait_for_selector("#dag[data-drawn]", state="attached")
    first = _state(page, "b/s1", dag)
    assert first.get_attribute("data-state") == "pending", "b/s1 was not pending at first"
    pending_colour = first.get_attribute("data-color")
    browse.shot("before")
    _wait_state(page, "a/s1", {"running", "validating", "completed"}, within=dag)
    browse.shot("moving")
    assert _wait_state(page, "b/s1", {"completed"}, within=dag) == "completed"
    browse.shot("completed")
    assert _state(page, "b/s1", dag).get_attribute("data-color") != pending_colour
    assert _wait_state(page, "b/s1", {"completed"}) == "completed"  # the table's row too
    assert navigations == [], f"the page navigated (reloaded?): {navigations}"
    assert _state(page, "a/s2", dag).get_attribute("data-state") == "completed"


def test_a_large_plan_is_placed_in_columns_by_longest_path(browse: Browse, signed_in: Page,
                                                            dashboard: Dashboard) -> None:
    """Past 100 steps the page places the steps itself: every edge goes to a later column."""
    repo = dashboard.cli.cwd
    chain = [{"id": f"s{i}", "run": "true", **({"depends_on": [f"s{i - 1}"]} if i else {})}
             for i in range(80)]
    path = _plan(repo, "large", [
        {"id": "a", "scope": ["a/**"], "steps": chain},
        {"id": "b", "scope": ["b/**"], "steps": chain[:40]},
        {"id": "c", "scope": ["c/**"], "depends_on": ["a", "b"], "steps": chain[:40]}])
    page = signed_in
    run_id = _start(dashboard, path)
    page.goto(f"/runs/{run_id}")
    page.wait_for_selector("#dag[data-drawn]", state="attached")
    assert page.get_attribute("#dag", "data-layout") == "layered"
    assert page.get_attribute("#dag", "data-drawn") == "160"
    col = {str(k): int(v) for k, v in page.evaluate(
        """() => [...document.querySelectorAll('#dag-nodes li[data-col]')]
                   .map(e => [e.dataset.step, e.dataset.col])""")}
    assert len(col) == 160
    assert [col[f"a/s{i}"] for i in range(80)] == list(range(80))
    assert col["b/s39"] == 39
    # c waits for a's last step (column 79), not b's (39): the longest path, across workstreams
    assert col["c/s0"] == 80 and col["c/s39"] == 119
    navigations = _navigations(page)
    page.wait_for_function(
        """() => [...document.querySelectorAll('#dag-nodes li[data-step]')]
                   .every(e => e.dataset.state === 'completed')""", timeout=60_000)
    browse.shot("large-completed")
    assert navigations == [], f"the page navigated (reloaded?): {navigations}"


def test_hostile_step_output_renders_inert(browse: Browse, signed_in: Page,
                                           dashboard: Dashboard) -> None:
    """A failing step's log holding <script>, <img onerror> and ANSI escapes is shown as text."""
    repo = dashboard.cli.cwd
    command = (f"printf '%s\\n' {shlex.quote(HOSTILE)}; "
               "printf 'ansi: \\033[31mred-text\\033[0m\\n'; exit 3")
    path = _plan(repo, "hostile", [
        {"id": "x", "scope": ["x/**"], "steps": [
            {"id": "evil", "run": command,
             "retry": {"max_attempts": 1}}]}])
    run_id = _start(dashboard, path)
    _wait_api(dashboard, run_id, lambda v: v["status"] == "failed" and not v["live"])
    page = signed_in
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"/runs/{run_id}")
    assert _wait_state(page, "x/evil", {"failed"}) == "failed"
    browse.shot("run")
    tail = page.locator('[data-step="x/evil"] details')
    if tail.count():
        tail.first.locator("summary").click()
    step_page = f"/runs/{run_id}/steps/x/evil"
    if page.request.get(step_page).status == 200:  # the step page (W2) may not exist yet
        page.goto(step_page)
    page.get_by_text("red-text").first.wait_for()
    browse.shot("log")
    log = page.locator("#step-log, pre.log").first
    shown = log.inner_text()
    assert "<script>alert('xss-script')</script>" in shown
    assert "onerror" in shown and "red-text" in shown
    assert "\x1b" not in shown and "[31m" not in shown, shown  # colour or nothing, no codes
    assert log.locator("script, img").count() == 0
    assert page.locator("img[src=x]").count() == 0
    assert page.evaluate("[...document.scripts].some(s => s.textContent.includes('xss'))") \
        is False
    page.wait_for_timeout(300)  # an onerror handler would have fired by now
    assert dialogs == []


def test_a_failing_steps_log_findings_and_a_checkpoint_diff(browse: Browse, signed_in: Page,
                                                             dashboard: Dashboard) -> None:
    """From the run page: a failed step's log and findings, then a checkpoint's diff."""
    path = _plan(dashboard.cli.cwd, "parts", [{"id": "a", "scope": ["out/**"], "steps": [
        {"id": "one", "run": "mkdir -p out && echo hello-diff > out/one.txt"},
        {"id": "two", "depends_on": ["one"], "run": 'python3 -c "raise ValueError(42)"',
         "retry": {"max_attempts": 1}}]}])
    run_id = _start(dashboard, path)
    assert _wait_api(dashboard, run_id, _ended)["status"] == "failed"
    page = signed_in
    page.goto(f"/runs/{run_id}")
    browse.shot("run")
    page.locator('tr[data-step="a/two"] a').first.click()
    page.wait_for_url(re.compile(r"/steps/a/two"))
    log = page.locator("#step-log")
    log.get_by_text("ValueError: 42").wait_for()
    findings = page.locator("table.findings")
    assert "ValueError" in findings.inner_text()
    browse.shot("log-and-findings")
    page.goto(f"/runs/{run_id}")
    page.locator('tr[data-step="a/one"] a').first.click()
    page.wait_for_url(re.compile(r"/steps/a/one"))
    diff = page.locator("#step-diff").inner_text()
    assert "out/one.txt" in diff and "+hello-diff" in diff, diff
    browse.shot("diff")


def _ended(view: dict[str, Any]) -> bool:
    return not view["live"] and view["status"] not in ("pending", "running")


def test_a_gate_is_approved_after_confirmation(browse: Browse, signed_in: Page,
                                               dashboard: Dashboard) -> None:
    """A manual step waits for approval; Approve asks first, then the gate goes on."""
    path = _plan(dashboard.cli.cwd, "gate", [{"id": "g", "scope": ["g/**"], "steps": [
        {"id": "gate", "tool": "manual", "prompt": "Look at it."},
        {"id": "after", "run": "mkdir -p g && echo ok > g/ok", "depends_on": ["gate"]}]}])
    run_id = _start(dashboard, path)
    page = signed_in
    page.goto(f"/runs/{run_id}")
    _wait_state(page, "g/gate", {"awaiting_approval"})
    browse.shot("awaiting")
    question = _confirm(page, page.get_by_role("button", name="Approve").first)
    assert "g/gate" in question
    browse.shot("approved")
    view = _wait_api(dashboard, run_id, _ended)
    assert view["status"] == "completed", view
    page.goto(f"/runs/{run_id}")
    assert _wait_state(page, "g/after", {"completed"}) == "completed"
    browse.shot("completed")


def test_a_failed_step_is_retried_after_confirmation(browse: Browse, signed_in: Page,
                                                     dashboard: Dashboard) -> None:
    """A failed step shows its failure; Retry asks first, and the retried step completes."""
    repo = dashboard.cli.cwd
    flag = repo / "flag"
    path = _plan(repo, "flaky", [{"id": "f", "scope": ["f/**"], "steps": [
        {"id": "flaky", "run": f"test -e {flag} && mkdir -p f && echo ok > f/ok",
         "retry": {"max_attempts": 1}}]}])
    run_id = _start(dashboard, path)
    assert _wait_api(dashboard, run_id, _ended)["status"] == "failed"
    page = signed_in
    page.goto(f"/runs/{run_id}")
    assert _wait_state(page, "f/flaky", {"failed"}) == "failed"
    browse.shot("failed")
    flag.write_text("")
    question = _confirm(page, page.get_by_role("button", name="Retry").first)
    assert "f/flaky" in question
    assert _wait_state(page, "f/flaky", {"completed"}) == "completed"
    browse.shot("retried")
    assert _wait_api(dashboard, run_id, _ended)["status"] == "completed"


def test_a_run_is_cancelled_after_confirmation(browse: Browse, signed_in: Page,
                                               dashboard: Dashboard) -> None:
    """Cancel run asks first; the run ends cancelled and the page says so."""
    path = _plan(dashboard.cli.cwd, "long", [{"id": "l", "scope": ["l/**"], "steps": [
        {"id": f"s{i}", "run": "sleep 1", **({"depends_on": [f"s{i - 1}"]} if i else {})}
        for i in range(20)]}])
    run_id = _start(dashboard, path)
    page = signed_in
    page.goto(f"/runs/{run_id}")
    _wait_state(page, "l/s0", {"running", "validating", "completed"})
    browse.shot("running")
    question = _confirm(page, page.get_by_role("button", name="Cancel run"))
    assert run_id in question
    view = _wait_api(dashboard, run_id, _ended)
    assert view["status"] == "cancelled", view
    page.locator("#run-state[data-state=cancelled]").wait_for()
    browse.shot("cancelled")


def test_a_cross_site_form_post_is_refused(browse: Browse, dashboard: Dashboard) -> None:
    """A form on another site that posts to the dashboard (login CSRF: a valid token of the
    attacker's) is refused by the server, and no session is set."""
    target = f"{dashboard.origin}/login"
    attack = (f'<form method="post" action="{html.escape(target)}">'
              f'<input name="token" value="{html.escape(dashboard.token("read"))}">'
              '<input name="next" value="/runs"></form>'
              "<script>document.forms[0].submit()</script>")
    with _other_site(attack) as evil:
        page = browse.new_page()
        with page.expect_response(lambda r: r.url == target) as answer:
            page.goto(evil)
        assert answer.value.status == 403, answer.value.status
        page.wait_for_load_state()
        browse.shot("refused")
    assert "aidp_session" not in {c["name"] for c in browse.context.cookies()}


@contextmanager
def _other_site(body: str) -> Iterator[str]:
    """Serve ``body`` from http://localhost:PORT/ (another site than 127.0.0.1's)."""
    page = body.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
