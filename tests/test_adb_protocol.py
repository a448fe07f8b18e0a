"""The ADB protocol core driven as a transcript: packets in, exact packets out, no sockets."""

from __future__ import annotations

import hashlib
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostctl.emulator.adb import auth, shellv2, sync
from hostctl.emulator.adb.connection import (
    AuthKeyOffered,
    Connected,
    DataReceived,
    DeviceConnection,
    OpenRequested,
    StreamClosed,
    StreamOpened,
    make_banner,
)
from hostctl.emulator.adb.packets import (
    HEADER,
    Command,
    Packet,
    PacketReader,
    ProtocolError,
)
from hostctl.emulator.adb.services import (
    ExecService,
    FramebufferService,
    RebootService,
    RemountService,
    ReverseService,
    RootService,
    ShellService,
    SyncService,
    TcpService,
    UnknownService,
    parse_service,
)

BANNER = make_banner({"ro.product.name": "cactus", "ro.product.model": "HM 1S", "ro.product.device": "armani"})
HOST_FEATURES = b"host::features=shell_v2,cmd,stat_v2,ls_v2,fixed_push_mkdir,sendrecv_v2"


def pk(cmd: Command, a0: int, a1: int, payload: bytes = b"") -> bytes:
    return Packet(cmd, a0, a1, payload).encode()


def decode_all(data: bytes) -> list[Packet]:
    reader = PacketReader()
    reader.max_payload = 1 << 20
    reader.feed(data)
    out = []
    while (p := reader.next_packet()) is not None:
        out.append(p)
    assert reader.buffered == 0
    return out


def connect(conn: DeviceConnection, features: bytes = HOST_FEATURES, maxdata: int = 1 << 20) -> list[Packet]:
    conn.receive_data(pk(Command.CNXN, 0x01000001, maxdata, features))
    return decode_all(conn.data_to_send())


def open_stream(conn: DeviceConnection, remote: int, service: bytes, window: int = 0) -> int:
    conn.events()  # drop earlier events (Connected, ...)
    conn.receive_data(pk(Command.OPEN, remote, window, service + b"\0"))
    (ev,) = conn.events()
    assert isinstance(ev, OpenRequested) and ev.service == service.decode()
    conn.accept(ev.stream_id)
    return ev.stream_id


def test_header_layout_and_magic():
    raw = Packet(Command.OKAY, 1, 2).encode()
    assert raw == struct.pack("<6I", 0x59414B4F, 1, 2, 0, 0, 0x59414B4F ^ 0xFFFFFFFF)


def test_banner_strips_separators_and_lists_features():
    b = make_banner({"ro.product.model": "a:b;c=d"}, ("shell_v2", "cmd"))
    assert b == "device::ro.product.model=abcd;features=shell_v2,cmd"


def test_cnxn_answered_with_banner_and_min_maxdata():
    conn = DeviceConnection(BANNER)
    (reply,) = connect(conn, maxdata=4096)
    assert reply.command is Command.CNXN
    assert reply.arg0 == 0x01000001 and reply.arg1 == 1 << 20
    assert reply.payload == BANNER.encode()
    (ev,) = conn.events()
    assert isinstance(ev, Connected) and ev.max_payload == 4096 and "shell_v2" in ev.host_features
    assert not conn.delayed_ack  # the host did not advertise it


def test_packets_before_cnxn_are_a_remote_error():
    conn = DeviceConnection(BANNER)
    with pytest.raises(ProtocolError) as info:
        conn.receive_data(pk(Command.OPEN, 1, 0, b"shell:\0"))
    assert info.value.side == "remote"
    with pytest.raises(ProtocolError):
        conn.receive_data(b"more")  # a failed connection stays failed


def test_open_write_okay_close_transcript():
    conn = DeviceConnection(BANNER)
    connect(conn)
    sid = open_stream(conn, 7, b"shell:echo hi")
    assert decode_all(conn.data_to_send()) == [Packet(Command.OKAY, sid, 7)]
    conn.receive_data(pk(Command.WRTE, 7, sid, b"stdin"))
    assert conn.events() == [DataReceived(sid, b"stdin")]
    assert conn.data_to_send() == b""          # no OKAY until the driver consumed it
    conn.ack(sid, 5)
    assert decode_all(conn.data_to_send()) == [Packet(Command.OKAY, sid, 7)]
    conn.write(sid, b"hi\n")
    conn.close(sid)
    # the CLSE waits behind the WRTE, which waits for nothing: both go now, in order
    assert decode_all(conn.data_to_send()) == [Packet(Command.WRTE, sid, 7, b"hi\n"), Packet(Command.CLSE, sid, 7)]
    conn.receive_data(pk(Command.OKAY, 7, sid))  # late OKAY for a closed stream: ignored
    assert conn.data_to_send() == b""


def test_one_wrte_in_flight_and_maxdata_respected():
    conn = DeviceConnection(BANNER)
    connect(conn, maxdata=1000)
    sid = open_stream(conn, 3, b"sync:")
    conn.data_to_send()
    conn.write(sid, bytes(2500))
    sent = decode_all(conn.data_to_send())
    assert [(p.command, len(p.payload)) for p in sent] == [(Command.WRTE, 1000)]
    conn.write(sid, b"x")                     # queued behind the in-flight WRTE
    assert conn.data_to_send() == b""
    conn.receive_data(pk(Command.OKAY, 3, sid))
    assert [len(p.payload) for p in decode_all(conn.data_to_send())] == [1000]
    conn.receive_data(pk(Command.OKAY, 3, sid))
    assert [len(p.payload) for p in decode_all(conn.data_to_send())] == [501]
    assert conn.pending(sid) == 0


def test_second_wrte_before_our_okay_is_a_remote_error():
    conn = DeviceConnection(BANNER)
    connect(conn)
    sid = open_stream(conn, 3, b"sync:")
    conn.receive_data(pk(Command.WRTE, 3, sid, b"a"))
    with pytest.raises(ProtocolError, match="before our OKAY"):
        conn.receive_data(pk(Command.WRTE, 3, sid, b"b"))


def test_delayed_ack_only_when_both_advertise():
    # host advertises, device does not -> classic
    conn = DeviceConnection(BANNER, features=("shell_v2",))
    connect(conn, features=HOST_FEATURES + b",delayed_ack")
    assert not conn.delayed_ack
    sid = open_stream(conn, 5, b"sync:", window=4096)
    assert decode_all(conn.data_to_send()) == [Packet(Command.OKAY, sid, 5)]
    # a windowed OKAY on a classic stream is a mismatch: protocol fault
    with pytest.raises(ProtocolError, match="delayed_ack was not negotiated"):
        conn.receive_data(pk(Command.OKAY, 5, sid, struct.pack("<I", 10)))


def test_delayed_ack_windows():
    conn = DeviceConnection(BANNER, recv_window=3000)
    connect(conn, features=HOST_FEATURES + b",delayed_ack", maxdata=1000)
    assert conn.delayed_ack
    sid = open_stream(conn, 5, b"sync:", window=2500)
    # our OKAY to the OPEN carries our receive window
    assert decode_all(conn.data_to_send()) == [Packet(Command.OKAY, sid, 5, struct.pack("<I", 3000))]
    conn.write(sid, bytes(4000))
    # several WRTEs in flight, none over maxdata, never more than the host's window
    assert [len(p.payload) for p in decode_all(conn.data_to_send())] == [1000, 1000, 500]
    conn.receive_data(pk(Command.OKAY, 5, sid, struct.pack("<I", 1200)))
    assert [len(p.payload) for p in decode_all(conn.data_to_send())] == [1000, 200]
    conn.events()
    # host -> device: the host may fill our window; one byte more is a fault
    conn.receive_data(pk(Command.WRTE, 5, sid, bytes(1000)) + pk(Command.WRTE, 5, sid, bytes(1000)))
    assert [type(e) for e in conn.events()] == [DataReceived, DataReceived]
    conn.ack(sid, 1000)
    assert decode_all(conn.data_to_send()) == [Packet(Command.OKAY, sid, 5, struct.pack("<I", 1000))]
    conn.receive_data(pk(Command.WRTE, 5, sid, bytes(1000)) + pk(Command.WRTE, 5, sid, bytes(1000)))
    with pytest.raises(ProtocolError, match="exceeds window 0"):
        conn.receive_data(pk(Command.WRTE, 5, sid, b"x"))


def test_delayed_ack_okay_must_carry_count():
    conn = DeviceConnection(BANNER)
    connect(conn, features=HOST_FEATURES + b",delayed_ack")
    sid = open_stream(conn, 5, b"sync:", window=100)
    with pytest.raises(ProtocolError, match="4 bytes"):
        conn.receive_data(pk(Command.OKAY, 5, sid))


def test_refuse_sends_clse_with_local_id_zero_and_unknown_clse_ignored():
    conn = DeviceConnection(BANNER)
    connect(conn)
    conn.receive_data(pk(Command.OPEN, 9, 0, b"jdwp:1\0"))
    ev = conn.events()[-1]
    conn.refuse(ev.stream_id)
    assert decode_all(conn.data_to_send()) == [Packet(Command.CLSE, 0, 9)]
    conn.receive_data(pk(Command.CLSE, 9, 1234))
    assert conn.events() == [] and conn.data_to_send() == b""


def test_host_close_ends_stream_and_drops_queued_data():
    conn = DeviceConnection(BANNER)
    connect(conn, maxdata=256)
    sid = open_stream(conn, 4, b"shell:x")
    conn.data_to_send()
    conn.write(sid, bytes(1000))
    conn.receive_data(pk(Command.CLSE, 4, sid))
    assert StreamClosed(sid) in conn.events()
    assert not conn.is_open(sid)


def test_reconnect_cnxn_closes_all_streams():
    conn = DeviceConnection(BANNER)
    connect(conn)
    sid = open_stream(conn, 4, b"shell:x")
    connect(conn)
    assert StreamClosed(sid) in conn.events()


def test_old_protocol_version_gets_checksums():
    conn = DeviceConnection(BANNER)
    conn.receive_data(pk(Command.CNXN, 0x01000000, 4096, HOST_FEATURES))
    raw = conn.data_to_send()
    _, _, _, length, check, _ = HEADER.unpack_from(raw)
    assert check == sum(raw[24 : 24 + length])


def _rsa_key(bits: int = 1024, seed: int = 1) -> tuple[int, int, int]:
    rnd = random.Random(seed)

    def is_probable_prime(n: int) -> bool:
        if n < 4:
            return n in (2, 3)
        d, r = n - 1, 0
        while d % 2 == 0:
            d //= 2
            r += 1
        for _ in range(20):
            a = rnd.randrange(2, n - 2)
            x = pow(a, d, n)
            if x in (1, n - 1):
                continue
            for _ in range(r - 1):
                x = pow(x, 2, n)
                if x == n - 1:
                    break
            else:
                return False
        return True

    def prime(b: int) -> int:
        while True:
            c = rnd.getrandbits(b) | (1 << (b - 1)) | 1
            if is_probable_prime(c):
                return c

    e = 65537
    while True:
        p, q = prime(bits // 2), prime(bits // 2)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e:
            return p * q, e, pow(e, -1, phi)


def _sign(n: int, d: int, token: bytes) -> bytes:
    k = (n.bit_length() + 7) // 8
    digest_info = bytes.fromhex("3021300906052b0e03021a05000414") + token
    em = b"\x00\x01" + b"\xff" * (k - 3 - len(digest_info)) + b"\x00" + digest_info
    return pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big")


def test_auth_token_signature_and_new_key_prompt():
    n, e, d = _rsa_key()
    keys = auth.KeyStore(accept_new=False)
    conn = DeviceConnection(BANNER, auth_keys=keys)
    (tok,) = connect(conn)
    assert tok.command is Command.AUTH and tok.arg0 == auth.AUTH_TOKEN and len(tok.payload) == 20
    # unknown key, person says no: stays unauthorised (no CNXN)
    blob = auth.encode_public_key(n, e)
    conn.receive_data(pk(Command.AUTH, auth.AUTH_RSAPUBLICKEY, 0, blob))
    assert conn.events() == [AuthKeyOffered(blob.rstrip(b"\0"), False)]
    assert conn.data_to_send() == b""
    # a wrong signature gets a fresh token
    conn.receive_data(pk(Command.AUTH, auth.AUTH_SIGNATURE, 0, bytes(128)))
    (tok2,) = decode_all(conn.data_to_send())
    assert tok2.arg0 == auth.AUTH_TOKEN and tok2.payload != tok.payload
    # the key is authorised; its signature of the current token connects
    keys.keys.append(auth.parse_public_key(blob))
    conn.receive_data(pk(Command.AUTH, auth.AUTH_SIGNATURE, 0, _sign(n, d, tok2.payload)))
    (cnxn,) = decode_all(conn.data_to_send())
    assert cnxn.command is Command.CNXN and cnxn.payload == BANNER.encode()


def test_auth_new_key_accepted_when_person_allows():
    n, e, _ = _rsa_key(seed=2)
    conn = DeviceConnection(BANNER, auth_keys=auth.KeyStore(accept_new=True))
    connect(conn)
    conn.receive_data(pk(Command.AUTH, auth.AUTH_RSAPUBLICKEY, 0, auth.encode_public_key(n, e)))
    assert decode_all(conn.data_to_send())[0].command is Command.CNXN


def test_shell_v2_framing_round_trip():
    dec = shellv2.ShellV2Decoder()
    data = shellv2.encode(shellv2.ShellId.STDIN, b"abc") + shellv2.encode(shellv2.ShellId.CLOSE_STDIN)
    pkts = dec.feed(data[:5]) + dec.feed(data[5:])
    assert [(p.id, p.data) for p in pkts] == [(shellv2.ShellId.STDIN, b"abc"), (shellv2.ShellId.CLOSE_STDIN, b"")]
    assert shellv2.encode_exit(7) == b"\x03\x01\x00\x00\x00\x07"
    assert shellv2.parse_window_size(b"24x80,0x0\0") == (24, 80)
    with pytest.raises(ProtocolError):
        dec.feed(b"\x09\x00\x00\x00\x00")


def test_sync_requests_parse_in_any_split():
    stream = (
        b"STAT" + struct.pack("<I", 6) + b"/a/b/c"
        + b"SND2" + struct.pack("<I", 7) + b"/sdcard" + b"SND2" + struct.pack("<II", 0o100644, 0)
        + b"DATA" + struct.pack("<I", 3) + b"xyz" + b"DONE" + struct.pack("<I", 1700000000)
        + b"SEND" + struct.pack("<I", 10) + b"/x/y,33188" + b"DONE" + struct.pack("<I", 5)
        + b"RCV2" + struct.pack("<I", 2) + b"/f" + b"RCV2" + struct.pack("<I", 0)
        + b"LIS2" + struct.pack("<I", 1) + b"/"
        + b"QUIT" + struct.pack("<I", 0)
    )
    expected = [
        sync.Stat("/a/b/c", "STAT"), sync.SendBegin("/sdcard", 0o100644, 0, True), sync.SendData(b"xyz"),
        sync.SendDone(1700000000), sync.SendBegin("/x/y", 33188, 0, False), sync.SendDone(5),
        sync.Recv("/f", 0, True), sync.ListDir("/", True), sync.Quit(),
    ]
    for cut in range(0, len(stream), 7):
        p = sync.SyncParser()
        assert p.feed(stream[:cut]) + p.feed(stream[cut:]) == expected


def test_sync_rejects_bad_requests():
    with pytest.raises(ProtocolError, match="unknown sync request"):
        sync.SyncParser().feed(b"HACK" + bytes(4))
    with pytest.raises(ProtocolError, match="too long"):
        sync.SyncParser().feed(b"STAT" + struct.pack("<I", 5000))
    p = sync.SyncParser()
    p.feed(b"SEND" + struct.pack("<I", 4) + b"/a,1")
    with pytest.raises(ProtocolError, match="exceeds"):
        p.feed(b"DATA" + struct.pack("<I", 70000))


def test_sync_reply_layouts():
    st_ = sync.FileStat(mode=0o100644, size=5, mtime=9)
    assert sync.reply_stat_v1(st_) == b"STAT" + struct.pack("<III", 0o100644, 5, 9)
    assert len(sync.reply_stat_v2("STA2", st_)) == 72
    assert sync.reply_stat_v2("LST2", None, 2)[:8] == b"LST2" + struct.pack("<I", 2)
    assert sync.reply_dent(b"f", st_, False) == b"DENT" + struct.pack("<IIII", 0o100644, 5, 9, 1) + b"f"
    assert len(sync.reply_list_done(True)) == 76 and len(sync.reply_list_done(False)) == 20
    assert sync.reply_fail("no") == b"FAIL\x02\x00\x00\x00no"


@pytest.mark.parametrize(
    "name,expected",
    [
        ("shell:ls", ShellService("ls", False, False, None)),
        ("shell:", ShellService("", False, True, None)),
        ("shell,v2,TERM=xterm-256color,pty:", ShellService("", True, True, "xterm-256color")),
        ("shell,v2,raw:getprop", ShellService("getprop", True, False, None)),
        ("shell,v2,raw:", ShellService("", True, False, None)),
        ("exec:cat /x", ExecService("cat /x")),
        ("sync:", SyncService()),
        ("tcp:27042", TcpService(27042, None)),
        ("tcp:80:localhost", TcpService(80, "localhost")),
    ],
)
def test_service_names(name, expected):
    assert parse_service(name) == expected


@pytest.mark.parametrize(
    "name,expected",
    [
        ("reboot:", RebootService("")),
        ("reboot:bootloader", RebootService("bootloader")),
        ("root:", RootService(True)),
        ("unroot:", RootService(False)),
        ("remount:", RemountService("")),
        ("framebuffer:", FramebufferService()),
        ("reverse:forward:tcp:8080;tcp:9000", ReverseService("forward", "tcp:8080", "tcp:9000", False)),
        ("reverse:forward:norebind:tcp:1;tcp:2", ReverseService("forward", "tcp:1", "tcp:2", True)),
        ("reverse:list-forward", ReverseService("list-forward")),
        ("reverse:killforward:tcp:8080", ReverseService("killforward", "tcp:8080")),
        ("reverse:killforward-all", ReverseService("killforward-all")),
        ("reverse:forward:tcp:1", ReverseService("invalid", "tcp:1")),
    ],
)
def test_adbd_own_service_names(name, expected):
    """daemon/services.cpp daemon_service_to_fd and adb.cpp handle_forward_request's names."""
    assert parse_service(name) == expected


def test_device_opened_stream_transcript():
    """A reverse connection: adbd OPENs toward the host; OKAY opens it, a CLSE(0, id) refuses."""
    conn = DeviceConnection(BANNER)
    connect(conn)
    conn.events()
    sid = conn.open("tcp:9000")
    assert decode_all(conn.data_to_send()) == [Packet(Command.OPEN, sid, 0, b"tcp:9000\0")]
    conn.write(sid, b"early")                     # queued until the host accepts
    assert conn.data_to_send() == b""
    conn.receive_data(pk(Command.OKAY, 41, sid))
    assert conn.events()[0] == StreamOpened(sid)    # then StreamDrained: "early" went out
    assert decode_all(conn.data_to_send()) == [Packet(Command.WRTE, sid, 41, b"early")]
    conn.receive_data(pk(Command.WRTE, 41, sid, b"reply"))
    assert conn.events() == [DataReceived(sid, b"reply")]
    refused = conn.open("tcp:1")
    conn.data_to_send()
    conn.receive_data(pk(Command.CLSE, 0, refused))
    assert conn.events() == [StreamClosed(refused)]
    assert not conn.is_open(refused)


@pytest.mark.parametrize("name", ["tcp:0", "tcp:99999", "tcp:x", "jdwp:12", "shellx"])
def test_unsupported_services_are_refused(name):
    assert isinstance(parse_service(name), UnknownService)


# --- hostile input ---------------------------------------------------------------------------

def _valid_session() -> bytes:
    return (
        pk(Command.CNXN, 0x01000001, 1 << 20, HOST_FEATURES)
        + pk(Command.OPEN, 1, 0, b"shell,v2:echo\0")
        + pk(Command.WRTE, 1, 1, b"\x00\x03\x00\x00\x00abc")
        + pk(Command.OKAY, 1, 1)
        + pk(Command.CLSE, 1, 1)
    )


def _drive(conn: DeviceConnection, data: bytes, chunk: int) -> None:
    for i in range(0, len(data), chunk):
        conn.receive_data(data[i : i + chunk])
        for ev in conn.events():
            if isinstance(ev, OpenRequested):
                conn.accept(ev.stream_id)
            elif isinstance(ev, DataReceived):
                conn.ack(ev.stream_id, len(ev.data))
                conn.write(ev.stream_id, ev.data)
        conn.data_to_send()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=400), st.integers(1, 64))
def test_fuzz_random_bytes_only_raise_protocol_error(data, chunk):
    conn = DeviceConnection(BANNER)
    try:
        _drive(conn, data, chunk)
    except ProtocolError:
        pass


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=8), st.integers(1, 97))
def test_fuzz_mutated_sessions_only_raise_protocol_error(mutations, chunk):
    data = bytearray(_valid_session())
    for pos, value in mutations:
        data[pos % len(data)] = value
    conn = DeviceConnection(BANNER)
    try:
        _drive(conn, bytes(data), chunk)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_sync_and_shell_parsers(data):
    for parser in (sync.SyncParser(), shellv2.ShellV2Decoder()):
        try:
            parser.feed(data)
        except ProtocolError:
            pass


def test_wire_hash_stable():
    # guards the exact bytes of a whole connect + open transcript
    conn = DeviceConnection(BANNER)
    connect(conn)
    open_stream(conn, 2, b"shell:id")
    conn.write(1, b"uid=2000(shell)\n")
    assert hashlib.sha256(conn.data_to_send()).hexdigest() == hashlib.sha256(
        pk(Command.OKAY, 1, 2) + pk(Command.WRTE, 1, 2, b"uid=2000(shell)\n")
    ).hexdigest()


def test_a_pre_pie_adbd_answers_protocol_1_with_checksums_and_its_payload_size():
    """adb.h per release: A_VERSION 0x01000000 and MAX_PAYLOAD 4096 up to 6.0, 256 KiB in 7.0/8.x,
    A_VERSION_SKIP_CHECKSUM and 1 MiB from 9.0. A protocol-1 peer gets payload checksums."""
    from hostctl.emulator.adb.connection import protocol_for_sdk
    assert protocol_for_sdk(19) == (0x01000000, 4096)
    assert protocol_for_sdk(24) == (0x01000000, 256 * 1024)
    assert protocol_for_sdk(30) == (0x01000001, 1024 * 1024)
    version, maxdata = protocol_for_sdk(19)
    conn = DeviceConnection(BANNER, features=(), max_version=version, max_payload=maxdata)
    conn.receive_data(pk(Command.CNXN, 0x01000001, 1 << 20, HOST_FEATURES))
    raw = conn.data_to_send()
    (cnxn,) = decode_all(raw)
    assert (cnxn.command, cnxn.arg0, cnxn.arg1) == (Command.CNXN, 0x01000000, 4096)
    assert int.from_bytes(raw[16:20], "little") == sum(cnxn.payload) & 0xFFFFFFFF
