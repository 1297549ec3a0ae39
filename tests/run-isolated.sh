#!/bin/sh
# Run the given command in a fresh network namespace with only loopback up, when we can
# create one (as root). Nothing inside can reach any address
# but 127.0.0.0/8, so no test can touch the internet even by mistake.
set -eu
if [ "${TAILNET_AGENT_NO_NETNS:-}" = "1" ]; then
  exec "$@"
fi
if [ "$(id -u)" -eq 0 ] && unshare --net true 2>/dev/null; then
  exec unshare --net sh -c 'ip link set lo up && exec "$@"' sh "$@"
fi
echo "run-isolated: cannot create a network namespace; running on the host network" >&2
exec "$@"
