"""The dashboard against the real ``aidp serve``: sign-in and its cookie, sessions required
(or read-only access), CSRF and origin checks on every action, runs started and shown, tool
output rendered inert, the live feed."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.web.conftest import Web, csrf_of, start_run

FailedRun = tuple[str, dict[str, Any]]


def _run_ids(web: Web) -> list[str]:
    with web.api("read") as api:
        return [r["run_id"] for r in api.get("/runs", params={"limit": 500}).json()["items"]]


def test_sign_in_sets_an_httponly_strict_session_cookie(web: Web) -> None:
    """POST /login with a valid token: 303 to next, cookie HttpOnly, SameSite=Strict, Path=/
    (not Secure over plain http); the pages then show who signed in."""
    with web.anonymous() as client:
        answer = client.post("/login", data={"token": web.served.tokens["operate"],
                                             "next": "/runs?status=failed"})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/runs?status=failed"
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("aidp_session=")
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= flags
        assert "secure" not in flags
        page = client.get("/runs")
        assert page.status_code == 200
        assert "t-operate" in page.text
        out = client.post("/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303 and 'aidp_session=""' in out.headers["set-cookie"]
        assert client.get("/runs").status_code == 303


def test_a_bad_token_or_a_foreign_next_is_refused_at_sign_in(web: Web) -> None:
    """An unknown token gets the form again (401) and no cookie; ``next`` never leaves the
    site; a sign-in posted from another origin is refused."""
    with web.anonymous() as client:
        bad = client.post("/login", data={"token": "aidp_000000000000_" + "x" * 43})
        assert bad.status_code == 401
        assert "unknown or revoked token" in bad.text
        assert "set-cookie" not in bad.headers
        away = client.post("/login", data={"token": web.served.tokens["read"],
                                           "next": "//evil.example/x"})
        assert away.headers["location"] == "/runs"
        cross = client.post("/login", data={"token": web.served.tokens["read"]},
                            headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403 and "set-cookie" not in cross.headers


def test_no_page_works_without_a_session(web: Web) -> None:
    """Without read-only access every page answers 303 to the sign-in form, naming where to
    come back; the state and live feeds too."""
    with web.anonymous() as client:
        for path in ("/runs", "/runs?status=failed", "/runs/01ABC", "/runs/01ABC/state",
                     "/runs/01ABC/live"):
            answer = client.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/login?next=/runs"), path
        assert client.get("/").headers["location"] == "/runs"
        assert client.get("/login").status_code == 200


def test_a_forged_post_is_refused_and_changes_nothing(web: Web, failed_run: FailedRun) -> None:
    """A state-changing POST without the CSRF token, with another session's token, or from a
    foreign Origin/Referer gets 403 and changes nothing; the same form from the page works."""
    run_id, _ = failed_run
    before = _run_ids(web)
    with web.session("operate") as client, web.session("admin") as other:
        token = csrf_of(client.get("/runs").text)
        foreign = csrf_of(other.get("/runs").text)
        form = {"source": "files", "files": "ws/demo.yaml"}
        forged = [
            client.post("/runs", data=form),
            client.post("/runs", data={**form, "csrf": "0" * 64}),
            client.post("/runs", data={**form, "csrf": foreign}),
            client.post("/runs", data={**form, "csrf": token},
                        headers={"Origin": "http://evil.example"}),
            client.post("/runs", data={**form, "csrf": token},
                        headers={"Referer": "http://evil.example/page"}),
            client.post("/runs", data={**form, "csrf": token}, headers={"Origin": "null"}),
            client.post(f"/runs/{run_id}/steps/alpha/two/retry", data={}),
            client.post(f"/runs/{run_id}/rollback", data={"to": "alpha/one"},
                        headers={"Origin": "http://evil.example"}),
        ]
        assert [a.status_code for a in forged] == [403] * len(forged)
        assert "CSRF" in forged[0].text
        assert _run_ids(web) == before
        assert client.get(f"/runs/{run_id}/state").json()["state"] == "failed"
        own = client.post("/runs", data={**form, "csrf": token},
                          headers={"Origin": web.base})
        assert own.status_code == 303
        assert len(_run_ids(web)) == len(before) + 1


def test_read_scope_may_look_but_not_act(web: Web, failed_run: FailedRun) -> None:
    """A read token's session sees runs but is offered no form and gets 403 for acting,
    even with a valid CSRF token."""
    run_id, _ = failed_run
    before = _run_ids(web)
    with web.session("read") as client:
        page = client.get("/runs")
        assert page.status_code == 200
        assert 'method="post" action="/runs"' not in page.text
        token = csrf_of(page.text)  # the sign-out form's
        refused = client.post("/runs", data={"csrf": token, "source": "files",
                                             "files": "ws/demo.yaml"})
        assert refused.status_code == 403
        assert "operate" in refused.text
        run_page = client.get(f"/runs/{run_id}").text
        assert "/retry" not in run_page and "/cancel" not in run_page
        assert client.post(f"/runs/{run_id}/steps/alpha/two/retry",
                           data={"csrf": token}).status_code == 403
    assert _run_ids(web) == before


def test_a_run_started_here_is_listed_driven_and_journaled(web: Web,
                                                          failed_run: FailedRun) -> None:
    """The runs page lists a run started from the dashboard (filter and search find it); the
    service's worker drove it; the journal names the token (api:NAME, as API routes do)."""
    run_id, view = failed_run
    assert view["status"] == "failed"
    with web.session("read") as client:
        assert f'data-run="{run_id}"' in client.get("/runs").text
        assert f'data-run="{run_id}"' in client.get("/runs", params={"status": "failed"}).text
        assert f'data-run="{run_id}"' not in client.get(
            "/runs", params={"status": "completed"}).text
        assert f'data-run="{run_id}"' in client.get("/runs", params={"q": "beta"}).text
        assert f'data-run="{run_id}"' in client.get("/runs", params={"q": run_id[-6:]}).text
        assert f'data-run="{run_id}"' not in client.get("/runs", params={"q": "zzz"}).text
        bad = client.get("/runs", params={"status": "<b>x"})
        assert bad.status_code == 400 and "&lt;b&gt;x" in bad.text
    with web.api("read") as api:
        events = api.get(f"/runs/{run_id}/events").json()
    requested = [e["data"] for e in events if e["type"] == "dev.aidp.run.requested"]
    assert requested and requested[0]["by"] == "api:t-operate"


def test_bad_input_to_the_start_form_names_the_problem_and_writes_nothing(web: Web) -> None:
    """A missing file, a path outside the repository or an unknown change is shown on the
    form again (4xx, the message escaped); no run is recorded."""
    before = _run_ids(web)
    with web.session("operate") as client:
        token = csrf_of(client.get("/runs").text)
        for form, status, says in [
            ({"source": "files", "files": "ws/<nope>.yaml"}, 400, "&lt;nope&gt;"),
            ({"source": "files", "files": "../outside.yaml"}, 400, "outside the repository"),
            ({"source": "files", "files": ""}, 400, "at least one"),
            ({"source": "change", "change": "no-such-change"}, 404, "no-such-change"),
            ({"source": "files", "files": "ws/demo.yaml", "parallel": "0"}, 400, "parallel"),
        ]:
            answer = client.post("/runs", data={**form, "csrf": token})
            assert answer.status_code == status, (form, answer.text[-500:])
            assert says in answer.text, form
    assert _run_ids(web) == before


def test_run_page_shows_every_step_with_its_state_and_inert_output(
        web: Web, failed_run: FailedRun) -> None:
    """Every step has a row with data-step and data-state (as the API reports them); the
    failed step's output shows its markup as text and its colour as a class, never as HTML or
    escape sequences."""
    run_id, view = failed_run
    with web.session("operate") as client:
        page = client.get(f"/runs/{run_id}")
    assert page.status_code == 200
    html = page.text
    states = {f"{ws['id']}/{s['id']}": s["status"]
              for ws in view["workstreams"] for s in ws["steps"]}
    assert states == {"alpha/one": "completed", "alpha/two": "failed",
                      "beta/three": "skipped"}
    for step, state in states.items():
        assert f'<tr data-step="{step}" data-state="{state}">' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<script>alert" not in html and "<img" not in html
    assert '<span class="ansi-fg-1">red ' in html
    assert "\x1b" not in html and "\x07" not in html
    output = html.split("Last lines of output")[1].split("</pre>")[0]
    assert "title" not in output  # the OSC window title was dropped, not shown
    assert f'href="/runs/{run_id}/steps/alpha/two"' in html
    assert f'action="/runs/{run_id}/steps/alpha/two/retry"' in html
    assert 'data-confirm="Retry step alpha/two?' in html


def test_every_dashboard_response_carries_a_strict_csp_and_no_inline_script(
        web: Web, failed_run: FailedRun) -> None:
    """Pages, errors and redirects carry the CSP (scripts only from 'self'); no page holds an
    inline script or an inline event handler."""
    run_id, _ = failed_run
    with web.session("operate") as client:
        for path in ("/login", "/", "/runs", f"/runs/{run_id}", "/runs/NOPE",
                     "/no-such-page", "/static/aidp.css"):
            answer = client.get(path)
            csp = answer.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "script-src 'self'" in csp, path
            assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
            assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", answer.text) is None, path
            assert re.search(r"<[^>]*\son[a-z]+\s*=", answer.text) is None, path
        missing = client.get("/runs/NOPE")
        assert missing.status_code == 404 and "no run" in missing.text.lower()
        assert client.get("/api/v1/nope").headers["content-type"] == \
            "application/problem+json"


def test_live_feed_sends_the_runs_events_with_ids_and_resumes_after_last_event_id(
        web: Web, failed_run: FailedRun) -> None:
    """/runs/ID/live streams the run's journal as SSE (id = journal id, data = CloudEvent);
    a reconnect with Last-Event-ID gets the events after it, none twice."""
    run_id, _ = failed_run
    with web.session("read") as reader:

        def first_ids(headers: dict[str, str]) -> list[int]:
            ids: list[int] = []
            with reader.stream("GET", f"/runs/{run_id}/live", params={"after": "0"},
                               headers=headers) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        doc = json.loads(line[6:])
                        assert doc["aidprun"] == run_id and doc["specversion"] == "1.0"
                    if line.startswith("id: "):
                        ids.append(int(line[4:]))
                    if len(ids) == 4:
                        break
            return ids

        ids = first_ids({})
        assert ids == sorted(ids) and len(set(ids)) == 4
        resumed = first_ids({"Last-Event-ID": str(ids[1])})
        assert resumed[:2] == ids[2:4]
        bad = reader.get(f"/runs/{run_id}/live", headers={"Last-Event-ID": "x<y"})
        assert bad.status_code == 400 and "x&lt;y" in bad.text


def test_state_feed_gives_states_and_the_dags_edges(web: Web, failed_run: FailedRun) -> None:
    """/runs/ID/state (what the page's script reads) gives each step's state and the DAG's
    edges (step and workstream dependencies)."""
    run_id, _ = failed_run
    with web.session("read") as reader:
        state = reader.get(f"/runs/{run_id}/state").json()
    assert {s["id"]: s["state"] for s in state["steps"]} == {
        "alpha/one": "completed", "alpha/two": "failed", "beta/three": "skipped"}
    assert sorted(map(tuple, state["edges"])) == [("alpha/one", "alpha/two"),
                                                 ("alpha/two", "beta/three")]


def test_vendor_files_are_an_allow_list(web: Web) -> None:
    """/static/vendor serves the listed front-end files and nothing else of node_modules."""
    with web.anonymous() as client:
        assert client.get("/static/vendor/cytoscape.min.js").status_code == 200
        for name in ("lodash/lodash.js", "..%2Fpackage.json", "htmx.org", "nope.js"):
            assert client.get(f"/static/vendor/{name}").status_code == 404, name


def test_read_only_access_reads_without_a_session_and_never_acts(web_read_only: Web) -> None:
    """With [serve] dashboard_read_only anonymous visitors see the pages (and no forms), any
    POST is refused with 403; without node_modules the run page works and says why there is
    no graph."""
    web = web_read_only
    with web.session("operate") as client:
        run_id = start_run(client)
    with web.anonymous() as anon:
        runs = anon.get("/runs")
        assert runs.status_code == 200
        assert run_id in runs.text and 'method="post" action="/runs"' not in runs.text
        page = anon.get(f"/runs/{run_id}")
        assert page.status_code == 200
        assert "graph library is not installed" in page.text
        assert "/static/vendor/" not in page.text
        assert 'name="csrf"' not in page.text
        assert anon.post(f"/runs/{run_id}/cancel", data={"csrf": ""}).status_code == 403
        assert anon.post("/runs", data={"source": "files", "files": "ws/demo.yaml"}
                         ).status_code == 403
        assert anon.get("/static/vendor/cytoscape.min.js").status_code == 404
    assert _run_ids(web) == [run_id]
