# Two commands for a fresh machine (see README.md):
#   make demo   install into .venv and start the embedded demo (no tailnet, no API key)
#   make test   install what the tests need, then lint, type-check and run every test
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# Every Python dependency, direct and transitive, comes from uv.lock (exact versions with
# their hashes), installed by uv, itself pinned with hashes in requirements-uv.txt and
# installed into the venv by the venv's own pip. `make lock` updates both, on purpose
# (README: "Dependencies and the lock").
UV_VERSION ?= $(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' requirements-uv.txt)
UV := UV_PROJECT_ENVIRONMENT=$(VENV) UV_PYTHON_DOWNLOADS=never $(BIN)/uv
# --locked: refuse, instead of re-resolving, when pyproject.toml and uv.lock disagree (CI
# fails there). --inexact: keep uv itself, which is not one of the project's dependencies.
SYNC := $(UV) sync --locked --inexact --quiet

.PHONY: demo app test install lock machine tailnet-bin wheels ts-client axe lint pytest dist image measure bench bench-scale soak clean

$(BIN)/python:
	@echo "Creating $(VENV) and installing tailnet-agent into it from uv.lock..."
	@$(PY) -m venv $(VENV)

$(BIN)/uv: requirements-uv.txt | $(BIN)/python
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes \
		--no-deps -r requirements-uv.txt
	@touch $@

# What the app needs and nothing else (no test or build tools).
app: $(BIN)/uv
	@$(SYNC)

install: $(BIN)/uv
	$(SYNC) --extra test

demo: app
	$(BIN)/tailnet-agent demo

# Update the lock on purpose: after editing pyproject.toml's dependencies, `make lock`;
# everything to the newest allowed, `make lock LOCK_ARGS=--upgrade` (or
# `LOCK_ARGS="--upgrade-package NAME"`); another uv, `make lock UV_VERSION=X.Y.Z` (keep
# pyproject.toml's uv_build range around it).
lock: $(BIN)/uv
	$(UV) lock $(LOCK_ARGS)
	echo "uv==$(UV_VERSION)" | $(UV) pip compile --quiet --universal --generate-hashes \
		--no-annotate --custom-compile-command "make lock" -o requirements-uv.txt -

# Debian packages (openssh-server, chromium, iproute2) and the sshd test user; needs root,
# and says what is missing otherwise.
machine:
	sh tests/setup-machine.sh

# headscale, tailscaled and tailscale at pinned versions, built with Go into
# .cache/tailnet-bin (the trimmed tailscaled the executable embeds is `make dist`'s).
tailnet-bin: install
	$(BIN)/python -m tests.support.tailnet build

# What `make app` installs, so a test can run it into a fresh venv inside the tests' network
# namespace (no internet there): uv's wheel here, the locked packages in uv's cache (where
# `make install` put them).
wheels: install
	$(BIN)/python -m pip download --quiet --disable-pip-version-check --require-hashes \
		--no-deps -d .cache/wheels -r requirements-uv.txt

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

# The suite mostly waits on real components, so it runs on more workers than cores, a test
# module whole on one worker (tests/support/parallel.py); the 15 slowest tests are listed
# at the end. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 4
pytest: install
	sh tests/run-isolated.sh $(BIN)/python -m pytest -n $(PYTEST_WORKERS) \
		--dist loadscope --no-loadscope-reorder --durations=15 $(PYTEST_ARGS)

# dist/tailnet-agent: one executable with its own tailscaled (see build/README.md), and its
# SBOM. Built in a venv of its own holding the app and the build tools only (uv.lock's
# `build` extra): PyInstaller bundles what the app imports, optional imports included, so
# what else is installed there would end up in the bundle. .venv gets the build tools too,
# for the tests and build/image_root.py.
BUILD_VENV := build/work/venv
dist: install
	$(SYNC) --extra test --extra build
	UV_PROJECT_ENVIRONMENT=$(BUILD_VENV) UV_PYTHON_DOWNLOADS=never UV_PYTHON=$(PY) \
		$(BIN)/uv sync --locked --quiet --extra build
	PYTHON=$(BUILD_VENV)/bin/python sh build/build.sh

# The container image tailnet-agent:<version> from dist/tailnet-agent, FROM scratch (podman;
# ENGINE=docker for docker). See README "Containers".
image: dist
	PYTHON=$(BIN)/python sh build/image.sh

measure: dist
	PYTHON=$(BIN)/python sh build/measure.sh

# The Debian packages and the venv at once; then the Go builds, npm installs, lint and the
# executable side by side (none needs another: dist builds the embedded tailscaled while
# tailnet-bin builds headscale, then the test tailscaled from the packages dist compiled);
# then the tests (dist before them: tests/build smoke-tests the built executable itself).
# `-o install`: installed once, in the first step.
test:
	@$(MAKE) --no-print-directory -j2 machine install
	@$(MAKE) --no-print-directory -j6 --output-sync=target -o install \
		tailnet-bin wheels ts-client axe lint dist
	@$(MAKE) --no-print-directory -o install pytest

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
