#!/usr/bin/env bash
# Set-up and day-to-day commands. Creates or reuses the virtual environment .venv at the
# repository root, installing the project (editable) with the pins in constraints.txt.
#   ./dev.sh demo [ARGS]   run the built-in demo (CPU, no model weights)
#   ./dev.sh test [ARGS]   run the whole test suite (extra ARGS go to pytest); without ARGS, then
#                          the Blender extension's tests under every older supported Blender too
#   ./dev.sh test-blender [VERSION] [ARGS]
#                          the extension's tests under bpy VERSION (4.2, 4.5; default: both), each
#                          in its own environment .venv-bpyVERSION (pins: constraints-bpyVERSION.txt)
#   ./dev.sh bench [ARGS]  run every benchmark, writing JSON under benchmarks/results/
#   ./dev.sh env           only create/update .venv (and .venv-bpy4.2, .venv-bpy4.5)
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

# The dashboard's browser tests drive headless Chromium (Debian's `chromium` package). Installed
# here when missing and this user may install packages (root, as in CI, or password-less sudo);
# elsewhere the browser tests say they were skipped for want of it.
ensure_chromium() {
    local name
    for name in chromium chromium-browser google-chrome; do
        command -v "$name" >/dev/null 2>&1 && return
    done
    command -v apt-get >/dev/null 2>&1 || { echo "no chromium and no apt-get: the browser tests will be skipped" >&2; return; }
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo="sudo -n"
        else
            echo "no chromium (install it: apt-get install chromium): the browser tests will be skipped" >&2
            return
        fi
    fi
    echo "Installing chromium for the dashboard's browser tests ..." >&2
    $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >&2 ||
        echo "chromium could not be installed: the browser tests will be skipped" >&2
}

# The extension's tests that need only Blender and the fake backend (every operator is in them);
# run under each older Blender the extension supports. The main suite runs them under bpy 5.0.
BLENDER_VERSIONS=(4.2 4.5)
BLENDER_TESTS=(tests/blender/test_ext_artist.py tests/blender/test_ext_memory.py tests/blender/test_ext_register.py
               tests/blender/test_ext_settings.py tests/blender/test_ext_build.py tests/blender/test_ext_objects.py
               tests/blender/test_ext_objects_pure.py tests/blender/test_ext_dashboard.py tests/blender/test_ext_clip_import.py
               tests/blender/test_ext_shot.py::test_camera_path_presets_key_the_camera)

ensure_bpy_env() {
    local version=$1 env=.venv-bpy$1
    local stamp=$env/.spatia-installed
    local packages="bpy numpy requests pytest pytest-timeout"
    local want
    want=$( (cat "constraints-bpy$version.txt"; echo "$packages") | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return
    fi
    if [ ! -x "$env/bin/python" ]; then
        echo "Creating $env ..." >&2
        "$(python_bin)" -m venv "$env"
    fi
    echo "Installing bpy $version and the extension's test dependencies into $env ..." >&2
    "$env/bin/python" -m pip install --quiet --upgrade pip >&2
    # the extension itself needs only bpy, numpy and requests: no torch, no backend
    # shellcheck disable=SC2086
    "$env/bin/python" -m pip install --quiet -c "constraints-bpy$version.txt" $packages >&2
    echo "$want" > "$stamp"
}

test_blender() {
    local versions=("${BLENDER_VERSIONS[@]}")
    if [ $# -gt 0 ] && [[ " ${BLENDER_VERSIONS[*]} " == *" $1 "* ]]; then
        versions=("$1")
        shift
    fi
    local status=0 version
    for version in "${versions[@]}"; do
        ensure_bpy_env "$version"
        echo "== the Blender extension under bpy $version ==" >&2
        # --confcutdir: the suite's root conftest needs torch, which these environments do not have
        PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" ".venv-bpy$version/bin/python" -m pytest \
            --confcutdir=tests/blender -p no:cacheprovider -q "$@" "${BLENDER_TESTS[@]}" || status=$?
    done
    return $status
}

command=${1:-}
shift || true
case "$command" in
    env) ensure_env; for v in "${BLENDER_VERSIONS[@]}"; do ensure_bpy_env "$v"; done ;;
    demo) ensure_env; exec .venv/bin/spatia demo "$@" ;;
    test)
        ensure_env
        ensure_chromium
        if [ $# -gt 0 ]; then
            exec .venv/bin/python -m pytest "$@"
        fi
        status=0
        .venv/bin/python -m pytest || status=$?
        test_blender || status=$?
        exit $status ;;
    test-blender) test_blender "$@" ;;
    bench) ensure_env; exec .venv/bin/python benchmarks/run_all.py "$@" ;;
    *) echo "usage: ./dev.sh {demo|test|test-blender|bench|env} [ARGS]" >&2; exit 2 ;;
esac
