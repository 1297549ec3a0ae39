#!/bin/sh
# Figures for the issue note, measured on the built executable itself: its size,
# cold start to "Ready." (demo, and serve on the offline test tailnet), and idle
# memory of the whole process tree (bootloader + Python + tailscaled); and the same for
# the container image (its size, start to Running, idle memory; needs podman and root).
#
#   sh build/measure.sh          (after `make dist`; PYTHON picks the test Python)
#
# The numbers come from the smoke tests in tests/e2e/build and tests/e2e/container,
# which record them in test-artifacts/build-figures.json while proving the executable
# and the image work; single runs, so expect some noise.
set -eu

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
PYTHON="${PYTHON:-python3}"

if [ ! -x dist/tailnet-agent ]; then
    echo "build/measure.sh: dist/tailnet-agent does not exist; build it first (make dist)" >&2
    exit 1
fi

sh tests/run-isolated.sh "$PYTHON" -m pytest -q tests/e2e/build tests/e2e/container >&2

echo "dist/tailnet-agent, $(date -u +%Y-%m-%d), $(nproc) CPUs:"
"$PYTHON" - <<'PY'
import json

with open("test-artifacts/build-figures.json") as f:
    figures = json.load(f)
width = max(map(len, figures))
for name, figure in sorted(figures.items()):
    print(f"  {name:<{width}}  {figure['value']:>8} {figure['unit']}")
PY
