#!/bin/sh
# Install Debian's prometheus package for the tests that run a real Prometheus server, unless a
# `prometheus` binary is already on PATH. The package's service must not start (the tests start their own
# server on a free loopback port), so a temporary /usr/sbin/policy-rc.d answering 101 ("action forbidden")
# is put in place for the install and removed afterwards; one that was already there is kept as it was.
set -eu

if command -v prometheus >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install-prometheus.sh: not root and no sudo: install Debian's prometheus package by hand" >&2
    exit 1
fi

POLICY=/usr/sbin/policy-rc.d
BACKUP=""
if [ -e "$POLICY" ]; then
    BACKUP="$(mktemp /tmp/policy-rc.d.XXXXXX)"
    $SUDO cp -p "$POLICY" "$BACKUP"
fi

restore() {
    if [ -n "$BACKUP" ]; then
        $SUDO cp -p "$BACKUP" "$POLICY"
        rm -f "$BACKUP"
    else
        $SUDO rm -f "$POLICY"
    fi
}
trap restore EXIT
trap 'exit 130' INT TERM

printf '#!/bin/sh\n# mlchaos scripts/install-prometheus.sh: no service may start during the install.\nexit 101\n' \
    | $SUDO tee "$POLICY" >/dev/null
$SUDO chmod 755 "$POLICY"

echo "installing Debian package: prometheus"
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null

command -v prometheus >/dev/null 2>&1 || { echo "install-prometheus.sh: prometheus is still not on PATH" >&2; exit 1; }
prometheus --version 2>&1 | head -n 1
