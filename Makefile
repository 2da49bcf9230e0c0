# zammad-pdf-archiver — `make demo` runs one real archive; `make test` runs the test suite.
# Both install what they need: Debian packages (as root, when missing), a venv, the package.
#
# Installs come from the hash-pinned locks in requirements/ (`make lock` refreshes them):
# every package, pip and setuptools included, at the exact version and file the lock names;
# then the project itself, editable, without resolving anything (--no-deps).
# Another Python: `make test PYTHON=python3.13 VENV=.venv-3.13` (3.11, 3.12 and 3.13 are supported).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp

RUNTIME_LOCK := requirements/runtime.lock
TEST_LOCK := requirements/test.lock
BENCH_LOCK := requirements/bench.lock
PIP_LOCKED := -m pip install --quiet --require-hashes --only-binary :all:
PIP_PROJECT := -m pip install --quiet --no-deps --no-build-isolation -e .

# `make lock`: uv (pinned here) in its own venv; LOCK_ARGS= keeps the current pins where the
# ranges allow, LOCK_ARGS='--upgrade-package NAME' moves one package.
UV_VERSION := 0.13.9
TOOLS_VENV ?= .venv-tools
UV_STAMP := $(TOOLS_VENV)/.uv-$(UV_VERSION)
LOCK_ARGS ?= --upgrade
COMPILE = $(TOOLS_VENV)/bin/uv pip compile --quiet --universal --generate-hashes --python-version 3.11 \
	--custom-compile-command 'make lock' $(LOCK_ARGS) pyproject.toml requirements/build.in

# `make test-latest`: the newest versions pyproject.toml allows, in a venv of its own.
LATEST_VENV ?= .venv-latest
# Passed to pytest by `make test` and `make test-latest`, e.g. PYTEST_ARGS='tests/http -x'.
PYTEST_ARGS ?=

.PHONY: demo test check format test-latest bench smoke config-docs image install system-deps lock clean

$(STAMP): pyproject.toml $(TEST_LOCK)
	bash scripts/dev/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) $(PIP_LOCKED) -r $(TEST_LOCK)
	$(PY) $(PIP_PROJECT)
	$(PY) -m pip check
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP) $(BENCH_LOCK)
	$(PY) $(PIP_LOCKED) -r $(BENCH_LOCK)
	touch $(BENCH_STAMP)

install: $(STAMP)

system-deps:
	bash scripts/dev/install-system-deps.sh

demo: $(STAMP) system-deps
	$(PY) -m devtools.demo

test: $(STAMP) system-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

# `make check`: formatting, lint and types, as configured in pyproject.toml. `make format` fixes
# what ruff can fix by itself (formatting, import order, safe rewrites).
check: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test-latest: system-deps
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade pip setuptools
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[test]'
	$(LATEST_VENV)/bin/python scripts/dev/lock-diff.py $(TEST_LOCK)
	@$(LATEST_VENV)/bin/python -m pytest -q $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 0 ]; then echo "test-latest: passed with the newest allowed versions (lock-diff above)"; \
	else echo "test-latest: FAILED (pytest exit status $$status) with the newest allowed versions (lock-diff above)"; fi; \
	exit $$status

bench: $(BENCH_STAMP) system-deps
	bash scripts/dev/install-bench-deps.sh
	$(PY) -m benchmarks

smoke: $(STAMP) system-deps
	bash scripts/ci/smoke-test.sh

config-docs: $(STAMP)
	$(PY) scripts/dev/gen-config-docs.py

image:
	podman build --format docker -t localhost/zammad-pdf-archiver:$$($(PY) -c 'import app; print(app.__version__)') .

$(UV_STAMP):
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet uv==$(UV_VERSION)
	touch $(UV_STAMP)

# The widest lock first; the others are constrained by it, so a package has one version in all three.
lock: $(UV_STAMP)
	$(COMPILE) --extra test --extra bench -o $(BENCH_LOCK)
	$(COMPILE) --extra test -c $(BENCH_LOCK) -o $(TEST_LOCK)
	$(COMPILE) -c $(BENCH_LOCK) -o $(RUNTIME_LOCK)

clean:
	rm -rf $(VENV) var .pytest_cache
