"""`hostctl emulator ...` through the CLI entry point, in-process (httpie-style), with real adb."""

from __future__ import annotations

import io
import json
import os
import subprocess

import pytest

from hostctl.cli import Environment, ExitStatus, main
from hostctl.emulator.lab import adb_binary, kill_adb_server
from tests.conftest import free_port


def cli(env_vars: dict[str, str], *argv: str) -> tuple[ExitStatus, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), Environment(stdout=out, stderr=err, vars=env_vars))
    return status, out.getvalue(), err.getvalue()


def adb_cli(port: int, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(port))
    return subprocess.run([adb_binary(), *args], env=env, input=input, capture_output=True, timeout=60)


@pytest.fixture
def two_ports(tmp_path):
    """Two adb server ports, each with its own lab home; servers killed by port at the end."""
    ports = [free_port(), free_port()]
    envs = [dict(os.environ, ANDROID_ADB_SERVER_PORT=str(p), HOSTCTL_HOME=str(tmp_path / "home")) for p in ports]
    yield ports, envs
    for env in envs:
        cli(env, "emulator", "down")
    for p in ports:
        kill_adb_server(p)


def test_two_labs_on_two_adb_ports_coexist_and_are_addressed_by_port(two_ports):
    (p1, p2), (e1, e2) = two_ports
    st, out, err = cli(e1, "emulator", "up", "--detach", "--handsets", "2", "--profile", "miui-v5-2014-07", "--json")
    assert st == ExitStatus.OK, err
    lab1 = json.loads(out)
    st, out, err = cli(e2, "emulator", "up", "--detach", "--handsets", "1", "--json")
    assert st == ExitStatus.OK, err
    lab2 = json.loads(out)
    assert [h["label"] for h in lab1["handsets"]] == ["hs1", "hs2"]
    assert all({"serial", "label", "number"} <= set(h) for h in lab1["handsets"] + lab2["handsets"])
    assert "token" not in lab1   # the control token stays in the 0600 lab file

    # each adb server sees exactly its own lab's handsets, as `device`, with the model
    for port, lab in ((p1, lab1), (p2, lab2)):
        listing = adb_cli(port, "devices", "-l").stdout.decode()
        seen = [line.split()[0] for line in listing.splitlines()[1:] if line.strip()]
        assert sorted(seen) == sorted(h["serial"] for h in lab["handsets"])
        assert all(" device " in line and "model:" in line for line in listing.splitlines()[1:] if line.strip())

    s = lab1["handsets"][0]["serial"]
    r = adb_cli(p1, "-s", s, "shell", "getprop", "ro.miui.ui.version.name")
    assert r.stdout.decode().strip() == "V5"
    r = adb_cli(p1, "-s", s, "shell", "echo out; echo err >&2; exit 7")
    # a 4.4 adbd advertises no shell_v2: a pty shell (CRLF, stderr merged) and no exit status
    assert (r.returncode, r.stdout, r.stderr) == (0, b"out\r\nerr\r\n", b"")

    # status with the same port reaches the same lab
    st, out, _ = cli(e2, "emulator", "status", "--json")
    assert st == ExitStatus.OK and [h["serial"] for h in json.loads(out)["handsets"]] == [lab2["handsets"][0]["serial"]]
    st, out, _ = cli(e1, "emulator", "status")
    assert st == ExitStatus.OK and "hs2" in out and "SERIAL" in out

    # reset: the 2014-07 profile comes back with Cloud Messaging on
    assert adb_cli(p1, "-s", s, "shell", "settings put secure cloud_messaging_on 0").returncode == 0
    st, out, err = cli(e1, "emulator", "reset", s, "--json")
    assert st == ExitStatus.OK, err
    assert adb_cli(p1, "-s", s, "shell", "settings get secure cloud_messaging_on").stdout.strip() == b"1"

    # a second `up` on a busy port is refused; down stops only that lab
    st, _, err = cli(e1, "emulator", "up", "--detach")
    assert st == ExitStatus.ERROR and "already running" in err
    assert cli(e1, "emulator", "down")[0] == ExitStatus.OK
    st, _, err = cli(e1, "emulator", "status")
    assert st == ExitStatus.NOT_RUNNABLE and "no emulated lab" in err
    assert cli(e2, "emulator", "status")[0] == ExitStatus.OK


def test_power_off_shows_offline_and_power_on_reconnects(two_ports):
    (p1, _), (e1, _) = two_ports
    st, out, err = cli(e1, "emulator", "up", "--detach", "--handsets", "1", "--no-apps", "--json")
    assert st == ExitStatus.OK, err
    s = json.loads(out)["handsets"][0]["serial"]
    assert cli(e1, "emulator", "power", "hs1", "off")[0] == ExitStatus.OK
    assert f"{s}\toffline" in adb_cli(p1, "devices").stdout.decode()
    assert cli(e1, "emulator", "power", "hs1", "on")[0] == ExitStatus.OK   # waits for `device`
    assert f"{s}\tdevice" in adb_cli(p1, "devices").stdout.decode()


def test_bad_arguments_and_bad_profile_are_clear_errors(tmp_path):
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(free_port()), HOSTCTL_HOME=str(tmp_path))
    st, _, err = cli(env, "emulator", "up", "--handsets", "x")
    assert st == ExitStatus.USAGE and "invalid int value" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsdk: nineteen\n")
    st, _, err = cli(env, "emulator", "up", "--detach", "--no-apps", "--profile", str(bad))
    assert st == ExitStatus.USAGE
    assert "bad.yaml" in err and "android_release" in err and "Traceback" not in err
    st, _, err = cli(env, "emulator", "up", "--profile", "no-such-profile")
    assert st == ExitStatus.USAGE and "no-such-profile" in err
    env["ANDROID_ADB_SERVER_PORT"] = "notaport"
    st, _, err = cli(env, "emulator", "status")
    assert st == ExitStatus.USAGE and "ANDROID_ADB_SERVER_PORT" in err


def test_interactive_pty_shell_echoes_and_maps_newlines(lab, adb):
    # -tt forces a pty even though our stdin is a pipe; the kernel's line discipline echoes
    # the typed line and turns "\n" into "\r\n", as on a handset.
    r = adb("-s", lab.lab.handsets[0].serial, "shell", "-tt", input=b"echo pty-$((6*7))\nexit 3\n")
    out = r.stdout.decode(errors="replace")
    assert "echo pty-$((6*7))\r\n" in out      # echo
    assert "pty-42\r\n" in out                  # output with ONLCR
    assert r.returncode == 0     # a KitKat adbd (no shell_v2) reports no exit status
