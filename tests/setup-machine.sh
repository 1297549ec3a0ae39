#!/bin/sh
# Install the system components the end-to-end tests use (sshd, Chromium, Go, podman,
# rsyslog). Runs as root on CI (no stdin); as another user it only reports what is missing
# (those tests then skip, outside CI).
set -eu
TEST_USER="${TAILNET_AGENT_TEST_USER:-tnagent}"

need=""
[ -x /usr/sbin/sshd ] || need="$need openssh-server"
command -v chromium >/dev/null 2>&1 || need="$need chromium"
command -v npm >/dev/null 2>&1 || need="$need npm"  # axe-core for the chat page's tests
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v unshare >/dev/null 2>&1 || need="$need util-linux"
# `become` commands run through sudo -n on the test sshd (tests/e2e/ssh/test_become.py).
command -v sudo >/dev/null 2>&1 || need="$need sudo"
# The MCP TypeScript SDK client in tests/clients/ts (make ts-client).
command -v npm >/dev/null 2>&1 || need="$need nodejs npm"
# The fleet tests: a node per network/UTS/mount namespace (nsenter, mount --bind), and
# Tailscale SSH logs users in with su.
command -v nsenter >/dev/null 2>&1 || need="$need util-linux"
command -v su >/dev/null 2>&1 || need="$need util-linux login"
command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ] || need="$need golang-go"
# The container image's tests: podman with runc (crun fails on hybrid cgroups), and the CA
# bundle the image carries.
command -v podman >/dev/null 2>&1 || need="$need podman"
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || need="$need runc"
[ -f /etc/ssl/certs/ca-certificates.crt ] || need="$need ca-certificates"
# The audit shipping tests start their own rsyslogd on loopback (imtcp; TLS through the ossl
# driver); the system daemon is not used.
[ -x /usr/sbin/rsyslogd ] || need="$need rsyslog"
ls /usr/lib/*/rsyslog/lmnsd_ossl.so >/dev/null 2>&1 || need="$need rsyslog-openssl"

if [ "$(id -u)" -ne 0 ]; then
  [ -z "$need" ] || echo "setup-machine: not root; missing:$need (those tests will skip)"
  exit 0
fi
if [ -n "$need" ]; then
  echo "setup-machine: installing$need"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
# sshd's privilege-separation directory
mkdir -p /run/sshd
# A dedicated login for the test sshd whose shell is /bin/sh (root's shell sources a heavy rc).
if ! id "$TEST_USER" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/sh "$TEST_USER"
fi
echo "setup-machine: ok (test user $TEST_USER)"
