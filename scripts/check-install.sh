#!/usr/bin/env bash
# The install paths users take, each from a clean clone (`git clone` of this repository's HEAD: commit first)
# into a fresh virtualenv, with pip's build isolation on:
#
#   pip install .                  compiled (where a C compiler and Python's headers are)
#   python -m build                an sdist and a wheel (compiled: built from the sdist, as build does)
#     the wheel, installed         compiled
#     the sdist, installed         plain Python, the C build broken on purpose: MLCHAOS_BREAK_BUILD=cc
#   pip install git+file://CLONE   plain Python, the type check broken on purpose: MLCHAOS_BREAK_BUILD=types
#   pipx install .                 plain Python: no C compiler (CC names one that does not exist)
#
# Each checks `mlchaos --version` ("data plane: compiled", or "interpreted: <the reason setup.py recorded>") and
# runs `mlchaos validate policies/example.yaml`; the broken builds must also print setup.py's one line (pip shows
# a build's output under -v). Only `pip install .` and the wheel compile (a compile takes about a minute of a
# core); the other paths are about getting the package installed, and each reaches plain Python its own way.
# Two lanes of cases run at once.
#
# Environment: PY (default python3; the interpreter of the venvs), MLCHAOS_REQUIRE_COMPILED=1 (make test: fail
# when this machine cannot compile instead of expecting plain Python), CHECK_INSTALL_JOBS (lanes at once,
# default 2), CHECK_INSTALL_KEEP=1 (keep the temporary directory and its logs). Downloads are cached under
# ${XDG_CACHE_HOME:-~/.cache}/mlchaos/pip, outside the clone; everything else goes to a temporary directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-python3}"
JOBS="${CHECK_INSTALL_JOBS:-2}"
REQUIRE_COMPILED="${MLCHAOS_REQUIRE_COMPILED:-0}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/mlchaos"

# Nothing of the caller's MLCHAOS_* (MLCHAOS_PURE_PYTHON above all) reaches the builds: each case sets its own.
while read -r name; do unset "$name"; done < <(env | sed -n 's/^\(MLCHAOS_[A-Za-z0-9_]*\)=.*/\1/p')
export PIP_CACHE_DIR="$CACHE/pip" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONNOUSERSITE=1

say() { printf '[check-install] %s\n' "$*"; }
die() { printf '[check-install] ERROR: %s\n' "$*" >&2; exit 1; }

command -v "$PY" >/dev/null 2>&1 || die "no '$PY' on PATH: set PY"
"$PY" -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 11)' 2>/dev/null \
    || die "'$PY' is not a Python 3.11+ with venv and ensurepip"
git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 || die "$ROOT is not a git repository"
HEAD="$(git -C "$ROOT" rev-parse --short HEAD)"
[ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ] \
    || say "note: uncommitted changes in $ROOT are not checked (the clone is of HEAD, $HEAD)"

# What setup.py checks before it compiles: the C compiler it would call and this interpreter's headers.
if "$PY" - <<'EOF'
import os, shlex, shutil, sys, sysconfig
cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")[:1]
headers = os.path.join(sysconfig.get_paths()["include"], "Python.h")
sys.exit(0 if cc and shutil.which(cc[0]) and os.path.exists(headers) else 1)
EOF
then
    COMPILED="compiled)"
    TYPES_BROKEN="interpreted: mypyc failed: build/mlchaos_break_build.py:1: error: Incompatible types"
    CC_BROKEN="interpreted: the C build failed: "
elif [ "$REQUIRE_COMPILED" = 1 ]; then
    die "MLCHAOS_REQUIRE_COMPILED=1 but '$PY' has no C compiler or no headers (scripts/install-build-deps.sh)"
else
    say "note: no C compiler or no Python headers for '$PY': every path is expected to install plain Python"
    COMPILED="interpreted: no " TYPES_BROKEN="interpreted: no " CC_BROKEN="interpreted: no "
fi
NO_CC="interpreted: no C compiler (mlchaos-no-such-cc not found))"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mlchaos-check-install.XXXXXX")"
if [ "${CHECK_INSTALL_KEEP:-0}" = 1 ]; then
    trap 'say "kept $WORK"' EXIT
else
    trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$PIP_CACHE_DIR"
git -C "$ROOT" show HEAD:policies/example.yaml >"$WORK/example.yaml"

# clone NAME: a clean clone of HEAD for one case (a build writes into its source tree: build/, the marker).
clone() {
    git clone -q --no-hardlinks "$ROOT" "$WORK/$1.src"
    printf '%s' "$WORK/$1.src"
}

fresh_venv() {
    "$PY" -m venv "$WORK/$1.venv"
    printf '%s' "$WORK/$1.venv"
}

# expect NAME MLCHAOS WANT: the installed command's version names WANT, and it validates the example policy.
expect() {
    local name="$1" bin="$2" want="$3" version
    version="$("$bin" --version)" || { echo "$name: mlchaos --version failed"; return 1; }
    echo "$version"
    [[ "$version" == *"(data plane: $want"* ]] || { echo "$name: wanted 'data plane: $want'"; return 1; }
    (cd "$WORK" && "$bin" validate example.yaml) || { echo "$name: validate failed"; return 1; }
}

# The one line setup.py prints (pip shows it under -v).
LINE="mlchaos: the data plane is installed as plain Python (slower, same behaviour): "

case_pip() {
    local src venv
    src="$(clone pip)" venv="$(fresh_venv pip)"
    "$venv/bin/pip" install "$src"
    expect "pip install ." "$venv/bin/mlchaos" "$COMPILED"
}

case_build() {
    local src tools
    src="$(clone build)" tools="$(fresh_venv build-tool)"
    "$tools/bin/pip" install build
    "$tools/bin/python" -m build --outdir "$WORK/dist" "$src"
    ls "$WORK"/dist/mlchaos-*.tar.gz "$WORK"/dist/mlchaos-*.whl
}

case_wheel() {
    local venv
    venv="$(fresh_venv wheel)"
    "$venv/bin/pip" install "$WORK"/dist/mlchaos-*.whl
    expect "the wheel" "$venv/bin/mlchaos" "$COMPILED"
}

# broken VENV KIND WHAT: `pip install -v WHAT` with MLCHAOS_BREAK_BUILD=KIND: installs, prints its one line.
broken() {
    local venv="$1" kind="$2" what="$3"
    MLCHAOS_BREAK_BUILD="$kind" "$venv/bin/pip" install -v "$what" >"$venv.pip" 2>&1 \
        || { tail -n 40 "$venv.pip"; return 1; }
    grep -F "$LINE" "$venv.pip" | head -n 1 | sed 's/^ *//'
    grep -qF "$LINE" "$venv.pip" || { echo "MLCHAOS_BREAK_BUILD=$kind: setup.py printed no reason"; return 1; }
}

case_sdist() {
    local venv
    venv="$(fresh_venv sdist)"
    broken "$venv" cc "$(ls "$WORK"/dist/mlchaos-*.tar.gz)"
    expect "the sdist" "$venv/bin/mlchaos" "$CC_BROKEN"
}

case_git() {
    local src venv
    src="$(clone git)" venv="$(fresh_venv git)"
    broken "$venv" types "git+file://$src"
    expect "pip install git+file://" "$venv/bin/mlchaos" "$TYPES_BROKEN"
}

case_pipx() {
    local src pipx
    src="$(clone pipx)"
    if command -v pipx >/dev/null 2>&1; then
        pipx="$(command -v pipx)"
    else
        "$(fresh_venv pipx-tool)/bin/pip" install pipx
        pipx="$WORK/pipx-tool.venv/bin/pipx"
    fi
    export PIPX_HOME="$WORK/pipx/home" PIPX_BIN_DIR="$WORK/pipx/bin" PIPX_MAN_DIR="$WORK/pipx/man"
    CC=mlchaos-no-such-cc "$pipx" install --python "$(command -v "$PY")" "$src"
    expect "pipx install ." "$PIPX_BIN_DIR/mlchaos" "$NO_CC"
}

# run CASE...: each case in turn, its output in $WORK/CASE.log and one result line in $WORK/CASE.result.
run() {
    local name t0 status
    for name in "$@"; do
        t0=$SECONDS
        # In the background and waited for: a function run as an `if` condition would ignore set -e.
        ("case_$name") >"$WORK/$name.log" 2>&1 &
        if wait $!; then status=ok; else status=FAIL; fi
        printf '%-4s %-12s %4d s  %s\n' "$status" "$name" "$((SECONDS - t0))" \
            "$(grep -m1 '^mlchaos .*(data plane:' "$WORK/$name.log" || true)" | tee "$WORK/$name.result"
        # The wheel and the sdist come from build: without them the rest of its lane cannot run.
        [ "$status" = ok ] || [ "$name" != build ] || { echo "(skipping the rest of this lane)"; return 1; }
    done
}

LANES=("pip git pipx" "build wheel sdist")
say "checking $HEAD with $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])') in $WORK"
t0=$SECONDS
pids=()
for lane in "${LANES[@]}"; do
    # shellcheck disable=SC2086  # a lane is a list of case names
    run $lane &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$JOBS" ]; then wait "${pids[0]}" || true; pids=("${pids[@]:1}"); fi
done
for pid in "${pids[@]}"; do wait "$pid" || true; done

failed=0
for lane in "${LANES[@]}"; do
    for name in $lane; do
        if ! grep -q '^ok ' "$WORK/$name.result" 2>/dev/null; then
            failed=1
            echo "---- $name: the end of $WORK/$name.log"
            tail -n 25 "$WORK/$name.log" 2>/dev/null || echo "(did not run)"
        fi
    done
done
[ "$failed" = 0 ] || { CHECK_INSTALL_KEEP=1; trap 'say "kept $WORK"' EXIT; die "install check failed after $((SECONDS - t0)) s"; }
say "all install paths passed in $((SECONDS - t0)) s"
