#!/bin/sh
# Build the container image tailnet-agent:<version> (and :latest) from dist/tailnet-agent.
#
#   sh build/image.sh                      with podman (make image does this after make dist)
#   ENGINE=docker sh build/image.sh        with docker
#
# ENGINE_ARGS adds global options to the engine (the tests use a private podman store:
# --root ... --storage-driver vfs ...); IMAGE changes the name; PYTHON must be able to
# import PyInstaller (build/image_root.py reads the executable's bundle with it).
# Nothing is downloaded: the image is FROM scratch, its files come from this machine.
set -eu

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
PYTHON="${PYTHON:-python3}"
ENGINE="${ENGINE:-podman}"
IMAGE="${IMAGE:-tailnet-agent}"
context="$root/build/work/image"

if [ ! -x dist/tailnet-agent ]; then
    echo "build/image.sh: dist/tailnet-agent does not exist; build it first (make dist)" >&2
    exit 1
fi
if ! command -v "$ENGINE" >/dev/null 2>&1; then
    echo "build/image.sh: $ENGINE not found; install it (Debian: apt-get install podman" \
         "runc) or set ENGINE=docker" >&2
    exit 1
fi
version="$(env -u TAILSCALED dist/tailnet-agent version | sed -n '1s/^tailnet-agent //p')"
echo "image root for tailnet-agent $version; system libraries:" >&2
"$PYTHON" build/image_root.py dist/tailnet-agent "$context"

# podman writes OCI images by default, and the OCI format has no HEALTHCHECK.
format=""
[ "$(basename "$ENGINE")" = "podman" ] && format="--format docker"
# shellcheck disable=SC2086  # ENGINE_ARGS and format are lists of words
$ENGINE ${ENGINE_ARGS:-} build $format --build-arg "VERSION=$version" \
    -f build/Containerfile -t "$IMAGE:$version" -t "$IMAGE:latest" "$context"
echo "built $IMAGE:$version" >&2
