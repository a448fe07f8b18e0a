"""Per-release formats of the framework tools real tools parse (no lab: the shell on a handset).

Golden shapes from the AOSP sources cited in hostctl/emulator/android/*.py: Am.java (4.4/5.0)
vs ActivityManagerShellCommand.java (7.0+), Pm.java vs PackageManagerShellCommand.java,
ActivityStackSupervisor/ActivityStack (4.4, 5.0) vs RootWindowContainer (11), and the regular
expressions adbutils/Mobly apply to them. Runs on today's Python shell; under issue 12's
sandboxed shell the same command functions run, so these tests carry over unchanged.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile

import pytest
from PIL import Image
from test_shell_kit import make_handset, run

from tests.apkbuild import build_apk

PROFILES = {"4.4": "miui-v5-2014-08-10", "5.0": "miui-7-android-5.0", "11": "miui-12-android-11"}


@pytest.fixture(params=sorted(PROFILES))
def rel(request, tmp_path):
    h = make_handset(tmp_path, PROFILES[request.param])
    yield request.param, h
    h.close()


def handset(tmp_path, release):
    return make_handset(tmp_path, PROFILES[release])


# --- am ------------------------------------------------------------------------------------------


def test_am_usage_is_the_releases(tmp_path):
    kk, lp, r = (handset(tmp_path / v, v) for v in ("4.4", "5.0", "11"))
    assert run(kk, "am").err.startswith("usage: am [subcommand] [options]\nusage: am start [-D] [-W]")
    assert "am stack start <DISPLAY_ID> <INTENT>" in run(lp, "am").err
    assert "am stack start" not in run(kk, "am").err
    assert run(r, "am").err.startswith("Activity manager (activity) commands:\n  help\n")
    assert run(r, "am nosuch").err == "Unknown command: nosuch\n"
    assert run(kk, "am nosuch").err.startswith("Error: Unknown command: nosuch\nusage: am")


def test_am_get_current_user_and_start_activity_from_7_0(tmp_path):
    r = handset(tmp_path / "r", "11")
    assert run(r, "am get-current-user").out == "0\n"
    res = run(r, "am start-activity -n com.android.settings/.MainSettings")
    assert res.rc == 0 and res.out.startswith("Starting: Intent { cmp=com.android.settings/.MainSettings }")
    kk = handset(tmp_path / "k", "4.4")
    assert run(kk, "am get-current-user").err.startswith("Error: Unknown command: get-current-user")


def test_am_instrument_fails_as_android_does_without_a_java_vm(rel):
    _, h = rel
    r = run(h, "am instrument -w com.example.test/androidx.test.runner.AndroidJUnitRunner")
    assert (
        "INSTRUMENTATION_STATUS: Error=Unable to find instrumentation info for: "
        "ComponentInfo{com.example.test/androidx.test.runner.AndroidJUnitRunner}" in r.out
    )
    assert "INSTRUMENTATION_FAILED" in r.out
    res = run(h, "app_process / com.example.Main")
    assert res.rc == 1 and "no Java VM" in res.err


# --- dumpsys activity / window -----------------------------------------------------------------


def test_dumpsys_activity_layout_per_release(rel):
    release, h = rel
    out = run(h, "dumpsys activity activities").out
    record = r"ActivityRecord\{[0-9a-f]+ u0 com\.miui\.home/\.launcher\.Launcher t2\}"
    assert out.startswith("ACTIVITY MANAGER ACTIVITIES (dumpsys activity activities)\n")
    if release == "4.4":
        assert re.search(r"\n  Stack #0:\n    Task id #2\n", out)
        assert re.search(rf"        Run #0: {record}\n", out)
        assert "Display #0" not in out
    elif release == "5.0":
        assert "\nDisplay #0 (activities from top to bottom):\n  Stack #1:\n" in out
        assert re.search(rf"        Run #0: {record}\n", out)
    else:
        assert "\n  Stack #2: type=standard mode=fullscreen\n" in out
        assert re.search(rf"      \* Hist #0: {record}\n", out)
        assert re.search(rf"\n  ResumedActivity: {record}\n", out)
    # adbutils' app_current fallback regex (mResumedActivity) matches every release
    m = re.search(r"mResumedActivity: ActivityRecord\{.*?\s+(?P<package>[^\s]+)/(?P<activity>[^\s]+)\s.*?\}", out)
    assert m and m.group("package") == "com.miui.home"


def test_dumpsys_activity_top_and_window_name_the_focused_app(rel):
    release, h = rel
    run(h, "am start -n com.android.settings/com.android.settings.MainSettings")
    top = run(h, "dumpsys activity top").out
    assert (
        re.search(r"ACTIVITY (?P<package>[^\s]+)/(?P<activity>[^/\s]+) \w+ pid=", top).group("package")
        == "com.android.settings"
    )
    assert top.startswith("TASK com.android.settings id=2" + (" userId=0\n" if release == "11" else "\n"))
    # adbutils' app_current regex; from 10 focus is per display: `dumpsys window windows` has no
    # mCurrentFocus (as the real Android 11 dump in tests/fixtures/real/ shows), `displays` has it
    focus_re = re.compile(r"mCurrentFocus=Window{.*\s+(?P<package>[^\s]+)/(?P<activity>[^\s]+)\}")
    windows = run(h, "dumpsys window windows").out
    assert (focus_re.search(windows) is None) == (release == "11")
    win = run(h, "dumpsys window displays" if release == "11" else "dumpsys window windows").out
    assert win == (run(h, "dumpsys window").out.split("-" * 79 + "\n")[-1] if release == "11" else windows)
    m = focus_re.search(win)
    assert m and (m.group("package"), m.group("activity")) == (
        "com.android.settings",
        "com.android.settings.MainSettings",
    )
    focused = re.search(r"mFocusedApp=(\S+)", win).group(1)
    assert focused.startswith("ActivityRecord{" if release == "11" else "AppWindowToken{")
    uid = re.search(r"mOwnerUid=(\d+)", windows).group(1)
    # Session names an app uid u0a<appId>, a system uid (Settings runs as 1000) by its number
    assert re.search(r"mSession=Session\{\w+ \d+:(?:u0a)?(\d+)\}", windows).group(1) == uid == "1000"
    assert re.search(r"ACTIVITY \S+ \w+ pid=(\d+)", top)  # its process was started


def test_window_dump_layout_matches_a_real_android_11_dump():
    """The emulated 11 `dumpsys window windows` has the real dump's line shapes (appium's
    Android 11 fixture, tests/fixtures/real/dumpsys_window_windows_a11_appium.txt)."""
    from pathlib import Path

    from hostctl.emulator.android import dumpsys
    from hostctl.emulator.android.model import TopActivity

    real = (Path(__file__).parent / "fixtures/real/dumpsys_window_windows_a11_appium.txt").read_text()
    shape = [
        re.compile(r"^  Window #\d+ Window\{[0-9a-f]+ u0 (?P<title>\S+)\}:$", re.M),
        re.compile(
            r"^    mDisplayId=0 rootTaskId=\d+ mSession=Session\{[0-9a-f]+ \d+:u0a(?P<app>\d+)\} "
            r"mClient=android\.os\.BinderProxy@[0-9a-f]+$",
            re.M,
        ),
        re.compile(r"^    mOwnerUid=(?P<uid>\d+) showForAllUsers=(true|false) package=\S+ appop=NONE$", re.M),
    ]
    ours = dumpsys.window(30, TopActivity("com.android.mms/.ui.MmsTabActivity", 1234, uid=10050), "windows")
    for rx in shape:
        assert rx.search(real), rx.pattern
        assert rx.search(ours), rx.pattern
    assert "mCurrentFocus" not in real and "mCurrentFocus" not in ours
    assert shape[0].search(ours).group("title") == "com.android.mms/com.android.mms.ui.MmsTabActivity"
    assert shape[1].search(ours).group("app") == shape[2].search(ours).group("uid") == "10050"
    assert shape[1].search(real).group("app") == shape[2].search(real).group("uid") == "10144"


def test_dumpsys_power_battery_display_user_meminfo(rel):
    release, h = rel
    assert "mHoldingDisplaySuspendBlocker=true" in run(h, "dumpsys power").out
    assert "mWakefulness=Awake" in run(h, "dumpsys power").out
    bat = run(h, "dumpsys battery").out
    assert bat.startswith("Current Battery Service state:\n  AC powered: false\n  USB powered: true\n")
    assert "  level: 100\n  scale: 100\n" in bat
    assert ("Max charging current" in bat) == (release == "11")
    assert re.search(r"orientation=(\d+)", run(h, "dumpsys display").out).group(1) == "0"
    assert re.findall(r"\{(\d+):", run(h, "dumpsys user").out)[0] == "0"  # Mobly's current_user_id (5.0/6.0)
    assert "Total PSS by process:" in run(h, "dumpsys meminfo").out


# --- pm ------------------------------------------------------------------------------------------


def test_pm_aliases_and_user(rel):
    release, h = rel
    plain = run(h, "pm list packages").out
    assert "package:com.android.mms\n" in plain
    assert run(h, "pm list package").out == plain  # Mobly's alias
    assert run(h, "pm list packages --user 0").out == plain
    if release == "11":
        assert run(h, "cmd package list packages --user 0").out == plain  # what Appium runs
        assert run(h, "pm").err.startswith("Package manager (package) commands:")
    else:
        assert run(h, "pm").err.startswith("usage: pm list packages")
    # Pm.java runListUsers (4.4-6.0), UserManagerService's shell `list` (7.0+)
    users = run(h, "pm list users")
    flags = "c13" if release == "11" else "13"
    assert users.rc == 0 and users.out == f"Users:\n\tUserInfo{{0:Owner:{flags}}} running\n"


def test_pm_install_path_dump_uninstall_of_a_real_apk(rel):
    release, h = rel
    h.fs.host_path("/data/local/tmp/probe.apk").write_bytes(build_apk())
    r = run(h, "pm install -r /data/local/tmp/probe.apk")
    # Pm.java (4.4/5.0) prints the "\tpkg:" line with System.err, "Success" with System.out
    assert (r.out, r.err) == (
        ("Success\n", "") if release == "11" else ("Success\n", "\tpkg: /data/local/tmp/probe.apk\n")
    )
    assert "package:org.hostctl.probe\n" in run(h, "pm list packages -3").out
    path = run(h, "pm path org.hostctl.probe").out
    assert path == (
        "package:/data/app/org.hostctl.probe-1.apk\n"
        if release == "4.4"
        else "package:/data/app/org.hostctl.probe-1/base.apk\n"
    )
    dump = run(h, "dumpsys package org.hostctl.probe").out
    assert "versionCode=7 " in dump and "versionName=1.7\n" in dump
    assert run(h, "pm uninstall org.hostctl.probe").out == "Success\n"
    assert "org.hostctl.probe" not in run(h, "pm list packages").out
    assert run(h, "pm uninstall org.hostctl.probe").out == "Failure [DELETE_FAILED_INTERNAL_ERROR]\n"


def test_streamed_install_is_7_0_and_later(tmp_path):
    apk = build_apk()
    r = handset(tmp_path / "r", "11")
    res = run(r, f"cmd package install -S {len(apk)}", stdin=apk)
    assert (res.out, res.rc) == ("Success\n", 0)
    junk = b"PK\x03\x04not an apk"
    bad = run(r, f"cmd package install -S {len(junk)}", stdin=junk)
    assert bad.out.startswith("Failure [INSTALL_PARSE_FAILED_NOT_APK")
    kk = handset(tmp_path / "k", "4.4")
    assert run(kk, f"cmd package install -S {len(apk)}", stdin=apk).rc == 127  # no cmd on 4.4


# --- screen, network, logcat, bug report ---------------------------------------------------------


def test_screencap_png_and_raw_show_the_hierarchy(rel):
    release, h = rel
    png = run_bytes(h, "screencap -p")
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (720, 1280)
    raw = run_bytes(h, "screencap")
    w, hh, fmt = struct.unpack("<III", raw[:12])
    head = 16 if release == "11" else 12
    assert (w, hh, fmt) == (720, 1280, 1) and len(raw) == head + 720 * 1280 * 4
    # a screen with a checked switch draws it in the accent colour; unchecked, it does not
    before = img.convert("RGB")
    run(h, "am start -n com.android.mms/com.android.mms.ui.MessagingPreferenceActivity")
    after = Image.open(io.BytesIO(run_bytes(h, "screencap -p"))).convert("RGB")
    assert before.tobytes() != after.tobytes()


def run_bytes(h, command: str) -> bytes:
    import asyncio

    from test_shell_kit import MemoryIO

    from hostctl.emulator.shell import AndroidShell

    mio = MemoryIO(b"")
    assert asyncio.run(AndroidShell(h).run(command, mio)) == 0
    return bytes(mio.stdout)


def test_wm_ip_ifconfig(rel):
    release, h = rel
    assert run(h, "wm size").out == "Physical size: 720x1280\n"
    assert run(h, "wm density").out == "Physical density: 320\n"
    addr = h.wlan_address.split("/")[0]
    assert re.search(r"inet (\d+.*?)/\d+", run(h, "ip addr show dev wlan0").out).group(1) == addr
    ifc = run(h, "ifconfig wlan0").out
    if release == "11":
        assert re.search(r"inet\s*addr:(.*?)\s", ifc).group(1) == addr  # adbutils.wlan_ip
        # toybox: Wi-Fi is an ARPHRD_ETHER device, so "Ethernet" and its HWaddr, then the driver
        assert ifc.startswith(f"wlan0     Link encap:Ethernet  HWaddr {h.wlan_mac}  Driver icnss\n")
    else:
        assert ifc.startswith(f"wlan0: ip {addr} mask 255.255.255.0 flags [up broadcast running multicast]")


def test_logcat_formats_buffers_and_file(rel):
    release, h = rel
    assert run(h, "logcat --clear").rc == 0
    h.log("I", "Probe", "hello", pid=900, tid=901, when=86400.5)
    h.log("D", "Other", "noise", pid=1, when=86400.6)
    assert run(h, "logcat -d -s Probe -v brief").out.endswith("I/Probe   (  900): hello\n")
    assert run(h, "logcat -d -b main,system -v tag Probe:I *:S").out.endswith("I/Probe   : hello\n")
    assert run(h, "logcat -d -v long -s Probe").out.endswith("I/Probe ]\nhello\n\n")
    assert run(h, "logcat -d -t 1 -v raw").out.endswith("noise\n")
    assert run(h, "logcat -b nosuch -d").rc == 1
    assert run(h, "logcat -d -f /sdcard/log.txt").rc == 0
    assert b"hello" in h.fs.host_path("/sdcard/log.txt").read_bytes()


def test_bugreportz_zip_from_7_0_and_text_bugreport(rel):
    release, h = rel
    if release == "11":
        assert run(h, "bugreportz -v").err == "1.1\n"
        out = run(h, "bugreportz").out
        assert out.startswith("OK:/bugreports/bugreport-")
        zf = zipfile.ZipFile(io.BytesIO(h.fs.host_path(out[3:].strip()).read_bytes()))
        main = zf.read("main_entry.txt").decode()
        text = zf.read(main).decode()
        assert "DUMP OF SERVICE activity:" in text and "------ SYSTEM PROPERTIES (getprop) ------" in text
    else:
        assert run(h, "bugreportz").rc == 127
    assert "== dumpstate: " in run(h, "bugreport").out


def test_content_query_where_is_honoured(rel):
    _, h = rel
    out = run(h, "content query --uri content://settings/global --where \"name='adb_enabled'\"").out
    assert out.count("Row:") == 1 and "name=adb_enabled" in out


def test_proc_cpuinfo_matches_the_abi_and_proc_stat_exists(rel):
    release, h = rel
    cpu = run(h, "cat /proc/cpuinfo").out
    if release == "4.4":
        assert cpu.startswith("Processor\t: ARMv7")
    else:  # arm64-v8a builds: an ARMv8 kernel's layout, not an ARMv7 one
        assert "CPU architecture: 8\n" in cpu and "ARMv7" not in cpu
    stat = run(h, "cat /proc/stat").out
    assert re.match(r"cpu\s+(\d+\s){10}", stat)  # pure-python-adb's cpu_times() pattern


def test_every_labelled_node_of_the_dump_is_drawn_inside_its_bounds(tmp_path):
    """What `uiautomator dump` describes is what the picture shows: each node with text has
    dark (text) pixels inside its bounds; a checked switch has accent pixels, an unchecked none."""
    import xml.etree.ElementTree as ET

    from hostctl.emulator import render

    h = handset(tmp_path, "11")
    run(h, "am start -n com.android.mms/com.android.mms.ui.MessagingPreferenceActivity")
    img = Image.open(io.BytesIO(run_bytes(h, "screencap -p"))).convert("RGB")
    root = ET.fromstring(run(h, "uiautomator dump /dev/tty").out.split("UI hierchary dumped")[0])
    checked_seen = 0
    for node in root.iter("node"):
        x1, y1, x2, y2 = map(int, re.findall(r"\d+", node.get("bounds")))
        if x2 <= x1 or y2 <= y1:
            continue
        region = img.crop((x1, y1, x2, y2))
        raw = region.tobytes()
        colours = {tuple(raw[i : i + 3]) for i in range(0, len(raw), 3)}
        if node.get("text"):
            assert any(sum(c) < 200 for c in colours), node.get("text")
        if node.get("checkable") == "true":
            has_accent = render.ACCENT[:3] in colours
            assert has_accent == (node.get("checked") == "true"), node.get("resource-id")
            checked_seen += 1
    assert checked_seen, "the Messaging settings screen shows at least one switch"


def test_logcat_since_a_time(rel):
    import datetime as dt
    import time

    _, h = rel
    run(h, "logcat -c")
    now = time.time()
    h.log("I", "Old", "before", when=now - 3600)
    h.log("I", "New", "after", when=now)
    stamp = dt.datetime.fromtimestamp(now - 1800).strftime("%m-%d %H:%M:%S.000")
    out = run(h, f"logcat -d -v brief -T '{stamp}'").out
    assert "after" in out and "before" not in out
    out = run(h, f"logcat -d -v brief -t {now - 1800:.3f}").out
    assert "after" in out and "before" not in out
    assert run(h, "logcat -d -t yesterday").rc == 1


def test_logcat_time_modifiers_as_logprint_cpp_prints_them():
    """system/core/liblog/logprint.cpp android_log_formatLogLine: epoch is "%19lld" seconds,
    then ".%03ld" / ".%06ld" (usec) / ".%09ld" (nsec); zone appends strftime " %z"."""
    from types import SimpleNamespace

    from hostctl.emulator.android import logcat as lf

    t = 1700000000.25
    e = SimpleNamespace(time=t, pid=900, tid=901, priority="I", tag="Probe", message="hello")
    assert lf.format_entry(e, "time", {"epoch"}) == "         1700000000.250 I/Probe   (  900): hello"
    assert lf.format_entry(e, "brief", {"epoch"}) == "I/Probe   (  900): hello"
    assert lf.format_entry(e, "threadtime", {"UTC", "year", "usec"}) == (
        "2023-11-14 22:13:20.250000   900   901 I Probe   : hello"
    )
    assert lf.format_entry(e, "time", {"UTC", "nsec", "zone"}) == (
        "11-14 22:13:20.250000000 +0000 I/Probe   (  900): hello"
    )
