"""A stand-in for the ``gh`` CLI: records every call and answers like ``gh`` for the issue,
label, extension and repo commands the GitHub sync uses. No network.

``GH_STANDIN_LOG``: JSON lines, one per call (``argv``, and ``body`` read from ``--body-file``).
``GH_STANDIN_STATE``: JSON state (``repo``, ``extensions``, ``labels``, ``issues``, ``next``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def main(argv: list[str]) -> int:
    log, state_path = Path(os.environ["GH_STANDIN_LOG"]), Path(os.environ["GH_STANDIN_STATE"])
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    state.setdefault("repo", "acme/widgets")
    state.setdefault("extensions", [])
    state.setdefault("labels", [])
    state.setdefault("issues", {})
    state.setdefault("next", 1)
    body_file = option(argv, "--body-file")
    body = Path(body_file).read_text() if body_file else None
    with log.open("a") as fh:
        fh.write(json.dumps({"argv": argv, "body": body}) + "\n")
    repo = option(argv, "--repo") or state["repo"]
    if repo != state["repo"]:
        print(f"GraphQL: Could not resolve to a Repository with the name '{repo}'.",
              file=sys.stderr)
        return 1
    head = tuple(argv[:2])
    if head == tuple(state.get("hang_on", [])):  # a gh that never answers
        import subprocess
        import time

        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        time.sleep(60)
    issues: dict[str, dict[str, object]] = state["issues"]
    out = ""
    if head == ("repo", "view"):
        out = state["repo"] + "\n" if "-q" in argv else json.dumps(
            {"nameWithOwner": state["repo"]}) + "\n"
    elif head == ("extension", "list"):
        out = "".join(f"gh {e.split('/')[-1][3:]}\t{e}\tv1.0.0\n" for e in state["extensions"])
    elif head == ("label", "list"):
        out = json.dumps([{"name": n} for n in state["labels"]]) + "\n"
    elif head == ("label", "create"):
        if argv[2] in state["labels"]:
            print(f"label with name \"{argv[2]}\" already exists", file=sys.stderr)
            return 1
        state["labels"].append(argv[2])
    elif head in (("issue", "create"), ("sub-issue", "create")):
        labels = [x for x in (option(argv, "--label") or "").split(",") if x]
        missing = [x for x in labels if x not in state["labels"]]
        if missing:
            print(f"could not add label: '{missing[0]}' not found", file=sys.stderr)
            return 1
        if option(argv, "--title") == state.get("fail_title"):
            print("HTTP 502: Server Error (https://api.github.com/graphql)", file=sys.stderr)
            return 1
        number = state["next"]
        state["next"] = number + 1
        issues[str(number)] = {"number": number, "title": option(argv, "--title"),
                               "body": (body or "").rstrip("\n"), "state": "OPEN",
                               "labels": labels, "parent": option(argv, "--parent")}
        out = f"https://github.com/{state['repo']}/issues/{number}\n"
    elif head == ("issue", "list"):
        label = option(argv, "--label")
        out = json.dumps([{k: i[k] for k in ("number", "title", "body", "state")}
                          for i in issues.values()
                          if label is None or label in i["labels"]]) + "\n"  # type: ignore[operator]
    elif head in (("issue", "view"), ("issue", "edit"), ("issue", "close")):
        issue = issues.get(argv[2])
        if issue is None:
            print(f"GraphQL: Could not resolve to an issue or pull request with the number of "
                  f"{argv[2]}.", file=sys.stderr)
            return 1
        if head[1] == "view":
            out = json.dumps({k: issue[k] for k in ("number", "title", "body", "state")}) + "\n"
        elif head[1] == "edit":
            if "--title" in argv:
                issue["title"] = option(argv, "--title")
            if body is not None:
                issue["body"] = body.rstrip("\n")
            out = f"https://github.com/{state['repo']}/issues/{argv[2]}\n"
        else:
            issue["state"] = "CLOSED"
            print(f"✓ Closed issue {state['repo']}#{argv[2]}", file=sys.stderr)
    else:
        print(f"unknown command {' '.join(argv[:2])!r} for gh stand-in", file=sys.stderr)
        return 1
    state_path.write_text(json.dumps(state))
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
