#!/usr/bin/env bash
# Browser tests drive Debian's Chromium; install the package when it is missing (never download a browser).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [[ -x /usr/bin/chromium ]]; then exit 0; fi
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
echo "Installing Debian's chromium for the browser tests..."
as_root apt-get update -qq || true
DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium
