# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bootstrap bench clean

bootstrap: $(STAMP)

# Re-installs only when pyproject.toml changes (idempotent).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: bootstrap
	$(PY) -m hostctl.demo

test: bootstrap
	$(PY) -m pytest -n 2 tests hw_tests

bench: bootstrap
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
