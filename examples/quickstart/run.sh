#!/usr/bin/env bash
# The aidp quickstart: copies the tiny repository to a fresh directory, makes it a git
# repository and runs the example workstreams with aidp (SQLite in .aidp/, shell tools), then
# a model step against aidp's built-in fake LLM server (offline, no API key).
# Usage: examples/quickstart/run.sh [DIR]      (DIR default: a new temporary directory)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
aidp="${AIDP:-$root/.venv/bin/aidp}"
dir="${1:-$(mktemp -d /tmp/aidp-quickstart.XXXXXX)}"
mkdir -p "$dir"
cp -R "$here/repo/." "$dir/"
cd "$dir"
if [[ ! -d .git ]]; then
  git init -q -b main
  git -c user.name=quickstart -c user.email=quickstart@aidp.invalid add -A
  git -c user.name=quickstart -c user.email=quickstart@aidp.invalid commit -q -m "tinyproj"
fi
echo "== aidp plan (in $dir)"
"$aidp" plan "$here/workstreams.yaml"
echo "== aidp run --parallel 3"
set +e
"$aidp" run --parallel 3 "$here/workstreams.yaml"
rc=$?
set -e
echo "== aidp status"
"$aidp" status
echo "== branches"
git branch --list 'aidp/*' 'quickstart/*'
# The run is meant to fail in exactly one place: workstream 'broken' (its check fails) and
# 'after-broken' (skipped). Anything else is a real failure of the quickstart.
"$aidp" status --json | python3 -c '
import json, sys
got = {w["id"]: w["status"] for w in json.load(sys.stdin)["workstreams"]}
want = {"docs": "completed", "lib": "completed", "release": "completed",
        "broken": "failed", "after-broken": "skipped"}
sys.exit(0 if got == want else f"unexpected result: {got}")'

echo "== aidp fake-llm + a model step (the openai adapter, offline)"
fifo="$(mktemp -u)"; mkfifo "$fifo"
"$aidp" fake-llm --script "$here/llm-script.yaml" >"$fifo" 2>/dev/null &
llm=$!
trap 'kill $llm 2>/dev/null || true; rm -f "$fifo"' EXIT
read -r base_url <"$fifo"
cat > aidp.toml <<TOML
[tools.model]
adapter = "openai"
base_url = "$base_url"
model = "fake-model"
edit_format = "whole"
TOML
OPENAI_API_KEY=not-a-real-key "$aidp" run "$here/model.yaml"
"$aidp" usage
"$aidp" status --json | python3 -c '
import json, sys
ws = json.load(sys.stdin)["workstreams"][0]
kinds = [a["kind"] for a in ws["steps"][0]["attempt_list"]]
sys.exit(0 if ws["status"] == "completed" and kinds == ["first", "fix"]
         else f"unexpected model step: {ws}")'
echo "quickstart OK (the first run exited $rc: 'broken' fails on purpose; the model step"
echo "completed after one fix attempt). Repository: $dir"
