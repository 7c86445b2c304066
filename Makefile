# Two commands on a fresh machine: `make demo` and `make test`. Both build the virtualenv first.
# The interpreter of .venv: the first of these that runs. CPython 3.13 runs the data plane 8% faster than 3.11
# (benchmarks/RESULTS.md); pyenv's versions count when their shims are not active. PY=... overrides.
PY_CANDIDATES := python3.13 $(lastword $(sort $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13))) python3
PY      ?= $(firstword $(foreach p,$(PY_CANDIDATES),$(shell $(p) -c 'import sys; assert sys.version_info >= (3, 11)' >/dev/null 2>&1 && echo $(p))))
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
# The per-request modules, compiled in place by mypyc (setup.py's HOT); rebuilt when they change.
HOT     := $(shell sed -n 's/^    "\(proxy\/.*\.py\)",$$/\1/p' setup.py)
BUILT   := $(VENV)/.built
SUDO    := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# Debian packages the tests use as real peers: curl as a client, nginx and HAProxy for the request-smuggling
# comparison (tests/dataplane/test_smuggling.py). Prometheus comes from its own script. policy-rc.d keeps the
# nginx and haproxy packages from starting their services (nginx on port 80) while they install.
DEB_TEST := curl nginx haproxy

# Caches shared by every clone, outside them: a fresh clone (CI) finds the model servers and pip's downloads.
CACHE   := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/mlchaos
SERVERS := $(or $(MLCHAOS_SERVERS_DIR),$(CACHE)/servers)

.PHONY: venv demo test test-fast lint bench system-deps model-servers check-install llm-servers data-servers clean \
        clean-servers

# Dependencies first, uncompiled (MLCHAOS_PURE_PYTHON=1); then $(BUILT) compiles with the venv's own mypy.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	MLCHAOS_PURE_PYTHON=1 $(BIN)/pip install -q -e '.[test,ecosystem,data]'
	rm -f $(VENV)/.installed-* $(BUILT)
	touch $@

# About 40 s; installs a C compiler and Python's headers when missing. Without them the data plane stays plain
# Python (slower, same behaviour), which make test refuses (MLCHAOS_REQUIRE_COMPILED=1).
$(BUILT): $(STAMP) setup.py $(HOT)
	-sh scripts/install-build-deps.sh $(BIN)/python  # failing, the build falls back to plain Python
	$(BIN)/pip install -q --no-build-isolation --no-deps -e .
	touch $@

venv: $(BUILT)

system-deps:
	bash scripts/install-prometheus.sh
	bash scripts/install-chromium.sh
	@missing=""; for p in $(DEB_TEST); do command -v $$p >/dev/null || [ -x /usr/sbin/$$p ] || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  rc=""; [ -e /usr/sbin/policy-rc.d ] || { rc=1; printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null; $(SUDO) chmod 755 /usr/sbin/policy-rc.d; }; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; status=$$?; \
	  [ -z "$$rc" ] || $(SUDO) rm -f /usr/sbin/policy-rc.d; exit $$status; \
	fi

demo: $(BUILT)
	$(BIN)/mlchaos demo

# ruff, mypy, and the import contract: no runtime import cycles inside proxy/ (scripts/check_imports.py).
lint: $(BUILT)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python scripts/check_imports.py proxy

# Real model servers for tests/servers: MLServer, KServe and MLflow, a virtualenv each under $(SERVERS)
# (their pins clash with each other and with ours), and the gRPC clients of tests/servers/test_grpc_*.py
# (tritonclient.grpc, grpcio: `all` includes grpc-clients): about 3.5 minutes once, under a second after.
model-servers:
	scripts/model-servers.sh all
	scripts/feature-servers.sh feast

# The install paths users take (pip install ., git+file://, python -m build's sdist and wheel, pipx), each from
# a clean clone of HEAD into a fresh venv with build isolation, and a broken compile that still installs plain
# Python (scripts/check-install.sh). About 250 s of CPU, most of it the two compiles, run in two lanes.
check-install:
	-sh scripts/install-build-deps.sh $(PY)  # failing, the check below says why
	MLCHAOS_REQUIRE_COMPILED=1 PY=$(PY) bash scripts/check-install.sh

# The LLM peers of tests/llm: llama.cpp's OpenAI-compatible server (its wheel built from the sdist once, minutes;
# needs cmake and g++) with a tiny model it writes, and the openai SDK and LangChain in a venv of their own, under
# ~/.cache/mlchaos/servers (outside the clone): under a second once they are there.
llm-servers:
	@command -v cmake >/dev/null && command -v g++ >/dev/null || { \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq cmake g++; }
	scripts/llm-servers.sh all

# The data-feed peers of tests/datafeeds: moto's S3 server, the clients (pandas, pyarrow, boto3, s3fs) and Great
# Expectations, a venv each under ~/.cache/mlchaos/servers (outside the clone): about 2 minutes once, under a
# second after. nginx, their HTTP file server, comes with system-deps.
data-servers:
	scripts/data-servers.sh all

# The REQUIRE variables turn "skipped: no chromium / no model server" into failures: make test installs them.
test: $(BUILT) system-deps lint model-servers llm-servers data-servers check-install
	MLCHAOS_REQUIRE_CHROMIUM=1 MLCHAOS_REQUIRE_SERVERS=1 MLCHAOS_REQUIRE_COMPILED=1 $(BIN)/pytest -q

# The inner loop: stop at the first failure, skip the slow tests.
test-fast: $(BUILT)
	$(BIN)/pytest -q -x -m "not slow"

# Installs nginx, HAProxy and wrk when missing; prints the ratio table.
bench: $(BUILT)
	$(BIN)/python benchmarks/run.py --mlchaos $(BIN)/mlchaos

# The model servers (2 GB, outside the clone) survive `make clean`: `make clean-servers` removes them, and the
# .cache/servers of clones older than that move.
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info build *.so proxy/dataplane/_compiled.py
	find proxy -name '*.so' -delete

clean-servers:
	rm -rf "$(SERVERS)" .cache/servers
