# Everything runs inside virtual environments created on first use:
#   .venv          the project, its runtime and development dependencies (`make demo`
#                  installs only the project and its `server` extra into it)
#   .venv-tasks    gcloud-tasks-emulator (it pins protobuf<5, so it lives apart)
#   .venv-checkov  checkov (its hcl2 fork would shadow python-hcl2)
#   .venv-dbos     DBOS Transact, the peer benchmark's other side (bench/peer.py creates it)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed
TOOLS_STAMP := .venv-tasks/.installed .venv-checkov/.installed
PIP_FLAGS := --quiet --disable-pip-version-check
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test lint typecheck unit browser bench bench-peer clean tools

$(STAMP): pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/python -m pip install $(PIP_FLAGS) -r requirements.txt -e '.[server,gcp,dev]'
	touch $(STAMP)

# What `refluxo demo` needs, and nothing of the development tools: a few packages, seconds.
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[server]'
	touch $@

.venv-tasks/.installed:
	test -x .venv-tasks/bin/python || $(PYTHON) -m venv .venv-tasks
	.venv-tasks/bin/python -m pip install $(PIP_FLAGS) 'gcloud-tasks-emulator==0.6.2'
	touch $@

.venv-checkov/.installed:
	test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install $(PIP_FLAGS) 'checkov==3.3.30'
	touch $@

# The run inspector's browser tests drive Debian's Chromium through Playwright (its own
# browser download is not used): installed when missing.
browser:
	command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

tools: $(STAMP) $(TOOLS_STAMP) browser

demo: $(DEMO_STAMP)
	$(BIN)/refluxo demo
	@echo
	@echo "refluxo is installed in $(VENV): run '. $(VENV)/bin/activate', then 'refluxo --help'."

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict refluxo main.py tests bench

unit: tools
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/engine.py all
	$(BIN)/python bench/runtime.py
	$(BIN)/python bench/gcp.py
	$(BIN)/python bench/fuzz.py

bench-peer: $(STAMP)
	$(BIN)/python bench/peer.py

clean:
	rm -rf $(VENV) .venv-tasks .venv-checkov .venv-dbos .pytest_cache .mypy_cache .ruff_cache
