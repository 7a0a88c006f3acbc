#!/usr/bin/env bash
# `atnl bench service --device cuda` on a machine with an NVIDIA GPU, with the CUDA
# options each measured as a variant of rows 1-2: pinned memory off, bf16 and fp16 autocast,
# torch.compile. Installs nothing from the network: it uses the first Python here whose torch
# sees a GPU (PYTHON=..., else .venv/bin/python, else python3) and runs the repository's code
# from this checkout (PYTHONPATH). Missing packages are named and the script stops, unless
# WHEELS=DIR holds wheels for them (pip --no-index --find-links DIR).
#
#   scripts/gpu-bench.sh [OUT] [extra `atnl bench service` options]    (OUT: reports/gpu)
#
# The report (OUT/service.md) names the GPU in its hardware line.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-reports/gpu}
shift || true

PY=""
for candidate in ${PYTHON:-} .venv/bin/python python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        PY=$candidate
        break
    fi
done
if [ -z "$PY" ]; then
    echo "gpu-bench: no Python here has a torch that sees a CUDA GPU (tried ${PYTHON:-} .venv/bin/python python3)" >&2
    exit 2
fi

NEEDED="fastapi uvicorn httptools uvloop multipart pydantic pydantic_settings httpx psutil numpy PIL safetensors mlxtend sklearn scipy typer rich rq redis prometheus_client"
missing=$("$PY" - "$NEEDED" <<'PYCODE'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1].split() if importlib.util.find_spec(m) is None))
PYCODE
)
if [ -n "$missing" ]; then
    if [ -n "${WHEELS:-}" ]; then
        declare -A pip_name=([multipart]=python-multipart [PIL]=pillow [sklearn]=scikit-learn [pydantic_settings]=pydantic-settings [prometheus_client]=prometheus-client)
        pkgs=(); for m in $missing; do pkgs+=("${pip_name[$m]:-$m}"); done
        "$PY" -m pip install --no-index --find-links "$WHEELS" "${pkgs[@]}"
    else
        echo "gpu-bench: $PY lacks: $missing (set WHEELS=DIR with their wheels; nothing is fetched from the network)" >&2
        exit 2
    fi
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0))'
exec "$PY" -c 'from service.cli.app import main; main()' bench service --device cuda --out "$OUT" \
    --variant ATNL_CUDA_PIN_MEMORY=false \
    --variant ATNL_AUTOCAST=bf16 \
    --variant ATNL_AUTOCAST=fp16 \
    --variant ATNL_TORCH_COMPILE=true \
    "$@"
