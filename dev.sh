#!/usr/bin/env bash
# Set-up and day-to-day commands. Creates or reuses the virtual environment .venv at the
# repository root, installing the project (editable) with the pins in constraints.txt.
#   ./dev.sh demo [ARGS]   run the built-in demo (CPU, no model weights)
#   ./dev.sh test [ARGS]   run the whole test suite (extra ARGS go to pytest)
#   ./dev.sh bench [ARGS]  run every benchmark, writing JSON under benchmarks/results/
#   ./dev.sh env           only create/update .venv
set -euo pipefail
cd "$(dirname "$0")"

python_bin() {
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then
            echo "$candidate"
            return
        fi
    done
    echo "Python 3.11 or newer is required (python3.11 or python3 on PATH)" >&2
    exit 1
}

ensure_env() {
    local stamp=.venv/.spatia-installed
    local want
    want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return
    fi
    if [ ! -x .venv/bin/python ]; then
        echo "Creating .venv ..." >&2
        "$(python_bin)" -m venv .venv
    fi
    echo "Installing the project and its test dependencies into .venv (first run takes a few minutes) ..." >&2
    .venv/bin/python -m pip install --quiet --upgrade pip >&2
    .venv/bin/python -m pip install --quiet -c constraints.txt -e '.[test,service,models]' >&2
    echo "$want" > "$stamp"
}

command=${1:-}
shift || true
case "$command" in
    env) ensure_env ;;
    demo) ensure_env; exec .venv/bin/spatia demo "$@" ;;
    test) ensure_env; exec .venv/bin/python -m pytest "$@" ;;
    bench) ensure_env; exec .venv/bin/python benchmarks/run_all.py "$@" ;;
    *) echo "usage: ./dev.sh {demo|test|bench|env} [ARGS]" >&2; exit 2 ;;
esac
