# make test: set up a fresh Debian machine (as root) and run the whole suite.
# make demo: set up and run the main job.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast lint demo bench conformance clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup:
	@if [ "$$(id -u)" = 0 ]; then infra/setup.sh; else echo "setup: not root, skipping system packages"; fi
	@$(MAKE) --no-print-directory $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: setup lint
	$(VENV)/bin/pytest

test-fast: $(STAMP)
	$(VENV)/bin/pytest -m "not sandbox and not services and not slow"

demo: setup
	$(PY) -m tests.fixtures.rootfs examples/hello
	$(VENV)/bin/farm build --progress plain --platform linux/amd64,linux/arm64 -t hello:demo examples/hello
	$(VENV)/bin/farm images
	$(VENV)/bin/farm run --platform linux/amd64 hello:demo
	$(VENV)/bin/farm run --platform linux/arm64 hello:demo

bench: setup
	$(PY) bench/run.py $(BENCH_ARGS)

# The OCI distribution-spec conformance suite, which is not vendored:
# make conformance SUITE=path/to/distribution-spec/conformance (or a built binary)
conformance: $(STAMP)
	infra/conformance.sh $(SUITE)

clean:
	rm -rf $(VENV) build *.egg-info
