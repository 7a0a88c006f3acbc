#!/usr/bin/env bash
# The compose stack on an NVIDIA GPU, end to end: builds the default image (docker/Dockerfile:
# torch 2.13.0, CUDA build), starts redis + api + worker with ATNL_DEVICE=cuda (where CUDA is
# missing the api loads no model and /readyz never turns 200), waits for /readyz, runs one morph
# and checks the model that answered it, torch's version and GPU inside the api container, and
# that a process holds GPU memory; then `down -v`. Nothing is left but the image.
#
#   scripts/gpu-smoke.sh          (root or the docker group; Docker with Compose v2, the NVIDIA
#                                  Container Toolkit, nvidia-smi, curl, python3)
#
# PORT (18000), READY_TIMEOUT (900 s: building aside, the default model trains first) and
# PROJECT (atnl-gpu-smoke) can be set; the settings file is ATNL_ENV_FILE (.env.example).
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=${PROJECT:-atnl-gpu-smoke}
PORT=${PORT:-18000}
READY_TIMEOUT=${READY_TIMEOUT:-900}
export ATNL_DEVICE=cuda ATNL_PORT=$PORT ATNL_ENV_FILE=${ATNL_ENV_FILE:-.env.example}
ATNL_API_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
export ATNL_API_TOKEN
API=http://127.0.0.1:$PORT
TORCH_VERSION=$(sed -n 's/^torch==//p' docker/torch-cuda-requirements.txt)

compose() { docker compose -p "$PROJECT" --env-file "$ATNL_ENV_FILE" -f docker-compose.yml "$@"; }
step() { printf '%s --> %s\n' "$(date -u +%T)" "$*"; }
fail() {
    echo "gpu-smoke: FAILED: $*" >&2
    compose logs --no-color --tail=80 api worker >&2 || true
    exit 1
}
trap 'step "compose down -v"; compose down -v --remove-orphans >/dev/null 2>&1 || true' EXIT

command -v nvidia-smi >/dev/null || fail "no nvidia-smi: not a host with an NVIDIA driver"
docker compose version >/dev/null || fail "docker compose (v2) is not installed"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

start=$SECONDS
step "build (docker/Dockerfile, torch $TORCH_VERSION CUDA)"
compose build
step "up -d (ATNL_DEVICE=cuda, port $PORT)"
compose down -v --remove-orphans >/dev/null 2>&1 || true # what a killed run left
compose up -d

step "wait for /readyz (the default model trains on the GPU first)"
deadline=$((SECONDS + READY_TIMEOUT))
until ready=$(curl -sf "$API/readyz"); do
    [ $SECONDS -lt $deadline ] || fail "/readyz not 200 after ${READY_TIMEOUT}s"
    sleep 3
done
model=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["model_id"])' "$ready")
echo "ready: $model"

step "torch in the api container"
compose exec -T api python -c 'import sys, torch
ok = torch.cuda.is_available() and torch.__version__.split("+")[0] == sys.argv[1]
print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0) if ok else "no GPU")
sys.exit(0 if ok else 1)' "$TORCH_VERSION" || fail "the api container's torch is not $TORCH_VERSION with a GPU"

step "one morph (0 -> 5, 8 frames)"
answer=$(curl -sf -F start=@examples/0.png -F end=@examples/5.png -F steps=8 "$API/v1/interpolate") ||
    fail "POST /v1/interpolate did not answer 200"
python3 -c 'import json, sys
a = json.loads(sys.argv[1])
assert a["model_id"] == sys.argv[2] and len(a["frames"]) == 8, (a["model_id"], len(a["frames"]))
print("morph:", a["model_id"], a["method"], len(a["frames"]), "frames")' "$answer" "$model" ||
    fail "the morph came from another model or has the wrong frames"

step "a process holds GPU memory"
apps=$(nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader)
[ -n "$apps" ] || fail "no process holds GPU memory: inference did not run on the GPU"
echo "$apps"

echo "gpu-smoke: passed in $((SECONDS - start)) s"
