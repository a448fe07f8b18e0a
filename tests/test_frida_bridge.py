"""The join rewriter: D-Bus (un)marshalling, WebSocket re-framing and the Join rewrite, as
transcripts (bytes in, bytes out), plus one real agent joining a real portal through the proxy."""

from __future__ import annotations

import struct

import pytest

from hostctl.emulator.frida_bridge import (
    AppIdentity,
    DBusError,
    JoinRewriter,
    marshal_message,
    split_signature,
    unmarshal_message,
)

EXE = "/var/lib/lab/handsets/h1/apps/bin/com.android.mms"
PID = 4242
ME = AppIdentity(pid=PID, executable=EXE, package="com.android.mms", label="Messaging")
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def lookup(pid, exe):
    return ME if (pid, exe) == (ME.pid, ME.executable) else None


def dbus_message(
    member, body_sig, body, *, endian="<", path="/re/frida/PortalSession", iface="re.frida.PortalSession17", serial=7
) -> bytes:
    """A method call marshalled by hand (D-Bus specification, "Message Format"), independent of
    the module's writer: header fields a(yv), padded to 8, then the body."""
    from hostctl.emulator import frida_bridge as fb

    fields = [(1, ("o", path)), (2, ("s", iface)), (3, ("s", member)), (8, ("g", body_sig))]
    w = fb._Writer(endian, 12)
    w.write("a(yv)", fields)
    w.align(8)
    head = (b"l" if endian == "<" else b"B") + bytes([1, 0, 1])
    bw = fb._Writer(endian, 12 + len(w.out))
    for t, v in zip(split_signature(body_sig), body):
        bw.write(t, v)
    return head + struct.pack(endian + "II", len(bw.out), serial) + bytes(w.out) + bytes(bw.out)


JOIN_SIG = "(ssua{sv})ua(s)a{sv}"


def join_body(identifier=EXE, name="com.android.mms", pid=PID):
    params = [("arch", ("s", "x64")), ("system", ("a{sv}", [("os", ("a{sv}", [("id", ("s", "linux"))]))]))]
    return ((identifier, name, pid, params), 0, [("sess1",)], [("acl", ("as", ["a", "b"]))])


def ws(payload: bytes, *, opcode=2, fin=True, key=b"\x01\x02\x03\x04") -> bytes:
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def unframe(data: bytes) -> tuple[bytes, list[int]]:
    """Server-side reading of client frames: the payload stream and the opcodes seen."""
    out, ops, i = bytearray(), [], 0
    while i < len(data):
        op, n = data[i] & 0x0F, data[i + 1] & 0x7F
        assert data[i + 1] & 0x80, "client frames must be masked (RFC 6455 5.3)"
        j = i + 2
        if n == 126:
            n, j = struct.unpack(">H", data[j : j + 2])[0], j + 2
        key = data[j : j + 4]
        payload = bytes(b ^ key[k % 4] for k, b in enumerate(data[j + 4 : j + 4 + n]))
        ops.append(op)
        if op in (0, 2):
            out += payload
        i = j + 4 + n
    return bytes(out), ops


def test_marshalling_round_trips_with_alignment():
    for endian in "<>":
        data = dbus_message("Join", JOIN_SIG, join_body(), endian=endian)
        msg = unmarshal_message(data)
        assert msg.member == "Join" and msg.body == join_body()
        assert marshal_message(msg, msg.body) == data


@pytest.mark.parametrize("endian", "<>")
def test_join_is_rewritten_and_padding_recomputed(endian):
    join = dbus_message("Join", JOIN_SIG, join_body(), endian=endian)
    r = JoinRewriter(lookup)
    out = r.receive(UPGRADE) + r.receive(ws(join))
    assert out.startswith(UPGRADE)
    stream, ops = unframe(out[len(UPGRADE) :])
    msg = unmarshal_message(stream)
    (ident, name, pid, params), state, sessions, options = msg.body
    assert (ident, name, pid) == ("com.android.mms", "Messaging", PID)
    # everything else is as the agent sent it, re-marshalled at its new alignment
    assert (params, state, sessions, options) == join_body()[0][3:] + join_body()[1:]
    assert stream == dbus_message("Join", JOIN_SIG, join_body("com.android.mms", "Messaging"), endian=endian)
    assert r.rewritten == (EXE, "com.android.mms")
    # after the Join, frames go on byte for byte
    later = ws(b"anything at all", key=b"\x09\x09\x09\x09")
    assert r.receive(later) == later


def test_byte_by_byte_and_split_across_frames_gives_the_same_stream():
    auth = dbus_message(
        "Authenticate",
        "s",
        ("token",),
        path="/re/frida/AuthenticationService",
        iface="re.frida.AuthenticationService17",
        serial=1,
    )
    join = dbus_message("Join", JOIN_SIG, join_body(), serial=2)
    stream = auth + join
    # the D-Bus stream cut at odd places into frames, one fragmented, a ping in between
    wire = (
        UPGRADE
        + ws(stream[:5])
        + ws(stream[5:40], fin=False)
        + ws(b"hi", opcode=9)
        + ws(stream[40:90], opcode=0, fin=True)
        + ws(stream[90:])
    )
    r = JoinRewriter(lookup)
    out = b"".join(r.receive(wire[i : i + 1]) for i in range(len(wire)))
    got, ops = unframe(out[len(UPGRADE) :])
    assert 9 in ops  # the ping went on
    assert got == auth + dbus_message("Join", JOIN_SIG, join_body("com.android.mms", "Messaging"), serial=2)


def test_unregistered_process_joins_unchanged():
    other = dbus_message("Join", JOIN_SIG, join_body(pid=999))
    wrong_exe = dbus_message("Join", JOIN_SIG, join_body(identifier="/usr/bin/python3"))
    for join in (other, wrong_exe):
        r = JoinRewriter(lookup)
        out = r.receive(UPGRADE + ws(join))
        assert unframe(out[len(UPGRADE) :])[0] == join and r.rewritten is None


def test_other_calls_named_join_are_left_alone():
    bus = dbus_message("Join", JOIN_SIG, join_body(), path="/re/frida/BusSession", iface="re.frida.BusSession17")
    r = JoinRewriter(lookup)
    assert unframe(r.receive(UPGRADE + ws(bus))[len(UPGRADE) :])[0] == bus


def test_undecodable_stream_is_relayed_as_is():
    r = JoinRewriter(lookup)
    junk = ws(b"\x00not d-bus at all, sixteen bytes+")
    out = r.receive(UPGRADE + junk)
    assert r.gave_up and "D-Bus" in r.gave_up
    assert out.startswith(UPGRADE) and unframe(out[len(UPGRADE) :])[0] == unframe(junk)[0]
    assert r.receive(b"more") == b"more"


def test_bad_utf8_in_a_string_is_relayed_as_is():
    join = bytearray(dbus_message("Join", JOIN_SIG, join_body()))
    at = bytes(join).index(EXE.encode())
    join[at] = 0xFF
    r = JoinRewriter(lookup)
    out = r.receive(UPGRADE + ws(bytes(join)))
    assert r.gave_up and r.rewritten is None
    assert unframe(out[len(UPGRADE) :])[0] == bytes(join)


def test_not_a_websocket_upgrade_is_relayed_as_is():
    r = JoinRewriter(lookup)
    head = b"POST /x HTTP/1.1\r\n\r\nbody"
    assert r.receive(head) == head and r.gave_up


def test_oversized_message_is_refused_by_the_bound():
    data = bytearray(dbus_message("Join", JOIN_SIG, join_body()))
    data[4:8] = struct.pack("<I", 64 * 1024 * 1024)  # claims a 64 MiB body
    r = JoinRewriter(lookup)
    out = r.receive(UPGRADE + ws(bytes(data)))
    assert r.gave_up and "bound" in r.gave_up and r.rewritten is None
    assert unframe(out[len(UPGRADE) :])[0] == bytes(data)


def test_malformed_values_raise_dbus_error():
    good = dbus_message("Join", JOIN_SIG, join_body())
    with pytest.raises(DBusError):
        unmarshal_message(good[:-3])
    with pytest.raises(DBusError):
        split_signature("a")
    with pytest.raises(DBusError):
        split_signature("(s")


def test_a_real_agent_joins_through_the_proxy_as_its_package(tmp_path):
    """Real frida: an app process joins the portal through the proxy; a controller on the
    control endpoint sees identifier, name and process name as on an Android handset."""
    import frida

    from hostctl.emulator.apps import AppProcess, HandsetPortal

    with (
        HandsetPortal(name="bridge-test") as portal,
        AppProcess(package="com.android.mms", portal=portal, state_dir=tmp_path, label="Messaging") as app,
    ):
        device = frida.get_device_manager().add_remote_device(portal.control_address)
        try:
            apps = device.enumerate_applications()
            assert [(a.identifier, a.name, a.pid) for a in apps] == [("com.android.mms", "Messaging", app.pid)]
            assert [(p.name, p.pid) for p in device.enumerate_processes()] == [("Messaging", app.pid)]
            assert portal.members() == {app.pid: "com.android.mms"}
            session = device.attach(app.pid)
            script = session.create_script("rpc.exports = { pid: () => Process.id };")
            script.load()
            assert script.exports_sync.pid() == app.pid
            session.detach()
        finally:
            frida.get_device_manager().remove_remote_device(portal.control_address)
