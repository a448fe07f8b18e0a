"""The lab's wire tap: a TCP relay that writes what crosses it as packets tshark reassembles.

Unit tests drive a WireTap on its own event loop with real sockets (exact bytes both ways through
TLS and a half-close, a sink joining mid-connection, a refused connection, a stalled reader, an
idle connection, the tap stopping); the lab tests check the handsets' continuous files after
Cloud Messaging traffic, the control channel's capture-start/capture-stop, and that the boot
report waits for the radio.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from hostctl.emulator import screens, wiretap
from hostctl.emulator.cloudmsg import ACCOUNT_HOST, CHAT_HOST
from hostctl.emulator.handset import Intent
from hostctl.emulator.lab import LabConfig, LabThread, control_request, read_lab_file, wait_for_device
from hostctl.emulator.labca import ensure_ca
from hostctl.wire.pcapread import CaptureReader
from tests.conftest import app_bound, free_port
from tests.conftest import wait_for as _wait_for

TSHARK = "/usr/bin/tshark"


def wait_for(pred, timeout=20.0):
    return _wait_for(pred, timeout, interval=0.05)


def tshark(path: Path, *args: str) -> str:
    res = subprocess.run([TSHARK, "-r", str(path), *args], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout


def fields(path: Path, *names: str, display: str | None = None, extra: tuple[str, ...] = ()) -> list[list[str]]:
    args = ["-T", "fields", *extra] + [a for n in names for a in ("-e", n)]
    if display:
        args += ["-Y", display]
    return [line.split("\t") for line in tshark(path, *args).splitlines() if line.strip()]


def follow(path: Path, stream: int) -> tuple[bytes, bytes]:
    """tshark's reassembly of one TCP stream: (bytes from the client, bytes from the server)."""
    out = tshark(path, "-q", "-z", f"follow,tcp,raw,{stream}")
    c2s, s2c = bytearray(), bytearray()
    started = False
    for line in out.splitlines():
        if line.startswith("Node 1:"):
            started = True
            continue
        if not started or line.startswith("=") or not line.strip():
            continue
        (s2c if line.startswith("\t") else c2s).extend(bytes.fromhex(line.strip()))
    return bytes(c2s), bytes(s2c)


def expert_problems(path: Path) -> list[str]:
    """Lost segments, retransmissions, out-of-order, ACKed-unseen: what a bad synthesis shows."""
    rows = fields(
        path,
        "frame.number",
        "tcp.analysis.flags",
        "_ws.expert.message",
        display="tcp.analysis.lost_segment or tcp.analysis.retransmission or "
        "tcp.analysis.out_of_order or tcp.analysis.ack_lost_segment or tcp.analysis.duplicate_ack",
    )
    return ["\t".join(r) for r in rows]


# --- a tap on its own loop -----------------------------------------------------------------------


class Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def loop():
    lp = Loop()
    yield lp
    lp.close()


async def _serve(handler, ssl_ctx=None):
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_ctx)
    return server, server.sockets[0].getsockname()[1]


async def _tls_echo(reader, writer):
    """Answers each line with ``ok <line reversed>``, then closes when the client does."""
    try:
        while line := await reader.readline():
            writer.write(b"ok " + line.rstrip(b"\n")[::-1] + b"\n")
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def _reply_after_eof(reader, writer):
    """Plain TCP: read to EOF (the client's half-close), then answer and close."""
    data = await reader.read()
    writer.write(b"got %d bytes: " % len(data) + data[:16] + b"|" + bytes(range(256)) * 40)
    await writer.drain()
    writer.close()


def tls_client(addr: tuple[str, int], host: str, ctx: ssl.SSLContext, lines: list[bytes]):
    """A TLS client over a memory BIO, so the exact bytes it put on and took off the wire are known."""
    sock = socket.create_connection(addr, timeout=10)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname=host)
    sent, got = bytearray(), bytearray()

    def flush():
        data = out.read()
        if data:
            sock.sendall(data)
            sent.extend(data)

    def pull():
        data = sock.recv(65536)
        got.extend(data)
        if data:
            inc.write(data)
        else:
            inc.write_eof()
        return data

    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            flush()
            pull()
    flush()
    answers = []
    for line in lines:
        tls.write(line + b"\n")
        flush()
        buf = b""
        while not buf.endswith(b"\n"):
            try:
                buf += tls.read(65536)
            except ssl.SSLWantReadError:
                flush()
                assert pull(), "the tap closed the connection"
        answers.append(buf)
    port = sock.getsockname()[1]
    sock.shutdown(socket.SHUT_WR)  # and read whatever is left until the relay closes
    while pull():
        pass
    sock.close()
    return bytes(sent), bytes(got), answers, port


def test_relay_records_exact_tls_bytes_with_sni_nominal_port_and_real_client_port(loop, tmp_path):
    ca = ensure_ca(tmp_path / "ca")
    server, port = loop.call(_serve(_tls_echo, ca.server_context()))
    tap = wiretap.WireTap(
        "hs3",
        wiretap.handset_address(3),
        [wiretap.Route(CHAT_HOST, ("127.0.0.1", port), 5222)],
        state_dir=tmp_path / "hs3",
    )
    loop.call(tap.start())
    try:
        addr = ("127.0.0.1", tap.ports[CHAT_HOST])
        lines = [b"hello", b"x" * 5000, b"last line"]  # one record larger than an MSS
        sent, got, answers, cport = tls_client(addr, CHAT_HOST, ca.client_context(), lines)
        assert answers == [b"ok " + ln[::-1] + b"\n" for ln in lines]
        wait_for(lambda: not tap.open)
    finally:
        loop.call(tap.stop())
        server.close()
    path = tmp_path / "hs3" / "wire.pcapng"
    c2s, s2c = follow(path, 0)
    assert c2s == sent and s2c == got  # every byte, both ways, once, in order
    rows = fields(
        path,
        "ip.src",
        "tcp.srcport",
        "ip.dst",
        "tcp.dstport",
        "tls.handshake.extensions_server_name",
        display="tls.handshake.type == 1",
        extra=("-d", "tcp.port==5222,tls"),
    )
    assert rows == [["10.64.0.3", str(cport), "198.18.0.20", "5222", CHAT_HOST]]
    versions = fields(
        path,
        "tls.handshake.extensions.supported_version",
        display="tls.handshake.type == 2",
        extra=("-d", "tcp.port==5222,tls"),
    )
    assert versions and "0x0304" in versions[0][0]  # TLS 1.3 negotiated, as tshark sees it
    assert expert_problems(path) == []
    # the name resolution block names the synthetic hosts; the SYN names the real endpoints
    assert fields(path, "ip.dst_host", display="tcp.flags.syn == 1 and tcp.flags.ack == 0", extra=("-N", "n")) == [
        [CHAT_HOST]
    ]
    comment = fields(path, "frame.comment", display="tcp.flags.syn == 1 and tcp.flags.ack == 0")[0][0]
    assert f"127.0.0.1:{cport} -> 127.0.0.1:{addr[1]}" in comment
    conn = tap.recent[-1]
    assert (conn.sent, conn.ended, conn.real_client[1]) == ({"c2s": len(sent), "s2c": len(got)}, "fin", cport)


def test_half_close_passes_through_and_is_recorded_in_order(loop, tmp_path):
    server, port = loop.call(_serve(_reply_after_eof))
    tap = wiretap.WireTap(
        "hs1",
        "10.64.0.1",
        [wiretap.Route("resolver.msg.xiaomi.net", ("127.0.0.1", port), 80)],
        state_dir=tmp_path / "hs1",
    )
    loop.call(tap.start())
    try:
        s = socket.create_connection(("127.0.0.1", tap.ports["resolver.msg.xiaomi.net"]), timeout=10)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        s.shutdown(socket.SHUT_WR)  # the server answers only after our FIN
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
        s.close()
        wait_for(lambda: not tap.open)
    finally:
        loop.call(tap.stop())
        server.close()
    assert reply.startswith(b"got 18 bytes: GET / HTTP/1.0") and len(reply) > 10000
    path = tmp_path / "hs1" / "wire.pcapng"
    assert follow(path, 0) == (b"GET / HTTP/1.0\r\n\r\n", reply)
    flags = fields(path, "ip.src", "tcp.flags.fin", "tcp.len", display="tcp.flags.fin == 1 or tcp.len > 0")
    fin_c = next(i for i, r in enumerate(flags) if r[0] == "10.64.0.1" and r[1] == "1")
    first_reply = next(i for i, r in enumerate(flags) if r[0] != "10.64.0.1" and r[2] != "0")
    assert fin_c < first_reply  # the client's FIN, then the server's data, then its FIN
    assert flags[-1][:2] == [wiretap.host_address("resolver.msg.xiaomi.net"), "1"]
    assert expert_problems(path) == []


def test_a_sink_joining_an_open_connection_gets_a_handshake_and_continuing_sequence_numbers(loop, tmp_path):
    ca = ensure_ca(tmp_path / "ca")
    server, port = loop.call(_serve(_tls_echo, ca.server_context()))
    tap = wiretap.WireTap(
        "hs1", "10.64.0.1", [wiretap.Route(ACCOUNT_HOST, ("127.0.0.1", port), 443)], state_dir=tmp_path / "hs1"
    )
    loop.call(tap.start())
    joined = tmp_path / "joined.pcapng"
    raw = socket.create_connection(("127.0.0.1", tap.ports[ACCOUNT_HOST]), timeout=10)
    tls = ca.client_context().wrap_socket(raw, server_hostname=ACCOUNT_HOST)
    try:
        f = tls.makefile("rwb")
        f.write(b"before\n")
        f.flush()
        assert f.readline() == b"ok erofeb\n"
        wait_for(lambda: tap.open and next(iter(tap.open.values())).sent["s2c"] > 0)
        sink = wiretap.open_file_sink(joined, names=tap.names())

        async def add():
            tap.subscribe(sink)

        loop.call(add())
        f.write(b"after\n")
        f.flush()
        assert f.readline() == b"ok retfa\n"
        f.close()
        tls.close()
        wait_for(lambda: not tap.open)

        async def remove():
            return tap.unsubscribe(sink)

        stats = loop.call(remove())
    finally:
        loop.call(tap.stop())
        server.close()
    assert stats["connections"] == 1 and stats["packets"] > 3
    # the joined file: a synthetic handshake, then only what crossed after it, in sequence
    assert expert_problems(joined) == []
    syn = fields(joined, "frame.comment", "tcp.seq_raw", display="tcp.flags.syn == 1 and tcp.flags.ack == 0")
    assert "joined mid-connection" in syn[0][0]
    full = tmp_path / "hs1" / "wire.pcapng"
    full_c2s, full_s2c = follow(full, 0)
    late_c2s, late_s2c = follow(joined, 0)
    assert full_c2s.endswith(late_c2s) and full_s2c.endswith(late_s2c) and late_c2s and late_s2c
    # the same sequence numbers in both files for the bytes they share
    last_full = fields(full, "tcp.seq_raw", "tcp.nxtseq", display="tcp.len > 0 and ip.src == 10.64.0.1")[-1]
    last_joined = fields(joined, "tcp.seq_raw", "tcp.nxtseq", display="tcp.len > 0 and ip.src == 10.64.0.1")[-1]
    assert last_full[0] == last_joined[0]


def test_refused_stalled_idle_and_stopped_connections_end_clearly(loop, tmp_path):
    closed_port = free_port()  # nothing listens there
    never_reads = asyncio.Event()

    async def sink_that_never_reads(reader, writer):
        await never_reads.wait()
        writer.close()

    async def silent(reader, writer):
        await reader.read()
        writer.close()

    stall_server, stall_port = loop.call(_serve(sink_that_never_reads))
    idle_server, idle_port = loop.call(_serve(silent))
    tap = wiretap.WireTap(
        "hs2",
        "10.64.0.2",
        [
            wiretap.Route("mixin.xiaomi.net", ("127.0.0.1", closed_port), 443),
            wiretap.Route(ACCOUNT_HOST, ("127.0.0.1", stall_port), 443),
            wiretap.Route(CHAT_HOST, ("127.0.0.1", idle_port), 5222),
        ],
        state_dir=tmp_path / "hs2",
        io_timeout=0.5,
        idle_timeout=0.5,
    )
    loop.call(tap.start())
    try:
        # refused: the app's connection is reset; the file shows its SYN answered by a RST
        s = socket.create_connection(("127.0.0.1", tap.ports["mixin.xiaomi.net"]), timeout=10)
        assert closed_or_reset(s)
        s.close()
        # stalled: the service never reads; the tap drops the connection instead of buffering
        s = socket.create_connection(("127.0.0.1", tap.ports[ACCOUNT_HOST]), timeout=10)
        s.settimeout(10)
        with pytest.raises(OSError):
            for _ in range(10000):
                s.sendall(b"\0" * 65536)
        s.close()
        # idle: nothing either way
        s = socket.create_connection(("127.0.0.1", tap.ports[CHAT_HOST]), timeout=10)
        assert s.recv(10) == b""
        s.close()
        wait_for(lambda: len(tap.recent) == 3)
        ended = {c.route.host: c.ended for c in tap.recent}
        assert ended == {"mixin.xiaomi.net": "refused", ACCOUNT_HOST: "stalled", CHAT_HOST: "idle"}
        # a connection open when the tap stops is recorded as reset by the tap
        s = socket.create_connection(("127.0.0.1", tap.ports[CHAT_HOST]), timeout=10)
        wait_for(lambda: tap.open)
    finally:
        loop.call(tap.stop())
        never_reads.set()
        stall_server.close()
        idle_server.close()
    assert closed_or_reset(s)
    s.close()
    path = tmp_path / "hs2" / "wire.pcapng"
    rows = fields(path, "tcp.dstport", "tcp.srcport", "tcp.flags.str")
    rst_from_server = [r for r in rows if r[1] in ("443", "5222") and "R" in r[2]]
    assert len(rst_from_server) >= 2  # refused, and stopped (the tap speaks for the service)
    assert wiretap.host_address("mixin.xiaomi.net") == "198.18.0.40"
    with CaptureReader(path) as reader:
        packets = list(reader)
        assert reader.stats["errors"] == []
    assert packets


def closed_or_reset(s: socket.socket) -> bool:
    """The peer closed (EOF) or reset the connection (the tap aborts what it drops)."""
    try:
        return s.recv(10) == b""
    except ConnectionResetError:
        return True


def test_addresses_are_fixed_and_documented():
    assert [wiretap.handset_address(i) for i in (1, 2, 255, 256)] == [
        "10.64.0.1",
        "10.64.0.2",
        "10.64.0.255",
        "10.64.1.0",
    ]
    assert wiretap.host_address(ACCOUNT_HOST) == "198.18.0.10"
    assert wiretap.host_address(CHAT_HOST) == "198.18.0.20"
    other = wiretap.host_address("unknown.example")
    assert other.startswith("198.19.") and other == wiretap.host_address("UNKNOWN.example")
    with pytest.raises(ValueError):
        wiretap.handset_address(0)


# --- in the lab ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tlab(tmp_path_factory):
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=2,
            modem=False,
            relay=False,
            consoles=False,
            profile="miui-v5-2014-08-10",
            home=tmp_path_factory.mktemp("tap"),
        )
    ) as lt:
        yield lt


def _cm_on(lt, lh):
    async def flip():
        screens.set_cloud_messaging(lh.handset, True, 0)

    lt.call(flip())


def _send(lt, lh, to: str, text: str):
    async def send():
        lh.handset._deliver(
            Intent(
                kind="app",
                action=screens.SEND_COMMAND,
                component=screens.COMPOSE,
                extras={"to": to, "text": text, "sim": 0},
            )
        )

    lt.call(send())


def test_the_lab_records_a_cloud_messaging_flow_tshark_reassembles(tlab):
    a, b = tlab.lab.handsets
    cm = tlab.lab.cloud.cm
    na, nb = a.identity.sims[0].msisdn, b.identity.sims[0].msisdn
    for lh in (a, b):
        _cm_on(tlab, lh)
    wait_for(lambda: cm.presence(na) and cm.presence(nb))
    # the service marks a number online when the bind arrives; the sending app uses its channel
    # only once it has read the bind's answer: wait for that too, or the send goes as SMS
    wait_for(lambda: app_bound(a), 20)
    _send(tlab, a, nb, "hello over the tap")

    def delivered():
        names, rows = b.handset.sms_query("content://sms/inbox", ["body", "mx_status"])
        return [r for r in rows if r[1] == 65537]

    wait_for(delivered)
    # the app's sockets go to its tap, not to the service
    tap_ports = set(a.tap.ports.values())
    assert {c.tap_port for c in a.tap.connections()} <= tap_ports
    path = a.tap.continuous_path
    assert path == tlab.lab.dir / "handsets" / "hs1" / "wire.pcapng"
    snis = fields(
        path,
        "ip.src",
        "tcp.srcport",
        "ip.dst",
        "tcp.dstport",
        "tls.handshake.extensions_server_name",
        display="tls.handshake.type == 1",
        extra=("-d", "tcp.port==5222,tls"),
    )
    by_host = {r[4]: r for r in snis}
    assert set(by_host) == {ACCOUNT_HOST, CHAT_HOST}
    assert by_host[ACCOUNT_HOST][:4:2] == ["10.64.0.1", "198.18.0.10"] and by_host[ACCOUNT_HOST][3] == "443"
    assert by_host[CHAT_HOST][:4:2] == ["10.64.0.1", "198.18.0.20"] and by_host[CHAT_HOST][3] == "5222"
    # client ports are the app's real ones; what the file holds per flow is what was relayed
    conns = {c.client[1]: c for c in a.tap.connections()}
    streams = fields(path, "tcp.stream", "tcp.srcport", display="tcp.flags.syn == 1 and tcp.flags.ack == 0")
    assert {int(port) for _, port in streams} == set(conns)
    for stream, port in streams:
        c2s, s2c = follow(path, int(stream))
        conn = conns[int(port)]
        assert (len(c2s), len(s2c)) == (conn.sent["c2s"], conn.sent["s2c"])
        assert c2s[:1] == b"\x16" and s2c[:1] == b"\x16"  # TLS handshake records both ways
    # tshark decodes the records (application data after the handshake) on both ports
    app_data = fields(path, "tcp.dstport", "tcp.srcport", display="tls.app_data", extra=("-d", "tcp.port==5222,tls"))
    assert {"443", "5222"} <= {p for row in app_data for p in row}
    assert expert_problems(path) == []


def test_control_channel_capture_start_and_stop_mid_connection(tlab, tmp_path):
    a, b = tlab.lab.handsets
    cm = tlab.lab.cloud.cm
    nb = b.identity.sims[0].msisdn
    for lh in (a, b):
        _cm_on(tlab, lh)
    wait_for(lambda: cm.presence(a.identity.sims[0].msisdn) and cm.presence(nb) and app_bound(a))
    assert any(c.route.host == CHAT_HOST for c in a.tap.open.values())  # the channel is open
    info = read_lab_file(tlab.lab.home, tlab.lab.adb_port)
    out = tmp_path / "live.pcapng"
    started = control_request(info, {"cmd": "capture-start", "serial": a.serial, "path": str(out), "linktype": "raw"})
    assert started["label"] == "hs1" and started["linktype"] == 101 and started["address"] == "10.64.0.1"
    _send(tlab, a, nb, "while someone listens")
    wait_for(
        lambda: any(
            tuple(r) == ("while someone listens",) for r in b.handset.sms_query("content://sms/inbox", ["body"])[1]
        )
    )
    stopped = control_request(info, {"cmd": "capture-stop", "id": started["id"]})
    assert stopped["packets"] > 0 and stopped["ended"] == "stopped" and stopped["bytes"] == out.stat().st_size
    assert control_request(info, {"cmd": "capture-stop", "id": started["id"]}) == stopped  # idempotent
    comments = fields(out, "frame.comment", display="frame.comment")
    assert any("joined mid-connection" in c[0] for c in comments)  # the open channel
    assert expert_problems(out) == []
    protocols = fields(out, "frame.protocols")
    assert protocols and all(r[0].startswith("raw:ip:tcp") for r in protocols)  # LINKTYPE_RAW
    with pytest.raises(Exception, match="no capture 'cap999'"):
        control_request(info, {"cmd": "capture-stop", "id": "cap999"})
    with pytest.raises(Exception, match="must be absolute"):
        control_request(info, {"cmd": "capture-start", "serial": a.serial, "path": "rel.pcapng"})
    with pytest.raises(Exception, match="link type 'token-ring'"):
        control_request(info, {"cmd": "capture-start", "serial": a.serial, "path": str(out), "linktype": "token-ring"})
    assert json.dumps(tlab.lab.status())  # the tap's info is part of the status


def test_boot_report_waits_for_the_radio_after_a_power_cycle_in_airplane_mode(tmp_path):
    from hostctl.device import Handset

    port = free_port()
    with LabThread(
        LabConfig(
            adb_port=port,
            handsets=1,
            modem=False,
            relay=False,
            consoles=False,
            profile="miui-v5-2014-07",
            home=tmp_path,
        )
    ) as lt:
        lh = lt.lab.handsets[0]
        cm = lt.lab.cloud.cm
        wait_for(lambda: any(o.path == "/device/report" for o in cm.observed))  # the normal boot report
        h = Handset(lh.serial, f"127.0.0.1:{port}")
        assert h.shell(
            "settings put global airplane_mode_on 1 && am broadcast -a android.intent.action.AIRPLANE_MODE"
        ).ok
        lt.call(lh.power_off())
        seen = len(cm.observed)
        emitted = len(lh.emitted)
        lt.call(lh.power_on())
        assert lh._boot_pending
        assert [r.event for r in lh.emitted[emitted:]] == []  # nothing yet: a trace can attach
        assert not [o for o in list(cm.observed)[seen:] if o.path == "/device/report"]
        wait_for_device(port, lh.serial, 30)  # adb reconnects to the powered-on handset
        h = Handset(lh.serial, f"127.0.0.1:{port}")
        assert h.shell(
            "settings put global airplane_mode_on 0 && am broadcast -a android.intent.action.AIRPLANE_MODE"
        ).ok
        assert "boot" in [r.event for r in lh.emitted[emitted:]]
        wait_for(lambda: [o for o in list(cm.observed)[seen:] if o.path == "/device/report"])
        # once per boot: another radio change sends no second report
        boots = [r.event for r in lh.emitted].count("boot")
        assert h.shell("am broadcast -a android.intent.action.AIRPLANE_MODE").ok
        assert [r.event for r in lh.emitted].count("boot") == boots
        # and the boot report crossed the tap to the account host
        wait_for(lambda: any(c.route.host == ACCOUNT_HOST for c in lh.tap.connections()))
