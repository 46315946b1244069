#!/usr/bin/env bash
# Build the ops_platform image with no container registry:
#   1. base: Debian bookworm with python3, made by mmdebstrap and imported into podman
#      (skipped when the base image already exists; FORCE_BASE=1 rebuilds it);
#   2. wheelhouse: this project and every pinned dependency as wheels, made on the host;
#   3. podman build with --network none: pip installs from the wheelhouse only.
# Usage: deploy/image/build.sh [TAG]   (default localhost/ops-platform:latest)
set -euo pipefail
cd "$(dirname "$0")/../.."

TAG="${1:-${IMAGE:-localhost/ops-platform:latest}}"
BASE="${BASE_IMAGE:-localhost/ops-platform-base:bookworm}"
PYTHON="${PYTHON:-python3}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ENGINE="${CONTAINER_ENGINE:-$(command -v podman || command -v docker)}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/image/containers.conf}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

started=$(date +%s)
if [ -n "${FORCE_BASE:-}" ] || ! "$ENGINE" image exists "$BASE" 2>/dev/null; then
  echo "base: mmdebstrap bookworm → $BASE"
  mmdebstrap --quiet --variant=minbase \
    --include=python3,python3-venv,ca-certificates,libpq5,tini,passwd \
    bookworm "$work/base.tar" "$MIRROR"
  "$ENGINE" import --quiet "$work/base.tar" "$BASE" >/dev/null
fi

# Wheels are picked for the image's Python, not the host's. pip download applies the target
# version to `python_version` markers but not to `python_full_version` ones, so the few
# packages such a marker asks for on the image's Python are listed in image-requirements.txt.
py="$("$ENGINE" run --rm --network none "$BASE" python3 -c 'import platform; print(platform.python_version())')"
echo "wheelhouse: pip download for CPython $py, manylinux x86_64"
rm -rf wheelhouse
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir wheelhouse .
"$PYTHON" -m pip download --quiet --dest wheelhouse --only-binary=:all: \
  --python-version "$py" --implementation cp --abi "cp$(echo "$py" | cut -d. -f1,2 | tr -d .)" --abi abi3 --abi none \
  --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform any \
  "ops_platform[celery,docker,k8s] @ file://$(ls "$PWD"/wheelhouse/ops_platform-*.whl)" \
  -r deploy/image/image-requirements.txt

echo "image: $ENGINE build --network none → $TAG"
"$ENGINE" build --quiet --format docker --network none --build-arg "BASE_IMAGE=$BASE" -t "$TAG" . >/dev/null
rm -rf wheelhouse
echo "built $TAG in $(( $(date +%s) - started )) s, $("$ENGINE" image inspect "$TAG" --format '{{.Size}}') bytes"
