#!/usr/bin/env bash
# Install the real peers of tests/datafeeds and benchmarks/data_feed.py, each in its own venv outside the clone:
#
#   scripts/data-servers.sh [moto|data-clients|great-expectations|all]...      (default: all)
#
#   $CACHE/NAME-HASH/venv/       a venv with exactly scripts/servers/NAME.txt (every package pinned with ==)
#   $CACHE/NAME-HASH/install.log pip's output, for when something fails
#
#   moto                the S3-compatible server: `moto_server -p PORT` (binds 127.0.0.1 by default)
#   data-clients        the clients: pandas, pyarrow, boto3, s3fs, fsspec, requests (tests/datafeeds/client.py)
#   great-expectations  Great Expectations, run by `mlchaos expectations --python` in a process of its own
#
# HASH is the pins' sha256 (16 hex digits; tests/datafeeds/harness.py computes the same), so a changed pin is a
# new directory and a fresh clone finds the current one. A stamp holding the Python version and that hash
# skips a venv that is current: a second run takes well under a second. nginx, the HTTP file server, is a
# Debian package (`make system-deps`).
#
# Environment: PY (default python3; CPython 3.11 or 3.12: the pins are a pip freeze on 3.11), MLCHAOS_SERVERS_DIR.
# From scratch on a 2-core machine: about 2 minutes and 700 MB.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SPEC="$ROOT/scripts/servers"
CACHE="${MLCHAOS_SERVERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlchaos/servers}"
PY="${PY:-python3}"
ALL=(moto data-clients great-expectations)

say() { printf '[data-servers] %s\n' "$*"; }
die() { printf '[data-servers] ERROR: %s\n' "$*" >&2; exit 1; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

export PIP_CACHE_DIR="$CACHE/.pip-cache"
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
export PYTHONNOUSERSITE=1

names=()
for arg in "${@:-all}"; do
    case "$arg" in
        all) names+=("${ALL[@]}") ;;
        moto|data-clients|great-expectations) names+=("$arg") ;;
        -h|--help) echo "usage: scripts/data-servers.sh [moto|data-clients|great-expectations|all]..." >&2; exit 2 ;;
        *) echo "data-servers.sh: unknown peer '$arg'" >&2; exit 2 ;;
    esac
done

command -v "$PY" >/dev/null 2>&1 || die "no '$PY' on PATH: set PY to a CPython 3.11 interpreter"
PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" || die "'$PY' does not run"
case "$PYVER" in
    3.11|3.12) ;;
    *) die "'$PY' is Python $PYVER; the pins in scripts/servers/{moto,data-clients,great-expectations}.txt are 3.11's" ;;
esac
"$PY" -c 'import venv, ensurepip' 2>/dev/null || die "'$PY' lacks venv/ensurepip (apt-get install python3-venv)"

# The command that proves a venv works, per peer.
check() {
    case "$1" in
        moto) "$2/bin/moto_server" --help ;;
        data-clients) "$2/bin/python" -c 'import boto3, fsspec, pandas, pyarrow, requests, s3fs' ;;
        great-expectations) "$2/bin/python" -c 'import great_expectations' ;;
    esac
}

install() {
    local name="$1" req="$SPEC/$1.txt"
    local dir venv stamp log want
    dir="$CACHE/$name-$(hash_of "$req")"
    venv="$dir/venv" stamp="$dir/venv/.mlchaos-installed" log="$dir/install.log"
    want="python$PYVER-$(hash_of "$req")"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        say "$name: venv up to date ($venv, $want)"
        return 0
    fi
    local t0=$SECONDS
    say "$name: creating $venv from scripts/servers/$name.txt (log: $log)"
    rm -rf "$venv"
    mkdir -p "$dir"
    "$PY" -m venv "$venv" >"$log" 2>&1 || { tail -n 20 "$log" >&2; die "$name: '$PY -m venv' failed"; }
    if ! "$venv/bin/python" -m pip install --prefer-binary --no-input -r "$req" >>"$log" 2>&1; then
        grep -v "is ignored: it is neither a file nor a directory" "$log" | tail -n 30 >&2
        die "$name: pip install failed (see $log); the venv has no stamp and is rebuilt on the next run"
    fi
    "$venv/bin/python" -m pip check >>"$log" 2>&1 || { tail -n 20 "$log" >&2; die "$name: pip check failed"; }
    check "$name" "$venv" >>"$log" 2>&1 || { tail -n 20 "$log" >&2; die "$name: the installed peer does not run"; }
    echo "$want" >"$stamp"
    say "$name: venv ready in $((SECONDS - t0)) s, $(du -sh "$venv" | cut -f1)"
}

for name in "${names[@]}"; do
    install "$name"
done
