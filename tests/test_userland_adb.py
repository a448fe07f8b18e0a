"""The real adb client against the sandboxed shell: `adb logcat` (the client's `exec logcat`),
an interactive `adb shell` on a pty (^C, the prompt, `exit N`, window size), exit codes."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import termios
import time

import pytest

from hostctl.emulator.lab import LabConfig, LabThread, adb_binary

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None or shutil.which("mksh") is None,
    reason="bubblewrap and mksh are not installed (make debian-clients)",
)


def _lab(adb_port, tmp_path_factory, profile: str):
    home = tmp_path_factory.mktemp("hostctl-home")
    return LabThread(
        LabConfig(adb_port=adb_port, handsets=1, profile=profile, home=home, modem=False, relay=False, consoles=False)
    )


@pytest.fixture(scope="module")
def android11(adb_port, tmp_path_factory):
    with _lab(adb_port, tmp_path_factory, "miui-12-android-11") as lt:
        yield lt.lab.handsets[0]


@pytest.fixture(scope="module")
def kitkat(adb_port, tmp_path_factory):
    with _lab(adb_port, tmp_path_factory, "miui-v5-2014-08-10") as lt:
        yield lt.lab.handsets[0]


@pytest.mark.parametrize("which", ["android11", "kitkat"])
def test_adb_logcat_dump_and_clear(adb, request, which) -> None:
    lh = request.getfixturevalue(which)
    lh.handset.log("I", "HostctlTest", "before the clear")
    dump = adb("-s", lh.serial, "logcat", "-d", timeout=30)
    assert dump.returncode == 0 and b"HostctlTest" in dump.stdout and b"before the clear" in dump.stdout
    cleared = adb("-s", lh.serial, "logcat", "-c", timeout=30)
    assert cleared.returncode == 0, cleared.stderr
    after = adb("-s", lh.serial, "logcat", "-d", timeout=30)
    assert after.returncode == 0 and b"before the clear" not in after.stdout


def test_exit_codes_and_streams_through_shell_v2(adb, android11) -> None:
    r = adb("-s", android11.serial, "shell", "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, b"out\n", b"err\n")
    r = adb("-s", android11.serial, "shell", "getprop ro.product.device | tr a-z A-Z")
    assert (r.returncode, r.stdout) == (0, b"JOYEUSE\n")


class _Pty:
    """The adb client on a pseudo-terminal, as a person at a terminal runs it."""

    def __init__(self, serial: str, rows: int = 33, cols: int = 101) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = dict(os.environ)
        self.proc = subprocess.Popen(
            [adb_binary(), "-s", serial, "shell"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.buf = b""

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, pattern: bytes, timeout: float = 10.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.buf)
            if m:
                self.buf = self.buf[m.end() :]
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} not seen; got {self.buf[-400:]!r}")
            r, _, _ = select.select([self.master], [], [], left)
            if r:
                try:
                    self.buf += os.read(self.master, 4096)
                except OSError:
                    raise AssertionError(f"adb ended before {pattern!r}; got {self.buf[-400:]!r}") from None

    def close(self) -> int:
        try:
            return self.proc.wait(10)
        finally:
            os.close(self.master)


def test_interactive_pty_ctrl_c_prompt_exit_and_window(android11) -> None:
    t = _Pty(android11.serial)
    try:
        t.expect(rb"joyeuse:/ \$ ")  # Android's mkshrc prompt
        t.send(b"sleep 30\r")
        t.expect(rb"sleep 30\r*\n")
        time.sleep(0.3)
        started = time.monotonic()
        t.send(b"\x03")  # ^C: SIGINT to the foreground job
        t.expect(rb"130\|joyeuse:/ \$ ", timeout=5)
        interrupted_after = time.monotonic() - started
        t.send(b"echo next-$((6*7))\r")
        t.expect(rb"\r*\nnext-42\r*\n")  # nothing of ^C leaked into the line
        t.expect(rb"joyeuse:/ \$ ")
        t.send(b"false\r")
        t.expect(rb"1\|joyeuse:/ \$ ")
        t.send(b"echo size=$LINES,$COLUMNS\r")  # the window size the client sent (id 5)
        t.expect(rb"size=33,101")
        t.send(b"exit 3\r")
        assert t.close() == 3
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
    # the acceptance bound is 1 s; a loaded CI machine gets the 5 s of expect() above
    print(f"prompt back {interrupted_after * 1000:.0f} ms after ^C")
