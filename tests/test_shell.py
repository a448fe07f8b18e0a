"""The emulated Android shell, transcript style: command in, exact stdout/stderr/rc out."""

import asyncio
import re
from pathlib import Path

import pytest
from test_shell_kit import MemoryIO, make_handset, run

from hostctl.emulator.handset import Intent
from hostctl.emulator.shell import AndroidShell
from hostctl.emulator.shell.parcel import ParcelWriter, format_parcel


@pytest.fixture
def h(tmp_path: Path):
    handset = make_handset(tmp_path)
    yield handset
    handset.close()


def check(h, command: str, out: str = "", err: str = "", rc: int = 0, stdin: bytes = b""):
    r = run(h, command, stdin)
    assert (r.out, r.err, r.rc) == (out, err, rc), command


def parcel_for(text: str | None) -> str:
    return format_parcel(ParcelWriter().write_no_exception().write_string16(text).data())


# --- parcel format ----------------------------------------------------------------------------


def test_parcel_hexdump_is_byte_exact() -> None:
    assert parcel_for("358070080478163") == (
        "Result: Parcel(\n"
        "  0x00000000: 00000000 0000000f 00350033 00300038 '........3.5.8.0.'\n"
        "  0x00000010: 00300037 00380030 00340030 00380037 '7.0.0.8.0.4.7.8.'\n"
        "  0x00000020: 00360031 00000033                   '1.6.3...        ')\n"
    )
    assert parcel_for(None) == "Result: Parcel(00000000 ffffffff   '........')\n"
    assert format_parcel(ParcelWriter().write_int32(0).data()) == "Result: Parcel(00000000    '....')\n"


def test_service_call_iphonesubinfo(h) -> None:
    sim = h.identity.sims[0]
    check(h, "service call iphonesubinfo 1", parcel_for(sim.imei))
    check(h, "service call iphonesubinfo 3", parcel_for(sim.imsi))
    check(h, "service call iphonesubinfo 5", parcel_for(sim.iccid))
    check(h, "service call iphonesubinfo 6", parcel_for(sim.msisdn))
    check(h, "service call iphonesubinfo 4", parcel_for(None))
    check(h, "service call iphonesubinfo 99", 'Result: Parcel(Error: 0xffffffb6 "Not a data message")\n')
    check(h, "service call nosuch 1", "", "service: Service nosuch does not exist\n", 10)
    check(h, "service check iphonesubinfo", "Service iphonesubinfo: found\n")
    r = run(h, "service list")
    assert r.out.startswith(
        "Found 25 services:\n0\tphone: [com.android.internal.telephony.ITelephony]\n1\tiphonesubinfo: "
    )
    assert "\tiphonesubinfo_msim: [com.android.internal.telephony.msim.IPhoneSubInfoMSim]\n" in r.out


def test_service_call_iphonesubinfo_msim_takes_the_slot(h) -> None:
    # CAF dual-SIM KitKat (the RedMi 1S): IPhoneSubInfoMSim, every getter takes the 0-based slot
    for slot, sim in enumerate(h.identity.sims):
        check(h, f"service call iphonesubinfo_msim 1 i32 {slot}", parcel_for(sim.imei))
        check(h, f"service call iphonesubinfo_msim 3 i32 {slot}", parcel_for(sim.imsi))
        check(h, f"service call iphonesubinfo_msim 4 i32 {slot}", parcel_for(sim.iccid))
        check(h, f"service call iphonesubinfo_msim 5 i32 {slot}", parcel_for(sim.msisdn))
    check(h, "service call iphonesubinfo_msim 1 i32 2", parcel_for(None))  # no third slot
    check(h, "service call iphonesubinfo_msim 1", parcel_for(h.identity.sims[0].imei))  # reads 0
    check(h, "service call iphonesubinfo_msim 11 i32 0", 'Result: Parcel(Error: 0xffffffb6 "Not a data message")\n')


def test_service_call_decodes_back(h) -> None:
    out = run(h, "service call iphonesubinfo 1").out
    chars = "".join(line.split("'")[1] for line in out.splitlines()[1:])
    assert chars.replace(".", "")[:15] == h.identity.sims[0].imei


# --- props & settings -------------------------------------------------------------------------


def test_getprop(h) -> None:
    check(h, "getprop ro.build.version.release", "4.4.4\n")
    check(h, "getprop no.such.prop", "\n")
    check(h, "getprop no.such.prop dflt", "dflt\n")
    lines = run(h, "getprop").out.splitlines()
    keys = [line[1 : line.index("]")] for line in lines]
    assert keys == sorted(keys)
    assert "[ro.product.model]: [HM 1S]" in lines
    assert f"[ro.ril.miui.imei0]: [{h.identity.sims[0].imei}]" in lines


def test_setprop(h) -> None:
    check(h, "setprop debug.x 1; getprop debug.x", "1\n")
    check(h, "setprop ro.product.model x; getprop ro.product.model", "HM 1S\n")
    check(h, "setprop a", "", "usage: setprop <key> <value>\n", 1)


def test_settings(h) -> None:
    check(h, "settings get secure cloud_messaging_on", "1\n")
    check(h, "settings get secure missing_key", "null\n")
    check(h, "settings put global foo bar && settings get global foo", "bar\n")
    check(h, "settings delete global foo", "Deleted 1 rows\n")
    check(h, "settings list system", "screen_brightness=102\nscreen_off_timeout=60000\ntime_12_24=24\n")
    r = run(h, "settings get vendor x")
    assert r.rc == 1 and r.err.startswith("usage:  settings [--user <USER_ID> | current] get")


# --- content ----------------------------------------------------------------------------------


def test_content_sms_round_trip(h) -> None:
    check(h, "content query --uri content://sms", "No result found.\n")
    check(
        h,
        "content insert --uri content://sms/inbox --bind address:s:+8613800138000 "
        "--bind 'body:s:hi there' --bind date:l:1400000000000",
    )
    check(
        h,
        "content insert --uri content://sms/sent --bind address:s:10086 --bind body:s:x "
        "--bind date:l:1400000000001 --bind mx_status:i:16",
    )
    check(
        h,
        "content query --uri content://sms --projection _id:address:body:type --sort '_id ASC'",
        "Row: 0 _id=1, address=+8613800138000, body=hi there, type=1\nRow: 1 _id=2, address=10086, body=x, type=2\n",
    )
    check(
        h,
        "content query --uri content://sms/sent --projection body:mx_status:subject",
        "Row: 0 body=x, mx_status=16, subject=NULL\n",
    )
    check(h, "content query --uri content://sms/1 --projection body", "Row: 0 body=hi there\n")
    check(h, "content update --uri content://sms --bind read:i:1 --where \"address='10086'\"")
    check(h, 'content query --uri content://sms --projection read --where "_id=2"', "Row: 0 read=1\n")
    check(h, "content delete --uri content://sms --where '_id=1'")
    check(h, "content query --uri content://sms --projection _id", "Row: 0 _id=2\n")


def test_content_errors(h) -> None:
    check(
        h,
        "content query --uri content://sms --projection nope",
        "",
        "Error while accessing provider:sms\nandroid.database.sqlite.SQLiteException: no such column: nope\n",
        1,
    )
    check(
        h,
        "content query --uri content://contacts",
        "",
        "Error while accessing provider:contacts\njava.lang.IllegalStateException: Could not find provider: contacts\n",
        1,
    )
    # SettingsProvider hands --where to SQLite: an unknown column is an error, a real filter filters
    r = run(h, "content query --uri content://settings/secure --where x")
    assert r.rc == 1 and "SQLiteException: no such column: x" in r.err
    check(
        h,
        "content query --uri content://settings/secure --where \"name='android_id'\"",
        "Row: 0 name=android_id, value=9774d56d682e549c\n",
    )


# --- shell language ---------------------------------------------------------------------------
# The shell and its utilities are real mksh and toybox (tests/test_userland_*.py hold the corpus
# and the grammar script); these check the seams: stdin reaches a program, time passes.


def test_stdin_is_read(h) -> None:
    check(h, "cat", "piped\n", stdin=b"piped\n")
    check(h, "grep -c x", "2\n", stdin=b"x\ny\nxx\n")


def test_sleep_is_async(h) -> None:
    check(h, "sleep 0.01 && echo done", "done\n")


# --- android tools ----------------------------------------------------------------------------


def test_id(h) -> None:
    # toybox's id over the real credentials the launcher set: uid/gid 2000 and KitKat adbd's
    # groups (AOSP 4.4 adb.c). Android's own build adds " context=u:r:shell:s0" (SELinux), which
    # the sandbox does not have.
    check(
        h,
        "id",
        "uid=2000(shell) gid=2000(shell) groups=2000(shell),1003(graphics),1004(input),"
        "1007(log),1009(mount),1011(adb),1015(sdcard_rw),1028(sdcard_r),3001(net_bt_admin),"
        "3002(net_bt),3003(inet),3006(net_bw_stats)\n",
    )


def test_pm(h) -> None:
    check(h, "pm path com.android.mms", "package:/system/app/Mms.apk\n")
    check(h, "pm path com.nope", rc=1)
    check(h, "pm list packages xmsf", "package:com.xiaomi.xmsf\n")
    check(h, "pm list packages -f com.android.mms", "package:/system/app/Mms.apk=com.android.mms\n")


def test_am(h) -> None:
    seen: list[Intent] = []
    h.add_intent_listener(lambda i: seen.append(i))
    check(
        h,
        "am start -a android.intent.action.MAIN -n com.android.mms/.ui.MmsTabActivity",
        "Starting: Intent { act=android.intent.action.MAIN cmp=com.android.mms/.ui.MmsTabActivity }\n",
    )
    assert h.current_screen.component == "com.android.mms/com.android.mms.ui.MmsTabActivity"
    check(
        h,
        "am broadcast -a com.xiaomi.mms.action.ENBALE_RESULT --ez success true --ei sim_index 0",
        "Broadcasting: Intent { act=com.xiaomi.mms.action.ENBALE_RESULT (has extras) }\n"
        "Broadcast completed: result=0\n",
    )
    assert seen[-1].extras == {"success": True, "sim_index": 0}
    check(
        h,
        "am startservice -n com.android.mms/com.xiaomi.mms.transaction.MxActivateService "
        "-a com.xiaomi.mms.action.ENABLE_MX --ei sim_index 0 --ez extra_manually true",
        "Starting service: Intent { act=com.xiaomi.mms.action.ENABLE_MX cmp=com.android.mms/"
        "com.xiaomi.mms.transaction.MxActivateService (has extras) }\n",
        "Error: Requires permission com.xiaomi.permission.CLOUD_MANAGER\n",
        0,
    )
    assert all(i.kind != "service" for i in seen)
    check(
        h,
        "am start -n com.nope/.Main",
        "Starting: Intent { cmp=com.nope/.Main }\n",
        "Error type 3\nError: Activity class {com.nope/com.nope.Main} does not exist.\n",
    )
    check(h, "am force-stop com.android.mms")
    assert seen[-1] == Intent(kind="force-stop", package="com.android.mms")


def test_processes(h) -> None:
    h.register_process("com.android.mms", 31337, 10057)
    check(h, "pidof com.android.mms", "31337\n")
    check(h, "pidof nothing.here", rc=1)
    check(
        h,
        "ps -A | grep -E 'PID|mms'",
        "USER           PID  PPID     VSZ    RSS WCHAN            ADDR S NAME\n"
        "u0_a57       31337   311 1021344  48000 SyS_epoll_wait      0 S com.android.mms\n",
    )
    check(
        h,
        "ps -A | head -n 2",
        "USER           PID  PPID     VSZ    RSS WCHAN            ADDR S NAME\n"
        "root             1     0    9007   1201 SyS_epoll_wait      0 S /init\n",
    )


def test_dumpsys(h) -> None:
    check(
        h,
        "dumpsys iphonesubinfo",
        f"Phone Subscriber Info:\n  Phone Type = GSM\n  Device ID = {h.identity.sims[0].imei}\n",
    )
    check(h, "dumpsys nosuch", "", "Can't find service: nosuch\n")
    out = run(h, "dumpsys telephony.registry").out
    assert "mServiceState=0 0 voice home data home CHINA MOBILE CHINA MOBILE 46000" in out
    assert "mCallState=0" in out
    assert re.search(
        r"mFocusedActivity: ActivityRecord\{[0-9a-f]+ u0 com.miui.home/.launcher.Launcher t2\}",
        run(h, "dumpsys activity").out,
    )


def test_logcat(h) -> None:
    check(h, "logcat -c")
    h.log("I", "MxActivateService", "activate sim 0", pid=900, tid=901, when=0.5)
    h.log("D", "Other", "noise", pid=1, when=0.6)
    r = run(h, "logcat -d -s MxActivateService")
    lines = r.out.splitlines()
    assert lines[0] == "--------- beginning of /dev/log/main"
    assert lines[1].endswith(".500   900   901 I MxActivateService: activate sim 0")
    assert len(lines) == 2
    assert run(h, "logcat -d -v brief -s Other:D").out.splitlines()[1] == "D/Other   (    1): noise"


def test_logcat_streams_until_cancelled(h) -> None:
    async def scenario() -> bytes:
        io = MemoryIO()
        task = asyncio.create_task(AndroidShell(h).run("logcat -s Live", io))
        await asyncio.sleep(0.01)
        h.log("I", "Live", "one")
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return bytes(io.stdout)

    out = asyncio.run(scenario()).decode()
    assert out.endswith(" I Live    : one\n")


def test_uiautomator_and_input(h) -> None:
    check(h, "uiautomator dump", "UI hierchary dumped to: /sdcard/window_dump.xml\n")
    xml = h.fs.host_path("/sdcard/window_dump.xml").read_text()
    assert xml.startswith(
        "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>"
        '<hierarchy rotation="0"><node index="0" text="" resource-id="" '
        'class="android.widget.FrameLayout" package="com.miui.home" '
        'content-desc="" checkable="false" checked="false" clickable="false" '
        'enabled="true" focusable="false" focused="false" scrollable="false" '
        'long-clickable="false" password="false" selected="false" '
        'bounds="[0,0][720,1280]">'
    )
    assert xml.endswith("</node></node></hierarchy>")
    taps = []
    h.add_tap_listener(lambda hh, view, x, y: taps.append((view.text if view else None, x, y)))
    check(h, "input tap 90 1100")  # the Messaging icon
    assert taps == [("Messaging", 90, 1100)]
    assert h.current_screen.package == "com.android.mms"
    check(h, "input keyevent KEYCODE_HOME")
    assert h.current_screen.package == "com.miui.home"
    r = run(h, "input tap 1")
    assert (r.out, r.rc) == ("", 1)
    assert r.err.startswith("Error: Invalid arguments for command: tap\nUsage: input [<source>]")


def test_input_blocked_on_miui(tmp_path: Path) -> None:
    from dataclasses import replace

    from hostctl.emulator.handset import VirtualHandset
    from hostctl.emulator.profiles import load_profile

    prof = replace(load_profile("miui-v5-2014-07"), input_injection_blocked=True)
    h = VirtualHandset(label="x", profile=prof, state_dir=tmp_path / "s")
    r = run(h, "input tap 10 10")
    assert r.rc == 1 and r.out == ""
    assert r.err.startswith(
        'Exception in thread "main" java.lang.SecurityException: Injecting '
        "to another application requires INJECT_EVENTS permission\n"
    )


# --- interactive ------------------------------------------------------------------------------


def test_interactive_with_tty(h) -> None:
    # a real pty: the line discipline echoes input and maps NL to CRLF; the prompt is KitKat's
    # mkshrc's (shell@DEVICE:PWD $)
    io = MemoryIO(b"echo hi\ncd /sdcard\nexit 4\necho never\n", chunk=3)
    rc = asyncio.run(AndroidShell(h).interactive(io, tty=True))
    out = bytes(io.stdout)
    assert rc == 4
    assert b"shell@armani:/ $ " in out and b"hi\r\n" in out and b"shell@armani:/sdcard $ " in out
    assert b"never\r\n" not in out.replace(b"echo never", b"")


def test_interactive_without_tty_until_eof(h) -> None:
    io = MemoryIO(b"x=2\necho $x\nfalse")
    rc = asyncio.run(AndroidShell(h).interactive(io, tty=False))
    assert (bytes(io.stdout), rc) == (b"2\n", 1)
