"""`hostctl relay on|off|cycle` and `hostctl console record` in-process against an emulated lab
attached to the worker's adb server: a relay cycle the adb server sees, console lines a test
causes, a console that vanishes mid-recording."""

from __future__ import annotations

import io
import json
import os
import threading
import time

import adbutils
import pytest

from hostctl.cli import Environment, ExitStatus, main
from hostctl.emulator.lab import LabConfig, LabThread


@pytest.fixture(scope="module")
def rlab(adb_port, tmp_path_factory):
    home = tmp_path_factory.mktemp("cli-relay-home")
    with LabThread(
        LabConfig(adb_port=adb_port, handsets=2, home=home, with_apps=False, modem=False, cloud=False)
    ) as lt:
        env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(adb_port), HOSTCTL_HOME=str(home))
        yield lt, env


def cli(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), Environment(stdout=out, stderr=err, vars=env))
    return status, out.getvalue(), err.getvalue()


def adb_state(adb_port: int, serial: str) -> str:
    client = adbutils.AdbClient(host="127.0.0.1", port=adb_port, socket_timeout=5)
    return {d.serial: d.state for d in client.list()}.get(serial, "absent")


def wait_state(adb_port: int, serial: str, pred, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = adb_state(adb_port, serial)
        if pred(state):
            return state
        time.sleep(0.05)
    raise AssertionError(f"{serial}: still {adb_state(adb_port, serial)} after {timeout} s")


def test_status_json_lists_the_relay_and_consoles(rlab):
    lt, env = rlab
    st, out, err = cli(env, "emulator", "status", "--json")
    assert st == ExitStatus.OK, err
    status = json.loads(out)
    relay = status["relay"]
    assert relay["pty"].startswith("/dev/pts/") and relay["url"].startswith("socket://127.0.0.1:")
    assert {ch: c["handset"] for ch, c in relay["channels"].items()} == {"1": "hs1", "2": "hs2"}
    assert set(status["consoles"]) == {"hs1", "hs2"}
    assert all(c["pty"].startswith("/dev/pts/") for c in status["consoles"].values())
    st, out, _ = cli(env, "emulator", "status")
    assert f"relay: {relay['pty']}" in out and f"console hs2: {status['consoles']['hs2']['pty']}" in out


def test_relay_cycle_power_cycles_the_handset_as_the_adb_server_sees_it(rlab, adb_port):
    lt, env = rlab
    lh = lt.lab.handsets[1]
    assert adb_state(adb_port, lh.serial) == "device"
    result: dict = {}
    worker = threading.Thread(
        target=lambda: result.update(
            r=cli(env, "relay", "cycle", "--port", "lab", "--channel", "2", "--off-seconds", "2", "--json")
        )
    )
    worker.start()
    try:
        gone = wait_state(adb_port, lh.serial, lambda s: s != "device", 10)
        assert gone in ("offline", "absent")
        assert not lh.powered and lt.lab.handsets[0].powered  # channel 2 is hs2 only
    finally:
        worker.join(30)
    st, out, err = result["r"]
    assert st == ExitStatus.OK, err
    doc = json.loads(out)
    assert doc["frames"] == ["A0 02 00 A2", "A0 02 01 A3"] and doc["state"] == "on" and doc["channel"] == 2
    wait_state(adb_port, lh.serial, lambda s: s == "device", 30)  # the adb server reconnects by itself
    assert lh.powered


def test_relay_off_and_on_by_pty(rlab, adb_port):
    lt, env = rlab
    lh = lt.lab.handsets[0]
    pty = lt.lab.relay_info()["pty"]
    st, out, err = cli(env, "relay", "off", "--port", pty, "--channel", "1")
    assert st == ExitStatus.OK and "A0 01 00 A1" in out, err
    wait_state(adb_port, lh.serial, lambda s: s != "device", 10)
    st, out, err = cli(env, "relay", "on", "--port", pty, "--channel", "1")
    assert st == ExitStatus.OK and "A0 01 01 A2" in out, err
    wait_state(adb_port, lh.serial, lambda s: s == "device", 30)


def test_console_record_captures_what_a_test_causes_on_the_handset(rlab, adb, tmp_path):
    lt, env = rlab
    lh = lt.lab.handsets[0]
    out_file = tmp_path / "evidence" / "hs1-console.log"

    def cause():
        time.sleep(0.5)
        adb("-s", lh.serial, "shell", "setprop", "ro.secure", "0")  # init logs the refusal
        lh.handset.log("I", "TEST", "hello")

    timer = threading.Thread(target=cause)
    timer.start()
    st, out, err = cli(
        env, "console", "record", "--port", "lab:hs1", "--out", str(out_file), "--duration", "2.5", "--json"
    )
    timer.join()
    assert st == ExitStatus.OK, err
    doc = json.loads(out)
    assert doc["ended_by"] == "duration" and doc["out"] == str(out_file) and doc["lines"] >= 2
    text = out_file.read_text()
    assert "E/init(    1): sys_prop: permission denied uid:2000  name:ro.secure" in text
    assert "I/TEST(" in text and "): hello" in text
    # by serial too, and in human form
    st, out, err = cli(
        env, "console", "record", "--port", f"lab:{lh.serial}", "--out", str(out_file), "--duration", "0.2"
    )
    assert st == ExitStatus.OK and "line(s)" in out and "recording" in err


def test_errors_are_exit_codes_not_tracebacks(rlab, tmp_path):
    lt, env = rlab
    st, _, err = cli(dict(env, HOSTCTL_RELAY_PORT=""), "relay", "on")
    assert st == ExitStatus.USAGE and "--port" in err
    st, _, err = cli(env, "relay", "on", "--port", "lab", "--channel", "9")
    assert st == ExitStatus.USAGE and "channels 1, 2" in err
    st, _, err = cli(env, "relay", "cycle", "--port", str(tmp_path / "ttyUSB0"))
    assert st == ExitStatus.NOT_RUNNABLE and "cannot open relay port" in err
    st, _, err = cli(env, "console", "record", "--port", "lab", "--out", str(tmp_path / "x.log"))
    assert st == ExitStatus.USAGE and "lab:hs1" in err
    st, _, err = cli(env, "console", "record", "--port", "lab:hs9", "--out", str(tmp_path / "x.log"))
    assert st == ExitStatus.USAGE and "hs9" in err
    st, _, err = cli(env, "console", "record", "--port", str(tmp_path / "nope"), "--out", str(tmp_path / "x"))
    assert st == ExitStatus.NOT_RUNNABLE and "cannot open console port" in err
    other = dict(env, HOSTCTL_HOME=str(tmp_path))
    for argv in (["relay", "on", "--port", "lab"], ["console", "record", "--port", "lab", "--out", "x"]):
        st, _, err = cli(other, *argv)
        assert st == ExitStatus.NOT_RUNNABLE and "no emulated lab" in err and "Traceback" not in err


def test_console_that_vanishes_mid_recording_is_exit_1_and_the_file_keeps_it(rlab, tmp_path):
    """Last in the module: it unplugs hs2's console."""
    lt, env = rlab
    lh = lt.lab.handsets[1]
    out_file = tmp_path / "gone.log"

    def unplug():
        time.sleep(0.5)
        lh.handset.log("W", "TEST", "last words")
        time.sleep(0.3)
        lt.lab.consoles["hs2"][1].stop()

    timer = threading.Thread(target=unplug)
    timer.start()
    t0 = time.monotonic()
    st, out, err = cli(
        env, "console", "record", "--port", "lab:hs2", "--out", str(out_file), "--duration", "30", "--json"
    )
    timer.join()
    assert time.monotonic() - t0 < 10
    assert st == ExitStatus.ERROR and "went away" in err and "keeps the 1 line(s)" in err, err
    doc = json.loads(out)
    assert doc["ended_by"] == "port-gone" and doc["lines"] == 1 and doc["error"]
    assert "W/TEST" in out_file.read_text() and "last words" in out_file.read_text()
