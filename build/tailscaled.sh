#!/bin/sh
# Build the tailscaled we embed: pinned version, static, stripped, and trimmed to
# the features listed in build/tailscaled-features.txt.
#
#   sh build/tailscaled.sh OUT_DIR      -> OUT_DIR/tailscaled
#
# Needs Go (>= 1.26) and the Go module proxy (or a warm module cache).
set -eu

TAILSCALE_VERSION="${TAILSCALE_VERSION:-v1.98.8}"
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: sh build/tailscaled.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if ! command -v go >/dev/null 2>&1; then
    echo "build/tailscaled.sh: go not found on PATH; install Go 1.26 (https://go.dev/dl/)" \
         "or pass a ready tailscaled with TAILSCALED=/path/to/tailscaled" >&2
    exit 1
fi

# Feature names only: drop comments and blank lines, join with commas.
keep="$(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$here/tailscaled-features.txt" \
        | paste -sd, -)"

# featuretags resolves dependencies between features; running it at the pinned
# version means the omit list always matches the source we build.
tags="$(GOFLAGS=-mod=mod GOTOOLCHAIN=local go run "tailscale.com/cmd/featuretags@$TAILSCALE_VERSION" \
        --min --add="$keep")"
echo "tailscaled $TAILSCALE_VERSION build tags: $tags" >&2

# Without a VCS stamp, a module build reports "1.98.8-ERR-BuildInfo"; stamp the
# version the way upstream's build_dist.sh does, marking the long form as ours.
short="${TAILSCALE_VERSION#v}"
ldflags="-s -w -X tailscale.com/version.shortStamp=$short"
ldflags="$ldflags -X tailscale.com/version.longStamp=$short-tailnet-agent-trimmed"

# CGO off: a static binary that runs on any x86-64 Linux, whatever its libc.
CGO_ENABLED=0 GOOS=linux GOARCH=amd64 GOTOOLCHAIN=local GOBIN="$out" \
    go install -trimpath -tags="$tags" -ldflags="$ldflags" \
    "tailscale.com/cmd/tailscaled@$TAILSCALE_VERSION"

# Its BSD-3-Clause licence travels with the binary (the spec bundles it).
GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json "tailscale.com@$TAILSCALE_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' \
    | { read -r dir && cp "$dir/LICENSE" "$out/LICENSE.tailscale" && chmod 0644 "$out/LICENSE.tailscale"; }

"$out/tailscaled" --version | head -n 1 >&2
