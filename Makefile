# The two commands a newcomer needs:  `make serve`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup serve test test-fast lint format ci browser node haproxy image-check bench clean

setup: $(VENV)/.installed

# Builds llama.cpp through llama-cpp-python on first install (about 6 minutes on 2 cores;
# pip caches the wheel, so later installs take seconds). Set CMAKE_ARGS=-DGGML_CUDA=on to
# build with CUDA. llama.cpp is always built with its RPC backend (hearth worker, --rpc).
# pip reuses a wheel it built before whatever CMAKE_ARGS says, so a wheel cached without
# RPC would come back. When the installed one lacks RPC (a virtualenv from before), it is
# installed again from pip's cache, which may hold one built with RPC; when that one lacks
# it too, it leaves pip's cache and llama-cpp-python is built again (and cached, with RPC).
LLAMA_CMAKE_ARGS = -DGGML_RPC=on $(CMAKE_ARGS)
LLAMA_PIN = $$(grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml | head -1)
HAS_RPC = $(BIN)/python -c 'from hearth.engine.rpc import rpc_library; rpc_library()'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install -e '.[dev]'
	$(HAS_RPC) 2>/dev/null || CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" \
		$(BIN)/python -m pip install --force-reinstall --no-deps "$(LLAMA_PIN)"
	$(HAS_RPC) 2>/dev/null || { \
		$(BIN)/python -m pip cache remove 'llama_cpp_python*' || true; \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install --force-reinstall \
			--no-deps "$(LLAMA_PIN)"; }
	$(HAS_RPC)
	touch $@

serve: setup
	$(BIN)/hearth serve $(ARGS)

# The browser tests drive Debian's chromium; install it when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }

# The load-balancer tests (tests/deploy) run Debian's haproxy; install it when missing. apt
# starts it as a service on the default port, which the tests do not use: stop it.
haproxy:
	@command -v haproxy >/dev/null 2>&1 || test -x /usr/sbin/haproxy || { \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends haproxy \
		&& { service haproxy stop >/dev/null 2>&1 || true; }; }

# The openai-node client tests need Node.js (18 or newer) and the client pinned in
# tests/node/package-lock.json; Debian's nodejs is installed when node is missing.
node: tests/node/node_modules/.installed

tests/node/node_modules/.installed: tests/node/package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm; }
	npm ci --prefix tests/node --no-audit --no-fund
	touch $@

test: setup browser node haproxy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The inner loop: every test that needs no server process, no reference converter and no
# browser (tests/conftest.py decides which, from the fixtures and folders a test uses).
test-fast: setup
	$(BIN)/python -m pytest -m "not full" $(PYTEST_ARGS)

LINTED := hearth engine runtime server prompts convert tests bench

lint: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

format: setup
	$(BIN)/ruff check --fix $(LINTED)
	$(BIN)/ruff format $(LINTED)

# What CI runs: the lint, then the README's test command.
ci: lint test

# The image itself, checked rather than only linted (outside `make test`; about 12 minutes
# on 2 cores): buildah builds the Dockerfile from a Debian base made with debootstrap, runs
# it, and asks the running container for /health and a chat (deploy/image-check.sh).
image-check:
	@{ command -v buildah && command -v debootstrap && command -v curl; } >/dev/null 2>&1 || { \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends \
			buildah debootstrap curl; }
	bash deploy/image-check.sh

bench: setup
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python bench/serve_bench.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache tests/node/node_modules
