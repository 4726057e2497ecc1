#!/usr/bin/env bash
# Debian's Chromium for the demo page's browser tests (make test; tests/api/test_demo_page.py).
# Playwright drives it through executable_path: Playwright's own browser download is not used.
# Installs only when missing; CHROMIUM=/path/to/chromium names another build.
set -euo pipefail
browser="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$browser" ]; then
    exit 0
fi
if [ -n "${CHROMIUM:-}" ] || ! command -v apt-get >/dev/null; then
    echo "The browser tests need Chromium at $browser: install it, or set CHROMIUM=/path/to/chromium" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "Installing Debian's chromium for the browser tests (apt-get)"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q chromium
