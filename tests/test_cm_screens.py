"""The Cloud Messaging switch's screens, driven through the real adb like a UI automation would."""

from __future__ import annotations

import re

import pytest

from hostctl.emulator import screens
from hostctl.emulator.lab import LabConfig, LabThread
from tests.conftest import free_port


@pytest.fixture(scope="module")
def cmlab(tmp_path_factory):
    with LabThread(LabConfig(adb_port=free_port(), handsets=1, with_apps=False,
                             profile="miui-v5-2014-08-10", home=tmp_path_factory.mktemp("cm"))) as lt:
        yield lt


def adb(lt, *args):
    import os
    import subprocess

    from hostctl.emulator.lab import adb_binary
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(lt.config.adb_port))
    r = subprocess.run([adb_binary(), "-s", lt.lab.handsets[0].serial, *args], env=env,
                       capture_output=True, text=True, timeout=30)
    return r.stdout


def switch(lt, sim=1):
    adb(lt, "shell", "uiautomator", "dump", "/sdcard/ui.xml")
    xml = adb(lt, "shell", "cat", "/sdcard/ui.xml")
    m = re.search(rf'resource-id="[^"]*:id/cloud_messaging_switch_sim{sim}"[^>]*', xml)
    assert m, xml
    node = m.group(0)
    checked = re.search(r'checked="(true|false)"', node).group(1) == "true"
    x1, y1, x2, y2 = map(int, re.search(r'bounds="\[(\d+),(\d+)\]\[(\d+),(\d+)\]"', xml[m.start():]).groups())
    assert 'checkable="true"' in node
    return checked, ((x1 + x2) // 2, (y1 + y2) // 2)


def test_switch_via_messaging_settings_writes_setting_prefs_and_starts_the_service(cmlab):
    h = cmlab.lab.handsets[0].handset
    seen = []
    h.add_intent_listener(lambda i: seen.append(i) if i.component == screens.MX_SERVICE else None)
    adb(cmlab, "shell", "am", "start", "-n", screens.MMS_SETTINGS)
    checked, (x, y) = switch(cmlab)
    assert checked is False                                   # the OTA build: opt-in
    assert adb(cmlab, "shell", "settings", "get", "secure", "cloud_messaging_on").strip() == "0"
    adb(cmlab, "shell", "input", "tap", str(x), str(y))
    assert switch(cmlab)[0] is True
    assert adb(cmlab, "shell", "settings", "get", "secure", "cloud_messaging_on").strip() == "1"
    assert adb(cmlab, "shell", "cat", screens.PREFS) == ""   # the shell may not read an app's data
    prefs = screens.pref_mx(h)
    assert prefs["pref_key_enable_mx"] is True
    assert prefs["pref_mx_account_info"]["logins"][0] == {"mid": "", "sim_id": 0, "st": "", "sec": "", "enabled": True}
    assert seen and seen[-1].action == screens.ENABLE_MX and seen[-1].extras == {"sim_index": 0, "extra_manually": True}
    adb(cmlab, "shell", "input", "tap", str(x), str(y))
    assert switch(cmlab)[0] is False and seen[-1].action == screens.DISABLE_MX
    assert adb(cmlab, "shell", "settings", "get", "secure", "cloud_messaging_on").strip() == "0"


def test_switch_via_settings_mi_cloud_path(cmlab):
    adb(cmlab, "shell", "am", "start", "-n", screens.SETTINGS)
    for label in ("Mi Cloud", "Cloud Messaging"):
        adb(cmlab, "shell", "uiautomator", "dump", "/sdcard/ui.xml")
        xml = adb(cmlab, "shell", "cat", "/sdcard/ui.xml")
        m = re.search(rf'text="{label}"[^>]*bounds="\[(\d+),(\d+)\]\[(\d+),(\d+)\]"', xml)
        x1, y1, x2, y2 = map(int, m.groups())
        adb(cmlab, "shell", "input", "tap", str((x1 + x2) // 2), str((y1 + y2) // 2))
    assert "MiCloudMessagingActivity" in adb(cmlab, "shell", "dumpsys", "activity", "activities")
    checked, (x, y) = switch(cmlab, sim=2)
    adb(cmlab, "shell", "input", "tap", str(x), str(y))
    assert switch(cmlab, sim=2)[0] is not checked


def test_factory_reset_returns_the_build_default(cmlab):
    h = cmlab.lab.handsets[0].handset
    screens.set_cloud_messaging(h, True, 0)
    assert h.settings_get("secure", "cloud_messaging_on") == "1"
    cmlab.call(cmlab.lab.handsets[0].factory_reset())
    assert h.settings_get("secure", "cloud_messaging_on") == "0"
    assert screens.pref_mx(h)["pref_key_enable_mx"] is False


def test_factory_reset_returns_the_july_build_to_cm_on(tmp_path):
    with LabThread(LabConfig(adb_port=free_port(), handsets=1, with_apps=False, modem=False, cloud=False,
                             relay=False, consoles=False, profile="miui-v5-2014-07", home=tmp_path / "h")) as lt:
        h = lt.lab.handsets[0].handset
        screens.set_cloud_messaging(h, False, 0)
        screens.set_cloud_messaging(h, False, 1)
        assert h.settings_get("secure", "cloud_messaging_on") == "0"
        lt.call(lt.lab.handsets[0].factory_reset())
        assert h.settings_get("secure", "cloud_messaging_on") == "1"
        assert screens.sim_enabled(h, 0) and screens.sim_enabled(h, 1)
