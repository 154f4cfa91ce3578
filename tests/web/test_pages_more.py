"""The dashboard's step, tools, specs and settings pages against the real ``aidp serve``:
sessions required, tool output and diffs rendered inert (the diff highlighted by Pygments),
findings grouped by file, and every action (retry, approve, reject, breaker reset, proposal
review, token create and revoke, webhooks) refused without CSRF or scope, journaled under the
token's name when done."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import start_served
from tests.conftest import Cli, git, init_repo
from tests.web.conftest import HOSTILE, Web, csrf_of

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openspec" / "openspec"
CHANGE = "add-two-factor"
#: alpha/one writes a file (a checkpoint diff holding markup); alpha/two writes a Python file
#: and runs it: hostile output, a traceback (findings in src/boom.py), a kept diff;
#: beta/three runs the ``impl`` tool profile (its breaker) with a prompt.
PLAN = f"""version: 1
workstreams:
  - id: alpha
    scope: ["one.txt", "src/**"]
    steps:
      - id: one
        run: "printf '<script>alert(3)</script>\\\\nplain\\\\n' > {{worktree}}/one.txt"
      - id: two
        depends_on: [one]
        run: |-
          mkdir -p {{worktree}}/src
          printf 'x = 1\\n\\nraise ValueError("<b>bad</b>")\\n' > {{worktree}}/src/boom.py
          {HOSTILE.removesuffix('; exit 3')}
          cd {{worktree}} && python3 src/boom.py
  - id: beta
    scope: ["impl.txt"]
    steps:
      - id: three
        tool: impl
        prompt: "Say <b>hello</b> to beta"
"""
GATE = """version: 1
workstreams:
  - id: docs
    steps:
      - id: review
        tool: manual
        prompt: Write docs/notes.md by hand.
        checks: ["test -s docs/notes.md"]
"""
SLOW = """version: 1
workstreams:
  - id: w
    steps:
      - {id: slow, run: "echo first; sleep 3; echo second"}
"""
OK = """version: 1
workstreams:
  - id: w
    steps:
      - {id: s, run: "echo fine"}
"""
TOML = ('[tools.impl]\nadapter = "shell"\ncommand = "cat {prompt_file}; echo done > impl.txt"\n'
        '[tools.impl.breaker]\nenabled = true\n')


def _serve(root: Path) -> Web:
    repo = root / "repo"
    init_repo(repo, {"README.md": "demo\n", "ws/pages.yaml": PLAN, "ws/gate.yaml": GATE,
                     "ws/slow.yaml": SLOW,
                     "ws/ok.yaml": OK,
                     "aidp.toml": TOML})
    shutil.copytree(EXAMPLE, repo / "openspec")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "specs")
    with pytest.MonkeyPatch.context() as patch:  # a quick webhook sender that gives up at once
        patch.setenv("AIDP_WEBHOOKS__POLL_INTERVAL_S", "0.2")
        patch.setenv("AIDP_WEBHOOKS__MAX_ATTEMPTS", "1")
        patch.setenv("HOOK_KEY", "whsec_" + "A" * 32)
        served = start_served(Cli(repo))
    return Web(served.url.removesuffix("/api/v1"), served)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """The dashboard on a repository with the plan above, a gate plan, a tool profile and the
    example OpenSpec tree."""
    server = _serve(tmp_path_factory.mktemp("pages"))
    try:
        yield server
    finally:
        server.served.stop()


def _start(client: httpx.Client, files: str) -> str:
    token = csrf_of(client.get("/runs").text)
    answer = client.post("/runs", data={"csrf": token, "source": "files", "files": files})
    assert answer.status_code == 303, answer.text[-2000:]
    match = re.fullmatch(r"/runs/([0-9A-Z]+)\?done=started", answer.headers["location"])
    assert match, answer.headers["location"]
    return match.group(1)


@pytest.fixture(scope="module")
def ended(site: Web) -> str:
    """The plan above started from the dashboard and run to its end (alpha/two failed)."""
    with site.session("operate") as client:
        run_id = _start(client, "ws/pages.yaml")
    view = site.wait_ended(run_id)
    assert view["status"] == "failed", view
    return run_id


def _events(site: Web, run_id: str) -> list[dict[str, Any]]:
    with site.api("read") as api:
        found: list[dict[str, Any]] = api.get(f"/runs/{run_id}/events").json()
    return found


def _db(site: Web) -> sqlite3.Connection:
    return sqlite3.connect(site.served.cli.cwd / ".aidp" / "aidp.db")


def test_every_page_needs_a_session_and_answers_with_one(site: Web, ended: str) -> None:
    """Each new page answers 303 to /login without a session, 200 with a read session."""
    pages = [f"/runs/{ended}/steps/alpha/two", f"/runs/{ended}/steps/alpha/two?attempt=1",
             f"/runs/{ended}/steps/alpha/two/attempts/1/log", "/tools", "/specs",
             f"/specs/change/{CHANGE}", "/specs/spec/auth", "/specs/coverage",
             "/specs/validate", "/settings"]
    with site.anonymous() as anon:
        for path in pages:
            answer = anon.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/login?next=/"), path
    with site.session("read") as reader:
        for path in pages:
            answer = reader.get(path)
            assert answer.status_code == 200, (path, answer.text[-1500:])
            if path != pages[2]:
                assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", answer.text) is None, path
                assert re.search(r"<[^>]*\son[a-z]+\s*=", answer.text) is None, path
        assert reader.get(f"/runs/{ended}/steps/alpha/nope").status_code == 404
        assert reader.get(f"/runs/{ended}/steps/alpha/two?attempt=9").status_code == 404
        assert reader.get("/specs/change/<x>").status_code == 404


def test_a_failing_steps_page_shows_its_log_inert_findings_by_file_and_a_highlighted_diff(
        site: Web, ended: str) -> None:
    """The failed step's page: attempts with outcome and exit code, the log's markup as text
    and its colours as classes, findings grouped under src/boom.py, the kept diff through
    Pygments (escaped), the diagnostics; the completed step shows its checkpoint diff."""
    with site.session("operate") as client:
        html = client.get(f"/runs/{ended}/steps/alpha/two").text
        one = client.get(f"/runs/{ended}/steps/alpha/one").text
        three = client.get(f"/runs/{ended}/steps/beta/three").text
    assert 'data-attempt="1" data-outcome="failed_' in html
    log = html.split('id="step-log"')[1].split("</pre>")[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in log
    assert "&lt;img src=x onerror=alert(2)&gt;" in log
    assert '<span class="ansi-fg-1">red ' in log
    assert "\x1b" not in html and "\x07" not in html
    assert "<script>alert" not in html and "<img" not in html and "<b>bad" not in html
    assert 'data-file="src/boom.py"' in html or re.search(r'data-file="[^"]*src/boom\.py"', html)
    section = html.split("Findings (")[1].split("</section>")[0]
    assert "ValueError: &lt;b&gt;bad&lt;/b&gt;" in section, section
    assert "Diagnostics" in html and "Command line" in html
    assert '<span class="hl-gi">+' in one and 'id="step-diff"' in one
    assert "+&lt;script&gt;alert(3)&lt;/script&gt;" in one
    assert "<script>alert(3)" not in one
    assert "Say &lt;b&gt;hello&lt;/b&gt; to beta" in three  # the prompt sent


def test_the_log_route_answers_whole_lines_after_an_offset_as_inert_html(
        site: Web, ended: str) -> None:
    """/attempts/N/log?after=K answers the bytes after K (escaped) and where to go on;
    once the attempt ended it says finished."""
    with site.session("read") as reader:
        whole = reader.get(f"/runs/{ended}/steps/alpha/two/attempts/1/log").json()
        assert whole["finished"] is True and whole["offset"] == whole["size"] > 0
        assert "&lt;script&gt;" in whole["html"] and "<script>" not in whole["html"]
        later = reader.get(f"/runs/{ended}/steps/alpha/two/attempts/1/log",
                           params={"after": whole["offset"]}).json()
        assert later["html"] == "" and later["finished"] is True
        assert reader.get(f"/runs/{ended}/steps/alpha/two/attempts/1/log",
                          params={"after": "-1"}).status_code == 422


def test_retry_from_the_step_page_needs_csrf_and_scope_and_names_the_token(
        site: Web, ended: str) -> None:
    """The step page's retry form posts to the run's retry route: without CSRF or with a
    read session 403 and nothing changes; with both the run is retried as api:t-operate."""
    url = f"/runs/{ended}/steps/alpha/two/retry"
    before = len(_events(site, ended))
    with site.session("read") as reader:
        page = reader.get(f"/runs/{ended}/steps/alpha/two").text
        assert "/retry" not in page and 'id="retry-step"' not in page
        assert reader.post(url, data={"csrf": csrf_of(page)}).status_code == 403
    with site.session("operate") as client:
        page = client.get(f"/runs/{ended}/steps/alpha/two").text
        assert f'action="{url}"' in page and 'data-confirm="Retry step alpha/two?' in page
        assert client.post(url, data={}).status_code == 403
        assert len(_events(site, ended)) == before
        done = client.post(url, data={"csrf": csrf_of(page),
                                      "next": f"/runs/{ended}/steps/alpha/two"})
        assert done.status_code == 303, done.text[-1500:]
        assert done.headers["location"] == f"/runs/{ended}/steps/alpha/two?done=retried"
        assert "Step queued for another try" in client.get(done.headers["location"]).text
    site.wait_ended(ended)
    asked = [e["data"] for e in _events(site, ended) if e["type"] == "dev.aidp.run.requested"]
    assert asked[-1]["by"] == "api:t-operate" and asked[-1]["action"] == "retry"


def _wait_gate(site: Web, run_id: str) -> None:
    deadline = time.monotonic() + 60
    with site.api("read") as api:
        while True:
            step = api.get(f"/runs/{run_id}/steps/docs/review").json()
            if step.get("status") == "awaiting_approval":
                return
            assert time.monotonic() < deadline, step
            time.sleep(0.2)


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_gate_is_decided_from_the_step_page_as_the_tokens_name(site: Web,
                                                                 decision: str) -> None:
    """A gate's page offers approve (optional comment) and reject (reason); without CSRF or
    with a read session 403 and no decision; with both the journal names api:t-operate."""
    with site.session("operate") as client:
        run_id = _start(client, "ws/gate.yaml")
        _wait_gate(site, run_id)
        page_url = f"/runs/{run_id}/steps/docs/review"
        page = client.get(page_url).text
        assert "Write docs/notes.md by hand." in page
        url = f"{page_url}/{decision}"
        assert f'action="{url}"' in page
        with site.session("read") as reader:
            shown = reader.get(page_url).text
            assert f'action="{url}"' not in shown
            assert reader.post(url, data={"csrf": csrf_of(shown), "reason": "r"}
                               ).status_code == 403
        assert client.post(url, data={"reason": "no csrf"}).status_code == 403
        kind = f"dev.aidp.step.{decision}d" if decision == "approve" else \
            "dev.aidp.step.rejected"
        assert not [e for e in _events(site, run_id) if e["type"] == kind]
        done = client.post(url, data={"csrf": csrf_of(page), "reason": "looked <ok>"})
        assert done.status_code == 303, done.text[-1500:]
        decided = [e["data"] for e in _events(site, run_id) if e["type"] == kind]
        assert decided and decided[0]["by"] == "api:t-operate"
        assert decided[0]["reason"] == "looked <ok>"
        client.post(f"/runs/{run_id}/cancel", data={"csrf": csrf_of(page)})


def test_tools_page_shows_profiles_and_breakers_and_resets_one_as_the_token(
        site: Web, ended: str) -> None:
    """The impl profile and its breaker are listed; check and reset need operate + CSRF
    (403 otherwise); the reset is journaled as api:t-operate; a read session sees no button."""
    with site.session("read") as reader:
        page = reader.get("/tools").text
        assert 'data-profile="impl"' in page
        assert 'data-breaker="profile:impl"' in page
        assert "/tools/breakers/reset" not in page and "/tools/check" not in page
        refused = reader.post("/tools/breakers/reset",
                              data={"csrf": csrf_of(page), "key": "profile:impl"})
        assert refused.status_code == 403
    with site.session("operate") as client:
        page = client.get("/tools").text
        assert 'data-confirm="Close breaker profile:impl' in page
        assert client.post("/tools/breakers/reset", data={"key": "profile:impl"}
                           ).status_code == 403
        with _db(site) as db:
            assert db.execute("SELECT count(*) FROM events WHERE kind = 'breaker.reset'"
                              ).fetchone()[0] == 0
        done = client.post("/tools/breakers/reset",
                           data={"csrf": csrf_of(page), "key": "profile:impl"})
        assert done.status_code == 303 and done.headers["location"] == "/tools?done=reset"
        missing = client.post("/tools/breakers/reset",
                              data={"csrf": csrf_of(page), "key": "profile:<none>"})
        assert missing.status_code == 404 and "&lt;none&gt;" in missing.text
        checked = client.post("/tools/check", data={"csrf": csrf_of(page), "profile": "impl",
                                                    "offline": "1"})
        assert checked.status_code == 303
        assert 'data-profile="impl" data-health="ok"' in client.get("/tools").text
    with _db(site) as db:
        rows = db.execute("SELECT data FROM events WHERE kind = 'breaker.reset'").fetchall()
    assert [json.loads(r[0])["by"] for r in rows] == ["api:t-operate"]


def test_specs_pages_show_requirements_conflicts_and_review_a_proposal(site: Web) -> None:
    """The specs page lists specs and changes; a spec shows its requirements and scenarios; a
    change is submitted and approved from its page (operate + CSRF), recorded as
    api:t-operate; a reject without a comment is refused and changes nothing."""
    with site.session("read") as reader:
        listing = reader.get("/specs").text
        assert f'data-change="{CHANGE}"' in listing and 'data-spec="auth"' in listing
        spec = reader.get("/specs/spec/auth").text
        assert "data-requirement=" in spec and "data-scenario=" in spec
        change = reader.get(f"/specs/change/{CHANGE}").text
        assert "/specs/proposals/" not in change
        assert reader.post(f"/specs/proposals/{CHANGE}/submit",
                           data={"csrf": csrf_of(change)}).status_code == 403
        valid = reader.get("/specs/validate").text
        assert 'id="validation-result"' in valid
    with site.session("operate") as client:
        page = client.get(f"/specs/change/{CHANGE}").text
        token = csrf_of(page)
        assert client.post(f"/specs/proposals/{CHANGE}/submit", data={}).status_code == 403
        submitted = client.post(f"/specs/proposals/{CHANGE}/submit", data={"csrf": token})
        assert submitted.status_code == 303, submitted.text[-1500:]
        assert 'data-proposal="add-two-factor"' in client.get("/specs").text  # in review
        refused = client.post(f"/specs/proposals/{CHANGE}/reject", data={"csrf": token})
        assert refused.status_code == 400 and "comment" in refused.text
        approved = client.post(f"/specs/proposals/{CHANGE}/approve",
                               data={"csrf": token, "comment": "fine <by me>"})
        assert approved.status_code in (200, 303), approved.text[-1500:]
        shown = client.get(f"/specs/change/{CHANGE}").text
        assert 'data-state="approved"' in shown and "fine &lt;by me&gt;" in shown
        assert "api:t-operate" in shown
        assert 'name="source" value="change"' in shown
        bad = client.post(f"/specs/proposals/{CHANGE}/explode", data={"csrf": token})
        assert bad.status_code == 400


def _token_row(html: str, name: str) -> str:
    match = re.search(rf'<tr data-token="{re.escape(name)}"[^>]*>', html)
    assert match, name
    return match.group(0)


def test_settings_create_a_token_shown_once_and_revoke_it_with_admin_scope(site: Web) -> None:
    """An admin session creates a token (its secret on that answer only) and revokes it;
    operate or no CSRF gets 403 and nothing changes; the revoked token signs in no more."""
    with site.session("operate") as operator:
        page = operator.get("/settings").text
        assert "/settings/tokens" not in page and 'data-token="t-admin"' in page
        assert operator.post("/settings/tokens", data={"csrf": csrf_of(page), "name": "x1",
                                                       "scope": "read"}).status_code == 403
    with site.session("admin") as admin:
        page = admin.get("/settings").text
        token = csrf_of(page)
        assert admin.post("/settings/tokens", data={"name": "x1"}).status_code == 403
        assert 'data-token="x1"' not in admin.get("/settings").text
        made = admin.post("/settings/tokens", data={"csrf": token, "name": "web-made",
                                                    "scope": "read"})
        assert made.status_code == 201 and made.headers["cache-control"] == "no-store"
        secret = re.search(r'id="new-token-secret"[^>]*>(aidp_[0-9a-f]{12}_[\w-]{43})<',
                           made.text)
        assert secret
        listing = admin.get("/settings").text
        assert secret.group(1) not in listing
        assert 'data-active="yes"' in _token_row(listing, "web-made")
        dup = admin.post("/settings/tokens", data={"csrf": token, "name": "web-made",
                                                   "scope": "read"})
        assert dup.status_code == 400 and "exists already" in dup.text
        with site.anonymous() as anon:
            assert anon.post("/login", data={"token": secret.group(1)}).status_code == 303
        token_id = secret.group(1).split("_")[1]
        assert admin.post(f"/settings/tokens/{token_id}/revoke", data={}).status_code == 403
        assert 'data-confirm="Revoke token web-made?' in listing
        revoked = admin.post(f"/settings/tokens/{token_id}/revoke", data={"csrf": token})
        assert revoked.status_code == 303
        assert 'data-active="no"' in _token_row(admin.get("/settings").text, "web-made")
        with site.anonymous() as anon:
            assert anon.post("/login", data={"token": secret.group(1)}).status_code == 401
    with _db(site) as db:
        rows = db.execute("SELECT kind, data FROM events WHERE kind LIKE 'token.%' "
                          "ORDER BY id").fetchall()
    journal = [(kind, json.loads(data)) for kind, data in rows]
    assert [(k, d["token"], d["by"]) for k, d in journal if d["token"] == "web-made"] == [
        ("token.created", "web-made", "api:t-admin"), ("token.revoked", "web-made", "api:t-admin")]
    assert secret.group(1)[18:] not in json.dumps([d for _, d in journal])


def test_settings_webhooks_are_created_listed_and_deleted_by_an_admin(site: Web) -> None:
    """An admin creates a webhook (the page names the secret's variable, never a secret),
    sees it listed, deletes it; bad input is shown escaped and nothing is written."""
    with site.session("admin") as admin:
        token = csrf_of(admin.get("/settings").text)
        bad = admin.post("/settings/webhooks", data={
            "csrf": token, "url": "ftp://<x>", "events": "run.*", "secret_env": "HOOK_KEY"})
        assert bad.status_code == 400 and "&lt;x&gt;" in bad.text
        assert "data-webhook=" not in admin.get("/settings").text
        made = admin.post("/settings/webhooks", data={
            "csrf": token, "url": "https://hooks.example.com/aidp", "events": "run.* step.failed",
            "secret_env": "HOOK_KEY"})
        assert made.status_code == 201, made.text[-1500:]
        assert "<code>HOOK_KEY</code>" in made.text
        hook = re.search(r'data-webhook="(wh_[0-9a-f]+)"', made.text)
        assert hook
        assert admin.post(f"/settings/webhooks/{hook.group(1)}/delete", data={}
                          ).status_code == 403
        gone = admin.post(f"/settings/webhooks/{hook.group(1)}/delete", data={"csrf": token})
        assert gone.status_code == 303
        assert f'data-webhook="{hook.group(1)}"' not in admin.get("/settings").text


def test_a_running_attempts_log_is_followed_from_the_offset_the_page_was_rendered_at(
        site: Web) -> None:
    """While the attempt runs, the page marks its log to follow (and reloads itself without
    JavaScript); the log route answers the later lines after the page's offset, then says
    finished."""
    with site.session("read") as reader, site.session("operate") as client:
        run_id = _start(client, "ws/slow.yaml")
        page_url = f"/runs/{run_id}/steps/w/slow"
        deadline = time.monotonic() + 30
        while True:
            page = reader.get(page_url).text
            log = page.split('id="step-log"')[-1].split("</pre>")[0]
            if 'data-follow="yes"' in page and "first" in log:
                break
            assert time.monotonic() < deadline, page[-2000:]
            time.sleep(0.2)
        assert '<meta http-equiv="refresh" content="5">' in page
        offset = int(re.search(r'data-offset="(\d+)"', page).group(1))  # type: ignore[union-attr]
        log_url = f"{page_url}/attempts/1/log"
        early = reader.get(log_url, params={"after": offset}).json()
        assert early["finished"] is False and "first" not in early["html"]
        site.wait_ended(run_id)
        late = reader.get(log_url, params={"after": early["offset"]}).json()
        assert "second" in late["html"] and late["finished"] is True
        assert 'data-follow="yes"' not in reader.get(page_url).text


def test_a_dead_delivery_is_listed_and_redelivered_by_an_admin(site: Web) -> None:
    """A webhook to a closed port gets a delivery of a run's events; the settings page lists
    it with its status and error; redeliver needs admin + CSRF (403 otherwise) and queues it."""
    with site.session("admin") as admin:
        token = csrf_of(admin.get("/settings").text)
        made = admin.post("/settings/webhooks", data={
            "csrf": token, "url": "http://127.0.0.1:9/hook", "events": "run.requested",
            "secret_env": "HOOK_KEY", "allow_private": "1"})
        assert made.status_code == 201, made.text[-1500:]
        _start(admin, "ws/ok.yaml")
        deadline = time.monotonic() + 30
        while True:
            page = admin.get("/settings").text
            dead = re.search(r'data-delivery="(\d+)" data-status="dead"', page)
            if dead:
                break
            assert time.monotonic() < deadline, page[-3000:]
            time.sleep(0.3)
        url = f"/settings/deliveries/{dead.group(1)}/redeliver"
        assert f'action="{url}"' in page
        assert admin.post(url, data={}).status_code == 403
        with site.session("operate") as operator:
            assert operator.post(url, data={"csrf": csrf_of(operator.get("/settings").text)}
                                 ).status_code == 403
        again = admin.post(url, data={"csrf": token})
        assert again.status_code == 303 and again.headers["location"].endswith("redelivered")
        assert admin.post("/settings/deliveries/999999/redeliver",
                          data={"csrf": token}).status_code == 404


def test_read_only_access_shows_the_new_pages_without_a_single_form(web_read_only: Web) -> None:
    """With [serve] dashboard_read_only an anonymous visitor reads the tools, specs and
    settings pages (no openspec/ here: the page says so) with no form, and every action of
    them is refused (403) without changing anything."""
    with web_read_only.anonymous() as anon:
        for path in ("/tools", "/specs", "/settings"):
            page = anon.get(path)
            assert page.status_code == 200, path
            assert 'name="csrf"' not in page.text and 'method="post"' not in page.text, path
        assert "no <code>openspec/</code> directory" in anon.get("/specs").text
        assert anon.get("/specs/coverage").status_code == 404
        for path, data in [("/tools/check", {}), ("/tools/breakers/reset", {"key": "x:y"}),
                           ("/settings/tokens", {"name": "anon", "scope": "admin"}),
                           ("/settings/tokens/t-admin/revoke", {}),
                           ("/specs/proposals/c/approve", {})]:
            assert anon.post(path, data={"csrf": "", **data}).status_code == 403, path
        assert 'data-token="anon"' not in anon.get("/settings").text
        assert 'data-active="no"' not in anon.get("/settings").text
