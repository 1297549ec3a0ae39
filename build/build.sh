#!/bin/sh
# Build dist/tailnet-agent: one executable for Linux x86-64 that carries its own
# tailscaled, the default command catalog and the web assets.
#
#   sh build/build.sh                         build tailscaled (Go) and the executable
#   TAILSCALED=/path/tailscaled sh build/build.sh   embed this tailscaled instead (any file name)
#   DIST=/some/dir sh build/build.sh          put the executable there (default: dist/)
#
# Needs: the project installed in the Python that runs PyInstaller
# (`pip install -e '.[build]'`), and Go 1.26 unless TAILSCALED is given.
# PYTHON picks that Python (default: python3).
set -eu

root="$(cd "$(dirname "$0")/.." && pwd)"
# A relative TAILSCALED is relative to where we were called from.
case "${TAILSCALED:-}" in
    ""|/*) ;;
    *) TAILSCALED="$(pwd)/$TAILSCALED" ;;
esac
case "${DIST:-}" in
    ""|/*) ;;
    *) DIST="$(pwd)/$DIST" ;;
esac
cd "$root"
PYTHON="${PYTHON:-python3}"
dist="${DIST:-$root/dist}"
work="$root/build/work"
mkdir -p "$work"

if [ -n "${TAILSCALED:-}" ]; then
    if [ ! -x "$TAILSCALED" ]; then
        echo "build/build.sh: TAILSCALED=$TAILSCALED is not an executable file;" \
             "fix the path or unset TAILSCALED to build one with Go" >&2
        exit 1
    fi
    tailscaled="$TAILSCALED"
else
    sh "$root/build/tailscaled.sh" "$work/tailscaled-bin"
    tailscaled="$work/tailscaled-bin/tailscaled"
fi
echo "embedding $("$tailscaled" --version | head -n 1) from $tailscaled" >&2
# The agent looks for a file named exactly `tailscaled` next to itself in the bundle,
# whatever the given file is called: embed a copy under that name.
embed="$work/embed"
rm -rf "$embed"
mkdir -p "$embed"
cp "$tailscaled" "$embed/tailscaled"
chmod 755 "$embed/tailscaled"
licence="$(dirname "$tailscaled")/LICENSE.tailscale"
[ ! -f "$licence" ] || cp "$licence" "$embed/"

if ! "$PYTHON" -c "import PyInstaller, agent" 2>/dev/null; then
    echo "build/build.sh: $PYTHON cannot import PyInstaller and the agent;" \
         "run \`$PYTHON -m pip install -e '.[build]'\` first (or set PYTHON=...)" >&2
    exit 1
fi

# PyInstaller imports the agent's packages in a child Python to find their modules; the
# agent quiets asyncssh's DSA deprecation when it starts (agent/logs.py), an import alone
# does not, so the child is told here (this build step only, by message and category).
PYTHONWARNINGS="ignore:DSA is deprecated:UserWarning" \
TAILNET_AGENT_TAILSCALED="$embed/tailscaled" "$PYTHON" -m PyInstaller \
    --noconfirm --clean --log-level WARN \
    --distpath "$dist" --workpath "$work/pyinstaller" \
    "$root/build/tailnet-agent.spec"

size=$(wc -c < "$dist/tailnet-agent")
echo "built $dist/tailnet-agent ($((size / 1048576)) MiB)" >&2
sh "$root/build/check-embedded.sh" "$dist/tailnet-agent"
