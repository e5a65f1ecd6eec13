# The two commands a newcomer needs:  `make serve`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup serve test lint ci browser bench clean

setup: $(VENV)/.installed

# Builds llama.cpp through llama-cpp-python on first install (about 6 minutes on 2 cores;
# pip caches the wheel, so later installs take seconds). Set CMAKE_ARGS=-DGGML_CUDA=on to
# build with CUDA.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

serve: setup
	$(BIN)/hearth serve $(ARGS)

# The browser tests drive Debian's chromium; install it when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }

test: setup browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check hearth server prompts convert tests bench

# What CI runs: the lint, then the README's test command.
ci: lint test

bench: setup
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python bench/serve_bench.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
