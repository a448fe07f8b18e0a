"""`hostctl cm status|on|off` through the UI path, against emulated handsets via the real adb."""

from __future__ import annotations

import io
import json
import os

import pytest

from hostctl.cli import Environment, ExitStatus, main
from hostctl.cloud import parse_switches
from hostctl.emulator import screens
from hostctl.emulator.lab import LabConfig, LabThread
from tests.conftest import free_port


def cli(lt, *argv):
    out, err = io.StringIO(), io.StringIO()
    env = {k: v for k, v in os.environ.items() if k != "ANDROID_SERIAL"}
    st = main(["--adb", f"127.0.0.1:{lt.config.adb_port}", *argv], Environment(stdout=out, stderr=err, vars=env))
    return st, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def ota(tmp_path_factory):
    with LabThread(LabConfig(adb_port=free_port(), handsets=1, with_apps=False, modem=False, cloud=False,
                             profile="miui-v5-2014-08-10", home=tmp_path_factory.mktemp("ota"))) as lt:
        yield lt


def test_on_off_through_the_ui_verified_and_idempotent(ota):
    h = ota.lab.handsets[0].handset
    starts = []
    h.add_intent_listener(lambda i: starts.append(i.action) if i.component == screens.MX_SERVICE else None)
    st, out, err = cli(ota, "cm", "status", "--json")
    assert st == ExitStatus.OK, err
    doc = json.loads(out)
    assert doc["enabled"] is False and doc["sources"]["setting"] == {"secure/cloud_messaging_on": "0"}
    assert {"serial", "enabled", "sources"} <= set(doc)

    st, out, err = cli(ota, "cm", "on", "--sim", "1", "--json")
    assert st == ExitStatus.OK, err
    doc = json.loads(out)
    assert doc["enabled"] is True and doc["changed"] is True
    assert doc["sims"] == [{"sim": 1, "enabled": True}, {"sim": 2, "enabled": False}]
    assert starts == [screens.ENABLE_MX] and h.settings_get("secure", "cloud_messaging_on") == "1"

    st, out, _ = cli(ota, "cm", "on", "--sim", "1", "--json")        # already on: nothing tapped
    assert st == ExitStatus.OK and json.loads(out)["changed"] is False and starts == [screens.ENABLE_MX]

    st, out, _ = cli(ota, "cm", "off")
    assert st == ExitStatus.OK and "Cloud Messaging off" in out
    assert starts == [screens.ENABLE_MX, screens.DISABLE_MX]
    st, out, _ = cli(ota, "cm", "status", "--ui", "--json")
    assert json.loads(out)["sims"] == [{"sim": 1, "enabled": False}, {"sim": 2, "enabled": False}]


def test_blocked_input_injection_says_what_to_enable(tmp_path):
    with LabThread(LabConfig(adb_port=free_port(), handsets=1, with_apps=False, modem=False, cloud=False,
                             profile="miui-12-android-11", home=tmp_path / "h")) as lt:
        st, _, err = cli(lt, "cm", "on")
        assert st == ExitStatus.ERROR and "USB debugging (Security settings)" in err
        assert lt.lab.handsets[0].handset.settings_get("secure", "cloud_messaging_on") == "0"


def test_parse_switches_reads_real_shaped_dumps():
    xml = ("<?xml version='1.0' encoding='UTF-8' standalone='yes' ?><hierarchy rotation=\"0\">"
           '<node index="0" text="Cloud Messaging" resource-id="com.android.mms:id/checkbox" '
           'checkable="true" checked="true" bounds="[0,200][720,300]" />'
           '<node index="1" text="Delivery reports" checkable="true" checked="false" bounds="[0,300][720,400]" />'
           "</hierarchy>")
    (s,) = parse_switches(xml)
    assert (s.sim, s.checked, s.center) == (1, True, (360, 250))
    with pytest.raises(ValueError):
        parse_switches("<hierarchy><node")
