# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Prerequisites (checked first by `make prereqs`): Python >= 3.11 with venv, and Node.js' npm.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

AGENT  := agent/_agent.js
NODE_STAMP := agent/node_modules/.installed

.PHONY: demo test bootstrap bench stress clean agent debian-clients prereqs docs lint format

bootstrap: $(STAMP)

# What make needs before it installs anything, each with what to install when it is missing.
# npm is checked only while the agent's npm packages are not installed yet.
prereqs:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "make: hostctl needs Python 3.11 or newer; '$(PYTHON)' is: $$($(PYTHON) -V 2>/dev/null || echo 'not found')." >&2; \
	  echo "      Install one (Debian/Ubuntu: sudo apt-get install python3 python3-venv) or name it: make PYTHON=python3.12" >&2; \
	  exit 1; }
	@test -x $(PY) || $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "make: '$(PYTHON)' cannot create a venv (no ensurepip): sudo apt-get install python3-venv" >&2; exit 1; }
	@test -e $(NODE_STAMP) || command -v npm >/dev/null || { \
	  echo "make: npm is missing. It installs the Frida agent's two npm packages (frida-java-bridge and the" >&2; \
	  echo "      Frida types) from agent/package-lock.json; Node.js itself is not run. Install it first:" >&2; \
	  echo "      Debian/Ubuntu: sudo apt-get install npm    macOS: brew install node    or https://nodejs.org/" >&2; \
	  exit 1; }

# The Frida agent: npm packages from the lock file (registry only), bundled by frida.Compiler.
agent: $(AGENT)

$(NODE_STAMP): agent/package.json agent/package-lock.json | prereqs
	cd agent && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(AGENT): $(STAMP) $(NODE_STAMP) agent/tsconfig.json $(wildcard agent/src/*.ts)
	$(PY) -m hostctl.agent

# Re-installs only when pyproject.toml, setup.py or the compiled wire fast path's source change
# (the editable install compiles hostctl/wire/_flowwalk.pyx in place; idempotent).
$(STAMP): pyproject.toml setup.py hostctl/wire/_flowwalk.pyx | prereqs
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,docs,lint]'
	touch $(STAMP)

# `hostctl demo` is the same for an installed hostctl (pip/pipx).
demo: prereqs bootstrap agent debian-clients
	$(PY) -m hostctl demo

# Real software from Debian, run against the lab by the acceptance tests: gammu and smstools
# (smsd) against the emulated modem, tshark as the second reader of every capture we write, and
# tcpdump as a lab-host capture source. All are C programs with no PyPI build, so apt is the only
# way to get the unmodified tools. Installed only when missing (needs root, or sudo). smsd lives in /usr/sbin
# (not on a user's PATH), and the package would start a system smsd on /dev/ttyS0: a temporary
# policy-rc.d (exit 101) keeps it from starting during the install.
# The emulated handsets run Android's real shell: mksh (Android's /system/bin/sh) and toybox
# (Android's userland since 6.0), plus original-awk, in a bubblewrap sandbox per handset; gcc
# compiles the sandbox's two small C programs (hostctl/emulator/userland/native) at first use.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
debian-clients:
	@{ command -v gammu || test -x /usr/bin/gammu; } >/dev/null && \
	 { command -v smsd || test -x /usr/sbin/smsd; } >/dev/null && \
	 { command -v mksh && command -v toybox && command -v original-awk && command -v bwrap && command -v cc; } >/dev/null && \
	 { command -v tshark && { command -v tcpdump || test -x /usr/bin/tcpdump; }; } >/dev/null || \
	 $(SUDO) sh -c 'set -e; made=; \
	   command -v apt-get >/dev/null || { echo "no apt-get: install gammu smstools tshark tcpdump mksh toybox original-awk bubblewrap gcc with your package manager" >&2; exit 1; }; \
	   if [ ! -e /usr/sbin/policy-rc.d ]; then printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d; \
	     chmod 755 /usr/sbin/policy-rc.d; made=1; fi; \
	   trap "[ -n \"$$made\" ] && rm -f /usr/sbin/policy-rc.d" EXIT; \
	   DEBIAN_FRONTEND=noninteractive apt-get update -q; \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gammu smstools tshark tcpdump \
	     mksh toybox original-awk bubblewrap gcc libc6-dev'

# hw_tests: one test per audit check, against the emulated lab on both shipped profiles (each
# test asserts the verdict the profile documents); one xdist worker per profile's lab.
# The docs are built in every run (strict: a broken link or a page missing from the nav fails it).
test: prereqs bootstrap agent debian-clients docs lint
	$(PY) -m pytest -n 2 tests
	$(PY) -m pytest -n 2 --dist loadgroup hw_tests --emulator-profile miui-v5-2014-07 --emulator-profile miui-v5-2014-08-10

# The reference site from docs/ (mkdocs.yml) into site/; --strict turns every warning into a failure.
docs: bootstrap
	$(PY) -m mkdocs build --strict --quiet --site-dir site

# ruff (lint + format check) and mypy, with the rules in pyproject.toml; part of `make test`.
LINT_PATHS := hostctl tests hw_tests benchmarks setup.py
lint: bootstrap
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)
	$(PY) -m mypy

format: bootstrap
	$(PY) -m ruff format $(LINT_PATHS)
	$(PY) -m ruff check --fix $(LINT_PATHS)

# stress: each shipped profile's audit 20 times in a row, the same verdicts every time
stress: bootstrap agent debian-clients
	$(PY) -m pytest -q tests/stress_verdicts.py

bench: bootstrap agent debian-clients
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build dist site *.egg-info agent/node_modules $(AGENT) hostctl/_agent.js
