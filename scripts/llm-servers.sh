#!/usr/bin/env bash
# Install the real LLM peers of tests/llm: llama.cpp's OpenAI-compatible server with the tiny model it serves,
# and the real clients (the official openai SDK, LangChain's ChatOpenAI) in a venv of their own:
#
#   scripts/llm-servers.sh [llamacpp|llm-clients|all]...      (default: all)
#
# Everything goes under $MLCHAOS_SERVERS_DIR (default ~/.cache/mlchaos/servers: outside the clone, so a fresh
# clone or a `make clean` does not rebuild it):
#   llamacpp/wheels/           llama-cpp-python's wheel, built once from its sdist (it publishes no wheels):
#                              about 4.5 minutes on two idle cores, 20+ on a busy machine; reused after
#   llamacpp/venv/             exactly scripts/servers/llamacpp.txt, llama-cpp-python from that wheel (~15 s)
#   llamacpp/model/tiny.gguf   written by scripts/servers/make_tiny_gguf.py: random weights, the same bytes
#                              every run, deterministic answers at temperature 0
#   llm-clients/venv/          exactly scripts/servers/llm-clients.txt (~1 min)
#   */*.log                    pip's and the writer's output, for when something fails
# A stamp holding the hash of each step's inputs skips a step that is current, so a second run takes about a
# second. The wheel is built with GGML_NATIVE=OFF: a cache copied to another x86-64 machine still runs.
#
# Environment: PY (default python3; CPython 3.11 or 3.12, whose wheels the pins name), MLCHAOS_SERVERS_DIR.
# Needs cmake and g++ for the one build (scripts/install-build-deps.sh does not install cmake: apt-get install
# cmake g++).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SPEC="$ROOT/scripts/servers"
CACHE="${MLCHAOS_SERVERS_DIR:-$HOME/.cache/mlchaos/servers}"
PY="${PY:-python3}"
ALL=(llamacpp llm-clients)

say() { printf '[llm-servers] %s\n' "$*"; }
die() { printf '[llm-servers] ERROR: %s\n' "$*" >&2; exit 1; }
usage() { echo "usage: scripts/llm-servers.sh [llamacpp|llm-clients|all]..." >&2; exit 2; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

export PIP_CACHE_DIR="$CACHE/.pip-cache"
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
export PYTHONNOUSERSITE=1

check_python() {
    command -v "$PY" >/dev/null 2>&1 || die "no '$PY' on PATH: set PY to a CPython 3.11 interpreter"
    PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" || die "'$PY' does not run"
    case "$PYVER" in
        3.11|3.12) ;;
        *) die "'$PY' is Python $PYVER; the pins in scripts/servers/llamacpp.txt need CPython 3.11 (3.12 may work)" ;;
    esac
    "$PY" -c 'import venv, ensurepip' 2>/dev/null || die "'$PY' lacks venv/ensurepip (apt-get install python3-venv)"
}

# venv NAME REQ [PIP ARGS...]: (re)build CACHE/NAME/venv from REQ unless its stamp matches.
venv() {
    local name="$1" req="$2"
    shift 2
    local dir="$CACHE/$name"
    local venv="$dir/venv" stamp="$dir/venv/.mlchaos-installed" log="$dir/install.log"
    local want
    want="python$PYVER-$(hash_of "$req")"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        say "$name: venv up to date ($venv, $want)"
        return 0
    fi
    local t0=$SECONDS
    say "$name: creating $venv from ${req#"$ROOT"/} (log: $log)"
    rm -rf "$venv"
    mkdir -p "$dir"
    "$PY" -m venv "$venv" >"$log" 2>&1 || { tail -n 20 "$log" >&2; die "$name: '$PY -m venv' failed"; }
    if ! "$venv/bin/python" -m pip install --prefer-binary --no-input "$@" -r "$req" >>"$log" 2>&1; then
        grep -v "is ignored: it is neither a file nor a directory" "$log" | tail -n 30 >&2
        die "$name: pip install failed (see $log); the venv has no stamp and is rebuilt on the next run"
    fi
    "$venv/bin/python" -m pip check >>"$log" 2>&1 || { tail -n 20 "$log" >&2; die "$name: pip check failed"; }
    echo "$want" >"$stamp"
    say "$name: venv ready in $((SECONDS - t0)) s, $(du -sh "$venv" | cut -f1)"
}

# The wheel of the llama-cpp-python version llamacpp.txt pins, built once.
wheel() {
    local dir="$CACHE/llamacpp/wheels" version want log="$CACHE/llamacpp/wheel.log"
    version="$(sed -n 's/^llama_cpp_python==//p' "$SPEC/llamacpp.txt")"
    [ -n "$version" ] || die "scripts/servers/llamacpp.txt pins no llama_cpp_python==VERSION"
    want="llama-cpp-python==$version $(uname -m) GGML_NATIVE=OFF"
    if [ -f "$dir/.mlchaos-built" ] && [ "$(cat "$dir/.mlchaos-built")" = "$want" ] \
        && ls "$dir"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
        say "llamacpp: wheel up to date ($dir, $want)"
        return 0
    fi
    command -v cmake >/dev/null && command -v g++ >/dev/null \
        || die "building llama-cpp-python needs cmake and g++ (apt-get install cmake g++)"
    local t0=$SECONDS builder="$CACHE/llamacpp/.builder"
    say "llamacpp: building the llama-cpp-python $version wheel from its sdist, once (minutes; log: $log)"
    rm -rf "$dir" "$builder"
    mkdir -p "$dir"
    "$PY" -m venv "$builder" >"$log" 2>&1
    if ! CMAKE_ARGS="-DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        "$builder/bin/python" -m pip wheel --no-deps --no-input -w "$dir" "llama-cpp-python==$version" >>"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "llamacpp: the wheel build failed (see $log)"
    fi
    rm -rf "$builder"
    echo "$want" >"$dir/.mlchaos-built"
    say "llamacpp: wheel built in $((SECONDS - t0)) s: $(cd "$dir" && ls ./*.whl)"
}

model() {
    local dir="$CACHE/llamacpp" want
    want="$(cat "$dir/venv/.mlchaos-installed")-$(hash_of "$SPEC/make_tiny_gguf.py")"
    if [ -f "$dir/model/.mlchaos-trained" ] && [ "$(cat "$dir/model/.mlchaos-trained")" = "$want" ]; then
        say "llamacpp: model up to date ($dir/model)"
        return 0
    fi
    rm -rf "$dir/model" "$dir/model.tmp"
    mkdir -p "$dir/model.tmp"
    if ! "$dir/venv/bin/python" "$SPEC/make_tiny_gguf.py" "$dir/model.tmp/tiny.gguf" >"$dir/model.log" 2>&1; then
        tail -n 20 "$dir/model.log" >&2
        die "llamacpp: writing the model failed (see $dir/model.log)"
    fi
    echo "$want" >"$dir/model.tmp/.mlchaos-trained"
    mv "$dir/model.tmp" "$dir/model"
    say "llamacpp: model written: $dir/model/tiny.gguf"
}

main() {
    local names=() arg
    [ $# -gt 0 ] || set -- all
    for arg in "$@"; do
        case "$arg" in
            all) names+=("${ALL[@]}") ;;
            llamacpp|llm-clients) names+=("$arg") ;;
            -h|--help) usage ;;
            *) echo "llm-servers.sh: unknown name '$arg'" >&2; usage ;;
        esac
    done
    check_python
    mkdir -p "$CACHE"
    local t0=$SECONDS name done_llama="" done_clients=""
    for name in "${names[@]}"; do
        if [ "$name" = llamacpp ] && [ -z "$done_llama" ]; then
            wheel
            venv llamacpp "$SPEC/llamacpp.txt" --find-links "$CACHE/llamacpp/wheels"
            model
            done_llama=1
        elif [ "$name" = llm-clients ] && [ -z "$done_clients" ]; then
            venv llm-clients "$SPEC/llm-clients.txt"
            done_clients=1
        fi
    done
    say "done in $((SECONDS - t0)) s under $CACHE"
}

main "$@"
