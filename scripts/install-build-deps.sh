#!/bin/sh
# What mypyc needs to compile the data plane (setup.py) with the interpreter given as $1: a C compiler and
# that interpreter's headers. Debian's packages are installed when either is missing; an interpreter that
# is not Debian's (pyenv, a distribution build) ships its own headers. Without them the build falls back
# to plain Python, which make test refuses (MLCHAOS_REQUIRE_COMPILED=1).
set -eu
PY="$1"

cc_missing() { ! command -v "$("$PY" -c 'import sysconfig; print((sysconfig.get_config_var("CC") or "cc").split()[0])')" >/dev/null 2>&1; }
headers_missing() { ! "$PY" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; }

packages=""
cc_missing && packages="gcc libc6-dev"
if headers_missing; then
    # Debian names the headers after the interpreter: python3.11-dev for /usr/bin/python3.11.
    packages="$packages $("$PY" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}-dev")')"
fi
[ -z "$packages" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-build-deps.sh: not root and no sudo: install$packages by hand" >&2
    exit 1
fi
echo "installing Debian packages for the compiled data plane:$packages"
$SUDO apt-get update -qq
# shellcheck disable=SC2086  # one word per package
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $packages
