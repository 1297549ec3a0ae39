# Two commands for a fresh machine (see README.md):
#   make demo   install into .venv and start the embedded demo (no tailnet, no API key)
#   make test   install what the tests need, then lint, type-check and run every test
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# Quiet installs: pip's own notices and setuptools' editable-install warning are not what a
# newcomer needs to read first.
PIP := PYTHONWARNINGS=ignore $(BIN)/pip install -q --disable-pip-version-check

.PHONY: demo app test install machine tailnet-bin wheels ts-client axe lint pytest dist image measure bench bench-scale soak clean

$(BIN)/python:
	@echo "Creating $(VENV) and installing tailnet-agent into it (a minute or two the first time)..."
	@$(PY) -m venv $(VENV)
	@$(PIP) --upgrade pip

# What the app needs and nothing else (no test or build tools).
app: $(BIN)/python
	@$(PIP) -e .

install: $(BIN)/python
	$(PIP) -e '.[test]'

demo: app
	$(BIN)/tailnet-agent demo

# Debian packages (openssh-server, chromium, iproute2) and the sshd test user; needs root,
# and says what is missing otherwise.
machine:
	sh tests/setup-machine.sh

# headscale and tailscaled at pinned versions, built with Go into .cache/tailnet-bin.
tailnet-bin: install
	$(BIN)/python -m tests.support.tailnet build

# The app's wheels, so a test can install `make app` into a fresh venv inside the tests'
# network namespace (no internet there).
wheels: install
	$(BIN)/pip download -q --disable-pip-version-check -d .cache/wheels . "setuptools>=69" wheel pip

# The official MCP TypeScript SDK, a second client for the resource and prompt tests
# (pinned by tests/clients/ts/package-lock.json; installed there, test-only).
ts-client:
	npm ci --prefix tests/clients/ts --no-audit --no-fund --loglevel=error

# axe-core for the chat page's accessibility tests, from the npm registry at the version
# pinned in tests/e2e/chat/package-lock.json; the tests inject it, the agent never serves it.
AXE := tests/e2e/chat/node_modules/axe-core/axe.min.js
axe: $(AXE)
$(AXE): tests/e2e/chat/package.json tests/e2e/chat/package-lock.json
	npm ci --prefix tests/e2e/chat --no-audit --no-fund --loglevel=error
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

pytest: install
	sh tests/run-isolated.sh $(BIN)/python -m pytest $(PYTEST_ARGS)

# dist/tailnet-agent: one executable with its own tailscaled (see build/README.md).
dist: install
	$(PIP) -e '.[build]'
	PYTHON=$(BIN)/python sh build/build.sh

# The container image tailnet-agent:<version> from dist/tailnet-agent, FROM scratch (podman;
# ENGINE=docker for docker). See README "Containers".
image: dist
	PYTHON=$(BIN)/python sh build/image.sh

measure: dist
	PYTHON=$(BIN)/python sh build/measure.sh

# dist before pytest: tests/build smoke-tests the built executable itself.
test: machine install tailnet-bin wheels ts-client axe lint dist pytest

# Benchmarks against the physical floor (not tests): prints one table, saves bench-results/.
bench: install tailnet-bin
	sh tests/run-isolated.sh $(BIN)/python -m tests.bench.run $(BENCH_ARGS)

# The scale benchmark (not a test): one command on 10, 100, 300 and 1,000 hosts (real sshd
# on as many loopback addresses) and on as many test-tailnet nodes as this machine takes;
# prints the figures against N and the table, saves bench-results/scale-*. As root.
bench-scale: install tailnet-bin
	sh tests/run-isolated.sh $(BIN)/python -m tests.bench.scale $(BENCH_ARGS)

# A soak with faults (not a test): 16 clients, 5,000 calls, sshd restarted 3 times and, on the
# test tailnet, the agent's tailscaled killed twice; prints the report, saves bench-results/.
soak: install tailnet-bin
	sh tests/run-isolated.sh $(BIN)/python -m tests.soak.run $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .cache dist build/work test-artifacts tests/clients/ts/node_modules
