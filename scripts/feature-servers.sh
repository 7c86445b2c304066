#!/usr/bin/env bash
# Install the real feature server that tests/feast runs against, in its own venv outside the clone:
#
#   scripts/feature-servers.sh [feast]        (default: feast)
#
#   $CACHE/feast-<version>/venv/       a venv with exactly scripts/servers/feast.txt (every package pinned with ==)
#   $CACHE/feast-<version>/install.log pip's output, for when something fails
#
# CACHE is $MLCHAOS_SERVERS_DIR, else ${XDG_CACHE_HOME:-~/.cache}/mlchaos/servers (tests/feast/harness.py reads
# the same). A stamp holding the Python version and the requirements' hash skips an install whose inputs did
# not change (a second run takes well under a second); a changed input rebuilds the venv from scratch. There
# is no model to train: each test writes its own tiny feature repo (SQLite online store, parquet it makes)
# and runs `feast apply`, `feast materialize-incremental` and `feast serve` on 127.0.0.1.
#
# Environment: PY (default python3; CPython 3.11 or 3.12 — the pins are 3.11 wheels), MLCHAOS_SERVERS_DIR.
# From scratch on a 2-core machine: about 3 minutes and 590 MB.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SPEC="$ROOT/scripts/servers"
CACHE="${MLCHAOS_SERVERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlchaos/servers}"
PY="${PY:-python3}"

say() { printf '[feature-servers] %s\n' "$*"; }
die() { printf '[feature-servers] ERROR: %s\n' "$*" >&2; exit 1; }

export PIP_CACHE_DIR="$CACHE/.pip-cache"
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
export PYTHONNOUSERSITE=1
# Feast's usage telemetry posts to a remote host: off, here and in every process the tests start.
export FEAST_USAGE=False

for arg in "$@"; do
    case "$arg" in
        feast|all) ;;
        -h|--help) echo "usage: scripts/feature-servers.sh [feast]" >&2; exit 2 ;;
        *) echo "feature-servers.sh: unknown server '$arg'" >&2; exit 2 ;;
    esac
done

command -v "$PY" >/dev/null 2>&1 || die "no '$PY' on PATH: set PY to a CPython 3.11 interpreter"
PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" || die "'$PY' does not run"
case "$PYVER" in
    3.11|3.12) ;;
    *) die "'$PY' is Python $PYVER; the pins in scripts/servers/feast.txt need CPython 3.11 (3.12 may work)" ;;
esac

req="$SPEC/feast.txt"
version="$(sed -n 's/^feast==//p' "$req")"
[ -n "$version" ] || die "scripts/servers/feast.txt pins no feast version"
dir="$CACHE/feast-$version"
venv="$dir/venv"
stamp="$venv/.mlchaos-installed"
log="$dir/install.log"
want="python$PYVER-$(sha256sum "$req" | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say "feast $version: venv up to date ($venv, $want)"
    exit 0
fi
t0=$SECONDS
say "feast $version: creating $venv from scripts/servers/feast.txt (log: $log)"
rm -rf "$venv"
mkdir -p "$dir"
"$PY" -m venv "$venv" >"$log" 2>&1 || { tail -n 20 "$log" >&2; die "'$PY -m venv $venv' failed (see $log)"; }
if ! "$venv/bin/python" -m pip install --prefer-binary --no-input -r "$req" >>"$log" 2>&1; then
    grep -v "is ignored: it is neither a file nor a directory" "$log" | tail -n 30 >&2
    die "pip install failed (see $log); the venv has no stamp and is rebuilt on the next run"
fi
"$venv/bin/python" -m pip check >>"$log" 2>&1 || { tail -n 20 "$log" >&2; die "pip check failed (see $log)"; }
"$venv/bin/feast" version >>"$log" 2>&1 || { tail -n 20 "$log" >&2; die "feast does not run (see $log)"; }
echo "$want" >"$stamp"
say "feast $version: venv ready in $((SECONDS - t0)) s, $(du -sh "$venv" | cut -f1)"
