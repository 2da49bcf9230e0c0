# zammad-pdf-archiver — `make demo` runs one real archive; `make test` runs the test suite.
# Both install what they need: Debian packages (as root, when missing), a venv, the package.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench smoke config-docs image install system-deps clean

$(STAMP): pyproject.toml
	bash scripts/dev/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

system-deps:
	bash scripts/dev/install-system-deps.sh

demo: $(STAMP) system-deps
	$(PY) -m app.devtools.demo

test: $(STAMP) system-deps
	$(PY) -m pytest -q

bench: $(STAMP) system-deps
	$(PY) -m pip install -q -e '.[test,bench]'
	bash scripts/dev/install-bench-deps.sh
	$(PY) -m benchmarks

smoke: $(STAMP) system-deps
	bash scripts/ci/smoke-test.sh

config-docs: $(STAMP)
	$(PY) scripts/dev/gen-config-docs.py

image:
	podman build --format docker -t localhost/zammad-pdf-archiver:$$($(PY) -c 'import app; print(app.__version__)') .

clean:
	rm -rf $(VENV) var .pytest_cache
