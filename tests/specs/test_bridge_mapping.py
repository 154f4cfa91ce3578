"""``plan --change``: each task gets the requirements it names, not the whole change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from aidp.specs import load_project
from aidp.specs.bridge import change_to_workstreams
from tests.conftest import Cli, init_repo
from tests.specs.corpus import proposal

NOTIFY = ["Email digest", "Push alerts", "Quiet hours", "Unsubscribe link", "Delivery retries"]
PREFS = ["Channel choice", "Language", "Time zone", "Opt out", "Export settings"]


def requirement(name: str) -> str:
    """A requirement as real changes write them: a paragraph and three scenarios."""
    scenarios = "".join(
        f"\n#### Scenario: {name} case {n}\n- **GIVEN** a signed-in user with a verified "
        f"address and default settings\n- **WHEN** the user exercises {name.lower()} in "
        f"situation {n}\n- **THEN** the system applies {name.lower()} as configured\n- **AND** "
        "the outcome is recorded in the audit log with the user's id and a timestamp\n"
        for n in (1, 2, 3))
    return (f"\n### Requirement: {name}\nThe system SHALL support {name.lower()} for every "
            "account, honouring the user's preferences, the account's plan limits and the "
            "regional rules that apply to the account's home region, and it MUST record each "
            f"decision for support staff.\n{scenarios}")


def delta(names: list[str]) -> str:
    return "## ADDED Requirements\n" + "".join(requirement(n) for n in names)


TASKS = """## 1. Backend
- [ ] 1.1 Create the notification tables and migrations
- [ ] 1.2 Implement the email digest job
- [ ] 1.3 Send push alerts through the gateway (spec://notify/Push%20alerts)
- [ ] 1.4 Respect quiet hours and Time Zone of the user
- [ ] 1.5 Retry failed sends (notify/Delivery retries)
## 2. Preferences
- [ ] 2.1 Settings page skeleton
- [ ] 2.2 Persist the choices (spec://prefs)
- [ ] 2.3 Wire the feature flag
## 3. Docs
- [ ] 3.1 Write the user guide
- [ ] 3.2 Update the changelog
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A change of ten requirements (two capabilities) and ten tasks, five naming some."""
    return init_repo(tmp_path / "repo", {
        "openspec/changes/add-notify/proposal.md": proposal("Add notifications"),
        "openspec/changes/add-notify/tasks.md": TASKS,
        "openspec/changes/add-notify/specs/notify/spec.md": delta(NOTIFY),
        "openspec/changes/add-notify/specs/prefs/spec.md": delta(PREFS),
    })


def _full(prompt: str) -> list[str]:
    """The requirement keys whose full text a prompt carries."""
    keys = [f"notify/{n}" for n in NOTIFY] + [f"prefs/{n}" for n in PREFS]
    return [key for key in keys if f"### {key} (ADDED)" in prompt]


def test_each_task_gets_the_requirements_it_names(root: Path) -> None:
    """By name (whole phrase, any case), by spec:// URI (a capability URI names all of it) and
    by capability/name; a task naming none gets a list of keys and the delta specs as context."""
    steps = {s["id"]: s for s in change_to_workstreams(
        load_project(root), "add-notify")["workstreams"][0]["steps"]}
    full = {sid: _full(s["prompt"]) for sid, s in steps.items()}
    assert full == {
        "task-1.1": [], "task-1.2": ["notify/Email digest"],
        "task-1.3": ["notify/Push alerts"],
        "task-1.4": ["notify/Quiet hours", "prefs/Time zone"],
        "task-1.5": ["notify/Delivery retries"],
        "task-2.1": [], "task-2.2": [f"prefs/{n}" for n in PREFS],
        "task-2.3": [], "task-3.1": [], "task-3.2": []}
    assert "#### Scenario: Push alerts case 2" in steps["task-1.3"]["prompt"]
    unnamed = steps["task-3.1"]
    assert "Scenario:" not in unnamed["prompt"]
    assert all(f"- notify/{n} (ADDED)" in unnamed["prompt"] for n in NOTIFY)
    assert all(f"- prefs/{n} (ADDED)" in unnamed["prompt"] for n in PREFS)
    assert unnamed["context"] == ["openspec/changes/add-notify/tasks.md",
                                  "openspec/changes/add-notify/specs/notify/spec.md",
                                  "openspec/changes/add-notify/specs/prefs/spec.md"]
    assert steps["task-1.2"]["context"] == ["openspec/changes/add-notify/tasks.md"]


def test_a_word_inside_another_names_nothing(tmp_path: Path) -> None:
    """"Language" is not named by "Languages"; a small change (<= 3 requirements) still gives
    a task naming none every requirement in full."""
    repo = init_repo(tmp_path / "repo", {
        "openspec/changes/c/proposal.md": proposal("C"),
        "openspec/changes/c/tasks.md": "- [ ] 1 List Languages\n",
        "openspec/changes/c/specs/prefs/spec.md": delta(["Language", "Opt out"]),
    })
    (step,) = change_to_workstreams(load_project(repo), "c")["workstreams"][0]["steps"]
    assert _full(step["prompt"]) == ["prefs/Language", "prefs/Opt out"]


def test_plan_change_output_shrinks(root: Path) -> None:
    """aidp plan --change loads the compiled file, and the file is a fraction of the 3,009
    lines / 92,615 bytes that giving every unnamed task all ten requirements made it."""
    proc = Cli(root)("plan", "--change", "add-notify", "--json", timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["step_count"] == 10
    document = change_to_workstreams(load_project(root), "add-notify")
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    assert len(text.splitlines()) < 1000 and len(text.encode()) < 30_000
