"""A model step's exchanges, recorded by the gateway, through the API and on the dashboard's
step page: method, path, model, status, latency and finding; the request and the answer
masked and rendered inert."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from aidp.testing import FakeLLM
from tests.api.conftest import start_served
from tests.conftest import Cli, init_repo
from tests.web.conftest import Web

KEY = "sk-canary-exchanges-5b1e9d3f7a"
PLAN = """version: 1
workstreams:
  - id: w
    scope: ["notes/**"]
    steps:
      - {id: s, tool: llm, prompt: "Write notes/a.md.", retry: {max_attempts: 1}}
"""
REPLY = ("notes/a.md\n```\n<script>alert('x')</script> hello\n```\n"
         f"I was called with {KEY}.\n")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Web, str]]:
    """A run whose one model step was answered (markup and the key in the answer) by a fake
    provider, then the dashboard on its repository."""
    repo = tmp_path_factory.mktemp("exchanges") / "repo"
    init_repo(repo, {"README.md": "demo\n", "plan.yaml": PLAN})
    cli = Cli(repo, in_process=True)
    with pytest.MonkeyPatch.context() as patch, FakeLLM([{"reply": REPLY}], api_key=KEY) as llm:
        patch.setenv("AIDP_TEST_EXCHANGES_KEY", KEY)
        (repo / "aidp.toml").write_text(
            f'[tools.llm]\nadapter = "openai"\nbase_url = "{llm.base_url}"\n'
            'model = "fake-model"\nedit_format = "whole"\n'
            'api_key_env = "AIDP_TEST_EXCHANGES_KEY"\ntimeout = 20\n')
        run_id = json.loads(cli("run", str(repo / "plan.yaml"), "--json", check=True).stdout
                            )["run_id"]
    served = start_served(Cli(repo))
    try:
        yield Web(served.url.removesuffix("/api/v1"), served), run_id
    finally:
        served.stop()


def test_the_api_lists_an_attempts_exchanges_masked(recorded: tuple[Web, str]) -> None:
    web, run_id = recorded
    with web.api("read") as api:
        answer = api.get(f"/runs/{run_id}/steps/w/s/attempts/1/exchanges")
        missing = api.get(f"/runs/{run_id}/steps/w/s/attempts/9/exchanges")
    assert answer.status_code == 200 and missing.status_code == 404
    [exchange] = answer.json()["exchanges"]
    assert (exchange["method"], exchange["path"], exchange["model"], exchange["status"]) == (
        "POST", "/chat/completions", "fake-model", 200)
    assert "Write notes/a.md." in exchange["request"]
    assert "I was called with ***." in exchange["response"] and KEY not in answer.text


def test_the_step_page_shows_the_exchanges_inert(recorded: tuple[Web, str]) -> None:
    web, run_id = recorded
    with web.session("read") as client:
        page = client.get(f"/runs/{run_id}/steps/w/s").text
    section = page[page.index('id="exchanges-title"'):page.index('id="diagnostics-title"')]
    assert "POST /chat/completions" in section and "fake-model" in section
    assert "&lt;script&gt;alert" in section and "<script>alert" not in section
    assert KEY not in page
