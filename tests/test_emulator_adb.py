"""The emulated handset as the real adb server, adbutils, adb-shell and Frida see it."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

import adbutils
import frida
import pytest

from hostctl.emulator.lab import LabConfig, LabThread, wait_for_device


@pytest.fixture(scope="module")
def lab11(adb_port, tmp_path_factory):
    """An Android 11 handset: its adbd advertises shell_v2 (the KitKat lab's adbd, like a real
    4.4 adbd, advertises no feature at all: adb/connection.py FEATURE_SINCE_SDK)."""
    home = tmp_path_factory.mktemp("hostctl-home-11")
    cfg = LabConfig(adb_port=adb_port, handsets=1, home=home, profile="miui-12-android-11",
                    modem=False, relay=False, consoles=False, cloud=False, wiretap=False, pcapdroid=False)
    with LabThread(cfg) as lt:
        yield lt


def test_adb_devices_lists_every_handset_with_its_model(lab, adb):
    out = adb("devices", "-l").stdout.decode()
    for h in lab.lab.handsets:
        line = next(l for l in out.splitlines() if l.startswith(h.serial + " "))
        assert " device " in line
        model = h.handset.getprop("ro.product.model").replace(" ", "_")
        assert f"model:{model}" in line


def test_getprop_through_adb_prints_profile_value(lab, adb):
    h = lab.lab.handsets[0]
    r = adb("-s", h.serial, "shell", "getprop", "ro.miui.ui.version.name")
    assert r.returncode == 0
    assert r.stdout.decode().strip() == h.profile.miui_version_name


def test_exit_code_and_stderr_kept_apart(lab11, adb):
    r = adb("-s", lab11.lab.handsets[0].serial, "shell", "echo out; echo err >&2; exit 7")
    assert r.returncode == 7
    assert r.stdout == b"out\n"
    assert r.stderr == b"err\n"


def test_kitkat_shell_is_a_pty_without_exit_status(lab, adb):
    """A 4.4 adbd has no shell_v2: `adb shell` runs on a pty (CRLF, stderr merged) and adb
    exits 0 whatever the command's status (KitKat services.c create_subproc_thread)."""
    r = adb("-s", lab.lab.handsets[0].serial, "shell", "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"out\r\nerr\r\n", b"")


def test_push_pull_5mb_byte_identical(lab, adb, tmp_path):
    serial = lab.lab.handsets[1].serial
    src = tmp_path / "blob"
    src.write_bytes(os.urandom(5 * 1024 * 1024))
    assert adb("-s", serial, "push", str(src), "/sdcard/Download/blob").returncode == 0
    back = tmp_path / "back"
    assert adb("-s", serial, "pull", "/sdcard/Download/blob", str(back)).returncode == 0
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
    # and it really lives in the handset's own root, not anywhere else on the host
    assert (lab.lab.handsets[1].handset.fs.host_path("/sdcard/Download/blob")).stat().st_size == 5 * 1024 * 1024


def test_push_to_read_only_system_fails_like_android(lab, adb, tmp_path):
    src = tmp_path / "x"
    src.write_bytes(b"x")
    r = adb("-s", lab.lab.handsets[0].serial, "push", str(src), "/system/x")
    assert r.returncode != 0
    assert b"Read-only file system" in r.stderr


def _echo_server() -> tuple[socket.socket, threading.Thread]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve():
        conn, _ = srv.accept()
        with conn:
            data = conn.recv(100)
            conn.sendall(b"pong:" + data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t


def test_adb_forward_reaches_a_server_behind_the_handset(lab, adb):
    from tests.conftest import free_port

    h = lab.lab.handsets[0]
    srv, t = _echo_server()
    h.published_ports[8080] = srv.getsockname()[1]   # a service listening on the device's port 8080
    local = free_port()
    try:
        assert adb("-s", h.serial, "forward", f"tcp:{local}", "tcp:8080").returncode == 0
        with socket.create_connection(("127.0.0.1", local), timeout=10) as c:
            c.settimeout(10)
            c.sendall(b"ping")
            assert c.recv(100) == b"pong:ping"
        # a device port nothing listens on is refused, not routed to the host
        assert adb("-s", h.serial, "forward", f"tcp:{free_port()}", "tcp:5037").returncode == 0
    finally:
        adb("-s", h.serial, "forward", "--remove-all")
        h.published_ports.pop(8080, None)
        srv.close()


def test_adbutils_works_unchanged(lab11, adb_port, tmp_path):
    h = lab11.lab.handsets[0]
    d = adbutils.AdbClient(host="127.0.0.1", port=adb_port, socket_timeout=20).device(h.serial)
    assert d.shell("echo hi") == "hi"
    r = d.shell2("echo out; echo err >&2; exit 3", v2=True)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    assert d.prop.model == h.handset.getprop("ro.product.model")
    assert d.prop.get("ro.miui.ui.version.name") == h.profile.miui_version_name
    d.sync.push(b"hello sync", "/data/local/tmp/h.txt")
    assert d.sync.read_bytes("/data/local/tmp/h.txt") == b"hello sync"
    st = d.sync.stat("/data/local/tmp/h.txt")
    assert st.size == 10
    names = [e.path for e in d.sync.list("/data/local/tmp")]
    assert "h.txt" in names
    local = tmp_path / "pulled"
    d.sync.pull("/data/local/tmp/h.txt", local)
    assert local.read_bytes() == b"hello sync"
    srv, t = _echo_server()
    h.published_ports[9000] = srv.getsockname()[1]
    try:
        from tests.conftest import free_port

        lp = free_port()
        d.forward(f"tcp:{lp}", "tcp:9000")
        with socket.create_connection(("127.0.0.1", lp), timeout=10) as c:
            c.settimeout(10)
            c.sendall(b"x")
            assert c.recv(10) == b"pong:x"
    finally:
        h.published_ports.pop(9000, None)
        srv.close()


def test_adb_shell_package_talks_to_adbd_directly(lab):
    from adb_shell.adb_device import AdbDeviceTcp

    h = lab.lab.handsets[1]
    dev = AdbDeviceTcp("127.0.0.1", h.port, default_transport_timeout_s=10)
    dev.connect(rsa_keys=None, auth_timeout_s=5)
    try:
        assert dev.shell("getprop ro.product.model").strip() == h.handset.getprop("ro.product.model")
        assert dev.shell("echo a && echo b") == "a\r\nb\r\n"    # KitKat: shell: is always a pty
    finally:
        dev.close()


def test_frida_through_adb_lists_mms_and_hooks_sendto(lab, adb_port):
    h = lab.lab.handsets[0]
    device = frida.get_device(h.serial, timeout=10)
    # frida >= 15 names an Android app's process by its label; its package is the identifier
    procs = {p.name: p.pid for p in device.enumerate_processes()}
    assert procs.get("Messaging") == h.apps["com.android.mms"].pid
    session = device.attach(procs["Messaging"])
    got = threading.Event()
    messages = []

    def on_message(msg, data):
        messages.append(msg)
        got.set()

    script = session.create_script("""
        const sendto = Process.getModuleByName('libc.so.6').getExportByName('sendto');
        Interceptor.attach(sendto, { onEnter(args) { send({fn: 'sendto', len: args[2].toInt32()}); } });
    """)
    script.on("message", on_message)
    script.load()
    try:
        assert got.wait(10), "no sendto seen inside com.android.mms"
        assert messages[0]["type"] == "send" and messages[0]["payload"]["fn"] == "sendto"
    finally:
        script.unload()
        session.detach()


def test_power_cycle_reconnects_and_keeps_state_reset_restores(lab, adb, adb_port):
    h = lab.lab.handsets[1]
    hs = h.handset
    assert adb("-s", h.serial, "shell", "settings put secure hostctl_probe 42").returncode == 0
    assert adb("-s", h.serial, "shell",
               "content insert --uri content://sms --bind address:s:+8613900000001 --bind body:s:kept --bind type:i:1"
               ).returncode == 0
    lab.call(h.power_off())
    # the host sees it go away
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = {d.serial: d.state for d in adbutils.AdbClient(port=adb_port).list()}
        if states.get(h.serial) != "device":
            break
        time.sleep(0.05)
    else:
        pytest.fail("adb server still shows the powered-off handset as device")
    lab.call(h.power_on())
    wait_for_device(adb_port, h.serial, 15)   # the adb server reconnects by itself
    assert adb("-s", h.serial, "shell", "settings get secure hostctl_probe").stdout.strip() == b"42"
    rows = adb("-s", h.serial, "shell", "content query --uri content://sms --projection body").stdout
    assert b"body=kept" in rows
    default_cm = h.profile.default_settings.get("secure", {}).get("cloud_messaging_on")
    lab.call(h.factory_reset())
    wait_for_device(adb_port, h.serial, 15)
    assert adb("-s", h.serial, "shell", "settings get secure hostctl_probe").stdout.strip() == b"null"
    assert adb("-s", h.serial, "shell", "content query --uri content://sms").stdout.strip() == b"No result found."
    got = adb("-s", h.serial, "shell", "settings get secure cloud_messaging_on").stdout.strip().decode()
    assert got == (str(default_cm) if default_cm is not None else "null")
    assert hs.identity == h.handset.identity   # the SIM and IMEI survive a factory reset


@pytest.mark.parametrize("attack", ["; touch {p}", "`touch {p}`", "$(touch {p})", "&& touch {p}", "| touch {p}",
                                    "'; touch {p}; '", "\"$(touch {p})\""])
def test_shell_injection_never_reaches_the_host(lab, adb, tmp_path, attack):
    sentinel = tmp_path / "pwned"
    r = adb("-s", lab.lab.handsets[0].serial, "shell", "echo hi " + attack.format(p=sentinel))
    assert not sentinel.exists()
    assert r.returncode in (0, 1, 127)


def test_handsets_of_one_lab_and_of_two_labs_have_distinct_identities(lab, adb_port, tmp_path):
    from tests.conftest import free_port
    from hostctl.emulator.lab import LabConfig, LabThread

    mine = [h.handset.identity for h in lab.lab.handsets]
    other_port = free_port()   # another lab on another adb server port (no adb connect needed)
    with LabThread(LabConfig(adb_port=other_port, handsets=24, home=tmp_path, with_apps=False, connect=False)) as lt:
        theirs = [h.handset.identity for h in lt.lab.handsets]
    # within a lab no number, IMEI, IMSI or ICCID repeats (guaranteed: the carrier routes by number)
    values = [v for i in theirs for s in i.sims for v in (s.msisdn, s.imei, s.imsi, s.iccid)]
    assert len(values) == len(set(values)) == 24 * len(theirs[0].sims) * 4
    # and two labs are not copies of each other
    assert mine[0] != theirs[0] and mine[1] != theirs[1]


def test_hostile_bytes_close_only_that_connection(lab, adb, caplog):
    import logging

    h = lab.lab.handsets[0]
    with caplog.at_level(logging.WARNING, logger="hostctl.emulator.adbd"):
        for garbage in (b"\xff" * 64, b"CNXN" + b"\x00" * 20, os.urandom(4096)):
            with socket.create_connection(("127.0.0.1", h.port), timeout=5) as s:
                s.settimeout(5)
                s.sendall(garbage)
                try:
                    rest = s.recv(100)     # the device hangs up
                except ConnectionResetError:
                    rest = b""
                assert rest == b""
    assert any("closing connection" in r.getMessage() for r in caplog.records)
    # the handset is still up for everyone else
    assert adb("-s", h.serial, "shell", "echo", "alive").stdout == b"alive\r\n"   # KitKat pty
