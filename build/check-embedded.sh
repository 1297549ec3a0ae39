#!/bin/sh
# The last step of build.sh: the built executable must run and find the tailscaled it
# carries. Fails (non-zero) otherwise, so a broken bundle never passes for a build.
#   sh build/check-embedded.sh dist/tailnet-agent
set -eu
exe="$1"
# Without TAILSCALED and with an empty PATH entry list, so nothing but the bundle can answer.
if ! out="$(env -u TAILSCALED PATH=/nonexistent "$exe" version 2>&1)"; then
    echo "build: $exe does not run: $out" >&2
    exit 1
fi
echo "$out"
case "$out" in
    *"(embedded)"*) ;;
    *)
        echo "build: $exe cannot find its embedded tailscaled; check build/tailnet-agent.spec" \
             "(it must bundle a file named tailscaled at the bundle root)" >&2
        exit 1
        ;;
esac
