# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

AGENT  := agent/_agent.js
NODE_STAMP := agent/node_modules/.installed

.PHONY: demo test bootstrap bench clean agent

bootstrap: $(STAMP)

# The Frida agent: npm packages from the lock file (registry only), bundled by frida.Compiler.
agent: $(AGENT)

$(NODE_STAMP): agent/package.json agent/package-lock.json
	cd agent && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(AGENT): $(STAMP) $(NODE_STAMP) agent/tsconfig.json $(wildcard agent/src/*.ts)
	$(PY) -m hostctl.agent

# Re-installs only when pyproject.toml changes (idempotent).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: bootstrap agent
	$(PY) -m hostctl.demo

test: bootstrap agent
	$(PY) -m pytest -n 2 tests hw_tests

bench: bootstrap agent
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info agent/node_modules $(AGENT)
