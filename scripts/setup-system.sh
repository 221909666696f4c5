#!/bin/sh
# System packages the tests need beyond the Python venv: Debian's Chromium, driven headless by
# Playwright in tests/test_book_site.py (no browser download). Idempotent: does nothing when
# Chromium is already there. Set LRPKIT_CHROMIUM to use a browser installed elsewhere.
set -eu

chromium="${LRPKIT_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$chromium" ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-system: Chromium not found at $chromium and apt-get is not available;" >&2
    echo "setup-system: install Chromium and set LRPKIT_CHROMIUM=/path/to/chromium to run the browser test." >&2
    exit 0   # `make book` does not need a browser; the browser test fails with this advice.
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "setup-system: need root (or sudo) to run: apt-get install -y chromium" >&2
    exit 1
fi

echo "setup-system: installing Debian's chromium (for the book's browser test)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
"$chromium" --version
