"""The identity strategies each shipped profile offers, through the emulated shell and the real
adb: `service call iphonesubinfo` (codes, argument types, calling package, reply modes), identity
props, `dumpsys iphonesubinfo`, and the adbd banner's features."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from test_shell_kit import make_handset, run

from hostctl.emulator.adb.packets import Command, Packet, PacketReader
from hostctl.emulator.handset import VirtualHandset
from hostctl.emulator.lab import LabConfig, LabThread, adb_binary
from hostctl.emulator.profiles import load_profile
from hostctl.emulator.shell.parcel import ParcelReader, ParcelWriter

UNKNOWN = 'Result: Parcel(Error: 0xffffffb6 "Not a data message")\n'
EMPTY = "Result: Parcel(00000000 00000000   '........')\n"
PKG = "s16 com.android.shell"


# --- an independent decoder of `service call` output -----------------------------------------


def parcel_bytes(text: str) -> bytes:
    """The reply bytes from `Result: Parcel(...)` as printed (words are little-endian int32)."""
    assert text.startswith("Result: Parcel("), text
    body = text[len("Result: Parcel(") :].rstrip(")\n")
    words: list[str] = []
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("0x"):
            line = line.split(": ", 1)[1]
        words += line.split("'", 1)[0].split()
    return b"".join(struct.pack("<I", int(w, 16)) for w in words)


def decode(text: str) -> tuple[int, str | None, bytes]:
    """(exception code, the string that follows, the bytes after it)."""
    data = parcel_bytes(text)
    code, size = struct.unpack_from("<ii", data)
    if size < 0:
        return code, None, data[8:]
    end = 8 + ((size + 1) * 2 + 3) // 4 * 4
    return code, data[8 : 8 + size * 2].decode("utf-16-le"), data[end:]


def value(h: VirtualHandset, call: str) -> str | None:
    code, text, rest = decode(run(h, f"service call iphonesubinfo {call}").out)
    assert code == 0 and rest == b"", call
    return text


def identifiers(h: VirtualHandset) -> set[str]:
    return {v for s in h.identity.sims for v in (s.imei, s.imsi, s.iccid, s.msisdn)}


@pytest.fixture
def handset(tmp_path: Path, request):
    h = make_handset(tmp_path, request.param)
    yield h
    h.close()


def with_profile(tmp_path: Path, name: str, **changes) -> VirtualHandset:
    return VirtualHandset(label="bench-b", profile=replace(load_profile(name), **changes), state_dir=tmp_path / name)


# --- the Parcel reader (how call arguments are read back) --------------------------------------


def test_parcel_reader_misreads_like_libbinder() -> None:
    data = ParcelWriter().write_int64(1).write_string16("pkg").data()
    r = ParcelReader(data)
    assert (r.read_int32(), r.read_string16()) == (1, None)  # high word 0: "", no terminator
    r = ParcelReader(data)
    assert (r.read_int64(), r.read_string16(), r.read_int32(), r.read_string16()) == (
        1,
        "pkg",
        0,
        None,
    )  # past the end: 0 and null
    two_ints = ParcelWriter().write_int32(2).write_int32(0).data()
    assert ParcelReader(two_ints).read_int64() == 2
    assert ParcelReader(two_ints[:4]).read_int64() == 0
    assert ParcelReader(ParcelWriter().write_string16("").data()).read_string16() == ""
    assert ParcelReader(ParcelWriter().write_string16(None).data()).read_string16() is None


# --- android-4.4-dumpsys-only ----------------------------------------------------------------


@pytest.mark.parametrize("handset", ["android-4.4-dumpsys-only"], indirect=True)
def test_kitkat_dumpsys_only(handset) -> None:
    h = handset
    p = h.profile
    assert (p.android_release, p.sdk, p.sim_count, len(h.identity.sims)) == ("4.4.2", 19, 1, 1)
    assert (p.iphonesubinfo, p.identity_props, p.adbd_features) == ({}, {}, ())
    for code in range(1, 31):
        r = run(h, f"service call iphonesubinfo {code}")
        assert (r.out, r.err, r.rc) == (UNKNOWN, "", 0)
    assert run(h, f"service call iphonesubinfo 1 {PKG}").out == UNKNOWN
    props = run(h, "getprop").out
    assert not [v for v in identifiers(h) if v in props]
    assert "imei" not in props and "[ro.product.board]" not in props
    assert "[ro.board.platform]: [mt6592]" in props and "[ro.product.model]: [HM NOTE 1W]" in props
    assert "[gsm.sim.operator.numeric]: [46001]" in props
    sim = h.identity.sims[0]
    assert sim.imsi.startswith("46001")
    r = run(h, "dumpsys iphonesubinfo")
    expected = f"Phone Subscriber Info:\n  Phone Type = GSM\n  Device ID = {sim.imei}\n"
    assert (r.out, r.rc) == (expected, 0)


# --- miui-7-android-5.0 ----------------------------------------------------------------------


@pytest.mark.parametrize("handset", ["miui-7-android-5.0"], indirect=True)
def test_lollipop_codes_and_long_sub_ids(handset) -> None:
    h = handset
    s0, s1 = h.identity.sims
    assert (h.profile.sdk, h.profile.sim_count, h.profile.adbd_features) == (21, 2, ())
    # the plain getters answer for the default subscription, slot 0
    assert [value(h, c) for c in ("1", "5", "9", "11")] == [s0.imei, s0.imsi, s0.iccid, s0.msisdn]
    # *ForSubscriber(long subId): subId = slot + 1, as i64 or as two i32 words (low, high)
    assert value(h, "2 i64 1") == s0.imei
    assert value(h, "2 i64 2") == value(h, "2 i32 2 i32 0") == value(h, "3 i64 2") == s1.imei
    assert [value(h, f"{c} i64 2") for c in (6, 10, 12)] == [s1.imsi, s1.iccid, s1.msisdn]
    # an int where a long is read: not enough data, subId 0 -> AOSP falls back to slot 0
    assert value(h, "2 i32 2") == s0.imei
    assert value(h, "6 i64 3") == s0.imsi  # no such subscription: slot 0 too
    # so the codes folklore gives for 5.0 (6, 10, 12: the *ForSubscriber ones) called without
    # an argument answer for slot 0 too
    assert [value(h, c) for c in ("6", "10", "12")] == [s0.imsi, s0.iccid, s0.msisdn]
    assert value(h, "7") is None and value(h, "4") == "01"  # getGroupIdLevel1, getDeviceSvn
    assert run(h, "service call iphonesubinfo 30").out == UNKNOWN
    out = run(h, "getprop").out
    assert not [v for v in identifiers(h) if v in out]
    assert "[ro.board.platform]: [mt6795]" in out and "[ro.build.version.sdk]: [21]" in out
    assert run(h, "dumpsys iphonesubinfo").out == ""


def test_sub_ids_are_the_profiles_subscription_ids(tmp_path: Path) -> None:
    # the same subscription ids as the sms rows' sim_id and content://telephony/siminfo's _id
    h = with_profile(tmp_path, "miui-7-android-5.0", sim_sub_ids=(3, 7))
    try:
        s0, s1 = h.identity.sims
        assert [h.profile.sub_id(0), h.profile.sub_id(1)] == [3, 7]
        # getDeviceIdForSubscriber(long subId), code 2 on this build
        assert (value(h, "2 i64 3"), value(h, "2 i64 7")) == (s0.imei, s1.imei)
        assert value(h, "2 i64 2") == s0.imei  # slot + 1 is no subscription here: slot 0
        assert h.siminfo_query()[1][1][:1] == (7,)
    finally:
        h.close()


# --- miui-12-android-11 ----------------------------------------------------------------------


@pytest.mark.parametrize("handset", ["miui-12-android-11"], indirect=True)
def test_android_11_needs_the_calling_package(handset) -> None:
    h = handset
    s0, s1 = h.identity.sims
    p = h.profile
    assert (p.sdk, p.sim_count, p.iphonesubinfo_needs_package, p.input_injection_blocked) == (30, 2, True, True)
    assert value(h, f"1 {PKG}") == value(h, f"2 {PKG} s16 feat") == s0.imei
    assert value(h, f"4 i32 1 {PKG}") == value(h, f"5 i32 2 {PKG}") == s1.imei
    assert value(h, f"4 i32 0 {PKG} s16 x") == s0.imei
    assert [value(h, f"{c} {PKG}") for c in (8, 12, 15)] == [s0.imsi, s0.iccid, s0.msisdn]
    assert [value(h, f"{c} i32 2 {PKG}") for c in (10, 14, 16)] == [s1.imsi, s1.iccid, s1.msisdn]
    assert value(h, "28 i32 1") is None  # getIsimImpi(int subId): no package
    assert (
        run(h, f"service call iphonesubinfo 25 i32 1 {PKG}").out == "Result: Parcel(00000000    '....')\n"
    )  # void resetCarrierKeys...
    # no package: SecurityException (EX_SECURITY, message, empty stack-trace header on SDK 30)
    for call, method in (
        ("1", "getDeviceId"),
        ("8", "getSubscriberId"),
        ("4 i32 1", "getDeviceIdForPhone"),
        (f"4 i64 1 {PKG}", "getDeviceIdForPhone"),
    ):  # i64: the s16 misreads
        code, message, rest = decode(run(h, f"service call iphonesubinfo {call}").out)
        assert (code, message, rest) == (-1, f"{method}: Package null does not belong to 2000", b"\0\0\0\0"), call
    assert run(h, "service call iphonesubinfo 34").out == UNKNOWN
    out = run(h, "getprop").out
    assert not [v for v in identifiers(h) if v in out]
    assert "[ro.build.version.release]: [11]" in out and "[ro.miui.ui.version.name]: [V12]" in out
    assert run(h, "dumpsys iphonesubinfo").out == ""
    r = run(h, "input tap 10 10")
    assert r.rc == 1 and "requires INJECT_EVENTS permission" in r.err


# --- miui-12-mtk-dual ------------------------------------------------------------------------


@pytest.mark.parametrize("handset", ["miui-12-mtk-dual"], indirect=True)
def test_mediatek_empty_replies_and_identity_props(handset) -> None:
    h = handset
    s0, s1 = h.identity.sims
    assert (h.profile.sdk, h.profile.sim_count, h.profile.iphonesubinfo_reply) == (29, 2, "empty")
    for call in (
        "1",
        f"1 {PKG}",
        f"3 i32 1 {PKG}",
        f"7 {PKG}",
        f"10 {PKG}",
        f"12 {PKG}",
        f"8 i32 2 {PKG}",
        f"13 i32 2 {PKG}",
    ):
        assert run(h, f"service call iphonesubinfo {call}").out == EMPTY, call
    assert decode(EMPTY) == (0, "", b"")
    assert run(h, "service call iphonesubinfo 31").out == UNKNOWN
    props = h.props()
    assert {k: props[k] for k in h.profile.identity_props} == {
        "ro.ril.miui.imei0": s0.imei,
        "ro.ril.miui.imei1": s1.imei,
        "vendor.ril.data.gsm_imsi": f"{s0.imsi},{s1.imsi}",
        "vendor.ril.iccid.sim1": s0.iccid,
        "vendor.ril.iccid.sim2": s1.iccid,
    }
    assert run(h, "getprop vendor.ril.data.gsm_imsi").out == f"{s0.imsi},{s1.imsi}\n"
    assert run(h, "getprop ro.ril.miui.imei1").out == f"{s1.imei}\n"
    out = run(h, "getprop").out
    assert s0.msisdn not in out and s1.msisdn not in out
    assert "ro.ril.oem.imei" not in out and "persist.radio.imei" not in out
    assert "[ro.board.platform]: [mt6785]" in out
    assert run(h, "dumpsys iphonesubinfo").out == ""


# --- miui-12.5-shell-denied ------------------------------------------------------------------

DENIED_IMEI = "getDeviceId: The user 2000 does not meet the requirements to access device identifiers."


@pytest.mark.parametrize("handset", ["miui-12.5-shell-denied"], indirect=True)
def test_miui_12_5_denies_everything(handset) -> None:
    h = handset
    p = h.profile
    assert (p.sdk, p.miui_version_name, p.miui_version_code, p.iphonesubinfo_reply) == (30, "V125", 11, "denied")
    assert p.product == load_profile("miui-12-android-11").product  # inherited
    out = run(h, f"service call iphonesubinfo 1 {PKG}").out
    assert decode(out) == (-1, DENIED_IMEI, b"\0\0\0\0")
    assert out.startswith("Result: Parcel(\n  0x00000000: ffffffff 00000057 00650067 00440074 '....W...g.e.t.D.'\n")
    assert (
        decode(run(h, f"service call iphonesubinfo 10 i32 2 {PKG}").out)[1]
        == "getSubscriberId: The user 2000 does not meet the requirements to access device "
        "identifiers."
    )
    assert (
        decode(run(h, f"service call iphonesubinfo 15 {PKG}").out)[1]
        == "getLine1Number: Neither user 2000 nor current process has "
        "android.permission.READ_PHONE_STATE, android.permission.READ_SMS, or "
        "android.permission.READ_PHONE_NUMBERS"
    )
    # no strategy yields an identifier: no call, no prop, no dumpsys
    replies = [
        run(h, f"service call iphonesubinfo {c} {a}").out
        for c in range(1, 35)
        for a in ("", PKG, f"i32 1 {PKG}", f"i32 2 {PKG}")
    ]
    assert replies.count(UNKNOWN) == 4  # code 34
    assert {decode(r)[0] for r in replies if r != UNKNOWN} == {-1}
    assert not [v for v in identifiers(h) if any(v in decode(r)[1] for r in replies if r != UNKNOWN)]
    assert not [v for v in identifiers(h) if v in run(h, "getprop").out]
    assert run(h, "dumpsys iphonesubinfo").out == ""


# --- reply modes on other SDKs ---------------------------------------------------------------


def test_denied_and_null_replies_follow_the_sdk(tmp_path: Path) -> None:
    kitkat = with_profile(tmp_path, "miui-v5-2014-07", iphonesubinfo_reply="denied")
    assert decode(run(kitkat, "service call iphonesubinfo 1").out) == (
        -1,
        ("Requires READ_PHONE_STATE: Neither user 2000 nor current process has android.permission.READ_PHONE_STATE."),
        b"",
    )
    pie = with_profile(tmp_path, "miui-v5-2014-07", iphonesubinfo_reply="denied", sdk=28)
    assert decode(run(pie, "service call iphonesubinfo 3").out)[2] == b"\0\0\0\0"
    null = with_profile(tmp_path, "miui-12-android-11", iphonesubinfo_reply="null")
    assert run(null, f"service call iphonesubinfo 1 {PKG}").out == "Result: Parcel(00000000 ffffffff   '........')\n"
    # the package check comes first, whatever the reply mode
    assert decode(run(null, "service call iphonesubinfo 1").out)[0] == -1


def test_su_runs_as_root_only_where_the_profile_has_it(tmp_path: Path) -> None:
    rooted = with_profile(tmp_path, "miui-v5-2014-07", su=True)
    # toybox's id in the sandbox's root shell (Android's adds " context=u:r:su:s0": SELinux)
    assert run(rooted, "su -c id").out == "uid=0(root) gid=0(root) groups=0(root)\n"
    assert run(rooted, "su 0 -c 'id -u; whoami'; id -u").out == "0\nroot\n2000\n"
    assert run(rooted, "echo id | su").out.startswith("uid=0(root)")
    assert (run(rooted, "which su").out, run(rooted, "command -v su").out) == ("/system/xbin/su\n", "/system/xbin/su\n")
    plain = make_handset(tmp_path / "plain")
    r = run(plain, "su -c id")
    assert (r.out, r.err, r.rc) == ("", "/system/bin/sh: su: inaccessible or not found\n", 127)
    assert run(plain, "which su").rc == 1 and run(plain, "command -v su").rc == 1


# --- through the real adb ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def adb_lab(adb_port, tmp_path_factory):
    """One handset per profile under test, each a lab (no apps) on the worker's adb server."""
    labs = {}
    try:
        for name in ("android-4.4-dumpsys-only", "miui-12-android-11"):
            home = tmp_path_factory.mktemp(f"home-{name}")
            labs[name] = LabThread(
                LabConfig(adb_port=adb_port, handsets=1, home=home, profile=name, with_apps=False)
            ).start()
        yield {name: lt.lab.handsets[0] for name, lt in labs.items()}
    finally:
        for lt in labs.values():
            lt.stop()


def _adb(adb_port: int, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(adb_port))
    return subprocess.run([adb_binary(), *args], env=env, input=b"", capture_output=True, timeout=60, check=False)


def _banner(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(Packet(Command.CNXN, 0x01000001, 256 * 1024, b"host::features=shell_v2,cmd\0").encode())
        reader = PacketReader()
        reader.max_payload = 1 << 20
        while (pkt := reader.next_packet()) is None:
            reader.feed(s.recv(4096))
    assert pkt.command is Command.CNXN
    return pkt.payload.decode()


def test_kitkat_adbd_has_no_features_and_shell_is_v1(adb_lab, adb_port) -> None:
    lh = adb_lab["android-4.4-dumpsys-only"]
    banner = _banner(lh.port)
    assert banner == (
        "device::ro.product.name=lcsh92_wet_jb9;ro.product.model=HM NOTE 1W;ro.product.device=lcsh92_wet_jb9;"
    )
    r = _adb(adb_port, "-s", lh.serial, "features")
    assert (r.returncode, r.stdout) == (0, b"")
    # v1: one pty for every shell (CRLF), stderr merged into it, no exit status
    r = _adb(adb_port, "-s", lh.serial, "shell", "echo hi")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"hi\r\n", b"")
    r = _adb(adb_port, "-s", lh.serial, "shell", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout) == (0, b"out\r\nerr\r\n")
    imei = lh.handset.identity.sims[0].imei
    r = _adb(adb_port, "-s", lh.serial, "shell", "dumpsys iphonesubinfo")
    assert r.stdout == f"Phone Subscriber Info:\r\n  Phone Type = GSM\r\n  Device ID = {imei}\r\n".encode()
    r = _adb(adb_port, "-s", lh.serial, "shell", "service call iphonesubinfo 1")
    assert r.stdout == UNKNOWN.replace("\n", "\r\n").encode()


def test_android_11_handset_through_adb(adb_lab, adb_port) -> None:
    lh = adb_lab["miui-12-android-11"]
    assert _banner(lh.port).endswith(";features=shell_v2,cmd,stat_v2,ls_v2,fixed_push_mkdir,sendrecv_v2")
    r = _adb(adb_port, "-s", lh.serial, "features")
    assert r.stdout.decode().split() == list(lh.profile.adbd_features)
    s1 = lh.handset.identity.sims[1]
    r = _adb(adb_port, "-s", lh.serial, "shell", f"service call iphonesubinfo 4 i32 1 {PKG}")
    assert r.returncode == 0 and decode(r.stdout.decode()) == (0, s1.imei, b"")
    r = _adb(adb_port, "-s", lh.serial, "shell", "service call iphonesubinfo 4 i32 1")
    assert decode(r.stdout.decode())[:2] == (-1, "getDeviceIdForPhone: Package null does not belong to 2000")
    r = _adb(adb_port, "-s", lh.serial, "shell", "input tap 1 1; exit 5")
    assert r.returncode == 5 and b"INJECT_EVENTS" in r.stderr  # shell_v2: status and stderr
