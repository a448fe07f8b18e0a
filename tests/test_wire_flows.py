"""TCP reassembly, UDP datagrams and protocol identification.

Every capture is run twice, through `FlowTable.run` (the inline hot path for established flows)
and through `FlowTable.feed` (the general path only), and the two transcripts must be identical.
"""

from __future__ import annotations

import io
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostctl.wire.flows import Flow, FlowKey, FlowTable
from hostctl.wire.pcapread import CaptureReader, Packet
from hostctl.wire.pcapwrite import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_PPP,
    LINKTYPE_RAW,
    PcapngWriter,
    PcapWriter,
    TcpConversation,
    frame,
    ip_tcp,
    ipv4_udp,
    ipv6_udp,
)
from hostctl.wire.protocols import finish, observe

C4, S4 = ("10.0.0.2", 40000), ("10.9.0.5", 5222)
C6, S6 = ("fd00::2", 40001), ("fd00::5", 443)


class Recorder:
    """A consumer that writes down every callback, in order."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.flows: dict[int, Flow] = {}

    def flow_start(self, flow: Flow) -> None:
        self.flows[flow.id] = flow
        self.events.append(("start", flow.id, str(flow.key)))

    def data(self, flow: Flow, direction: str, offset: int, data: bytes, ts: float) -> None:
        assert isinstance(data, bytes) and data
        self.events.append(("data", flow.id, direction, offset, data))

    def gap(self, flow: Flow, direction: str, offset: int, length: int) -> None:
        self.events.append(("gap", flow.id, direction, offset, length))

    def datagram(self, flow: Flow, direction: str, data: bytes, ts: float, index: int) -> None:
        self.events.append(("dgram", flow.id, direction, data, index))

    def flow_end(self, flow: Flow) -> None:
        self.events.append(("end", flow.id, flow.ended))

    def stream(self, fid: int, direction: str) -> tuple[bytes, list[tuple[int, int]]]:
        """The direction's bytes (gaps as nothing) and its gaps; checks offsets are contiguous."""
        out, gaps, at = bytearray(), [], 0
        for ev in self.events:
            if ev[0] in ("data", "gap") and ev[1] == fid and ev[2] == direction:
                assert ev[3] == at, f"flow {fid} {direction}: offset {ev[3]}, expected {at}"
                if ev[0] == "data":
                    out += ev[4]
                    at += len(ev[4])
                else:
                    gaps.append((ev[3], ev[4]))
                    at += ev[4]
        return bytes(out), gaps

    def merged(self) -> list[tuple]:
        """Events with adjacent data of one flow direction joined (how much is coalesced into one
        call is not part of the contract)."""
        out: list[tuple] = []
        for ev in self.events:
            if (
                ev[0] == "data"
                and out
                and out[-1][0] == "data"
                and out[-1][1:3] == ev[1:3]
                and out[-1][3] + len(out[-1][4]) == ev[3]
            ):
                out[-1] = out[-1][:4] + (out[-1][4] + ev[4],)
            else:
                out.append(ev)
        return out


def analyse(capture: bytes, **kw) -> tuple[Recorder, FlowTable]:
    """Runs ``capture`` through every path; returns the hot path's result after checking the
    others said exactly the same: `FlowTable.run` with its compiled walk, `FlowTable.run` in
    Python (the same calls, in the same order, with the same bytes) and `FlowTable.feed` (the
    general path: the same once adjacent data is joined)."""
    fast, pure, slow = Recorder(), Recorder(), Recorder()
    t1 = FlowTable(fast, compiled=True, **kw)
    t1.run(CaptureReader(io.BytesIO(capture), chunk_size=4096))  # small chunks: spans end often
    t0 = FlowTable(pure, compiled=False, **kw)
    t0.run(CaptureReader(io.BytesIO(capture), chunk_size=4096))
    t2 = FlowTable(slow, **kw)
    for pkt in CaptureReader(io.BytesIO(capture)):
        t2.feed(pkt)
    t2.close()
    assert fast.events == pure.events
    assert t1.stats == t0.stats
    assert fast.merged() == slow.merged()
    assert t1.stats == t2.stats
    assert [f.protocol for f in fast.flows.values()] == [f.protocol for f in slow.flows.values()]
    assert [(f.packets, f.first_ts, f.last_ts) for f in fast.flows.values()] == [
        (f.packets, f.first_ts, f.last_ts) for f in pure.flows.values()
    ]
    return fast, t1


def test_the_compiled_walk_is_built_and_on() -> None:
    """`make bootstrap` (pip install -e .) compiles hostctl/wire/_flowwalk.pyx with Cython: the
    comparisons above test it only when it is there."""
    from hostctl.wire import flows

    assert flows._walk is not None, "hostctl.wire._flowwalk is not built: run `make bootstrap` (needs gcc, Cython)"
    assert FlowTable(Recorder()).compiled is flows.COMPILED
    assert FlowTable(Recorder(), compiled=False).compiled is False


def capture(build, *, linktype: int = LINKTYPE_ETHERNET, ng: bool = True, snaplen: int = 262144) -> bytes:
    f = io.BytesIO()
    w = (PcapngWriter if ng else PcapWriter)(f, linktype=linktype, snaplen=snaplen)
    build(w.packet)
    return f.getvalue()


class Segs:
    """Hand-made TCP segments of one connection (for orders a real stack would not produce)."""

    def __init__(self, sink, client=C4, server=S4, *, linktype=LINKTYPE_ETHERNET, isn_c=1000, isn_s=5000):
        self.sink, self.c, self.s, self.lt = sink, client, server, linktype
        self.isn = {"c2s": isn_c, "s2c": isn_s}
        self.ts = 1.0

    def seg(self, direction: str, off: int, payload: bytes = b"", flags: str = "A", *, raw_seq: int | None = None):
        src, dst = (self.c, self.s) if direction == "c2s" else (self.s, self.c)
        other = "s2c" if direction == "c2s" else "c2s"
        seq = raw_seq if raw_seq is not None else self.isn[direction] + 1 + off
        ip = ip_tcp(
            src[0], src[1], dst[0], dst[1], seq & 0xFFFFFFFF, (self.isn[other] + 1) & 0xFFFFFFFF, flags, payload
        )
        self.ts += 0.001
        self.sink(self.ts, frame(self.lt, ip))

    def handshake(self) -> None:
        self.seg("c2s", -1, flags="S")
        self.seg("s2c", -1, flags="SA")
        self.seg("c2s", 0)


# -- conversations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "linktype", [LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_NULL, LINKTYPE_PPP]
)
@pytest.mark.parametrize("ng", [True, False])
def test_interleaved_conversations_are_reassembled(linktype: int, ng: bool) -> None:
    rnd = random.Random(linktype)
    blobs = {k: rnd.randbytes(n) for k, n in (("a", 5000), ("b", 3000), ("c", 70000), ("d", 10))}

    def build(sink):
        a = TcpConversation(sink, client=C4, server=S4, linktype=linktype, mss=1000)
        b = TcpConversation(sink, client=C6, server=S6, linktype=linktype)
        a.open(1.0)
        b.open(1.5)
        a.send(2.0, "c2s", blobs["a"])
        b.send(2.1, "c2s", blobs["b"])
        a.send(2.2, "s2c", blobs["c"])
        b.send(2.3, "s2c", blobs["d"])
        b.close(3.0, reset=True)
        a.close(4.0)
        sink(5.0, frame(linktype, ipv4_udp("10.0.0.2", 5353, "10.9.0.5", 53, b"query")))
        sink(5.1, frame(linktype, ipv6_udp("fd00::5", 53, "fd00::2", 5353, b"answer")))

    rec, table = analyse(capture(build, linktype=linktype, ng=ng))
    a, b, u4, u6 = rec.flows[1], rec.flows[2], rec.flows[3], rec.flows[4]
    assert a.key == FlowKey("tcp", C4, S4) and b.key == FlowKey("tcp", C6, S6)
    assert rec.stream(1, "c2s") == (blobs["a"], []) and rec.stream(1, "s2c") == (blobs["c"], [])
    assert rec.stream(2, "c2s") == (blobs["b"], []) and rec.stream(2, "s2c") == (blobs["d"], [])
    assert (a.ended, b.ended) == ("fin", "rst")
    assert (a.bytes_c2s, a.bytes_s2c, b.bytes_c2s, b.bytes_s2c) == (5000, 70000, 3000, 10)
    assert u4.key == FlowKey("udp", ("10.0.0.2", 5353), ("10.9.0.5", 53))
    assert u6.key == FlowKey("udp", ("fd00::2", 5353), ("fd00::5", 53))  # higher port = client
    dgrams = [ev for ev in rec.events if ev[0] == "dgram"]
    n = table.stats["packets"]
    assert dgrams == [("dgram", 3, "c2s", b"query", n - 1), ("dgram", 4, "s2c", b"answer", n)]
    assert table.stats["tcp_flows"] == 2 and table.stats["udp_datagrams"] == 2
    assert table.stats["gaps"] == table.stats["retransmits"] == table.stats["out_of_order"] == 0
    # the final ACK after both FINs belongs to the ended flow: no third TCP flow
    # (handshake, 5 segments + 3 ACKs, 70 segments + 35 ACKs, FIN/FIN/ACK)
    assert a.packets == 3 + 5 + 3 + 70 + 35 + 3


def test_flow_ids_follow_first_packets_and_callbacks_are_bracketed() -> None:
    def build(sink):
        convs = [TcpConversation(sink, client=("10.0.0.2", 41000 + i), server=S4) for i in range(5)]
        for i, c in enumerate(convs):
            c.open(1 + i)
        for i, c in enumerate(reversed(convs)):
            c.send(10 + i, "c2s", f"flow {5 - i}".encode())
        for i, c in enumerate(convs):
            c.close(20 + i)

    rec, _ = analyse(capture(build))
    assert [rec.flows[i].key.client[1] for i in range(1, 6)] == [41000 + i for i in range(5)]
    assert [ev[1] for ev in rec.events if ev[0] == "end"] == [1, 2, 3, 4, 5]
    for i in range(1, 6):
        mine = [ev for ev in rec.events if ev[1] == i]
        assert [ev[0] for ev in mine] == ["start", "data", "end"] and mine[1][4] == f"flow {i}".encode()


def test_small_packets_are_handed_over_per_conversation_in_causal_order() -> None:
    """Ping-pong of small segments: each side's bytes come in few calls, and within the flow
    what was sent first is handed over first (each request before its answer)."""

    def build(sink):
        c = TcpConversation(sink, client=C4, server=S4)
        c.open(1.0)
        for i in range(300):
            c.send(2 + i, "c2s", b"GET /%03d HTTP/1.1\r\nHost: h\r\n\r\n" % i)
            c.send(2.5 + i, "s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        c.close(400)

    rec, _ = analyse(capture(build))
    datas = [ev for ev in rec.events if ev[0] == "data"]
    assert len(datas) <= 4 and datas[0][2] == "c2s"
    flow = rec.flows[1]
    assert flow.protocol["request_count"] == 300 and all(r["status"] == 200 for r in flow.protocol["requests"])
    # a small holding limit releases earlier, still oldest first and still in causal order
    rec2, _ = analyse(capture(build), coalesce=100, max_holding=1)
    assert [ev[2] for ev in rec2.events if ev[0] == "data"][:4] == ["c2s", "s2c", "c2s", "s2c"]
    assert rec2.stream(1, "c2s") == rec.stream(1, "c2s") and rec2.flows[1].protocol == flow.protocol


def test_out_of_order_retransmits_and_partial_overlaps_delivered_once() -> None:
    body = bytes(range(256)) * 4

    def build(sink):
        s = Segs(sink)
        s.handshake()
        s.seg("c2s", 100, body[100:300], "PA")  # ahead: held
        s.seg("c2s", 0, body[0:50], "PA")  # the start
        s.seg("c2s", 0, body[0:50], "PA")  # whole retransmission
        s.seg("c2s", 30, body[30:120], "PA")  # partly old, partly new, reaching into the held one
        s.seg("c2s", 250, body[250:400], "PA")  # overlaps what is held, extends it
        s.seg("c2s", 400, body[400:1024], "PA")
        s.seg("c2s", 1024, flags="FA")
        s.seg("s2c", 0, flags="FA")
        s.seg("c2s", 1025)

    rec, table = analyse(capture(build))
    assert rec.stream(1, "c2s") == (body, [])
    assert rec.flows[1].ended == "fin"
    assert table.stats["retransmits"] >= 2 and table.stats["out_of_order"] >= 1
    assert table.stats["gaps"] == 0


def test_missing_bytes_become_gaps_with_their_offsets() -> None:
    body = bytes(range(200)) * 5

    def build(sink):
        s = Segs(sink)
        s.handshake()
        s.seg("c2s", 0, body[:100], "PA")
        s.seg("c2s", 300, body[300:500], "PA")  # 100..300 never arrives
        s.seg("c2s", 500, body[500:1000], "PA")
        s.seg("c2s", 1100, flags="FA")  # 1000..1100 never arrives either
        s.seg("s2c", 0, flags="FA")

    rec, table = analyse(capture(build))
    data, gaps = rec.stream(1, "c2s")
    assert gaps == [(100, 200), (1000, 100)]
    assert data == body[:100] + body[300:1000]
    assert table.stats["gaps"] == 2 and table.stats["gap_bytes"] == 300
    assert rec.flows[1].bytes_c2s == 800


def test_fin_before_the_last_segment_waits_for_it() -> None:
    def build(sink):
        s = Segs(sink)
        s.handshake()
        s.seg("c2s", 5, b"world", "PA")
        s.seg("c2s", 10, flags="FA")
        s.seg("s2c", 0, flags="FA")
        s.seg("c2s", 0, b"hello", "PA")
        s.seg("c2s", 11)

    rec, _ = analyse(capture(build))
    assert rec.stream(1, "c2s") == (b"helloworld", [])
    assert rec.events[-1] == ("end", 1, "fin")


def test_midstream_flow_without_syn() -> None:
    def build(sink):
        s = Segs(sink, client=("10.9.0.5", 443), server=("10.0.0.2", 50000))  # first sender is the server
        s.seg("c2s", 7000, b"late bytes", "PA")
        s.seg("s2c", 300, b"request", "PA")
        s.seg("c2s", 7010, b" and more", "PA")

    rec, _ = analyse(capture(build))
    flow = rec.flows[1]
    assert flow.key == FlowKey("tcp", ("10.0.0.2", 50000), ("10.9.0.5", 443))  # higher port is the client
    assert flow.midstream and flow.ended == "eof"
    assert rec.stream(1, "s2c") == (b"late bytes and more", []) and rec.stream(1, "c2s") == (b"request", [])


def test_syn_ack_first_still_knows_the_client() -> None:
    def build(sink):
        s = Segs(sink)
        s.seg("s2c", -1, flags="SA")
        s.seg("c2s", 0, b"hi", "PA")

    rec, _ = analyse(capture(build))
    assert rec.flows[1].key == FlowKey("tcp", C4, S4) and not rec.flows[1].midstream


def test_rst_keeps_bytes_in_flight_and_trailing_packets_stay_with_the_flow() -> None:
    # tshark's tcp.stream keeps what was in flight when the RST was sent (issue 15.5)
    def build(sink):
        s = Segs(sink)
        s.handshake()
        s.seg("c2s", 0, b"abc", "PA")
        s.seg("s2c", 0, flags="RA")
        s.seg("c2s", 3, b"def", "PA")  # sent before the RST arrived
        s.seg("c2s", 6, flags="FA")

    rec, table = analyse(capture(build))
    assert rec.flows[1].ended == "rst" and len(rec.flows) == 1
    assert rec.stream(1, "c2s") == (b"abcdef", []) and rec.flows[1].packets == 7


def test_ports_reused_after_close_start_a_new_flow() -> None:
    def build(sink):
        for n in range(2):
            c = TcpConversation(sink, client=C4, server=S4, isn=1000 + n * 77777)
            c.open(1.0 + n)
            c.send(1.1 + n, "c2s", f"round {n}".encode())
            c.close(1.2 + n, reset=n == 1)
        s = Segs(sink, isn_c=424242)  # and a new SYN on ports still open (no FIN seen): "reused"
        s.handshake()
        s.seg("c2s", 0, b"x", "PA")
        s2 = Segs(sink, isn_c=99)
        s2.handshake()

    rec, table = analyse(capture(build))
    assert [(f.id, f.ended) for f in rec.flows.values()] == [(1, "fin"), (2, "rst"), (3, "reused"), (4, "eof")]
    assert rec.stream(1, "c2s")[0] == b"round 0" and rec.stream(2, "c2s")[0] == b"round 1"


def test_sequence_numbers_wrap() -> None:
    body = bytes(range(256)) * 40

    def build(sink):
        c = TcpConversation(sink, client=C4, server=S4, isn=0xFFFFFFFF - 3000, mss=700)
        c.open(1.0)
        c.send(2.0, "c2s", body)
        c.close(3.0)

    rec, _ = analyse(capture(build))
    assert rec.stream(1, "c2s") == (body, []) and rec.flows[1].ended == "fin"


def test_snaplen_cut_packets_give_what_was_captured_and_gaps() -> None:
    body = bytes(range(256)) * 10

    def build(sink):
        c = TcpConversation(sink, client=C4, server=S4, mss=500)
        c.open(1.0)
        c.send(2.0, "c2s", body)
        c.close(3.0)

    # 14 Ethernet + 20 IP + 20 TCP = 54 header bytes: 46 bytes of each segment are kept
    rec, table = analyse(capture(build, snaplen=100))
    data, gaps = rec.stream(1, "c2s")
    assert [g[1] for g in gaps] == [454] * 5 + [60 - 46]
    assert data == b"".join(body[i : i + 46] for i in range(0, len(body), 500))
    assert rec.flows[1].ended == "fin"


def test_vlan_fragments_and_non_ip() -> None:
    def build(sink):
        ip = ip_tcp("10.0.0.2", 40000, "10.9.0.5", 80, 1, 0, "S")
        eth = frame(LINKTYPE_ETHERNET, ip)
        sink(1.0, eth[:12] + b"\x81\x00\x00\x05" + eth[12:])  # 802.1Q tag
        frag = bytearray(ipv4_udp("10.0.0.2", 1, "10.9.0.5", 2, b"x" * 100))
        frag[6] = 0x20  # more fragments
        sink(1.1, frame(LINKTYPE_ETHERNET, bytes(frag)))
        sink(1.2, eth[:12] + b"\x08\x06" + b"\0" * 28)  # ARP
        v6frag = bytearray(ipv6_udp("fd00::2", 1, "fd00::5", 2, b"y"))
        v6frag[6] = 44
        sink(1.3, frame(LINKTYPE_ETHERNET, bytes(v6frag)))
        sink(1.4, eth[:20])  # cut inside the IP header

    rec, table = analyse(capture(build))
    assert rec.flows[1].key == FlowKey("tcp", C4[:1] + (40000,), ("10.9.0.5", 80))
    assert table.stats["fragments"] == 2 and table.stats["non_ip"] == 1 and table.stats["malformed"] == 1


# -- bounded memory ----------------------------------------------------------------------------


def _raw_tcp(src: int, sport: int, dport: int, seq: int, flags: int, payload: bytes = b"") -> bytes:
    # a raw-IP frame from a fixed template (checksums are not checked by the flow table)
    return (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            40 + len(payload),
            0,
            0,
            64,
            6,
            0,
            struct.pack("!I", 0x0A000000 | src),
            b"\x0a\x09\x00\x05",
        )
        + struct.pack("!HHIIBBHHH", sport, dport, seq, 1, 0x50, flags, 65535, 0, 0)
        + payload
    )


@pytest.mark.slow
def test_100k_short_flows_keep_flows_in_flight_bounded() -> None:
    f = io.BytesIO()
    w = PcapWriter(f, linktype=LINKTYPE_RAW)
    n = 100_000
    ts = 1.0
    for i in range(n):
        src, sport = i >> 10, 1024 + (i & 1023)
        w.packet(ts, _raw_tcp(src, sport, 443, 7, 0x02))
        w.packet(ts, _raw_tcp(src, sport, 443, 8, 0x18, b"hi"))
        if i % 10:  # one flow in ten never ends: evicted
            w.packet(ts, _raw_tcp(src, sport, 443, 10, 0x04))
        ts += 0.0001
    starts = ends = 0
    ended: dict[str, int] = {}

    class Count:
        def flow_start(self, flow):
            nonlocal starts
            starts += 1

        def data(self, flow, d, off, data, ts):
            assert (d, off, data) == ("c2s", 0, b"hi")

        def gap(self, *a):
            raise AssertionError(a)

        def datagram(self, *a):
            raise AssertionError(a)

        def flow_end(self, flow):
            nonlocal ends
            ends += 1
            ended[flow.ended] = ended.get(flow.ended, 0) + 1

    table = FlowTable(Count(), max_flows=1000)
    table.run(CaptureReader(io.BytesIO(f.getvalue())))
    assert starts == ends == n
    # the unended ones are evicted to make room, but those still in the table at the end
    assert ended["rst"] == n - n // 10 and ended["evicted"] + ended["eof"] == n // 10 and ended["eof"] < 1000
    assert table.stats["max_in_flight"] <= 1000
    assert table.stats["tcp_flows"] == n and table.stats["evicted"] == ended["evicted"]


def test_idle_flows_are_evicted_by_capture_time() -> None:
    def build(sink):
        a = Segs(sink)
        a.handshake()
        a.seg("c2s", 0, b"old", "PA")
        b = Segs(sink, client=("10.0.0.3", 40000))
        b.ts = 1000.0
        b.handshake()

    rec, table = analyse(capture(build), idle_timeout=60)
    assert rec.flows[1].ended == "evicted" and rec.flows[2].ended == "eof"
    assert rec.events.index(("end", 1, "evicted")) < rec.events.index(("start", 2, str(rec.flows[2].key)))


def test_capture_larger_than_a_small_max_buffer() -> None:
    body = random.Random(5).randbytes(200 * 100)

    def build(sink):
        s = Segs(sink)
        s.handshake()
        for w in range(0, 200, 50):  # each window of 50 segments arrives reversed
            for i in reversed(range(w, w + 50)):
                s.seg("c2s", i * 100, body[i * 100 : (i + 1) * 100], "PA")
        s.seg("c2s", len(body), flags="FA")
        s.seg("s2c", 0, flags="FA")

    rec, table = analyse(capture(build), max_buffer=2000)
    data, gaps = rec.stream(1, "c2s")
    assert table.stats["buffer_peak"] <= 2000 + 100
    assert gaps and sum(g[1] for g in gaps) + len(data) == len(body)
    # every byte delivered is the right byte at its offset
    for ev in rec.events:
        if ev[0] == "data":
            assert body[ev[3] : ev[3] + len(ev[4])] == ev[4]
    # with room to wait, the same capture has no gap at all
    rec2, _ = analyse(capture(build))
    assert rec2.stream(1, "c2s") == (body, [])


@st.composite
def scrambled(draw):
    """A stream cut into segments, then shuffled locally, duplicated, widened into overlapping
    retransmissions, and thinned (some segments lost)."""
    size = draw(st.integers(1, 3000))
    body = bytes(random.Random(size).randbytes(size))
    cuts = sorted(set(draw(st.lists(st.integers(1, size - 1), max_size=40)) if size > 1 else []))
    bounds = list(zip([0] + cuts, cuts + [size]))
    segs = []
    for a, b in bounds:
        r = draw(st.sampled_from(["keep", "keep", "keep", "lose", "dup", "widen"]))
        if r == "lose":
            continue
        segs.append((a, b))
        if r == "dup":
            segs.append((a, b))
        elif r == "widen":
            segs.append((max(0, a - draw(st.integers(0, 50))), min(size, b + draw(st.integers(0, 50)))))
    order = sorted(range(len(segs)), key=lambda i: i + draw(st.integers(0, 6)))
    return body, [segs[i] for i in order], draw(st.sampled_from([C4 + S4, C6 + S6])), draw(st.integers(0, 2**32 - 1))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=scrambled(), max_buffer=st.sampled_from([1 << 30, 500]))
def test_any_segment_order_gives_each_byte_once_in_order(case, max_buffer: int) -> None:
    body, segs, (ca, cp, sa, sp), isn = case

    def build(sink):
        s = Segs(sink, (ca, cp), (sa, sp), isn_c=isn)
        s.handshake()
        for a, b in segs:
            s.seg("c2s", a, body[a:b], "PA")
        s.seg("c2s", len(body), flags="FA")
        s.seg("s2c", 0, flags="FA")

    rec, table = analyse(capture(build), max_buffer=max_buffer)
    data, gaps = rec.stream(1, "c2s")  # checks contiguity: each offset once, in order
    assert len(data) + sum(n for _, n in gaps) == len(body)
    for ev in rec.events:
        if ev[0] == "data":
            assert body[ev[3] : ev[3] + len(ev[4])] == ev[4]
    if max_buffer >= 1 << 30:
        # with room to wait, gaps are exactly the bytes no segment carried
        covered = bytearray(len(body))
        for a, b in segs:
            covered[a:b] = b"\1" * (b - a)
        missing, i = [], 0
        while i < len(body):
            if not covered[i]:
                j = i
                while j < len(body) and not covered[j]:
                    j += 1
                missing.append((i, j - i))
                i = j
            else:
                i += 1
        assert gaps == missing
    assert rec.flows[1].ended == "fin"


# -- protocols ---------------------------------------------------------------------------------


def _flow_with(c2s: list[bytes], s2c: list[bytes] | None = None, *, order: str | None = None) -> Flow:
    f = Flow(1, FlowKey("tcp", C4, S4), 0.0)
    off = {"c2s": 0, "s2c": 0}
    chunks = [("c2s", c) for c in c2s] + [("s2c", c) for c in (s2c or [])]
    if order == "alternate":
        a, b = [x for x in chunks if x[0] == "c2s"], [x for x in chunks if x[0] == "s2c"]
        chunks = [x for pair in zip(a, b) for x in pair] + a[len(b) :] + b[len(a) :]
    for d, c in chunks:
        observe(f, d, off[d], c)
        off[d] += len(c)
    finish(f)
    return f


def test_http_keepalive_requests_with_bodies_chunks_and_head() -> None:
    req = (
        b"POST /a HTTP/1.1\r\nHost: resolver.msg.xiaomi.net\r\nContent-Length: 11\r\n\r\nhello=world"
        b"HEAD /b HTTP/1.1\r\nHost: resolver.msg.xiaomi.net\r\n\r\n"
        b"GET /c?x=1 HTTP/1.1\r\nHost: other.example\r\n\r\n"
    )
    resp = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nHTTP/\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n"  # a HEAD answer: no body follows
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope"
    )
    for step in (1, 7, len(req)):
        f = _flow_with(
            [req[i : i + step] for i in range(0, len(req), step)],
            [resp[i : i + step] for i in range(0, len(resp), step)],
        )
        assert f.protocol == {
            "name": "http",
            "host": "resolver.msg.xiaomi.net",
            "request_count": 3,
            "requests": [
                {"method": "POST", "path": "/a", "host": "resolver.msg.xiaomi.net", "status": 200},
                {"method": "HEAD", "path": "/b", "host": "resolver.msg.xiaomi.net", "status": 200},
                {"method": "GET", "path": "/c?x=1", "host": "other.example", "status": 404},
            ],
        }


def test_text_unknown_and_gap_handling() -> None:
    assert _flow_with([b"<stream:stream to='xiaomi.com'>\n<auth/>"]).protocol == {
        "name": "text",
        "first_line": "<stream:stream to='xiaomi.com'>",
    }
    assert _flow_with([bytes(range(256))]).protocol == {"name": "unknown"}
    f = Flow(1, FlowKey("tcp", C4, S4), 0.0)
    observe(f, "c2s", 0, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello begins...
    observe(f, "c2s", 500, b"rest")  # ...and bytes go missing
    assert f.protocol["name"] == "tls" and "gap before stream offset 500" in f.protocol["error"]


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=200), max_size=8),
    prefix=st.sampled_from(
        [
            b"",
            b"\x16\x03\x01",
            b"\x16\x03\x03\x00\x30\x01\x00\x00\x2c\x03\x03",
            b"\x16\x03\x01\x00\x05\x02\x00\x00\x01",
            b"GET / HTTP/1.1\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            b"\x17\x03\x03",
        ]
    ),
)
def test_observe_never_raises_on_garbage(chunks: list[bytes], prefix: bytes) -> None:
    f = _flow_with([prefix + (chunks[0] if chunks else b"")] + chunks[1:], chunks[::-1], order="alternate")
    assert f.protocol.get("name") in ("tls", "http", "http2", "text", "unknown")


def test_tls_hello_split_over_records_and_segments() -> None:
    # a ClientHello with SNI and supported_versions, sent as two TLS records, one byte per segment
    sni = b"api.account.xiaomi.com"
    ext_sni = struct.pack("!HHHBH", 0, len(sni) + 5, len(sni) + 3, 0, len(sni)) + sni
    ext_ver = struct.pack("!HHB", 43, 7, 6) + bytes.fromhex("3a3a03040303")  # GREASE, 1.3, 1.2
    exts = ext_sni + ext_ver
    body = (
        b"\x03\x03"
        + b"R" * 32
        + b"\x00"
        + struct.pack("!H", 6)
        + bytes.fromhex("1301c02f2a2a")
        + b"\x01\x00"
        + struct.pack("!H", len(exts))
        + exts
    )
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    recs = b"".join(b"\x16\x03\x01" + struct.pack("!H", len(part)) + part for part in (hs[:20], hs[20:]))
    sh_body = (
        b"\x03\x03"
        + b"S" * 32
        + b"\x00"
        + b"\x13\x01"
        + b"\x00"
        + struct.pack("!H", 6)
        + struct.pack("!HHH", 43, 2, 0x0304)
    )
    sh = b"\x16\x03\x03" + struct.pack("!H", len(sh_body) + 4) + b"\x02" + len(sh_body).to_bytes(3, "big") + sh_body
    f = _flow_with(
        [recs[i : i + 1] for i in range(len(recs))], [sh + b"\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x02zz"]
    )
    assert f.protocol == {
        "name": "tls",
        "client_legacy_version": "TLS 1.2",
        "client_ciphers": ["TLS_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
        "sni": "api.account.xiaomi.com",
        "client_versions": ["TLS 1.3", "TLS 1.2"],
        "version": "TLS 1.3",
        "cipher": "TLS_AES_128_GCM_SHA256",
        "cipher_id": "0x1301",
    }
    assert f.sniff is False  # both hellos read: later data costs nothing
    # an unknown suite shows as its number
    sh2 = sh.replace(b"\x13\x01\x00\x00\x06", b"\xab\xcd\x00\x00\x06")
    f2 = _flow_with([recs], [sh2])
    assert f2.protocol["cipher"] == "0xABCD" and f2.protocol["cipher_id"] == "0xABCD"


def test_packets_fed_one_by_one_match_the_reader() -> None:
    data = capture(lambda sink: _conv(sink))
    pkts = list(CaptureReader(io.BytesIO(data)))
    assert all(isinstance(p, Packet) for p in pkts)
    rec = Recorder()
    t = FlowTable(rec)
    for p in pkts:
        t.feed(Packet(p.index, p.ts, p.linktype, p.data, p.caplen, p.origlen))
    t.close()
    assert rec.stream(1, "c2s") == (b"x" * 3000, [])


def _conv(sink) -> None:
    c = TcpConversation(sink, client=C4, server=S4)
    c.open(1.0)
    c.send(1.1, "c2s", b"x" * 3000)
    c.close(1.2)


def test_starttls_after_clear_text() -> None:
    sh_body = b"\x03\x03" + b"S" * 32 + b"\x00" + b"\xc0\x2f" + b"\x00"
    sh = b"\x16\x03\x03" + struct.pack("!H", len(sh_body) + 4) + b"\x02" + len(sh_body).to_bytes(3, "big") + sh_body
    ch_body = b"\x03\x03" + b"R" * 32 + b"\x00" + b"\x00\x02\xc0\x2f" + b"\x01\x00"
    ch = b"\x16\x03\x01" + struct.pack("!H", len(ch_body) + 4) + b"\x01" + len(ch_body).to_bytes(3, "big") + ch_body
    f = Flow(1, FlowKey("tcp", C4, S4), 0.0)
    off = {"c2s": 0, "s2c": 0}
    for d, chunk in [
        ("c2s", b"<stream:stream to='xiaomi.com'>"),
        ("s2c", b"<stream:stream from='xiaomi.com'>"),
        ("c2s", b"<starttls/>"),
        ("s2c", b"<proceed/>"),
        ("c2s", ch),
        ("s2c", sh),
    ]:
        observe(f, d, off[d], chunk)
        off[d] += len(chunk)
    assert f.protocol == {
        "name": "tls",
        "cleartext_first_line": "<stream:stream to='xiaomi.com'>",
        "client_legacy_version": "TLS 1.2",
        "client_ciphers": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
        "client_versions": ["TLS 1.2"],
        "version": "TLS 1.2",
        "cipher": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "cipher_id": "0xC02F",
    }


def test_a_few_early_bytes_of_the_other_side_are_not_lost() -> None:
    # the response's first bytes arrive (fewer than are needed to decide) before the request
    f = Flow(1, FlowKey("tcp", C4, S4), 0.0)
    observe(f, "s2c", 0, b"HTTP")
    observe(f, "c2s", 0, b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
    observe(f, "s2c", 4, b"/1.1 301 Moved\r\nContent-Length: 0\r\n\r\n")
    assert f.protocol["requests"] == [{"method": "GET", "path": "/x", "host": "h", "status": 301}]


# --- issue 15.5: what real captures showed ----------------------------------------------------------

_CH_BODY = b"\x03\x03" + b"R" * 32 + b"\x00" + b"\x00\x02\xc0\x2f" + b"\x01\x00"
_CH = b"\x16\x03\x01" + struct.pack("!H", len(_CH_BODY) + 4) + b"\x01" + len(_CH_BODY).to_bytes(3, "big") + _CH_BODY


def _observe_all(chunks):
    f = Flow(1, FlowKey("tcp", C4, S4), 0.0)
    off = {"c2s": 0, "s2c": 0}
    for d, chunk in chunks:
        observe(f, d, off[d], chunk)
        off[d] += len(chunk)
    finish(f)
    return f.protocol


def test_http_after_a_keepalive_byte_or_joined_mid_session_keeps_its_requests() -> None:
    req = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    p = _observe_all([("c2s", b"\x00" + req), ("s2c", resp)])
    assert p["name"] == "http" and p["requests"] == [{"method": "GET", "path": "/a", "host": "h", "status": 200}]
    # joined in the middle of a body: the tail of it, then the next request on a new line
    p = _observe_all([("c2s", b"tail of a form body=1&b=2\r\n" + req), ("s2c", b"xx" + resp)])
    assert p["name"] == "http" and [r["path"] for r in p["requests"]] == ["/a"]


def test_starttls_handshake_in_the_same_piece_as_the_clear_text() -> None:
    p = _observe_all([("c2s", b"EHLO lab\r\n"), ("s2c", b"220 ready\r\n"), ("c2s", b"STARTTLS\r\n" + _CH)])
    assert p["name"] == "tls" and p["client_ciphers"] == ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
    assert p["cleartext_first_line"] == "EHLO lab"


def test_tls_inside_an_http_connect_tunnel_is_seen() -> None:
    # PCAPdroid's proxy captures: CONNECT, 200, then the app's TLS through the tunnel
    p = _observe_all(
        [
            ("c2s", b"CONNECT app.chat.xiaomi.net:443 HTTP/1.1\r\nHost: app.chat.xiaomi.net:443\r\n\r\n"),
            ("s2c", b"HTTP/1.1 200 Connection established\r\n\r\n"),
            ("c2s", _CH),
        ]
    )
    assert p["name"] == "tls" and p["client_versions"] == ["TLS 1.2"]
    assert p["proxy"]["tunnel"] == "app.chat.xiaomi.net:443"
    assert p["proxy"]["requests"][0]["method"] == "CONNECT"


def test_ppp_with_and_without_hdlc_framing_and_a_compressed_protocol() -> None:
    """DLT_PPP as libpcap describes it: ff 03 optional, the protocol field 2 bytes or 1 (PFC)."""
    ip = ip_tcp("10.0.0.2", 40000, "10.9.0.5", 80, 1, 0, "S", b"")
    for head in (b"\xff\x03\x00\x21", b"\x00\x21", b"\x21", b"\xff\x03\x21"):
        rec, table = analyse(capture(lambda sink, h=head: sink(1.0, h + ip), linktype=LINKTYPE_PPP))
        assert table.stats["tcp_flows"] == 1, head
    rec, table = analyse(capture(lambda sink: sink(1.0, b"\xff\x03\xc0\x21" + b"\x01" * 20), linktype=LINKTYPE_PPP))
    assert table.stats["tcp_flows"] == 0 and table.stats["non_ip"] == 1  # LCP, not IP


def test_ipv6_jumbogram_length_comes_from_the_hop_by_hop_option() -> None:
    """RFC 2675 as Linux BIG TCP sends it (tcpdump's test capture bigtcp-ipv6-hbh.pcap: payload
    length 0, a hop-by-hop header with the Jumbo Payload option, then TCP)."""
    payload = bytes(range(256)) * 300  # 76,800 bytes: more than a 16-bit payload length holds
    plain = ip_tcp("fd00::2", 40000, "fd00::5", 443, 1, 1, "PA", payload[:60000])
    tcp = plain[40:] + payload[60000:]  # (its checksum is not ours to check)
    hbh = bytes([6, 0, 0xC2, 4]) + (8 + len(tcp)).to_bytes(4, "big")
    head = bytearray(plain[:40])
    head[4:6] = b"\x00\x00"  # payload length 0: see the option
    head[6] = 0  # next header: hop-by-hop
    rec, table = analyse(capture(lambda sink: sink(1.0, frame(LINKTYPE_ETHERNET, bytes(head) + hbh + tcp))))
    assert table.stats["tcp_flows"] == 1 and table.stats["malformed"] == 0
    assert rec.stream(1, "c2s" if rec.flows[1].key.client[1] == 40000 else "s2c")[0] == payload


def test_connect_in_the_same_piece_as_the_tunnels_first_bytes() -> None:
    """A client's CONNECT and what it sends next can reach us as one piece (coalesced before the
    proxy's answer is seen): the bytes after the CONNECT wait for that answer."""
    connect = b"CONNECT app.chat.xiaomi.net:443 HTTP/1.1\r\nHost: app.chat.xiaomi.net:443\r\n\r\n"
    p = _observe_all([("c2s", connect + _CH), ("s2c", b"HTTP/1.1 200 Connection established\r\n\r\n")])
    assert p["name"] == "tls" and p["client_versions"] == ["TLS 1.2"]
    assert p["proxy"]["tunnel"] == "app.chat.xiaomi.net:443"
    # refused (407): what followed the CONNECT is HTTP on the proxy connection after all
    get = b"GET http://api.example/x HTTP/1.1\r\nHost: api.example\r\n\r\n"
    p = _observe_all(
        [
            ("c2s", connect + get),
            ("s2c", b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"),
            ("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ]
    )
    assert p["name"] == "http" and "proxy" not in p
    assert [(r["method"], r.get("status")) for r in p["requests"]] == [("CONNECT", 407), ("GET", 200)]
