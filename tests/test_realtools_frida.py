"""frida-tools against an emulated handset through adb (as with frida-server on a phone)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _run(adb_port, *args, timeout=60):
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(adb_port))
    return subprocess.run(args, env=env, capture_output=True, timeout=timeout)


def test_frida_ps_lists_the_app_with_its_package_name(lab, adb_port):
    """As frida-ps -Ua lists an app on a real handset: its label as Name, its package as
    Identifier (frida/frida#2031 shows "BlockChain  com.mobisec.blockchain" from frida-server)."""
    import json

    h = lab.lab.handsets[0]
    r = _run(adb_port, _tool("frida-ps"), "-D", h.serial, "-a", "-j")
    assert r.returncode == 0, r.stderr
    apps = json.loads(r.stdout)
    mms = next(a for a in apps if a["identifier"] == "com.android.mms")
    assert mms["pid"] == h.apps["com.android.mms"].pid
    assert mms["name"] == "Messaging"
    assert not any("/" in a["identifier"] for a in apps)  # no host path leaks out
    # the process listing names the app's process by its label, as frida >= 15 does on Android
    r = _run(adb_port, _tool("frida-ps"), "-D", h.serial, "-j")
    assert r.returncode == 0, r.stderr
    procs = {p["name"]: p["pid"] for p in json.loads(r.stdout)}
    assert procs.get("Messaging") == h.apps["com.android.mms"].pid


def test_enumerate_applications_through_adb_gives_the_package(lab, adb_port, monkeypatch):
    import frida

    h = lab.lab.handsets[0]
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(adb_port))
    device = frida.get_device_manager().get_device(h.serial, timeout=10)
    apps = device.enumerate_applications(identifiers=["com.android.mms"])
    assert [(a.identifier, a.name, a.pid) for a in apps] == [
        ("com.android.mms", "Messaging", h.apps["com.android.mms"].pid)
    ]
    # what the emulated handset cannot do: frida's PortalService answers "not supported" for the
    # frontmost application (frida-core src/portal-service.vala get_frontmost_application)
    with pytest.raises(frida.NotSupportedError):
        device.get_frontmost_application()


@pytest.mark.parametrize("how", [("-N", "com.android.mms"), ("-n", "Messaging")])
def test_frida_cli_attaches_by_identifier_and_name_and_runs_code(lab, adb_port, how):
    h = lab.lab.handsets[0]
    r = _run(
        adb_port,
        _tool("frida"),
        "-D",
        h.serial,
        *how,
        "-q",
        "-e",
        "console.log('pid=' + Process.id + ' arch=' + Process.arch + "
        "' java=' + (typeof Java !== 'undefined' && Java.available))",
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert f"pid={h.apps['com.android.mms'].pid}".encode() in r.stdout
    # what the README says a real handset shows and this one cannot: arm/arm64, Java.available
    import platform

    if platform.machine() == "x86_64":
        assert b"arch=x64" in r.stdout
    assert b"java=false" in r.stdout


def test_frida_trace_finds_the_tls_write_the_app_calls(lab, adb_port, tmp_path):
    """The app maps libssl at start (as an Android app maps its TLS library); Python's ssl
    module writes with SSL_write_ex, so `-i 'SSL_write*'` is what finds it."""
    import re
    import signal
    import time

    h = lab.lab.handsets[0]
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(adb_port))
    p = subprocess.Popen(
        [_tool("frida-trace"), "-D", h.serial, "-N", "com.android.mms", "-i", "SSL_write*"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = p.stdout.readline().decode(errors="replace")
            if not line:
                break
            lines.append(line)
            if line.startswith("Started tracing"):
                break
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    text = "".join(lines)
    m = re.search(r"Started tracing (\d+) function", text)
    assert m and int(m.group(1)) >= 1, text
    assert "SSL_write_ex" in text
