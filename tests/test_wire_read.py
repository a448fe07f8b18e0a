"""The capture reader: every format variant it claims, damage handled as documented, and a
mutation test that nothing but CaptureError (or a clean, counted finish) comes out of it."""

from __future__ import annotations

import gzip
import io
import shutil
import signal
import struct
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostctl.errors import HostctlError
from hostctl.wire.pcapread import CaptureError, CaptureReader, Packet, open_capture
from hostctl.wire.pcapwrite import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_RAW,
    PcapngWriter,
    PcapWriter,
    TcpConversation,
    frame,
    ipv4_udp,
)

TSHARK = shutil.which("tshark")

# ---------------------------------------------------------------------------------------------
# hand-built files, for the variants our writers do not produce (big-endian, sections, SPB, ...)


def _opt(bo: str, code: int, value: bytes) -> bytes:
    return struct.pack(bo + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _opts(bo: str, *opts: tuple[int, bytes]) -> bytes:
    return b"".join(_opt(bo, c, v) for c, v in opts) + (struct.pack(bo + "HH", 0, 0) if opts else b"")


def block(bo: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack(bo + "II", btype, 12 + len(body)) + body + struct.pack(bo + "I", 12 + len(body))


def shb(bo: str) -> bytes:
    return block(bo, 0x0A0D0D0A, struct.pack(bo + "IHHq", 0x1A2B3C4D, 1, 0, -1) + _opts(bo, (4, b"test")))


def idb(bo: str, linktype: int, *, snaplen: int = 0, tsresol: int | None = None, tsoffset: int | None = None) -> bytes:
    opts = []
    if tsresol is not None:
        opts.append((9, bytes([tsresol])))
    if tsoffset is not None:
        opts.append((14, struct.pack(bo + "q", tsoffset)))
    return block(bo, 1, struct.pack(bo + "HHI", linktype, 0, snaplen) + _opts(bo, *opts))


def epb(bo: str, ifid: int, ticks: int, data: bytes, origlen: int | None = None) -> bytes:
    return block(
        bo,
        6,
        struct.pack(
            bo + "IIIII", ifid, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data) if origlen is None else origlen
        )
        + data,
    )


def spb(bo: str, data: bytes) -> bytes:
    return block(bo, 3, struct.pack(bo + "I", len(data)) + data)


def pb(bo: str, ifid: int, ticks: int, data: bytes) -> bytes:
    return block(
        bo, 2, struct.pack(bo + "HHIIII", ifid, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)) + data
    )


def pcap(
    bo: str, packets: list[tuple[int, int, bytes]], *, nanos: bool = False, linktype: int = 1, snaplen: int = 65535
) -> bytes:
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = struct.pack(bo + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    for sec, frac, data in packets:
        out += struct.pack(bo + "IIII", sec, frac, len(data), len(data)) + data
    return out


def udp(i: int) -> bytes:
    return frame(LINKTYPE_ETHERNET, ipv4_udp("10.0.0.2", 40000 + i, "10.9.0.5", 53, bytes([i]) * (10 + i)))


def read_all(data: bytes, **kw) -> tuple[list[Packet], CaptureReader]:
    r = CaptureReader(io.BytesIO(data), name="test.pcap", **kw)
    return list(r), r


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bo", ["<", ">"])
@pytest.mark.parametrize("nanos", [False, True])
def test_classic_pcap_both_byte_orders_and_resolutions(bo: str, nanos: bool) -> None:
    frac = 123456789 if nanos else 123456
    pkts, r = read_all(pcap(bo, [(1700000000, frac, udp(1)), (1700000001, 0, udp(2))], nanos=nanos))
    assert [p.data for p in pkts] == [udp(1), udp(2)]
    assert [p.index for p in pkts] == [1, 2]
    assert pkts[0].ts == pytest.approx(1700000000.123456789 if nanos else 1700000000.123456, abs=1e-6)
    assert all(p.linktype == 1 and p.caplen == p.origlen == len(p.data) for p in pkts)
    assert r.stats["format"] == "pcap" and r.stats["packets"] == 2 and r.stats["error_count"] == 0


def test_modified_pcap_with_24_byte_record_headers() -> None:
    head = struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, 1)
    rec = struct.pack("<IIII", 5, 6, len(udp(1)), len(udp(1))) + b"\0" * 8 + udp(1)
    pkts, r = read_all(head + rec + rec)
    assert [p.data for p in pkts] == [udp(1), udp(1)] and pkts[0].ts == pytest.approx(5.000006)


def test_writers_round_trip(tmp_path: Path) -> None:
    for cls in (PcapWriter, PcapngWriter):
        path = tmp_path / f"rt.{cls.__name__}"
        with path.open("wb") as f:
            w = cls(f, linktype=LINKTYPE_RAW, snaplen=64)
            w.packet(1700000000.5, b"\x45" + b"x" * 99)
            w.packet(1700000001.000001, b"\x45" + b"y" * 10)
        with open_capture(path) as r:
            pkts = list(r)
        assert [(p.ts, p.linktype, p.caplen, p.origlen) for p in pkts] == [
            (pytest.approx(1700000000.5, abs=1e-7), 101, 64, 100),
            (pytest.approx(1700000001.000001, abs=1e-7), 101, 11, 11),
        ]
        assert pkts[0].data == (b"\x45" + b"x" * 99)[:64]


@pytest.mark.parametrize("bo", ["<", ">"])
def test_pcapng_sections_interfaces_and_block_kinds(bo: str) -> None:
    other = ">" if bo == "<" else "<"
    data = (
        shb(bo)
        + idb(bo, 1, tsresol=9)
        + idb(bo, 101, tsresol=0x80 | 20, tsoffset=1000, snaplen=40)
        + epb(bo, 0, 1_700_000_000_123_456_789, udp(1))
        + block(bo, 4, _opt(bo, 1, bytes([10, 9, 0, 5]) + b"app.chat.xiaomi.net\0") + _opts(bo))  # NRB
        + epb(bo, 1, 3 << 20, b"\x45raw")  # 3 s at 2^-20 resolution, + offset
        + block(bo, 5, struct.pack(bo + "III", 0, 0, 0))  # interface statistics
        + block(bo, 0x0BAD, b"PCAPdroid")  # PCAPdroid's custom blocks
        + block(bo, 0x40000BAD, b"PCAPdroid, not to copy")
        + block(bo, 0x12345, b"unknown kind")
        + spb(bo, udp(2))  # interface 0, no timestamp
        + pb(bo, 1, 7 << 20, b"\x45old")
        # a second section in the other byte order, with its own interfaces
        + shb(other)
        + idb(other, 113)
        + epb(other, 0, 2_000_000, udp(3))
    )
    pkts, r = read_all(data)
    assert [(p.index, p.linktype, p.data) for p in pkts] == [
        (1, 1, udp(1)),
        (2, 101, b"\x45raw"),
        (5, 1, udp(2)),
        (6, 101, b"\x45old"),
        (7, 113, udp(3)),
    ]
    assert pkts[0].ts == pytest.approx(1_700_000_000.123456789, abs=1e-6)
    assert pkts[1].ts == pytest.approx(1003.0)
    assert pkts[2].ts == pkts[1].ts  # an SPB carries no time: the previous packet's stands in
    assert pkts[3].ts == pytest.approx(1007.0)
    assert pkts[4].ts == pytest.approx(2.0)
    assert r.names == {"10.9.0.5": "app.chat.xiaomi.net"}
    assert r.stats["skipped_blocks"] == {5: 1, 0x0BAD: 1, 0x40000BAD: 1, 0x12345: 1}
    assert r.stats["sections"] == 2 and r.stats["error_count"] == 0 and r.stats["packets"] == 5
    assert r.frame_skew == 2  # the custom blocks, numbered as frames by Wireshark
    assert [i["linktype"] for i in r.stats["interfaces"]] == [1, 101, 113]


def test_gzip_capture(tmp_path: Path) -> None:
    path = tmp_path / "c.pcap.gz"
    path.write_bytes(gzip.compress(pcap("<", [(1, 0, udp(1)), (2, 0, udp(2))])))
    with open_capture(path) as r:
        assert [p.data for p in r] == [udp(1), udp(2)]


def test_records_are_the_packets_without_objects() -> None:
    data = pcap("<", [(1, 0, udp(1)), (2, 0, udp(2))])
    r = CaptureReader(io.BytesIO(data))
    recs = [(ts, lt, bytes(buf[s : s + n]), n, o) for ts, lt, buf, s, n, o in r.records()]
    assert recs == [(1.0, 1, udp(1), len(udp(1)), len(udp(1))), (2.0, 1, udp(2), len(udp(2)), len(udp(2)))]
    with pytest.raises(ValueError, match="only once"):
        list(r)


def test_small_chunks_cross_record_boundaries() -> None:
    packets = [(i, 0, udp(i % 50) * (i % 7 + 1)) for i in range(300)]
    for data in (pcap("<", packets), shb("<") + idb("<", 1) + b"".join(epb("<", 0, i, d) for i, _, d in packets)):
        r = CaptureReader(io.BytesIO(data), chunk_size=100)  # clamped to 4096: still many refills
        assert [p.data for p in r] == [d for _, _, d in packets]


# -- damage -----------------------------------------------------------------------------------


def test_not_a_capture() -> None:
    with pytest.raises(CaptureError, match=r"test.pcap: at byte 0: not a pcap or pcapng file \(magic 74686973\)"):
        read_all(b"this is no capture at all")
    with pytest.raises(CaptureError, match="too short"):
        read_all(b"\xd4\xc3")
    with pytest.raises(CaptureError, match="header cut short"):
        read_all(pcap("<", [])[:20])
    with pytest.raises(CaptureError, match="bad byte-order magic"):
        read_all(b"\x0a\x0d\x0d\x0a" + b"\x1c\0\0\0" + b"XXXX" + b"\0" * 20)
    assert issubclass(CaptureError, HostctlError)


def test_missing_file_is_a_capture_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot open"):
        open_capture(tmp_path / "nope.pcap")


def test_truncated_pcap_counts_the_cut_packet() -> None:
    data = pcap("<", [(1, 0, udp(1)), (2, 0, udp(2))])
    pkts, r = read_all(data[:-5])
    assert [p.data for p in pkts] == [udp(1)]
    assert r.stats["truncated_packets"] == 1
    assert r.stats["errors"] == [
        f"byte {24 + 16 + len(udp(1))}: file ends inside a packet "
        f"({len(udp(2)) - 5} of {len(udp(2))} bytes); packet dropped"
    ]
    pkts, r = read_all(data[: 24 + 16 + len(udp(1)) + 7])
    assert len(pkts) == 1 and r.stats["truncated_packets"] == 1 and "inside a record header" in r.stats["errors"][0]
    with pytest.raises(CaptureError, match=r"test.pcap: at byte \d+: file ends inside a packet"):
        read_all(data[:-5], strict=True)


def test_truncated_pcapng_and_garbage_between_blocks() -> None:
    good = shb("<") + idb("<", 1) + epb("<", 0, 1, udp(1))
    pkts, r = read_all(good + epb("<", 0, 2, udp(2))[:-9])
    assert len(pkts) == 1 and r.stats["truncated_packets"] == 1
    garbage = b"\x06\0\0\0\xff\xff\0\0 not a block at all \x00\x01" * 3
    pkts, r = read_all(good + garbage + epb("<", 0, 3, udp(3)) + epb("<", 0, 4, udp(4)))
    assert [p.data for p in pkts] == [udp(1), udp(3), udp(4)]
    assert r.stats["skipped_bytes"] == len(garbage)
    assert r.stats["error_count"] == 2 and "searching for the next block" in r.stats["errors"][0]
    assert r.stats["errors"][1] == f"byte {len(good) + len(garbage)}: resumed after skipping {len(garbage)} bytes"


def test_pcap_resync_after_a_corrupt_record_header() -> None:
    packets = [(1700000000 + i, 0, udp(i)) for i in range(10)]
    data = bytearray(pcap("<", packets))
    third = 24 + 2 * 16 + len(udp(0)) + len(udp(1))
    data[third + 8 : third + 12] = struct.pack("<I", 0x7FFFFFFF)  # caplen of packet 3
    pkts, r = read_all(bytes(data))
    assert [p.data for p in pkts] == [udp(i) for i in range(10) if i != 2]
    assert r.stats["skipped_bytes"] == 16 + len(udp(2))
    with pytest.raises(CaptureError, match=f"at byte {third}: implausible record header"):
        read_all(bytes(data), strict=True)


def test_epb_bigger_than_its_block_and_unknown_interface_are_skipped() -> None:
    bad = bytearray(epb("<", 0, 1, udp(1)))
    bad[20:24] = struct.pack("<I", len(udp(1)) + 100)  # caplen beyond the block
    data = shb("<") + idb("<", 1) + bytes(bad) + epb("<", 7, 1, udp(2)) + epb("<", 0, 1, udp(3))
    pkts, r = read_all(data)
    assert [p.data for p in pkts] == [udp(3)]
    assert r.stats["error_count"] == 2 and "interface 7" in r.stats["errors"][1]


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt install tshark)")
def test_tshark_reads_the_same_packets(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pcapng"
    data = (
        shb("<")
        + idb("<", 1, tsresol=9)
        + idb("<", 101, tsresol=0x80 | 20, tsoffset=1000)
        + epb("<", 0, 1_700_000_000_123_456_789, udp(1))
        + epb("<", 1, 3 << 20, udp(2)[14:])
        + block("<", 0x0BAD, b"x")
        + spb("<", udp(3))
        + shb(">")
        + idb(">", 113, tsresol=3)
        + epb(">", 0, 5_000, frame(LINKTYPE_LINUX_SLL, udp(4)[14:]))
    )
    path.write_bytes(data)
    out = subprocess.run(
        [TSHARK, "-r", str(path), "-T", "fields", "-e", "frame.len", "-e", "udp.srcport", "-e", "frame.time_epoch"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    # tshark lists the custom block as a frame of its own (frame 3), as our frame numbers do
    theirs = {i + 1: line.split("\t") for i, line in enumerate(out.splitlines())}
    with open_capture(path) as r:
        ours = list(r)
    assert [p.index for p in ours] == [1, 2, 4, 5] and len(theirs) == 5
    assert [int(theirs[p.index][0]) for p in ours] == [p.origlen for p in ours]
    assert [int(theirs[p.index][1]) for p in ours] == [40001, 40002, 40003, 40004]
    # the SPB has no time (tshark shows none); the others agree to the microsecond
    for p in ours:
        if float(theirs[p.index][2] or 0):
            assert float(theirs[p.index][2]) == pytest.approx(p.ts, abs=1e-6)


# -- mutation ---------------------------------------------------------------------------------


def _capture_samples() -> list[bytes]:
    out = []
    f = io.BytesIO()
    w = PcapngWriter(f, comment="sample")
    w.add_names({"10.9.0.5": "app.chat.xiaomi.net"})
    conv = TcpConversation(w.packet, client=("10.0.0.2", 40000), server=("10.9.0.5", 5222), mss=200)
    conv.open(1.0)
    conv.send(1.1, "c2s", bytes(range(256)) * 3)
    conv.send(1.2, "s2c", b"ok")
    conv.close(1.3)
    out.append(f.getvalue())
    f = io.BytesIO()
    w2 = PcapWriter(f)
    for i in range(8):
        w2.packet(1700000000 + i / 10, udp(i))
    out.append(f.getvalue())
    out.append(pcap(">", [(1700000000 + i, i, udp(i)) for i in range(6)], nanos=True))
    out.append(
        shb(">")
        + idb(">", 1, tsresol=9)
        + epb(">", 0, 1, udp(1))
        + spb(">", udp(2))
        + block(">", 0x40000BAD, b"pcapdroid")
        + pb(">", 0, 2, udp(3))
        + epb(">", 0, 3, udp(4))
    )
    return out


SAMPLES = _capture_samples()


class _Transcript:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def flow_start(self, flow) -> None:
        self.events.append(("start", flow.id, str(flow.key)))

    def data(self, flow, direction, offset, data, ts) -> None:
        if self.events and self.events[-1][:3] == ("data", flow.id, direction):
            self.events[-1] = self.events[-1][:4] + (self.events[-1][4] + data,)  # coalescing may differ
        else:
            self.events.append(("data", flow.id, direction, offset, data))

    def gap(self, flow, direction, offset, length) -> None:
        self.events.append(("gap", flow.id, direction, offset, length))

    def datagram(self, flow, direction, data, ts, index) -> None:
        self.events.append(("dgram", flow.id, direction, data, index))

    def flow_end(self, flow) -> None:
        self.events.append(("end", flow.id, flow.ended, dict(flow.protocol)))


@contextmanager
def _hang_guard(seconds: int):
    """A generous wall-clock guard: a reader caught in a loop fails the example instead of
    stalling the run (not a performance check; examples take milliseconds)."""

    def boom(*_):
        raise TimeoutError("reader did not finish: a loop that never ends?")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "garbage", "fake_block", "snaplen", "magic", "length"]))
        n = len(data)
        if kind == "flip" and n:
            for _ in range(draw(st.integers(1, 8))):
                i = draw(st.integers(0, n - 1))
                data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate" and n:
            # offset classes: inside the file header, at a 4-byte boundary (block edges), anywhere
            cls = draw(st.sampled_from(["header", "aligned", "any", "near_end"]))
            at = {
                "header": lambda n=n: draw(st.integers(0, min(n, 40))),
                "aligned": lambda n=n: draw(st.integers(0, n // 4)) * 4,
                "any": lambda n=n: draw(st.integers(0, n)),
                "near_end": lambda n=n: max(0, n - draw(st.integers(1, 12))),
            }[cls]()
            del data[at:]
        elif kind == "garbage":
            at = draw(st.integers(0, n))
            data[at:at] = draw(st.binary(min_size=1, max_size=300))
        elif kind == "fake_block":
            at = draw(st.integers(0, n // 4)) * 4
            btype = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 0x0A0D0D0A, 0xBAD, 0x40000BAD, 0xDEAD]))
            blen = draw(
                st.sampled_from([0, 4, 12, 13, 16, 28, 32, 0xFFFFFFF0, 1 << 24, draw(st.integers(0, 2**32 - 1))])
            )
            body = draw(st.binary(max_size=64))
            bo = draw(st.sampled_from(["<", ">"]))
            data[at:at] = struct.pack(bo + "II", btype, blen) + body + struct.pack(bo + "I", blen)
        elif kind == "snaplen" and n >= 20:
            # a small snaplen in the pcap header / first IDB (packets then exceed it)
            at = 16 if data[:4] != b"\x0a\x0d\x0d\x0a" else min(n - 4, 28 + 4 + 4)
            data[at : at + 4] = struct.pack("<I", draw(st.integers(0, 64)))
        elif kind == "magic" and n >= 4:
            data[:4] = draw(st.binary(min_size=4, max_size=4))
        elif kind == "length" and n >= 8:
            at = draw(st.integers(0, (n - 8) // 4)) * 4
            data[at + 4 : at + 8] = struct.pack("<I", draw(st.integers(0, 2**32 - 1)))
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=mutated(), strict=st.booleans())
def test_mutated_captures_give_capture_error_or_a_counted_finish(data: bytes, strict: bool) -> None:
    from hostctl.wire.flows import FlowTable

    with _hang_guard(20):
        try:
            r = CaptureReader(io.BytesIO(data), name="mutant.pcap", strict=strict)
            pkts = list(r)
        except CaptureError as e:
            assert "mutant.pcap: at byte " in str(e)
            return
        assert r.stats["packets"] == len(pkts)
        assert r.stats["error_count"] >= len(r.stats["errors"])
        assert all(p.caplen == len(p.data) for p in pkts)
        idx = [p.index for p in pkts]
        assert idx == sorted(set(idx)) and all(1 <= i <= n + 1 + r.frame_skew for n, i in enumerate(idx))
        # and what comes out of a damaged file is safe to analyse, the same way by the flow
        # table's own walk of the file as packet by packet
        one, two = _Transcript(), _Transcript()
        table = FlowTable(one)
        for p in pkts:
            table.feed(p)
        table.close()
        table2 = FlowTable(two)
        table2.run(CaptureReader(io.BytesIO(data), name="mutant.pcap", chunk_size=4096))
        assert one.events == two.events and table.stats == table2.stats


def test_cut_gzip_keeps_what_was_read(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcap.gz"
    packets = [(i, 0, bytes([i]) * 2000) for i in range(100)]
    whole = gzip.compress(pcap("<", packets), compresslevel=1)
    path.write_bytes(whole[: len(whole) // 2])
    with open_capture(path) as r:
        pkts = list(r)
    assert 0 < len(pkts) < 100 and [p.data for p in pkts] == [d for _, _, d in packets[: len(pkts)]]
    assert any("treated as the end of the file" in e for e in r.stats["errors"])
    with pytest.raises(CaptureError, match="read failed"):
        list(open_capture(path, strict=True))


def test_flow_table_walks_every_format_as_the_reader_reads_it(tmp_path: Path) -> None:
    """FlowTable.run walks plain records itself (CaptureReader.spans); on every format, across
    chunk ends, from plain and gzip'd files, it must see what packet-by-packet feeding sees."""
    from hostctl.wire.flows import FlowTable

    f = io.BytesIO()
    w = PcapngWriter(f)
    for i in range(3):
        conv = TcpConversation(w.packet, client=("10.0.0.2", 40000 + i), server=("10.9.0.5", 443), mss=300)
        conv.open(1.0 + i)
        conv.send(1.1 + i, "c2s", bytes(range(256)) * 20)
        conv.send(1.2 + i, "s2c", b"ok" * 500)
        conv.close(1.3 + i)
    ng = f.getvalue()
    pkts = list(CaptureReader(io.BytesIO(ng)))
    frames = [(1700000000 + i, i, p.data) for i, p in enumerate(pkts)]
    head = struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, 1)
    modified = head + b"".join(struct.pack("<IIII", s, u, len(d), len(d)) + b"\0" * 8 + d for s, u, d in frames)
    variants = {
        "pcapng": ng,
        "pcap-le": pcap("<", frames),
        "pcap-be-ns": pcap(">", frames, nanos=True),
        "modified": modified,
        "pcapng-be": shb(">") + idb(">", 1) + b"".join(epb(">", 0, i, p.data) for i, p in enumerate(pkts)),
    }
    for name, data in variants.items():
        path = tmp_path / name
        path.write_bytes(data)
        (tmp_path / (name + ".gz")).write_bytes(gzip.compress(data))
        for source in (path, tmp_path / (name + ".gz")):
            one, two = _Transcript(), _Transcript()
            t1 = FlowTable(one)
            for p in open_capture(source):
                t1.feed(p)
            t1.close()
            t2 = FlowTable(two)
            t2.run(CaptureReader(source, chunk_size=4096))
            assert one.events == two.events and t1.stats == t2.stats, (name, source)
            assert [e for e in one.events if e[0] == "end"] and t2.stats["packets"] == len(pkts)


def test_cut_at_every_offset_gives_a_prefix_of_the_packets() -> None:
    for sample in SAMPLES:
        whole = [(p.ts, p.data) for p in CaptureReader(io.BytesIO(sample))]
        header_end = 24 if sample[:4] != b"\x0a\x0d\x0d\x0a" else 28
        before = 0
        for cut in range(len(sample) + 1):
            try:
                r = CaptureReader(io.BytesIO(sample[:cut]), name="cut.pcap")
                got = [(p.ts, p.data) for p in r]
            except CaptureError as e:
                assert cut < header_end and "cut.pcap: at byte" in str(e), (cut, e)
                continue
            # what was read whole is read right, and a longer file never gives fewer packets
            assert got == whole[: len(got)] and len(got) >= before, cut
            before = len(got)
            assert r.stats["truncated_packets"] <= 1
            if cut == len(sample):
                assert got == whole and r.stats["error_count"] == 0
