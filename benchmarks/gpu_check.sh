#!/usr/bin/env bash
# The GPU check: on a CUDA machine, in under 10 minutes and without downloading weights, run the
# CUDA tests and time the renderers, the memory stages and spatia-5b (random weights, every VRAM
# mode); writes benchmarks/results/gpu_check.json and prints a table.
#
#   benchmarks/gpu_check.sh                  the check (exits 2 at once without a CUDA device)
#   benchmarks/gpu_check.sh --cpu-dry-run    the same sections at tiny sizes on the CPU
#   benchmarks/gpu_check.sh --help           sections, budgets, VRAM modes, --out
#
# Python: $SPATIA_PYTHON, else the repository's .venv, else python3. The project need not be
# installed: backend/ and the repository root go on PYTHONPATH. On a machine without the
# network, SPATIA_WHEELS=DIR installs the wheels in DIR (say diffusers, trimesh, ftfy) into a
# temporary folder first; the check names any package still missing before it starts.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${SPATIA_PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python="$(command -v python3 || true)"; fi
fi
if [[ -z "$python" ]]; then
    echo "gpu_check: no Python found; set SPATIA_PYTHON to the interpreter that has torch" >&2
    exit 2
fi
if [[ -n "${SPATIA_WHEELS:-}" ]]; then
    shopt -s nullglob
    wheels=("$SPATIA_WHEELS"/*.whl)
    if [[ ${#wheels[@]} -eq 0 ]]; then
        echo "gpu_check: SPATIA_WHEELS=$SPATIA_WHEELS holds no .whl files" >&2
        exit 2
    fi
    site="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_site.XXXXXX")"
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "${wheels[@]}"
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$root/backend:$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$python" "$root/benchmarks/gpu_check.py" "$@"
