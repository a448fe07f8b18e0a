"""The Cloud Messaging switch's screens, driven through the real adb like a UI automation would."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from hostctl.emulator import screens
from hostctl.emulator.carrier import SmsSegment
from hostctl.emulator.lab import LabConfig, LabThread
from hostctl.emulator.profiles import load_profile
from hostctl.miui_ui import parse_compose, parse_consent, parse_switches
from tests.conftest import free_port


@pytest.fixture(scope="module")
def cmlab(tmp_path_factory):
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=1,
            with_apps=False,
            profile="miui-v5-2014-08-10",
            home=tmp_path_factory.mktemp("cm"),
        )
    ) as lt:
        yield lt


def adb(lt, *args):
    import os
    import subprocess

    from hostctl.emulator.lab import adb_binary

    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(lt.config.adb_port))
    r = subprocess.run(
        [adb_binary(), "-s", lt.lab.handsets[0].serial, *args], env=env, capture_output=True, text=True, timeout=30
    )
    return r.stdout


def dump(lt) -> str:
    adb(lt, "shell", "uiautomator", "dump", "/sdcard/ui.xml")
    return adb(lt, "shell", "cat", "/sdcard/ui.xml")


def switch(lt, sim=1):
    sw = next(s for s in parse_switches(dump(lt)) if s.sim == sim)
    return sw.checked, sw.center


def tap(lt, xy):
    adb(lt, "shell", "input", "tap", str(xy[0]), str(xy[1]))


def setting(lt):
    return adb(lt, "shell", "settings", "get", "secure", "cloud_messaging_on").strip()


def test_messaging_settings_dump_has_miuis_rows_and_strings(cmlab):
    """preferences.xml's pref_key_mx_msg category as AOSP lays preference rows out, in zh-CN (the
    shipped RedMi 1S builds are China builds: ro.product.locale.language zh, region CN)."""
    adb(cmlab, "shell", "am", "start", "-n", screens.MMS_SETTINGS)
    root = ET.fromstring(dump(cmlab))
    parent = {c: p for p in root.iter() for c in p}
    titles = [n for n in root.iter("node") if n.get("resource-id") == "android:id/title"]
    assert [n.get("text") for n in titles] == ["免费网络短信", "免费网络短信(SIM卡1)", "免费网络短信(SIM卡2)"]
    for title in titles[1:]:
        row = parent[parent[title]]
        assert row.get("class") == "android.widget.LinearLayout" and row.get("clickable") == "true"
        summary = next(n for n in row.iter("node") if n.get("resource-id") == "android:id/summary")
        assert summary.get("text") == "MIUI手机之间优先通过互联网发送免费网络短信"
        (box,) = [n for n in row.iter("node") if n.get("checkable") == "true"]
        assert (
            box.get("resource-id"),
            box.get("class"),
            box.get("text"),
            box.get("clickable"),
            box.get("focusable"),
        ) == ("android:id/checkbox", "android.widget.CheckBox", "", "false", "false")
        assert parent[box].get("resource-id") == "android:id/widget_frame"
    assert "cloud_messaging" not in ET.tostring(root, encoding="unicode")  # no id names it on MIUI


def test_first_enable_asks_consent_cancel_leaves_it_off_accept_turns_it_on(cmlab):
    h = cmlab.lab.handsets[0].handset
    seen = []
    h.add_intent_listener(lambda i: seen.append(i) if i.component == screens.MX_SERVICE else None)
    adb(cmlab, "shell", "am", "start", "-n", screens.MMS_SETTINGS)
    checked, xy = switch(cmlab)
    assert checked is False and setting(cmlab) == "0"  # the OTA build: opt-in
    tap(cmlab, xy)
    dialog = parse_consent(dump(cmlab))
    # com/xiaomi/mms/c/f.smali mode 0: dialog_title_mx_rcs, dialog_message_mx, mx_btn_enable_now
    assert dialog is not None and (dialog.kind, dialog.title, dialog.accept_text) == (
        "dialog_title_mx_rcs",
        "免费发送短信",
        "现在开启",
    )
    assert "首次激活会发送一条普通短信" in dialog.message and "《用户协议》" in dialog.message
    assert 'resource-id="miui:id/alertTitle"' in dump(cmlab)  # miui.app.AlertDialog's ids
    tap(cmlab, dialog.cancel)  # cancel: still off, nothing started
    assert parse_consent(dump(cmlab)) is None and switch(cmlab)[0] is False
    assert setting(cmlab) == "0" and seen == []
    tap(cmlab, xy)
    tap(cmlab, parse_consent(dump(cmlab)).accept)
    assert switch(cmlab)[0] is True and setting(cmlab) == "1"
    # the shell may not read an app's data (a KitKat adbd's v1 shell merges stderr into stdout)
    assert adb(cmlab, "shell", "cat", screens.PREFS).strip().endswith("Permission denied")
    prefs = screens.pref_mx(h)
    assert prefs["pref_key_enable_mx"] is True
    assert prefs["pref_mx_account_info"]["logins"][0] == {"mid": "", "sim_id": 0, "st": "", "sec": "", "enabled": True}
    assert seen and seen[-1].action == screens.ENABLE_MX and seen[-1].extras == {"sim_index": 0, "extra_manually": True}
    tap(cmlab, xy)  # on -> off needs no consent
    assert parse_consent(dump(cmlab)) is None
    assert switch(cmlab)[0] is False and seen[-1].action == screens.DISABLE_MX and setting(cmlab) == "0"
    screens.record_login(h, 0, mid="1001", st="s", sec="k", enabled=False)  # activated (status 3)
    tap(cmlab, xy)  # an activated SIM: the data notice (f.smali mode 4)
    notice = parse_consent(dump(cmlab))
    assert (notice.kind, notice.title, notice.accept_text) == ("networking_allow_title", "声明与条款", "现在开启")
    assert "查询对方是否在线将会使用少量数据流量" in notice.message and setting(cmlab) == "0"
    tap(cmlab, notice.accept)
    assert parse_consent(dump(cmlab)) is None and switch(cmlab)[0] is True
    assert "当前在线" in dump(cmlab)  # an activated SIM's row: mx_online
    tap(cmlab, xy)


def test_compose_screen_shows_the_hint_and_send_button(cmlab):
    h = cmlab.lab.handsets[0].handset
    adb(cmlab, "shell", "am", "start", "-a", "android.intent.action.SENDTO", "-d", "smsto:10086")
    xml = dump(cmlab)
    assert 'resource-id="com.android.mms:id/send_button"' in xml and 'content-desc="发送短信"' in xml
    assert parse_compose(xml).online is False and parse_compose(xml).shown == "短信"
    screens.show_presence(h, "10086", True)
    assert (parse_compose(dump(cmlab)).online, parse_compose(dump(cmlab)).shown) == (True, "免费网络短信")
    adb(cmlab, "shell", "input", "keyevent", "4")


def test_switch_via_settings_mi_cloud_path(cmlab):
    adb(cmlab, "shell", "am", "start", "-n", screens.SETTINGS)
    for label in ("Mi Cloud", "Cloud Messaging"):
        xml = dump(cmlab)
        m = re.search(rf'text="{label}"[^>]*bounds="\[(\d+),(\d+)\]\[(\d+),(\d+)\]"', xml)
        x1, y1, x2, y2 = map(int, m.groups())
        tap(cmlab, ((x1 + x2) // 2, (y1 + y2) // 2))
    assert "MiCloudMessagingActivity" in adb(cmlab, "shell", "dumpsys", "activity", "activities")
    checked, xy = switch(cmlab, sim=2)
    tap(cmlab, xy)
    if not checked:
        tap(cmlab, parse_consent(dump(cmlab)).accept)
    assert switch(cmlab, sim=2)[0] is not checked
    assert load_profile("miui-v5-2014-08-10").ui_paths == {"messaging_settings": "verified", "micloud": "unverified"}


def test_locale_follows_the_profile_and_a_copy_switches_to_english(tmp_path):
    copy = tmp_path / "en.yaml"
    copy.write_text("extends: miui-v5-2014-08-10\nname: ota-en\nsim_count: 1\nprops:\n  persist.sys.locale: en-US\n")
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=1,
            with_apps=False,
            modem=False,
            cloud=False,
            relay=False,
            consoles=False,
            profile=str(copy),
            home=tmp_path / "h",
        )
    ) as lt:
        adb(lt, "shell", "am", "start", "-n", screens.MMS_SETTINGS)
        xml = dump(lt)
        titles = re.findall(r'text="([^"]*)" resource-id="android:id/title"', xml)
        assert titles == ["Mi Message", "Mi Message"]  # category mx_msg, row mx_enable
        assert 'text="Send messages to other MIUI devices without incurring charges"' in xml
        (s,) = parse_switches(xml)
        assert (s.sim, s.checked) == (1, False)
        tap(lt, s.center)
        d = parse_consent(dump(lt))
        assert (d.title, d.accept_text) == ("Mi Message", "Activate") and "Cancel" in dump(lt)
        adb(lt, "shell", "am", "start", "-n", screens.MMS_SETTINGS)  # singleTop: the dialog is still there
        assert parse_consent(dump(lt)) is not None
        adb(lt, "shell", "setprop", "persist.sys.locale", "zh-TW")  # the user changes language
        adb(lt, "shell", "am", "force-stop", "com.android.mms")  # the app goes, and its dialog
        adb(lt, "shell", "am", "start", "-n", screens.MMS_SETTINGS)
        assert parse_consent(dump(lt)) is None
        (s,) = parse_switches(dump(lt))
        assert (s.title, s.checked) == ("MIUI免費網路簡訊", False)
        tap(lt, s.center)
        assert (parse_consent(dump(lt)).title, parse_consent(dump(lt)).accept_text) == ("免費傳送簡訊", "現在開啟")


def test_sms_rows_keep_the_subscription_id(tmp_path):
    copy = tmp_path / "subs.yaml"
    copy.write_text("extends: miui-v5-2014-08-10\nname: subs\nsim_sub_ids: [2, 7]\n")
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=1,
            with_apps=False,
            modem=False,
            cloud=False,
            relay=False,
            consoles=False,
            profile=str(copy),
            home=tmp_path / "h",
        )
    ) as lt:
        h = lt.lab.handsets[0].handset
        assert h.profile.sub_id(1) == 7 and h.profile.slot_of_sub_id(7) == 1
        out = adb(lt, "shell", "content", "query", "--uri", "content://telephony/siminfo", "--projection", "_id:sim_id")
        assert out.splitlines() == ["Row: 0 _id=2, sim_id=0", "Row: 1 _id=7, sim_id=1"]
        for slot in (1, 0):
            h.receive_sms(
                SmsSegment(
                    sender="+8613800000009",
                    recipient=h.identity.sims[slot].msisdn,
                    text=f"to slot {slot}",
                    timestamp=1.0,
                ),
                slot=slot,
            )
        out = adb(
            lt, "shell", "content", "query", "--uri", "content://sms", "--projection", "body:sim_id", "--sort", "_id"
        )
        assert out.splitlines() == ["Row: 0 body=to slot 1, sim_id=7", "Row: 1 body=to slot 0, sim_id=2"]
        # the host reads sim_id as MIUI keeps it and maps it back to the slot through siminfo
        import io
        import json
        import os

        from hostctl.cli import Environment, main

        out_io, err_io = io.StringIO(), io.StringIO()
        env = {k: v for k, v in os.environ.items() if k != "ANDROID_SERIAL"}
        assert (
            main(
                ["--adb", f"127.0.0.1:{lt.config.adb_port}", "messages", "--json"],
                Environment(stdout=out_io, stderr=err_io, vars=env),
            )
            == 0
        ), err_io.getvalue()
        rows = json.loads(out_io.getvalue())["messages"]
        assert sorted((m["body"], m["sim_id"], m["slot"]) for m in rows) == [("to slot 0", 2, 0), ("to slot 1", 7, 1)]


def test_factory_reset_returns_the_build_default(cmlab):
    h = cmlab.lab.handsets[0].handset
    screens.set_cloud_messaging(h, True, 0)
    assert h.settings_get("secure", "cloud_messaging_on") == "1"
    cmlab.call(cmlab.lab.handsets[0].factory_reset())
    assert h.settings_get("secure", "cloud_messaging_on") == "0"
    assert screens.pref_mx(h)["pref_key_enable_mx"] is False


def test_factory_reset_returns_the_july_build_to_cm_on(tmp_path):
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=1,
            with_apps=False,
            modem=False,
            cloud=False,
            relay=False,
            consoles=False,
            profile="miui-v5-2014-07",
            home=tmp_path / "h",
        )
    ) as lt:
        h = lt.lab.handsets[0].handset
        screens.set_cloud_messaging(h, False, 0)
        screens.set_cloud_messaging(h, False, 1)
        assert h.settings_get("secure", "cloud_messaging_on") == "0"
        lt.call(lt.lab.handsets[0].factory_reset())
        assert h.settings_get("secure", "cloud_messaging_on") == "1"
        assert screens.sim_enabled(h, 0) and screens.sim_enabled(h, 1)
