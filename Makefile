# make test: set up a fresh Debian machine (as root) and run the whole suite.
# make demo: set up and run the main job.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)
	@if [ "$$(id -u)" = 0 ]; then infra/setup.sh; else echo "setup: not root, skipping system packages"; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: setup lint
	$(VENV)/bin/pytest

test-fast: $(STAMP)
	$(VENV)/bin/pytest -m "not sandbox and not services and not slow"

demo: setup
	$(VENV)/bin/farm build --call outline --platform linux/amd64,linux/arm64 examples/hello
	$(VENV)/bin/farm build --call targets examples/hello

clean:
	rm -rf $(VENV) build *.egg-info
