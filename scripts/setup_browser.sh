#!/usr/bin/env bash
# Installs Debian's chromium (the browser the dashboard tests and bench/bench_dag.py drive through
# Playwright, with executable_path=/usr/bin/chromium: Playwright's own browsers are never
# downloaded). Idempotent and quiet. When it cannot install, it says so and exits 0: the browser
# tests then skip, or fail with that reason when AIDP_REQUIRE_BROWSER=1 (as .ci/run sets).
set -uo pipefail
browser=/usr/bin/chromium
if [[ -x "$browser" ]]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup_browser: apt-get not found; install chromium at $browser yourself (browser tests will skip)" >&2
  exit 0
fi
sudo=()
if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "setup_browser: not root and no password-less sudo; cannot install chromium (browser tests will skip)" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; then
  "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 || true
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || true
fi
if [[ ! -x "$browser" ]]; then
  echo "setup_browser: could not install Debian's chromium with apt-get (browser tests will skip)" >&2
fi
exit 0
