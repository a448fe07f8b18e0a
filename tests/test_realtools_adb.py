"""Real tools against an emulated Android 11 handset: the adb CLI (36), adbutils.

Marked per test where the command goes through the shell that issue 12 replaces: those pass on
today's shell and must keep passing on the sandboxed one (same command functions).
"""

from __future__ import annotations

import io
import socket
import threading
import time

import adbutils
import pytest
from PIL import Image

from hostctl.emulator.lab import LabConfig, LabThread, wait_for_device
from tests.apkbuild import build_apk


@pytest.fixture(scope="module")
def lab11(adb_port, tmp_path_factory):
    home = tmp_path_factory.mktemp("hostctl-home-11")
    cfg = LabConfig(adb_port=adb_port, handsets=1, home=home, profile="miui-12-android-11",
                    modem=False, relay=False, consoles=False, cloud=False, wiretap=False, pcapdroid=False)
    with LabThread(cfg) as lt:
        yield lt


@pytest.fixture
def h11(lab11):
    return lab11.lab.handsets[0]


def test_logcat_dump_and_clear_through_adb(h11, adb):        # shell: issue 12 (export; exec logcat)
    h11.handset.log("I", "RealTools", "probe line")
    r = adb("-s", h11.serial, "logcat", "-d", "-v", "brief", "RealTools:I", "*:S")
    assert r.returncode == 0, r.stderr
    assert b"I/RealTools(" in r.stdout and b"probe line" in r.stdout
    assert adb("-s", h11.serial, "logcat", "-c").returncode == 0
    assert b"probe line" not in adb("-s", h11.serial, "logcat", "-d").stdout


def test_exec_out_screencap_is_a_png_of_the_screen(h11, adb):
    r = adb("-s", h11.serial, "exec-out", "screencap", "-p")
    assert r.returncode == 0
    img = Image.open(io.BytesIO(r.stdout))
    assert img.format == "PNG" and img.size == (720, 1280)


def test_root_answers_as_a_user_build(h11, adb):
    r = adb("-s", h11.serial, "root")
    assert b"adbd cannot run as root in production builds" in r.stdout + r.stderr
    r = adb("-s", h11.serial, "remount")
    assert b'Not running as root. Try "adb root" first.' in r.stdout + r.stderr
    r = adb("-s", h11.serial, "unroot")
    assert b"adbd not running as root" in r.stdout + r.stderr


def test_install_and_uninstall_a_built_apk(h11, adb, tmp_path):
    apk = tmp_path / "probe.apk"
    apk.write_bytes(build_apk("org.hostctl.cli", 3, "0.3", "Cli"))
    r = adb("-s", h11.serial, "install", "-r", str(apk))
    assert r.returncode == 0 and b"Success" in r.stdout, (r.stdout, r.stderr)
    assert b"package:org.hostctl.cli" in adb("-s", h11.serial, "shell", "pm", "list", "packages").stdout
    assert adb("-s", h11.serial, "shell", "pm", "path", "org.hostctl.cli").stdout.strip() == \
        b"package:/data/app/org.hostctl.cli-1/base.apk"
    r = adb("-s", h11.serial, "uninstall", "org.hostctl.cli")
    assert r.returncode == 0 and b"Success" in r.stdout
    assert b"org.hostctl.cli" not in adb("-s", h11.serial, "shell", "pm", "list", "packages").stdout


def _listener() -> tuple[socket.socket, list[bytes]]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    got: list[bytes] = []

    def serve():
        conn, _ = srv.accept()
        with conn:
            got.append(conn.recv(100))
            conn.sendall(b"host says hi")

    threading.Thread(target=serve, daemon=True).start()
    return srv, got


def test_reverse_reaches_a_host_listener(h11, adb):
    srv, got = _listener()
    host_port = srv.getsockname()[1]
    assert adb("-s", h11.serial, "reverse", "tcp:7100", f"tcp:{host_port}").returncode == 0
    listing = adb("-s", h11.serial, "reverse", "--list").stdout.decode()
    assert f"tcp:7100 tcp:{host_port}" in listing
    # a client on the handset connects to its port 7100 (the adbd's listener for it)
    device_side = h11.adbd.reverse_ports[7100]
    with socket.create_connection(("127.0.0.1", device_side), timeout=5) as c:
        c.sendall(b"from the handset")
        c.settimeout(5)
        assert c.recv(100) == b"host says hi"
    assert got == [b"from the handset"]
    assert adb("-s", h11.serial, "reverse", "--remove-all").returncode == 0
    assert 7100 not in h11.adbd.reverse_ports
    srv.close()


def test_adbutils_real_values(h11, adb_port, tmp_path):
    d = adbutils.AdbClient(port=adb_port).device(h11.serial)
    assert tuple(d.window_size()) == (720, 1280)
    assert d.screenshot().size == (720, 1280)
    assert d.framebuffer().size == (720, 1280)
    d.shell("am start -n com.android.settings/com.android.settings.MainSettings")
    assert d.app_current().package == "com.android.settings"
    b = d.battery()
    assert (b.level, b.scale, b.usb_powered) == (100, 100, True)
    assert d.is_screen_on() is True
    assert d.wlan_ip() == h11.handset.wlan_address.split("/")[0]
    assert d.rotation() == 0
    apk = tmp_path / "u.apk"
    apk.write_bytes(build_apk("org.hostctl.adbutils", 1, "1.0", "U"))
    d.install(str(apk), nolaunch=True, silent=True)
    assert "org.hostctl.adbutils" in d.list_packages()
    d.uninstall("org.hostctl.adbutils")
    srv, got = _listener()
    d.reverse("tcp:7200", f"tcp:{srv.getsockname()[1]}")
    assert [(i.remote, i.local) for i in d.reverse_list()] == [("tcp:7200", f"tcp:{srv.getsockname()[1]}")]
    d.reverse_remove_all()
    srv.close()
    out = tmp_path / "logcat.txt"
    event = d.logcat(out, clear=True, re_filter="AdbutilsProbe")   # `logcat --clear`, then streams
    deadline = time.monotonic() + 10
    while "streamed" not in out.read_text():
        h11.handset.log("W", "AdbutilsProbe", "streamed")
        assert time.monotonic() < deadline, "logcat stream never delivered the line"
        time.sleep(0.2)
    event.stop()
    assert "W/AdbutilsProbe(" in out.read_text()    # `-v time`'s layout


def test_reboot_goes_offline_and_comes_back_with_fresh_uptime(h11, adb, adb_port):
    time.sleep(1.5)
    before = float(adb("-s", h11.serial, "shell", "cat /proc/uptime").stdout.split()[0])
    assert before >= 1.0
    adb("-s", h11.serial, "reboot", timeout=30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        states = {dv.serial: dv.state for dv in adbutils.AdbClient(port=adb_port).list()}
        if states.get(h11.serial) != "device":
            break
        time.sleep(0.05)
    else:
        pytest.fail("the handset never went offline")
    wait_for_device(adb_port, h11.serial, 30)
    deadline = time.monotonic() + 30
    while adb("-s", h11.serial, "shell", "getprop sys.boot_completed").stdout.strip() != b"1":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    after = float(adb("-s", h11.serial, "shell", "cat /proc/uptime").stdout.split()[0])
    assert after < before + 30 and after < 30


def test_pure_python_adb_screencap_and_proc_uptime(h11, adb_port):
    from ppadb.client import Client

    dev = Client(host="127.0.0.1", port=adb_port).device(h11.serial)
    png = dev.screencap()
    assert Image.open(io.BytesIO(png)).size == (720, 1280)
    assert float(dev.shell("cat /proc/uptime").split()[0]) >= 0


def test_reboot_restarts_the_apps_and_rejoins_the_portal(h11, adb):
    before = h11.apps["com.android.mms"].pid
    adb("-s", h11.serial, "reboot", timeout=30)
    deadline = time.monotonic() + 30
    while not (h11.apps.get("com.android.mms") and h11.apps["com.android.mms"].pid != before
               and h11.handset.getprop("sys.boot_completed") == "1"):
        assert time.monotonic() < deadline, "the app never came back"
        time.sleep(0.1)
    pid = h11.apps["com.android.mms"].pid
    assert h11.portal.members().get(pid) == "com.android.mms"
    assert h11.handset.pids_of("com.android.mms") == [pid]


def _lab(adb_port, home, profile):
    return LabThread(LabConfig(adb_port=adb_port, handsets=1, home=home, profile=str(profile), modem=False,
                               relay=False, consoles=False, cloud=False, wiretap=False, pcapdroid=False))


def test_legacy_install_pushes_then_runs_pm_install_on_5_0(adb_port, adb, tmp_path):
    """A 5.0 adbd advertises no features, so adb 36 pushes the APK to /data/local/tmp and runs
    `pm install` (adb's install_app_legacy), whose output has Pm.java's `\\tpkg:` line."""
    with _lab(adb_port, tmp_path / "home", "miui-7-android-5.0") as lt:
        h = lt.lab.handsets[0]
        apk = tmp_path / "legacy.apk"
        apk.write_bytes(build_apk("org.hostctl.legacy", 5, "5.0", "Legacy"))
        r = adb("-s", h.serial, "install", str(apk))
        assert r.returncode == 0 and b"Success" in r.stdout, (r.stdout, r.stderr)
        assert h.handset.pm.get("org.hostctl.legacy").code_path == "/data/app/org.hostctl.legacy-1/base.apk"
        r = adb("-s", h.serial, "uninstall", "org.hostctl.legacy")
        assert b"Success" in r.stdout
        assert not h.handset.package_installed("org.hostctl.legacy")


def test_root_on_a_userdebug_profile_restarts_adbd(adb_port, adb, tmp_path):
    profile = tmp_path / "userdebug.yaml"
    profile.write_text("extends: miui-12-android-11\nname: miui-12-userdebug\n"
                       "props:\n  ro.debuggable: \"1\"\n  ro.build.type: userdebug\n")
    with _lab(adb_port, tmp_path / "home", profile) as lt:
        h = lt.lab.handsets[0]
        r = adb("-s", h.serial, "root", timeout=60)
        assert b"restarting adbd as root" in r.stdout + r.stderr
        wait_for_device(adb_port, h.serial, 20)
        assert b"adbd is already running as root" in adb("-s", h.serial, "root").stdout
        r = adb("-s", h.serial, "remount")
        assert b"Not running as root" not in r.stdout + r.stderr
        assert b"restarting adbd as non root" in adb("-s", h.serial, "unroot", timeout=60).stdout
        wait_for_device(adb_port, h.serial, 20)
        assert b"adbd not running as root" in adb("-s", h.serial, "unroot").stdout


def test_adb_bugreport_pulls_the_bugreportz_zip(h11, adb, tmp_path):
    """adb 36 on a 7.0+ device: `bugreportz -p` on the handset, then pull the zip it names."""
    import zipfile

    out = tmp_path / "br.zip"
    r = adb("-s", h11.serial, "bugreport", str(out), timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    with zipfile.ZipFile(out) as zf:
        assert "main_entry.txt" in zf.namelist()


def test_kitkat_adbd_has_no_reverse(lab, adb):
    """The 4.4 lab (conftest's): adbd before 5.0 does not know reverse:, so adb reports an error."""
    h = lab.lab.handsets[0]
    r = adb("-s", h.serial, "reverse", "tcp:7300", "tcp:7301")
    assert r.returncode != 0


def test_kitkat_install_takes_the_legacy_path_and_adbd_answers_as_kitkat(lab, adb, tmp_path):
    """The 4.4 lab's adbd advertises no feature (no `cmd`), as KitKat's adb.c did, so adb 36
    pushes the APK and runs `pm install` instead of `cmd package install` (which 4.4 lacks:
    `cmd: not found`). KitKat's remount_service.c has no uid check (mount fails as the shell
    user) and its services.c has no unroot: service (adb reports the stream closed)."""
    h = lab.lab.handsets[1]
    r = adb("-s", h.serial, "shell", "cmd")
    assert b"cmd: " in r.stdout and b"not found" in r.stdout    # no such tool before 7.0
    apk = tmp_path / "kk.apk"
    apk.write_bytes(build_apk("org.hostctl.kitkat", 3, "4.4", "KitKat"))
    r = adb("-s", h.serial, "install", str(apk))
    assert r.returncode == 0 and b"Success" in r.stdout, (r.stdout, r.stderr)
    assert h.handset.package_installed("org.hostctl.kitkat")
    assert b"Success" in adb("-s", h.serial, "uninstall", "org.hostctl.kitkat").stdout
    assert not h.handset.package_installed("org.hostctl.kitkat")
    r = adb("-s", h.serial, "remount")
    assert b"remount failed: Operation not permitted" in r.stdout + r.stderr
    r = adb("-s", h.serial, "unroot")
    assert b"restarting" not in r.stdout and b"not running as root" not in r.stdout


def test_remount_reply_per_release():
    from hostctl.emulator.adb.server import remount_reply
    assert remount_reply(19, False) == b"remount failed: Operation not permitted\n"
    assert remount_reply(21, False) == b"remount of system failed: Operation not permitted\nremount failed\n"
    assert remount_reply(23, False) == b'Not running as root. Try "adb root" first.\n'
    assert remount_reply(30, False) == b'Not running as root. Try "adb root" first.\nremount failed\n'
