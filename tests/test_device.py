"""The device layer (hostctl.device) against emulated handsets through the real adb server."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from hostctl.device import (
    AdbAddress,
    AdbServerError,
    CommandError,
    DeviceGoneError,
    DeviceNotFoundError,
    DeviceStateError,
    DeviceTimeoutError,
    Handset,
    InputInjection,
    RootStatus,
    list_devices,
    parse_getprop,
    select_handset,
    servers_from_env,
)
from hostctl.emulator.lab import LabConfig, LabThread
from tests.conftest import free_port


@pytest.fixture(scope="module")
def server(adb_port):
    return AdbAddress("127.0.0.1", adb_port)


@pytest.fixture(scope="module")
def solo(adb_port, tmp_path_factory):
    """A one-handset lab without apps, on its own adb server, that tests may power off."""
    port = free_port()
    home = tmp_path_factory.mktemp("solo-home")
    with LabThread(LabConfig(adb_port=port, handsets=1, home=home, with_apps=False)) as lt:
        yield lt


def test_address_parsing():
    assert AdbAddress.parse("10.1.2.3:5038") == AdbAddress("10.1.2.3", 5038)
    assert AdbAddress.parse("5039") == AdbAddress("127.0.0.1", 5039)
    assert AdbAddress.parse("tcp:127.0.0.2:5040") == AdbAddress("127.0.0.2", 5040)
    assert AdbAddress.parse("[::1]:5041") == AdbAddress("::1", 5041)
    assert str(AdbAddress("::1", 5041)) == "[::1]:5041"
    for bad in ("", "host:", "host:port", "1.2.3.4:70000", ":5037"):
        with pytest.raises(ValueError, match="adb server address"):
            AdbAddress.parse(bad)
    assert servers_from_env({"ANDROID_ADB_SERVER_PORT": "6000"}) == [AdbAddress("127.0.0.1", 6000)]
    assert servers_from_env({"ADB_SERVER_SOCKET": "tcp:127.0.0.3:6001", "ANDROID_ADB_SERVER_PORT": "6000"}) == [
        AdbAddress("127.0.0.3", 6001)
    ]


def test_parse_getprop_keeps_multiline_values():
    text = "[a.b]: [1]\r\n[multi]: [line one\nline two]\n[empty]: []\n"
    assert parse_getprop(text) == {"a.b": "1", "multi": "line one\nline two", "empty": ""}


def test_lists_lab_handsets_with_transport_ids(lab, server):
    entries = {e.serial: e for e in list_devices([server])}
    for lh in lab.lab.handsets:
        e = entries[lh.serial]
        assert e.state == "device" and e.transport_id and e.model == "HM_1S" and e.server == server


@pytest.fixture(scope="module")
def lab11(adb_port, tmp_path_factory):
    """An Android 11 handset, whose adbd advertises shell_v2 (a 4.4 adbd advertises nothing)."""
    home = tmp_path_factory.mktemp("hostctl-home-11")
    cfg = LabConfig(adb_port=adb_port, handsets=1, home=home, profile="miui-12-android-11",
                    modem=False, relay=False, consoles=False, cloud=False, wiretap=False, pcapdroid=False)
    with LabThread(cfg) as lt:
        yield lt


def test_v1_shell_of_a_kitkat_handset_keeps_the_exit_code_through_the_marker(lab, server):
    h = select_handset(lab.lab.handsets[0].serial, [server])
    assert h.features() == frozenset()          # KitKat's adbd: no features in its banner
    r = h.shell("echo out; echo err >&2; exit 7")
    assert (r.exit_code, r.stdout, r.stderr) == (7, "out\nerr\n", "")   # one pty: stderr merged


def test_shell_v2_exit_code_and_separate_streams(lab11, server):
    h = select_handset(lab11.lab.handsets[0].serial, [server])
    assert "shell_v2" in h.features()
    r = h.shell("echo out; echo err >&2; exit 7")
    assert (r.exit_code, r.stdout, r.stderr) == (7, "out\n", "err\n")
    with pytest.raises(CommandError) as info:
        h.shell("ls /nonexistent", check=True)
    e = info.value
    assert e.serial == h.serial and e.command == "ls /nonexistent" and e.exit_code == 1
    assert "No such file" in e.output


def test_batch_runs_commands_in_one_round_trip_with_own_exit_codes(lab, server):
    h = Handset(lab.lab.handsets[1].serial, server)
    results = h.batch(["echo a", "ls /nonexistent", "getprop ro.build.version.sdk", "echo 'x\ny'"])
    assert [r.exit_code for r in results] == [0, 1, 0, 0]
    assert results[0].stdout == "a\n" and "No such file" in results[1].stdout
    assert results[2].stdout.strip() == "19" and results[3].stdout == "x\ny\n"


def test_timeout_is_typed_and_keeps_partial_output(lab, server):
    h = Handset(lab.lab.handsets[0].serial, server)
    start = time.monotonic()
    with pytest.raises(DeviceTimeoutError) as info:
        h.shell("echo started; sleep 30", timeout=1.0)
    assert time.monotonic() - start < 10  # the deadline held; it did not wait for sleep
    e = info.value
    assert e.timeout == 1.0 and e.command == "echo started; sleep 30" and "started" in e.output
    assert h.shell("echo still usable").stdout == "still usable\n"


def test_unknown_serial_and_selection_rules(lab, server):
    with pytest.raises(DeviceNotFoundError, match="not found on adb server"):
        select_handset("nope:1", [server])
    with pytest.raises(DeviceNotFoundError, match="more than one device"):
        select_handset(None, [server])
    with pytest.raises(DeviceNotFoundError, match="not found"):
        Handset("127.0.0.1:1", server).shell("echo hi")


def test_dead_server_is_a_clear_error(server):
    dead = AdbAddress("127.0.0.1", free_port())
    with pytest.raises(AdbServerError, match=rf"no adb server answering at {dead}.*refused.*adb start-server"):
        list_devices([dead])
    with pytest.raises(AdbServerError):
        Handset("any", dead, timeout=2).shell("echo hi")


def test_info_reports_profile_values_without_branching(lab, server):
    lh = lab.lab.handsets[0]
    info = Handset(lh.serial, server).info()
    p = lh.profile
    assert (info.model, info.market_name, info.miui_version_name, info.miui_version_code) == (
        p.product.model,
        p.product.marketname,
        p.miui_version_name,
        p.miui_version_code,
    )
    assert (info.android_release, info.sdk, info.build_fingerprint) == (p.android_release, p.sdk, p.build_fingerprint)
    assert info.root is RootStatus.NONE and info.input_injection is InputInjection.ALLOWED
    assert info.emulated is True and "ro.hostctl.emulated" in info.emulated_evidence
    assert info.to_json()["root"] == "none"


def test_single_device_is_chosen_without_serial(solo):
    server = AdbAddress("127.0.0.1", solo.config.adb_port)
    h = select_handset(None, [server])
    assert h.serial == solo.lab.handsets[0].serial


def test_unplugging_mid_command_is_a_typed_error_within_the_timeout(solo):
    lh = solo.lab.handsets[0]
    h = Handset(lh.serial, AdbAddress("127.0.0.1", solo.config.adb_port))
    assert h.shell("echo up").ok
    timer = threading.Timer(0.5, lambda: solo.call(lh.power_off()))
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises((DeviceGoneError, DeviceTimeoutError)) as info:
            h.shell("echo begun; sleep 60", timeout=5)
        assert time.monotonic() - start < 5
        assert isinstance(info.value, DeviceGoneError), info.value
        assert info.value.serial == lh.serial and "begun" in info.value.output
        with pytest.raises((DeviceNotFoundError, DeviceStateError)) as gone:  # adb keeps it "offline"
            h.shell("echo gone")
        assert gone.value.serial == lh.serial
    finally:
        timer.join()
        solo.call(lh.power_on(with_apps=False))
        from hostctl.emulator.lab import wait_for_device

        solo.lab._adb_connect(lh)
        wait_for_device(solo.config.adb_port, lh.serial, 20)
    assert h.shell("echo back").stdout == "back\n"


def test_transport_id_falls_back_to_the_serial(lab, server):
    lh = lab.lab.handsets[0]
    h = Handset(lh.serial, server, transport_id=9999)  # as after a re-attach
    assert h.shell("echo hi").stdout == "hi\n"
    assert h.shell("echo again").stdout == "again\n"


@pytest.fixture
def silent_server():
    """A TCP port that accepts and never answers: a hung adb server."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield AdbAddress("127.0.0.1", sock.getsockname()[1])
    sock.close()


def test_a_hung_server_gives_a_timeout_within_the_call_deadline(silent_server):
    h = Handset("dev1", silent_server, timeout=30)
    start = time.monotonic()
    with pytest.raises(AdbServerError) as info:
        h.shell("echo hi", timeout=1)
    assert info.value.timed_out and time.monotonic() - start < 3
    with pytest.raises(AdbServerError, match="timed out"):
        list_devices([silent_server], timeout=0.5)


def test_commands_adb_cannot_carry_are_refused_up_front(lab, server):
    h = Handset(lab.lab.handsets[0].serial, server)
    with pytest.raises(ValueError, match="65535"):
        h.shell("echo " + "x" * 70000)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        h.shell("echo \udcff")
    with pytest.raises(ValueError, match="timeout"):
        h.shell("echo", timeout=float("nan"))
