"""`hostctl devices|info|identity|shell` in-process, against emulated labs through the real adb."""

from __future__ import annotations

import io
import json
import os

import pytest

from hostctl.cli import Environment, ExitStatus, main
from hostctl.emulator.lab import LabConfig, LabThread
from tests.conftest import free_port


def cli(*argv: str, **env_over: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env_vars = dict(os.environ, **env_over)
    if "ANDROID_SERIAL" not in env_over:
        env_vars.pop("ANDROID_SERIAL", None)
    status = main(list(argv), Environment(stdout=out, stderr=err, vars=env_vars))
    return status, out.getvalue(), err.getvalue()


def test_devices_json_lists_the_lab(lab, adb_port):
    st, out, err = cli("devices", "--json")
    assert st == ExitStatus.OK, err
    doc = json.loads(out)
    assert doc["servers"] == [f"127.0.0.1:{adb_port}"] and doc["errors"] == []
    listed = {d["serial"]: d for d in doc["devices"]}
    for lh in lab.lab.handsets:
        d = listed[lh.serial]
        assert d["state"] == "device" and d["model"] == "HM_1S" and d["transport_id"]
        assert set(d) == {"serial", "state", "server", "transport_id", "product", "model", "device"}
    st, out, _ = cli("devices")
    assert st == ExitStatus.OK and out.splitlines()[0].split() == ["SERIAL", "STATE", "MODEL", "PRODUCT", "SERVER", "TRANSPORT"]


def test_dead_adb_server_is_a_message_not_a_traceback():
    dead = f"127.0.0.1:{free_port()}"
    for argv in (["devices"], ["identity", "-s", "x"], ["info"], ["shell", "-s", "x", "id"],
                 ["identity", "--all"]):
        st, out, err = cli("--adb", dead, *argv)
        assert st == ExitStatus.NOT_RUNNABLE, (argv, err)
        assert f"no adb server answering at {dead}" in err and "Traceback" not in err + out


def test_bad_adb_address_is_a_usage_error():
    st, _, err = cli("devices", "--adb", "nohost:")
    assert st == ExitStatus.USAGE and "not an adb server address" in err


def test_shell_passes_output_and_exit_code_through(lab):
    s = lab.lab.handsets[0].serial
    st, out, err = cli("shell", "-s", s, "echo", "hi;", "echo", "oops", ">&2;", "exit", "4")
    # a KitKat adbd has no shell_v2: the exit status comes through hostctl's marker, stderr
    # arrives merged into stdout (the pty of a v1 shell)
    assert (st, out, err) == (4, "hi\noops\n", "")
    st, out, _ = cli("shell", "getprop", "ro.product.model", ANDROID_SERIAL=s)
    assert (st, out) == (0, "HM 1S\n")


def test_serial_required_when_several_devices(lab):
    st, _, err = cli("info")
    assert st == ExitStatus.NOT_RUNNABLE and "more than one device" in err and "-s SERIAL" in err


def test_info_json_and_table(lab):
    s = lab.lab.handsets[1].serial
    st, out, err = cli("info", "-s", s, "--json")
    assert st == ExitStatus.OK, err
    doc = json.loads(out)
    assert doc["serial"] == s and doc["model"] == "HM 1S" and doc["market_name"] == "Redmi 1S"
    assert doc["miui_version_name"] == "V5" and doc["sdk"] == 19 and doc["android_release"] == "4.4.4"
    assert doc["root"] == "none" and doc["input_injection"] == "allowed" and doc["emulated"] is True
    st, out, _ = cli("info", "-s", s)
    assert st == ExitStatus.OK and any(line.split()[:2] == ["market_name", "Redmi"] for line in out.splitlines())


def _expected(lh, slot):
    sim = lh.identity.sims[slot]
    return {"imei": sim.imei, "imsi": sim.imsi, "iccid": sim.iccid, "msisdn": sim.msisdn,
            "sim_operator": sim.operator_name, "mcc_mnc": sim.mcc_mnc}


def test_identity_json_on_the_miui_v5_profile(lab):
    lh = lab.lab.handsets[0]
    st, out, err = cli("identity", "-s", lh.serial, "--json")
    assert st == ExitStatus.OK, err
    doc = json.loads(out)
    assert doc["serial"] == lh.serial and len(doc["slots"]) == 2
    s0 = doc["slots"][0]
    for key, value in _expected(lh, 0).items():
        assert s0[key] == value, key
    # a Qualcomm dual-SIM KitKat build: CAF's iphonesubinfo_msim serves both slots
    assert s0["sources"]["imei"] == "service_call:iphonesubinfo_msim:1:getDeviceId"
    assert s0["sources"]["imsi"] == "service_call:iphonesubinfo_msim:3:getSubscriberId"
    assert s0["valid"] == {"imei": True, "imsi": True, "iccid": True, "msisdn": True, "mcc_mnc": True}
    s1 = doc["slots"][1]
    for key, value in _expected(lh, 1).items():
        assert s1[key] == value, key
    assert s1["sources"]["iccid"] == "service_call:iphonesubinfo_msim:4:getIccSerialNumber"
    assert doc["table"] == "caf-msim-19"
    assert set(s0) == {"slot", "imei", "imsi", "iccid", "msisdn", "sim_operator", "mcc_mnc",
                       "network_operator", "sources", "valid"}


def test_identity_redact_leaves_no_raw_identifier(lab):
    lh = lab.lab.handsets[0]
    raw = [v for sim in lh.identity.sims for v in (sim.imei, sim.imsi, sim.iccid, sim.msisdn)]
    for extra in (["--json"], []):
        st, out, err = cli("identity", "-s", lh.serial, "--redact", *extra)
        assert st == ExitStatus.OK, err
        for value in raw:
            assert value not in out + err
        assert lh.identity.sims[0].imei[-4:] in out


@pytest.fixture(scope="module")
def second_lab(tmp_path_factory):
    port = free_port()
    with LabThread(LabConfig(adb_port=port, handsets=2, home=tmp_path_factory.mktemp("second"),
                             with_apps=False, profile="miui-v5-2014-07")) as lt:
        yield lt


def test_identity_all_across_two_adb_servers_reports_each_handset_once(lab, second_lab, adb_port):
    p2 = second_lab.config.adb_port
    st, out, err = cli("identity", "--all", "--json", "--adb", f"127.0.0.1:{adb_port}",
                       "--adb", f"127.0.0.1:{p2}", "--adb", f"127.0.0.1:{p2}")
    assert st == ExitStatus.OK, err
    doc = json.loads(out)
    got = [(h["server"], h["serial"]) for h in doc["handsets"]]
    want = [(f"127.0.0.1:{adb_port}", h.serial) for h in lab.lab.handsets] + \
           [(f"127.0.0.1:{p2}", h.serial) for h in second_lab.lab.handsets]
    assert sorted(got) == sorted(want) and len(got) == len(set(got))
    by_serial = {h["serial"]: h for h in doc["handsets"]}
    for lh in list(lab.lab.handsets) + list(second_lab.lab.handsets):
        assert by_serial[lh.serial]["slots"][0]["imei"] == lh.identity.sims[0].imei
    assert doc["errors"] == []


def test_adb_before_and_after_the_command_both_count(adb_port):
    dead = f"127.0.0.1:{free_port()}"
    st, out, err = cli("--adb", f"127.0.0.1:{adb_port}", "devices", "--json", "--adb", dead)
    doc = json.loads(out)
    assert doc["servers"] == [f"127.0.0.1:{adb_port}", dead]
    assert st == ExitStatus.ERROR and [e["server"] for e in doc["errors"]] == [dead]


def test_hung_server_is_a_timeout_exit_code():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        addr = f"127.0.0.1:{sock.getsockname()[1]}"
        st, _, err = cli("--adb", addr, "devices", "--timeout", "0.5")
        assert st == ExitStatus.TIMEOUT and "timed out" in err
        st, _, err = cli("--adb", addr, "shell", "-s", "x", "--timeout", "0.5", "echo")
        assert st == ExitStatus.TIMEOUT and "Traceback" not in err


def test_bad_timeout_and_bad_port_variable_are_usage_errors(lab):
    st, _, err = cli("shell", "-s", lab.lab.handsets[0].serial, "--timeout", "inf", "echo")
    assert st == ExitStatus.USAGE and "positive finite" in err
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "hostctl", "devices"], capture_output=True, text=True,
                       env=dict(os.environ, ANDROID_ADB_SERVER_PORT="abc"), timeout=60)
    assert r.returncode == ExitStatus.USAGE and "is not a port number" in r.stderr
    assert "Traceback" not in r.stderr


def test_identity_all_reads_a_handset_on_two_servers_once(lab, second_lab, adb_port):
    # the same adb server named twice, and one of lab's handsets also attached to second_lab's server
    p2 = second_lab.config.adb_port
    shared = lab.lab.handsets[0]
    import subprocess

    from hostctl.emulator.lab import adb_binary
    env2 = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(p2))
    subprocess.run([adb_binary(), "connect", shared.serial], env=env2, capture_output=True, timeout=30)
    try:
        from hostctl.emulator.lab import wait_for_device
        wait_for_device(p2, shared.serial, 20)
        st, out, err = cli("identity", "--all", "--json", "--adb", f"127.0.0.1:{adb_port}",
                           "--adb", f"localhost:{p2}", "--adb", f"127.0.0.1:{p2}")
        assert st == ExitStatus.OK, err
        doc = json.loads(out)
        serials = [h["serial"] for h in doc["handsets"]]
        assert sorted(serials) == sorted({h.serial for h in list(lab.lab.handsets) + list(second_lab.lab.handsets)})
        assert {d["serial"] for d in doc["duplicates"]} == {shared.serial} | {h.serial for h in second_lab.lab.handsets}
        assert "read once" in err
    finally:
        subprocess.run([adb_binary(), "disconnect", shared.serial], env=env2, capture_output=True, timeout=30)
