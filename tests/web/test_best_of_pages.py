"""Best-of-N candidates through the API and on the dashboard's step page, side by side."""

from __future__ import annotations

import json
import re

from tests.engine.test_best_of import SEEDED
from tests.web.conftest import Web


def test_the_api_and_the_step_page_show_every_candidate(web: Web) -> None:
    cli = web.served.cli
    plan = cli.cwd / "ws" / "best_of.yaml"
    plan.write_text(SEEDED)
    result = cli("run", "--json", str(plan))
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    with web.api("read") as api:
        attempts = api.get(f"/runs/{run_id}/steps/w/s/attempts").json()
    verdicts = [(a["number"], a["profile"], a["candidate"]["place"], a["candidate"]["verdict"])
                for a in attempts]
    assert verdicts == [(1, "shell", 1, "failed"), (2, "shell", 2, "won"),
                        (3, "shell", 3, "lost")]
    assert attempts[2]["candidate"]["diff_lines"] == 3
    with web.session("read") as client:
        page = client.get(f"/runs/{run_id}/steps/w/s")
        assert page.status_code == 200, page.text
        html = page.text
        table = html[html.index('<table class="candidates">'):]
        table = table[:table.index("</table>")]
        rows = re.findall(r'<tr data-attempt="(\d)" data-verdict="(\w+)"', table)
        assert rows == [("1", "failed"), ("2", "won"), ("3", "lost")]
        assert "lost to candidate 2: larger diff (3 vs 2 lines)" in table
        # a losing candidate's own diff: its commit against the round's start
        loser = client.get(f"/runs/{run_id}/steps/w/s", params={"attempt": 3}).text
        assert "+3" in loser and "out.txt" in loser
