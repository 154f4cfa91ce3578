"""The run page's controls against the real ``aidp serve``: each posts to a dashboard route
that calls the application layer, changes the run as the API would, and is journaled under the
token's name (``api:NAME``)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.web.conftest import Web, csrf_of, start_run

FailedRun = tuple[str, dict[str, Any]]


def _post(client: httpx.Client, run_id: str, action: str, **fields: str) -> httpx.Response:
    token = csrf_of(client.get(f"/runs/{run_id}").text)
    return client.post(f"/runs/{run_id}/{action}", data={"csrf": token, **fields})


def _by(web: Web, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in web.events(run_id) if e["type"] == f"dev.aidp.{kind}"]


def test_a_gate_is_approved_from_its_run_page(web: Web) -> None:
    """A step awaiting approval offers approve and reject; a rejection without a reason is
    refused (nothing changes); approving is journaled with the token's name."""
    with web.session("operate") as client:
        run_id = start_run(client, "ws/gate.yaml")
        web.wait_step(run_id, "docs/review", "awaiting_approval")
        page = client.get(f"/runs/{run_id}").text
        assert f'action="/runs/{run_id}/steps/docs/review/approve"' in page
        assert f'action="/runs/{run_id}/steps/docs/review/reject"' in page
        refused = _post(client, run_id, "steps/docs/review/reject", reason="  ")
        assert refused.status_code == 400 and "needs a reason" in refused.text
        assert _by(web, run_id, "step.rejected") == []
        done = _post(client, run_id, "steps/docs/review/approve")
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"/runs/{run_id}?done=approved"
        assert "Gate approved." in client.get(done.headers["location"]).text
    assert [e["by"] for e in _by(web, run_id, "step.approved")] == ["api:t-operate"]
    web.wait_ended(run_id)


def test_a_running_run_is_cancelled(web: Web) -> None:
    """Cancel stops a run the service drives; the journal names who asked."""
    with web.session("operate") as client:
        run_id = start_run(client, "ws/slow.yaml")
        web.wait_step(run_id, "slow/nap", "running")
        page = client.get(f"/runs/{run_id}").text
        assert 'data-confirm="Cancel run' in page
        done = _post(client, run_id, "cancel")
        assert done.status_code == 303, done.text
        assert web.wait_ended(run_id)["status"] == "cancelled"
    asked = _by(web, run_id, "run.cancel_requested") + _by(web, run_id, "run.finished")
    assert any(e.get("by") == "api:t-operate" for e in asked)


def test_roll_back_then_retry_a_failed_step(web: Web, failed_run: FailedRun) -> None:
    """Rolling back to a checkpoint reopens its workstream; retrying a failed step
    resumes the run in the service; both are journaled with the token's name; a step that did
    not fail cannot be retried (409, the message shown)."""
    run_id, _ = failed_run
    with web.session("operate") as client:
        wrong = _post(client, run_id, "steps/alpha/one/retry")
        assert wrong.status_code == 409 and "completed" in wrong.text
        back = _post(client, run_id, "rollback", to="alpha/one")
        assert back.status_code == 303, back.text
        state = client.get(f"/runs/{run_id}/state").json()
        assert {w["id"]: w["state"] for w in state["workstreams"]}["alpha"] == "pending"
        resumed = _post(client, run_id, "resume")
        assert resumed.status_code == 303, resumed.text
        assert web.wait_ended(run_id)["status"] == "failed"
        again = _post(client, run_id, "steps/alpha/two/retry")
        assert again.status_code == 303, again.text
        assert again.headers["location"] == f"/runs/{run_id}?done=retried"
        web.wait_ended(run_id)
    actions = [(e["action"], e["by"]) for e in _by(web, run_id, "run.requested")]
    assert ("resume", "api:t-operate") in actions and ("retry", "api:t-operate") in actions
    rolled = _by(web, run_id, "workstream.rolled_back")
    assert any(e.get("by") == "api:t-operate" for e in rolled)
