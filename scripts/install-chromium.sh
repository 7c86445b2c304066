#!/bin/sh
# Install Debian's chromium package for the report's screenshot test (tests/observe/test_report.py), unless a
# `chromium` (or `chromium-browser`) binary is already on PATH. Noninteractive and idempotent: a second run
# does nothing. Needs root or sudo. Only Debian's package is used: no browser build is downloaded.
set -eu

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install-chromium.sh: not root and no sudo: install Debian's chromium package by hand" >&2
    exit 1
fi

echo "installing Debian package: chromium"
$SUDO apt-get update -qq
# --no-install-recommends keeps it to the browser and its libraries; fonts-dejavu-core gives the SVG text of
# the report a font to render with (chromium's Recommends would have pulled in fonts too).
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core >/dev/null

command -v chromium >/dev/null 2>&1 || { echo "install-chromium.sh: chromium is still not on PATH" >&2; exit 1; }
chromium --version 2>/dev/null | head -n 1 || true
