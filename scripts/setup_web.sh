#!/usr/bin/env bash
# The dashboard's front-end packages (htmx, cytoscape, dagre) from package.json and its lock
# into node_modules/ (never committed; aidp serve reads a fixed list of files from it).
# Idempotent: does nothing when node_modules was installed from this very lock file. Without
# npm the dashboard still works, without its graph.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null 2>&1; then
  echo "setup_web: npm not found; the dashboard will work without its graph" >&2
  exit 0
fi
stamp=node_modules/.aidp-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
