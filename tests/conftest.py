"""Shared fixtures: a private adb server per test worker, and emulated labs attached to it.

Every test worker (pytest-xdist) gets its own adb server on a free port, killed by port at the
end, so workers never disturb each other or a developer's own adb server on 5037.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from hostctl.emulator.lab import (
    LabConfig,
    LabThread,
    adb_binary,
    ensure_adb_server,
    free_loopback_port,
    kill_adb_server,
)


def wait_for(pred, timeout: float = 5.0, interval: float = 0.01):
    """Poll ``pred`` until it returns something truthy (returned); AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := pred():
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def app_bound(lh, sim: int = 0) -> bool:
    """Whether ``lh``'s Messaging app holds its Cloud Messaging channel for ``sim``. The service
    marks a number online as soon as the bind arrives; the app uses the channel only once it has
    read the bind's answer, so a test that sends right after ``cm.presence`` turns true races it."""
    app = lh.apps.get("com.android.mms")
    return bool(app and app.alive and sim in app.request("mx_state")["channels"])


free_port = free_loopback_port


def _runs_tests(config) -> bool:
    # the xdist controller only distributes; its workers (and plain runs) execute tests
    return bool(os.environ.get("PYTEST_XDIST_WORKER")) or not getattr(config.option, "numprocesses", None)


def pytest_configure(config):
    # Chosen and started before any test runs: Frida's device manager starts tracking the adb
    # server named by ANDROID_ADB_SERVER_PORT the first time a test touches Frida, and does not
    # come back soon if no server answered then.
    if not _runs_tests(config):
        return
    port = free_port()
    os.environ["HOSTCTL_TEST_ADB_PORT"] = os.environ["ANDROID_ADB_SERVER_PORT"] = str(port)
    ensure_adb_server(port)
    global _watchdog
    _watchdog = _adb_watchdog(port)


# A test process that is killed (a `timeout`, Ctrl-C twice, SIGKILL, a worker xdist replaces)
# never reaches pytest_unconfigure: this child kills its adb server, by port, once the process is
# gone. It is told to stand down (by pid) when the session ends normally, so it can never kill a
# server that another session started later on the same port.
_WATCHDOG = """
import os, select, subprocess, sys
pid, port, adb = int(sys.argv[1]), sys.argv[2], sys.argv[3]
try:
    fd = os.pidfd_open(pid)
    select.select([fd], [], [])
except ProcessLookupError:
    pass
env = dict(os.environ, ANDROID_ADB_SERVER_PORT=port)
subprocess.run([adb, "-P", port, "kill-server"], env=env, capture_output=True, timeout=10)
"""
_watchdog: subprocess.Popen | None = None


def _adb_watchdog(port: int) -> subprocess.Popen | None:
    try:
        return subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(port), adb_binary()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the test's process group leaves it running
        )
    except OSError:
        return None


def pytest_unconfigure(config):
    if _runs_tests(config) and os.environ.get("HOSTCTL_TEST_ADB_PORT"):
        if _watchdog is not None:
            _watchdog.kill()
            _watchdog.wait(timeout=10)
        kill_adb_server(int(os.environ["HOSTCTL_TEST_ADB_PORT"]))


@pytest.fixture(scope="session")
def adb_port():
    return int(os.environ["HOSTCTL_TEST_ADB_PORT"])


@pytest.fixture(scope="session")
def adb(adb_port):
    """Run the real adb CLI against the worker's server: adb("-s", s, "shell", "id")."""
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(adb_port))

    def run(*args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([adb_binary(), *args], env=env, input=input, capture_output=True, timeout=timeout)

    return run


@pytest.fixture(scope="module")
def lab(adb_port, tmp_path_factory):
    """A two-handset lab on the 2014-08-10 profile, with app processes joined to Frida portals."""
    home = tmp_path_factory.mktemp("hostctl-home")
    with LabThread(LabConfig(adb_port=adb_port, handsets=2, home=home)) as lt:
        yield lt
