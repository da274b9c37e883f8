#!/usr/bin/env bash
# One entry point for a fresh Debian machine with python3 (3.11+):
#   ./dev.sh demo [ARGS]   run `slotless demo` (a local Redis Cluster behind the proxy)
#   ./dev.sh test [ARGS]   run the test suite (ARGS go to pytest)
#   ./dev.sh bench [ARGS]  slotless vs. the cluster with redis-benchmark (tests/bench/README.md)
#   ./dev.sh setup         only ensure the environment
# Ensuring the environment: .venv (pip install -e '.[test,dev]' again whenever pyproject.toml,
# setup.py or a compiled module's .py/.pxd changes, so that the Cython extensions are never
# stale) and redis-server/redis-cli/redis-benchmark (apt-get when root). Quiet when all is there.
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")"
VENV=.venv
STAMP=$VENV/.slotless-install.sha256

say() { echo "dev.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# apt_install PACKAGE... : install as root, or tell the user exactly what to run.
apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing $* with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    else
        die "missing $*: install with: sudo apt-get install $*"
    fi
}

# The interpreter .venv is made from: $SLOTLESS_PYTHON if set; else the distribution's
# /usr/bin/python3 when it is 3.11+ with venv, because Debian builds it with PGO and LTO (the
# proxy measured about 20% less CPU per request on it than on a plain source build such as
# pyenv's default; README "Performance"); else python3 from PATH.
pick_python() {
    if [ -n "${SLOTLESS_PYTHON:-}" ]; then
        echo "$SLOTLESS_PYTHON"
    elif [ -x /usr/bin/python3 ] && /usr/bin/python3 -c \
        'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo /usr/bin/python3
    else
        echo python3
    fi
}

ensure_python() {
    command -v "$PYTHON" >/dev/null \
        || die "$PYTHON not found: install Python 3.11+ (sudo apt-get install python3 python3-venv)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$PYTHON is $("$PYTHON" -V 2>&1 | cut -d' ' -f2); slotless needs 3.11+:" \
               "install it (Debian 12: sudo apt-get install python3 python3-venv)"
    # Debian ships venv's ensurepip separately, in python3-venv.
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
}

create_venv() {
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" >/dev/null 2>&1 && return
    rm -rf "$VENV"
    apt_install python3-venv
    "$PYTHON" -m venv "$VENV"
}

# What the install is built from: the build config and each compiled module (every one has a
# .pxd beside its .py; tests/unit/routing/test_equivalence.py checks), as "hash  path" lines.
install_inputs() {
    local pxd
    sha256sum pyproject.toml setup.py
    for pxd in routing/*.pxd; do
        sha256sum "$pxd" "${pxd%.pxd}.py"
    done
}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
        PYTHON=$(pick_python)
        ensure_python
        say "creating $VENV with $PYTHON"
        create_venv
    fi
    local want
    want=$(install_inputs | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
        say "installing slotless into $VENV (pip install -e '.[test,dev]')"
        # A build that fails leaves the old extensions in place, built from older sources:
        # remove them first, so that a failed build runs the pure modules, and says so.
        rm -f routing/*.so
        PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
            "$VENV/bin/python" -m pip install -q -e '.[test,dev]'
        if ! "$VENV/bin/python" -c 'import routing.accel as a; raise SystemExit(a.HOT_PATH != "compiled")'; then
            say "the compiled hot path was not built (see the warning above): running the pure-Python modules"
        fi
        echo "$want" >"$STAMP"
    fi
}

ensure_redis() {
    local tool missing=0
    for tool in redis-server redis-cli redis-benchmark; do
        command -v "$tool" >/dev/null || missing=1
    done
    if [ "$missing" = 1 ]; then
        apt_install redis-server redis-tools
        # The Debian package starts a system redis on 6379; the tests never use that port.
        command -v redis-server >/dev/null || die "redis-server still missing after apt-get"
    fi
}

ensure_env() {
    ensure_venv
    ensure_redis
}

run_tests() {
    local status=0
    "$VENV/bin/python" -m pytest -q "$@" || status=$?
    if [ "$status" = 5 ]; then
        die "pytest collected no tests: that is a failure here"
    fi
    return "$status"
}

case "${1:-}" in
    demo) shift; ensure_env; exec "$VENV/bin/slotless" demo "$@" ;;
    test) shift; ensure_env; run_tests "$@" ;;
    bench) shift; ensure_env; exec "$VENV/bin/python" tests/bench/run.py "$@" ;;
    setup) ensure_env ;;
    *) say "usage: ./dev.sh demo|test|bench|setup [ARGS...]"; exit 2 ;;
esac
