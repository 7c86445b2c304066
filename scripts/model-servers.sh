#!/usr/bin/env bash
# Install the real model servers that tests/servers runs against, each in its own venv, and train the tiny
# iris model each one serves:
#
#   scripts/model-servers.sh [mlserver|kserve|mlflow|grpc-clients|all]...      (default: all)
#
# grpc-clients is no server: the gRPC clients of tests/servers/test_grpc_*.py (tritonclient.grpc, grpcio) in a
# venv of their own (scripts/servers/grpc-clients.txt), with no model; the servers' gRPC ports are theirs.
#
# They live outside the clone, so a fresh clone (CI) or another worktree finds them installed: under
# CACHE = ${XDG_CACHE_HOME:-~/.cache}/mlchaos/servers, or $MLCHAOS_SERVERS_DIR. For each server NAME, keyed by
# the version of its pins (the first 16 hex digits of scripts/servers/NAME.txt's sha256, HASH), so clones whose
# pins differ do not rebuild each other's:
#   CACHE/NAME-HASH/venv/     a venv with exactly scripts/servers/NAME.txt (every package pinned with ==)
#   CACHE/NAME-HASH/model/    the model in the layout NAME serves (see scripts/servers/train_iris.py)
#   CACHE/NAME-HASH/*.log     pip's and the trainer's output, for when something fails
# A stamp holding the hash of the inputs (requirements file, Python version; for the model also the trainer
# and serve_kserve.py) skips a step whose inputs did not change, so a second run takes about a second; a
# changed input rebuilds that step from scratch. Versions no longer pinned stay until `make clean-servers`.
# Everything is written under CACHE and /tmp: pip's cache is put there too. Downloads come from the package
# index only; nothing is fetched at run time. The servers' pins clash with each other and with the project's
# venv, hence one venv each.
#
# Environment: PY (default python3; CPython 3.11 — the pins are its wheels; mlserver 1.7 refuses 3.13),
# MLCHAOS_SERVERS_DIR (CACHE above; tests/servers reads the same variable and default), XDG_CACHE_HOME.
# From scratch on a 2-core machine: about 3 minutes and 2 GB (mlserver 45 s/530 MB, kserve 55 s/650 MB,
# mlflow 65 s/850 MB, grpc-clients 15 s/150 MB); with everything current: under a second.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SPEC="$ROOT/scripts/servers"
CACHE="${MLCHAOS_SERVERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlchaos/servers}"
PY="${PY:-python3}"
ALL=(mlserver kserve mlflow grpc-clients)

say() { printf '[model-servers] %s\n' "$*"; }
die() { printf '[model-servers] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    echo "usage: scripts/model-servers.sh [mlserver|kserve|mlflow|grpc-clients|all]..." >&2
    exit 2
}

hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# Keep pip and anything the servers' libraries cache inside CACHE.
export PIP_CACHE_DIR="$CACHE/.pip-cache"
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
export PYTHONNOUSERSITE=1
export MPLCONFIGDIR="$CACHE/.matplotlib"
# MLflow 3 has usage telemetry: it writes ~/.config/mlflow/telemetry.json and posts to a remote host. Off.
export MLFLOW_DISABLE_TELEMETRY=true
export DO_NOT_TRACK=true

check_python() {
    command -v "$PY" >/dev/null 2>&1 || die "no '$PY' on PATH: set PY to a CPython 3.11 interpreter"
    PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" || die "'$PY' does not run"
    case "$PYVER" in
        3.11|3.12) ;;
        *) die "'$PY' is Python $PYVER; the pins in scripts/servers/*.txt need CPython 3.11 (3.12 may work)" ;;
    esac
    "$PY" -c 'import venv, ensurepip' 2>/dev/null \
        || die "'$PY' lacks venv/ensurepip (on Debian: apt-get install python3-venv)"
}

# dir_of NAME: CACHE/NAME-HASH (tests/servers/harness.py computes the same).
dir_of() { printf '%s/%s-%s' "$CACHE" "$1" "$(hash_of "$SPEC/$1.txt")"; }

# install NAME: (re)build CACHE/NAME-HASH/venv unless its stamp matches the requirements' hash.
install() {
    local name="$1" req="$SPEC/$1.txt" dir
    [ -f "$req" ] || die "$name: missing $req"
    dir="$(dir_of "$1")"
    local venv="$dir/venv" stamp="$dir/venv/.mlchaos-installed" log="$dir/install.log"
    local want
    want="python$PYVER-$(hash_of "$req")"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        say "$name: venv up to date ($venv, $want)"
        return 0
    fi
    local t0=$SECONDS
    say "$name: creating $venv from scripts/servers/$name.txt (log: $log)"
    rm -rf "$venv"
    mkdir -p "$dir"
    if ! "$PY" -m venv "$venv" >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        die "$name: '$PY -m venv $venv' failed (see $log)"
    fi
    say "$name: pip install --prefer-binary -r scripts/servers/$name.txt"
    if ! "$venv/bin/python" -m pip install --prefer-binary --no-input -r "$req" >>"$log" 2>&1; then
        grep -v "is ignored: it is neither a file nor a directory" "$log" | tail -n 30 >&2
        die "$name: pip install failed (see $log); the venv has no stamp and is rebuilt on the next run"
    fi
    if ! "$venv/bin/python" -m pip check >>"$log" 2>&1; then
        tail -n 20 "$log" >&2
        die "$name: pip check found broken requirements (see $log)"
    fi
    echo "$want" >"$stamp"
    say "$name: venv ready in $((SECONDS - t0)) s, $(du -sh "$venv" | cut -f1)"
}

# train NAME: (re)write CACHE/NAME-HASH/model unless its stamp matches.
train() {
    local name="$1" dir
    dir="$(dir_of "$1")"
    local model="$dir/model" stamp="$dir/model/.mlchaos-trained" log="$dir/train.log"
    local want
    want="$(cat "$dir/venv/.mlchaos-installed")-$(hash_of "$SPEC/train_iris.py" "$SPEC/serve_kserve.py")"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        say "$name: model up to date ($model)"
        return 0
    fi
    say "$name: training the iris model into $model"
    rm -rf "$model" "$model.tmp"
    # cwd in the cache dir, and XDG_CONFIG_HOME there too: whatever a library drops stays under CACHE.
    if ! (cd "$dir" && XDG_CONFIG_HOME="$dir/.config" "$dir/venv/bin/python" "$SPEC/train_iris.py" "$name" "$model.tmp") \
        >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rm -rf "$model.tmp"
        die "$name: training failed (see $log)"
    fi
    echo "$want" >"$model.tmp/.mlchaos-trained"
    mv "$model.tmp" "$model"
    say "$name: model written: $(cd "$model" && ls | tr '\n' ' ')"
}

one() {
    install "$1"
    # The clients' venv serves no model.
    [ "$1" = grpc-clients ] || train "$1"
}

main() {
    local names=() arg name
    [ $# -gt 0 ] || set -- all
    for arg in "$@"; do
        case "$arg" in
            all) names+=("${ALL[@]}") ;;
            mlserver|kserve|mlflow|grpc-clients) names+=("$arg") ;;
            -h|--help) usage ;;
            *) echo "model-servers.sh: unknown server '$arg'" >&2; usage ;;
        esac
    done
    # Each server once, in the order given.
    local unique=() n
    for name in "${names[@]}"; do
        for n in "${unique[@]}"; do [ "$n" = "$name" ] && continue 2; done
        unique+=("$name")
    done
    names=("${unique[@]}")
    check_python
    mkdir -p "$CACHE"
    if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 \
        && ! git -C "$ROOT" check-ignore -q "$CACHE" 2>/dev/null && [[ "$CACHE" == "$ROOT"/* ]]; then
        say "warning: $CACHE is not git-ignored: add '.cache/' to .gitignore"
    fi
    local t0=$SECONDS
    # One at a time: the installs are bound by download, and three in parallel took longer (196 s vs 175 s).
    for name in "${names[@]}"; do
        one "$name"
    done
    say "done in $((SECONDS - t0)) s: ${names[*]} under $CACHE"
}

main "$@"
