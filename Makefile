# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

AGENT  := agent/_agent.js
NODE_STAMP := agent/node_modules/.installed

.PHONY: demo test bootstrap bench clean agent debian-clients

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

demo: bootstrap agent debian-clients
	$(PY) -m hostctl.demo

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
test: bootstrap agent debian-clients
	$(PY) -m pytest -n 2 tests
	$(PY) -m pytest -n 2 --dist loadgroup hw_tests --emulator-profile miui-v5-2014-07 --emulator-profile miui-v5-2014-08-10

bench: bootstrap agent debian-clients
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info agent/node_modules $(AGENT)
