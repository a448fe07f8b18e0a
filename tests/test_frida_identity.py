"""The `frida` identity strategy through real Frida over adb against the emulated lab.

The emulated app processes have no Java VM, so the agent's TelephonyManager part cannot run here
(it runs on real handsets); what is tested is everything around it: finding the device through
adb, attaching, loading the bundled agent, its RPC answer, and clear errors.
"""

from __future__ import annotations

import io
import json
import os

import pytest

from hostctl.cli import Environment, ExitStatus, main
from hostctl.device import AdbAddress, Handset
from hostctl.frida_identity import FridaIdentityError, read_telephony


def test_agent_loads_in_an_app_and_reports_no_java(lab, adb_port):
    h = Handset(lab.lab.handsets[0].serial, AdbAddress("127.0.0.1", adb_port))
    with pytest.raises(FridaIdentityError, match="com.android.mms.*no Java runtime"):
        read_telephony(h, process="com.android.mms", timeout=30)


def test_missing_phone_process_is_a_clear_error(lab, adb_port):
    h = Handset(lab.lab.handsets[0].serial, AdbAddress("127.0.0.1", adb_port))
    with pytest.raises(FridaIdentityError, match="com.android.phone is not running"):
        read_telephony(h, timeout=30)


def test_other_adb_server_is_refused_with_reason(lab, adb_port):
    h = Handset(lab.lab.handsets[0].serial, AdbAddress("127.0.0.2", adb_port + 1))
    with pytest.raises(FridaIdentityError, match="only through the adb server named by"):
        read_telephony(h)


def test_cli_frida_strategy_records_its_failure(lab):
    s = lab.lab.handsets[1].serial
    out, err = io.StringIO(), io.StringIO()
    st = main(
        ["identity", "-s", s, "--strategies", "frida", "--json"],
        Environment(stdout=out, stderr=err, vars=dict(os.environ)),
    )
    assert st == ExitStatus.ERROR
    doc = json.loads(out.getvalue())
    frida = [a for a in doc["attempts"] if a["strategy"] == "frida"]
    assert len(frida) == 1 and not frida[0]["ok"] and "com.android.phone" in frida[0]["error"]
    assert "frida" in err.getvalue()


def test_cm_via_frida_reaches_the_messaging_app_and_says_it_has_no_java_here(lab):
    # the emulated com.android.mms has no Java VM: the agent loads and answers, and the CLI says
    # what to use instead (on a real handset the same path starts MxActivateService)
    s = lab.lab.handsets[0].serial
    out, err = io.StringIO(), io.StringIO()
    st = main(
        ["cm", "on", "-s", s, "--via", "frida", "--json"], Environment(stdout=out, stderr=err, vars=dict(os.environ))
    )
    assert st == ExitStatus.ERROR
    assert "no Java runtime" in err.getvalue() and "--via ui" in err.getvalue()
