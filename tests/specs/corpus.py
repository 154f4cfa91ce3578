"""A corpus of valid and broken OpenSpec specs and changes, built as real files.

Each case is a capability spec (``SPECS``) or a change directory (``CHANGES``); every rule of
``openspec validate`` that aidp mirrors has at least one case. ``build`` writes them all into one
``openspec/`` tree (v1 layout, ``config.yaml``), so the reference CLI and aidp can validate the
whole corpus in one run each.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHANGES", "SPECS", "build", "proposal"]

GOOD_PURPOSE = "Handle everything about this capability for every user of the whole system."


def spec(title: str, body: str, purpose: str = GOOD_PURPOSE) -> str:
    return f"# {title} Specification\n\n## Purpose\n{purpose}\n\n## Requirements\n{body}"


LOGIN = """### Requirement: Login
The system SHALL let a user log in.

#### Scenario: Good password
- **WHEN** the password is right
- **THEN** a session starts

#### Scenario: Bad password
- **WHEN** the password is wrong
- **THEN** an error is shown

### Requirement: Logout
The system SHALL end sessions on request.

#### Scenario: Logout
- **WHEN** the user logs out
- **THEN** the session ends
"""

SPECS: dict[str, str] = {
    "base": spec("base", LOGIN),
    "valid-spec": spec("valid", LOGIN),
    "no-purpose": "# x\n\n## Requirements\n" + LOGIN,
    "no-requirements-section": "# x\n\n## Purpose\n" + GOOD_PURPOSE + "\n",
    "empty-requirements": spec("x", "\n"),
    "brief-purpose": spec("x", LOGIN, purpose="Too short."),
    "no-scenario": spec("x", "### Requirement: Bare\nThe system SHALL be bare.\n"),
    "no-shall": spec("x", "### Requirement: Soft\nThe system does things.\n\n"
                          "#### Scenario: s\n- **WHEN** a\n- **THEN** b\n"),
    "shall-in-header": spec("x", "### Requirement: The system SHALL log\n\n"
                                 "#### Scenario: s\n- **WHEN** a\n- **THEN** b\n"),
    "delta-header-in-main": spec("x", LOGIN + "\n## ADDED Requirements\n"
                                              "### Requirement: Extra\nThe system SHALL x.\n"),
    "duplicate-requirement": spec("x", LOGIN + "\n### Requirement: Login\nThe system SHALL again."
                                               "\n\n#### Scenario: s\n- **WHEN** a\n"),
    "outside-requirements": "# x\n\n### Requirement: Early\nThe system SHALL x.\n\n## Purpose\n"
                            + GOOD_PURPOSE + "\n\n## Requirements\n" + LOGIN,
    "placeholder-purpose": spec("x", LOGIN, purpose="TBD"),
    "archive-placeholder": spec("x", LOGIN, purpose="TBD - created by archiving change add-x. "
                                                    "Update Purpose after archive."),
    "long-text": spec("x", "### Requirement: Long\nThe system SHALL " + "do a thing " * 60
                           + "\n\n#### Scenario: s\n- **WHEN** a\n- **THEN** b\n"),
    "fenced": spec("x", LOGIN + "\n```markdown\n### Requirement: Fenced\nnot real\n```\n"),
    "crlf-bom": "\ufeff" + spec("x", LOGIN).replace("\n", "\r\n"),
    "bold-scenario": spec("x", "### Requirement: Bold\nThe system SHALL x.\n\n"
                               "**Scenario: bold**\n- **WHEN** a\n"),
    "empty-scenario": spec("x", "### Requirement: Hollow\nThe system SHALL x.\n\n"
                                "#### Scenario: hollow\n"),
    "non-requirement-child": spec("x", "### Notes\nSome notes.\n\n" + LOGIN),
    "metadata-only": spec("x", "### Requirement: Meta\n**Constraint**: The system MUST x.\n\n"
                               "#### Scenario: s\n- **WHEN** a\n"),
    "identity/user-auth": spec("user-auth", LOGIN),
}


def proposal(title: str = "Do a thing") -> str:
    return (f"# Change: {title}\n\n## Why\nBecause the current behaviour is not good enough for "
            "our users today.\n\n## What Changes\n- Change the thing\n- **BREAKING** remove the "
            "old thing\n\n## Impact\n- Affected specs: base\n")


def change(delta: str | None = None, capability: str = "base", **extra: str) -> dict[str, str]:
    files = {"proposal.md": proposal()}
    if delta is not None:
        files[f"specs/{capability}/spec.md"] = delta
    files.update(extra)
    return files


ADD_OK = """## ADDED Requirements
### Requirement: Two factor
The system SHALL ask for a code.

#### Scenario: Code ok
- **WHEN** the code is right
- **THEN** login succeeds
"""
MODIFY_LOGIN_FULL = """## MODIFIED Requirements
### Requirement: Login
The system SHALL let a user log in with a password and a code.

#### Scenario: Good password
- **WHEN** the password is right
- **THEN** a session starts

#### Scenario: Bad password
- **WHEN** the password is wrong
- **THEN** an error is shown
"""

CHANGES: dict[str, dict[str, str]] = {
    "add-valid": change(ADD_OK, tasks_md="## 1. Implementation\n- [x] 1.1 Table\n- [ ] 1.2 API\n"),
    "add-new-capability": change("## Purpose\nA brand new capability that does many useful "
                                 "things for everybody.\n\n" + ADD_OK, capability="payments"),
    "modify-valid": change(MODIFY_LOGIN_FULL),
    "no-deltas": change(),
    "skip-specs": change(**{".openspec.yaml": "schema: spec-driven\nskip_specs: true\n"}),
    "skip-specs-conflict": change(ADD_OK, **{".openspec.yaml":
                                             "schema: spec-driven\nskip_specs: true\n"}),
    "skip-specs-bad-schema": change(**{".openspec.yaml": "schema: nope\nskip_specs: true\n"}),
    "skip-specs-not-bool": change(**{".openspec.yaml": "schema: spec-driven\nskip_specs: yes\n"}),
    "modify-missing": change("## MODIFIED Requirements\n### Requirement: Ghost\nThe system SHALL "
                             "haunt.\n\n#### Scenario: boo\n- **WHEN** a\n- **THEN** b\n"),
    "modify-drops-scenario": change("## MODIFIED Requirements\n### Requirement: Login\nThe system "
                                    "SHALL log in.\n\n#### Scenario: Good password\n- **WHEN** "
                                    "ok\n- **THEN** ok\n\n#### Scenario: Other\n- **WHEN** x\n"),
    "remove-near-miss": change("## REMOVED Requirements\n### Requirement: login\n**Reason**: "
                               "gone\n"),
    "remove-missing": change("## REMOVED Requirements\n### Requirement: Never there\n"),
    "remove-bullet": change("## REMOVED Requirements\n- `### Requirement: Logout`\n"),
    "rename-valid": change("## RENAMED Requirements\n- FROM: `### Requirement: Logout`\n"
                           "- TO: `### Requirement: Sign out`\n"),
    "rename-unpaired": change("## RENAMED Requirements\n- FROM: `### Requirement: Logout`\n"),
    "rename-target-exists": change("## RENAMED Requirements\n- FROM: `### Requirement: Logout`\n"
                                   "- TO: `### Requirement: Login`\n"),
    "rename-source-missing": change("## RENAMED Requirements\n- FROM: `### Requirement: Nope`\n"
                                    "- TO: `### Requirement: Still nope`\n"),
    "rename-and-modify-old": change("## RENAMED Requirements\n- FROM: `### Requirement: Login`\n"
                                    "- TO: `### Requirement: Sign in`\n\n"
                                    + MODIFY_LOGIN_FULL),
    "duplicate-added": change(ADD_OK + "\n" + ADD_OK.replace("## ADDED Requirements\n", "")),
    "added-and-removed": change(ADD_OK + "\n## REMOVED Requirements\n### Requirement: Two factor"
                                "\n"),
    "added-exists": change("## ADDED Requirements\n### Requirement: Logout\nThe system SHALL "
                           "log out differently.\n\n#### Scenario: s\n- **WHEN** a\n"),
    "added-no-scenario": change("## ADDED Requirements\n### Requirement: Lonely\nThe system "
                                "SHALL be alone.\n"),
    "added-no-shall": change("## ADDED Requirements\n### Requirement: Polite\nThe system may "
                             "be polite.\n\n#### Scenario: s\n- **WHEN** a\n"),
    "added-no-text": change("## ADDED Requirements\n### Requirement: The system SHALL hide\n\n"
                            "#### Scenario: s\n- **WHEN** a\n"),
    "empty-section": change("## ADDED Requirements\n\nNothing here yet.\n"),
    "no-delta-headers": change("# Notes\n\nJust notes.\n"),
    "orphan-requirement": change("### Requirement: Early\nThe system SHALL x.\n\n#### Scenario: "
                                 "s\n- **WHEN** a\n\n" + ADD_OK),
    "stray-header": change(ADD_OK + "\n### Documentation Requirements\nSome text.\n"),
    "nameless-header": change(ADD_OK + "\n### Requirement\nSome text.\n"),
    "root-spec": {"proposal.md": proposal(), "specs/spec.md": ADD_OK},
    "unread-file": {"proposal.md": proposal(), "specs/base.md": ADD_OK},
    "tasks-no-checkbox": change(ADD_OK, tasks_md="## 1. Implementation\n- 1.1 Table\n"),
    "tasks-numbering": change(ADD_OK, tasks_md="## 1. Build\n- [ ] 1.1 a\n- [ ] 2.1 b\n"
                                               "- [ ] 1.1 c\n## 2. Test\n- [ ] 2.2 d\n"),
    "new-spec-modified": change(MODIFY_LOGIN_FULL, capability="ghost-capability"),
    "fenced-delta": change(ADD_OK + "\n```\n## REMOVED Requirements\n### Requirement: Login\n"
                                    "```\n"),
    "nested-delta": change(ADD_OK, capability="identity/user-auth"),
    "case-insensitive-sections": change(ADD_OK.replace("## ADDED Requirements",
                                                       "## added requirements")),
    "crlf-delta": change(("\ufeff" + ADD_OK).replace("\n", "\r\n")),
    "modify-via-rename": change("## RENAMED Requirements\n- FROM: `### Requirement: Login`\n"
                                "- TO: `### Requirement: Sign in`\n\n## MODIFIED Requirements\n"
                                "### Requirement: Sign in\nThe system SHALL sign in.\n\n"
                                "#### Scenario: Good password\n- **WHEN** a\n- **THEN** b\n"),
    "no-proposal": {"specs/base/spec.md": ADD_OK},
    "what-changes-only": {"proposal.md": proposal().replace(
        "- Change the thing", "- **base:** Add a new login option")},
}


def build(root: Path) -> Path:
    """Write the whole corpus under ``root/openspec`` and return ``root``."""
    base = root / "openspec"
    (base / "changes" / "archive").mkdir(parents=True, exist_ok=True)
    (base / "config.yaml").write_text("schema: spec-driven\n")
    for capability, text in SPECS.items():
        target = base / "specs" / capability / "spec.md"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode())
    for change_id, files in CHANGES.items():
        for name, text in files.items():
            target = base / "changes" / change_id / name.replace("tasks_md", "tasks.md")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(text.encode())
    return root
