"""tshark as the second reader of every capture we write: the flows, their bytes, SNI, TLS versions
and ciphers, and clear HTTP requests must be what tshark sees.

The TLS is real: Python's ssl runs both ends of each handshake over memory BIOs, with the lab's
throwaway CA (`hostctl.emulator.labca.ensure_ca`) signing the server certificate for the Xiaomi
host names, so the bytes are those of a real TLS 1.2 or 1.3 connection with SNI.
"""

from __future__ import annotations

import random
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from hostctl.emulator.labca import LabCA, ensure_ca
from hostctl.wire.flows import Flow, FlowTable
from hostctl.wire.pcapread import open_capture
from hostctl.wire.pcapwrite import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_PPP,
    LINKTYPE_RAW,
    PcapngWriter,
    PcapWriter,
    TcpConversation,
    frame,
    ip_tcp,
    ip_udp,
)
from hostctl.wire.protocols import version_name

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(
    TSHARK is None,
    reason="tshark is not installed (apt install tshark, or make "
    "debian-clients); it is the reference these tests compare with",
)


def tls_exchange(ca: LabCA, sni: str, version: ssl.TLSVersion, c2s: bytes, s2c: bytes) -> list[tuple[str, bytes]]:
    """Both ends of a real TLS connection over memory BIOs: the bytes each side sent, in order."""
    server_ctx = ca.server_context()
    server_ctx.maximum_version = version
    cin, cout, sin, sout = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ca.client_context().wrap_bio(cin, cout, server_hostname=sni)
    server = server_ctx.wrap_bio(sin, sout, server_side=True)
    out: list[tuple[str, bytes]] = []

    def pump() -> bool:
        moved = False
        for direction, src, dst in (("c2s", cout, sin), ("s2c", sout, cin)):
            chunk = src.read()
            if chunk:
                out.append((direction, chunk))
                dst.write(chunk)
                moved = True
        return moved

    done = {"c": False, "s": False}
    for _ in range(50):
        for name, end in (("c", client), ("s", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        if not pump() and all(done.values()):
            break
    assert all(done.values()), "TLS handshake did not complete"
    assert client.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    client.write(c2s)
    pump()
    assert server.read(len(c2s) + 1) == c2s
    server.write(s2c)
    pump()
    assert client.read(len(s2c) + 1) == s2c
    return out


# (client, server, sni or None for clear HTTP, TLS version, how it ends)
FLOWS = [
    (("10.0.0.2", 40001), ("10.9.0.5", 5222), "app.chat.xiaomi.net", ssl.TLSVersion.TLSv1_2, "fin"),
    (("10.0.0.2", 40002), ("10.9.0.6", 443), "api.account.xiaomi.com", ssl.TLSVersion.TLSv1_3, "fin"),
    (("fd00::2", 40003), ("fd00::5", 443), "mixin.xiaomi.net", ssl.TLSVersion.TLSv1_3, "fin"),
    (("fd00::2", 40004), ("fd00::6", 5222), "app.chat.global.xiaomi.net", ssl.TLSVersion.TLSv1_2, "rst"),
    (("10.0.0.2", 40005), ("10.9.0.7", 80), None, None, "fin"),
    (("10.0.0.2", 40001), ("10.9.0.5", 5222), "app.chat.xiaomi.net", ssl.TLSVersion.TLSv1_3, "fin"),  # ports reused
]
HTTP_C2S = (
    b"GET /gslb?list=app.chat.xiaomi.net HTTP/1.1\r\nHost: resolver.msg.xiaomi.net\r\n\r\n"
    b"POST /report HTTP/1.1\r\nHost: resolver.msg.xiaomi.net\r\nContent-Length: 9\r\n\r\nimei=none"
)
HTTP_S2C = b'HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{"ip":"10.9"}\nHTTP/1.1 204 No Content\r\n\r\n'


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LabCA:
    return ensure_ca(tmp_path_factory.mktemp("ca"))


def write_capture(path: Path, ca: LabCA, linktype: int, *, ng: bool, scramble: bool = False) -> None:
    """The flows of FLOWS one after another (overlapping in time), plus UDP; with ``scramble``,
    the segments of each TLS flow's first flight arrive out of order and some twice."""
    rnd = random.Random(linktype)
    with path.open("wb") as f:
        w = (PcapngWriter if ng else PcapWriter)(f, linktype=linktype)
        if ng:
            w.add_names(
                {
                    "10.9.0.5": "app.chat.xiaomi.net",
                    "10.9.0.6": "api.account.xiaomi.com",  # type: ignore[union-attr]
                    "fd00::5": "mixin.xiaomi.net",
                    "fd00::6": "app.chat.global.xiaomi.net",
                    "10.9.0.7": "resolver.msg.xiaomi.net",
                }
            )
        ts = 1_700_000_000.0
        for client, server, sni, version, end in FLOWS:
            if sni is None:
                transcript = [
                    ("c2s", HTTP_C2S[:80]),
                    ("s2c", HTTP_S2C[:55]),
                    ("c2s", HTTP_C2S[80:]),
                    ("s2c", HTTP_S2C[55:]),
                ]
            else:
                transcript = tls_exchange(ca, sni, version, b"<iq type='get'>" * 200, rnd.randbytes(5000))
            if scramble:
                _scrambled(w.packet, client, server, linktype, transcript, ts, rnd, reset=end == "rst")
            else:
                conv = TcpConversation(w.packet, client=client, server=server, linktype=linktype, mss=1200)
                conv.open(ts)
                for i, (direction, chunk) in enumerate(transcript):
                    conv.send(ts + 0.01 * (i + 1), direction, chunk)  # type: ignore[arg-type]
                conv.close(ts + 1, reset=end == "rst")
            ts += 2
        for i in range(3):
            w.packet(ts + i, frame(linktype, ip_udp("10.0.0.2", 5353, "10.9.0.53", 53, b"dns?" * (i + 1))))


def _scrambled(sink, client, server, linktype, transcript, ts, rnd, *, reset: bool) -> None:
    """A connection whose segments come out of order, with duplicates and overlapping resends."""
    isn = {"c2s": rnd.randrange(2**32), "s2c": rnd.randrange(2**32)}
    nxt = {d: isn[d] + 1 for d in isn}

    def emit(direction, seq, payload, flags):
        src, dst = (client, server) if direction == "c2s" else (server, client)
        other = "s2c" if direction == "c2s" else "c2s"
        sink(
            ts_[0],
            frame(
                linktype,
                ip_tcp(src[0], src[1], dst[0], dst[1], seq & 0xFFFFFFFF, nxt[other] & 0xFFFFFFFF, flags, payload),
            ),
        )
        ts_[0] += 0.0001

    ts_ = [ts]
    emit("c2s", isn["c2s"], b"", "S")
    emit("s2c", isn["s2c"], b"", "SA")
    emit("c2s", nxt["c2s"], b"", "A")
    for direction, chunk in transcript:
        segs = [(nxt[direction] + i, chunk[i : i + 300]) for i in range(0, len(chunk), 300)]
        if len(segs) > 1:
            segs[0], segs[1] = segs[1], segs[0]  # out of order
            segs.insert(2, segs[1])  # an exact duplicate
            a, b = segs[-1]
            segs.append((a - 10, chunk[a - nxt[direction] - 10 :]))  # an overlapping resend of the tail
        for seq, payload in segs:
            emit(direction, seq, payload, "PA")
        nxt[direction] += len(chunk)
        emit("s2c" if direction == "c2s" else "c2s", nxt["s2c" if direction == "c2s" else "c2s"], b"", "A")
    if reset:
        emit("c2s", nxt["c2s"], b"", "RA")
        return
    emit("c2s", nxt["c2s"], b"", "FA")
    nxt["c2s"] += 1
    emit("s2c", nxt["s2c"], b"", "FA")
    nxt["s2c"] += 1
    emit("c2s", nxt["c2s"], b"", "A")


def tshark(path: Path, *args: str) -> str:
    return subprocess.run(
        [TSHARK, "-r", str(path), "-n", "-d", "tcp.port==5222,tls", "-o", "tcp.reassemble_out_of_order:TRUE", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


def tshark_fields(path: Path, filt: str, *fields: str) -> list[list[str]]:
    args = ["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"]
    if filt:
        args += ["-Y", filt]
    for f in fields:
        args += ["-e", f]
    return [line.split("\t") for line in tshark(path, *args).splitlines()]


def tshark_streams(path: Path) -> dict[int, dict]:
    """tcp.stream -> client, server (the SYN's sender is the client), and bytes as `follow` gives."""
    streams: dict[int, dict] = {}
    for stream, s4, s6, sport, d4, d6, dport, syn, ack in tshark_fields(
        path,
        "tcp",
        "tcp.stream",
        "ip.src",
        "ipv6.src",
        "tcp.srcport",
        "ip.dst",
        "ipv6.dst",
        "tcp.dstport",
        "tcp.flags.syn",
        "tcp.flags.ack",
    ):
        n = int(stream)
        src, dst = (s4 or s6, int(sport)), (d4 or d6, int(dport))
        if n not in streams or (syn in ("1", "True") and ack in ("0", "False")):
            streams.setdefault(n, {})
            if "syn" not in streams[n]:
                streams[n].update(client=src, server=dst, syn=syn in ("1", "True") and ack in ("0", "False"))
    args = [a for n in streams for a in ("-z", f"follow,tcp,raw,{n}")]
    out = tshark(path, "-q", *args)
    for block in out.split("===================================================================\n"):
        lines = block.splitlines()
        head = [line for line in lines if line.startswith("Filter: tcp.stream eq ")]
        if not head:
            continue
        n = int(head[0].rsplit(" ", 1)[1])
        data = {"c2s": bytearray(), "s2c": bytearray()}
        for line in lines:
            if line.startswith(("Follow:", "Filter:", "Node ")) or not line.strip():
                continue
            # node 0 (the first packet's sender: the SYN's) at the margin, node 1 indented
            data["s2c" if line.startswith("\t") else "c2s"] += bytes.fromhex(line.strip())
        streams[n]["data"] = {k: bytes(v) for k, v in data.items()}
    return streams


class Collect:
    def __init__(self) -> None:
        self.flows: list[Flow] = []
        self.streams: dict[tuple[int, str], bytearray] = {}
        self.gaps: list[tuple] = []
        self.datagrams: list[tuple] = []

    def flow_start(self, flow: Flow) -> None:
        self.flows.append(flow)

    def data(self, flow: Flow, direction: str, offset: int, data: bytes, ts: float) -> None:
        buf = self.streams.setdefault((flow.id, direction), bytearray())
        assert offset == len(buf)
        buf += data

    def gap(self, flow: Flow, direction: str, offset: int, length: int) -> None:
        self.gaps.append((flow.id, direction, offset, length))

    def datagram(self, flow: Flow, direction: str, data: bytes, ts: float, index: int) -> None:
        self.datagrams.append((flow.key.server, data, index))

    def flow_end(self, flow: Flow) -> None:
        pass


def ours(path: Path) -> Collect:
    c = Collect()
    with open_capture(path) as r:
        FlowTable(c).run(r)
    return c


CASES = [
    (LINKTYPE_ETHERNET, True, False),
    (LINKTYPE_RAW, False, False),
    (LINKTYPE_LINUX_SLL, True, False),
    (LINKTYPE_LINUX_SLL2, False, False),
    (LINKTYPE_ETHERNET, True, True),
    (LINKTYPE_LINUX_SLL, False, True),
    (LINKTYPE_PPP, False, False),
]


@pytest.mark.parametrize(
    "linktype,ng,scramble",
    CASES,
    ids=[f"lt{lt}-{'pcapng' if ng else 'pcap'}{'-scrambled' if s else ''}" for lt, ng, s in CASES],
)
def test_flows_bytes_sni_versions_and_http_agree_with_tshark(
    tmp_path: Path, ca: LabCA, linktype: int, ng: bool, scramble: bool
) -> None:
    path = tmp_path / f"lab.{'pcapng' if ng else 'pcap'}"
    write_capture(path, ca, linktype, ng=ng, scramble=scramble)
    us = ours(path)
    theirs = tshark_streams(path)
    tcp = [f for f in us.flows if f.key.proto == "tcp"]

    # flows: same count, same order (tcp.stream numbers by first packet, as our ids), same ends
    assert [(f.key.client, f.key.server) for f in tcp] == [
        (theirs[n]["client"], theirs[n]["server"]) for n in sorted(theirs)
    ]
    assert [(f.key.client, f.key.server) for f in tcp] == [(c, s) for c, s, *_ in FLOWS]
    assert [f.ended for f in tcp] == [e for *_, e in FLOWS]
    # the bytes of each direction, as tshark's follow reassembles them
    for n, f in zip(sorted(theirs), tcp):
        for d in ("c2s", "s2c"):
            assert bytes(us.streams.get((f.id, d), b"")) == theirs[n]["data"][d], (f, d)
    assert us.gaps == []

    # TLS: SNI and offered versions from the ClientHello; negotiated version and cipher from the ServerHello
    hellos: dict[int, dict] = {}
    for stream, htype, sni, legacy, supported, suite in tshark_fields(
        path,
        "tls.handshake.type == 1 || tls.handshake.type == 2",
        "tcp.stream",
        "tls.handshake.type",
        "tls.handshake.extensions_server_name",
        "tls.handshake.version",
        "tls.handshake.extensions.supported_version",
        "tls.handshake.ciphersuite",
    ):
        h = hellos.setdefault(int(stream), {})
        for t in htype.split(","):
            if t == "1":
                h["sni"] = sni
                h["client_versions"] = [version_name(int(v, 16)) for v in supported.split(",") if v] or [
                    version_name(int(legacy.split(",")[0], 16))
                ]
            elif t == "2":
                sup = [v for v in supported.split(",") if v]
                h["version"] = version_name(int(sup[-1] if sup else legacy.split(",")[-1], 16))
                h["cipher_id"] = f"0x{int(suite.split(',')[-1], 16):04X}"
    for n, f in zip(sorted(theirs), tcp):
        if f.key.server[1] == 80:
            assert n not in hellos and f.protocol["name"] == "http"
            continue
        p = f.protocol
        assert p["name"] == "tls" and "error" not in p, p
        # GREASE-free offered versions; tshark lists what the client sent
        assert {k: p.get(k) for k in ("sni", "client_versions", "version", "cipher_id")} == hellos[n], (f, p)
    assert [f.protocol["version"] for f in tcp if f.protocol["name"] == "tls"] == [
        {ssl.TLSVersion.TLSv1_2: "TLS 1.2", ssl.TLSVersion.TLSv1_3: "TLS 1.3"}[v] for *_, v, _e in FLOWS if v
    ]

    # clear HTTP: requests and responses as tshark's HTTP dissector sees them
    http = next(f for f in tcp if f.protocol["name"] == "http")
    reqs = tshark_fields(path, "http.request", "http.request.method", "http.request.uri", "http.host")
    codes = tshark_fields(path, "http.response", "http.response.code")
    assert [(r["method"], r["path"], r["host"]) for r in http.protocol["requests"]] == [tuple(r) for r in reqs]
    assert [r["status"] for r in http.protocol["requests"]] == [int(c[0]) for c in codes]

    # UDP datagrams keep tshark's frame numbers
    udp = tshark_fields(path, "udp", "frame.number", "udp.payload")
    assert [(d[1].hex(), d[2]) for d in us.datagrams] == [(payload, int(num)) for num, payload in udp]


def test_name_resolution_block_names_the_servers(tmp_path: Path, ca: LabCA) -> None:
    path = tmp_path / "names.pcapng"
    write_capture(path, ca, LINKTYPE_ETHERNET, ng=True)
    out = subprocess.run(
        [
            TSHARK,
            "-r",
            str(path),
            "-N",
            "n",
            "-Y",
            "tcp.flags.syn == 1 && tcp.flags.ack == 0",
            "-T",
            "fields",
            "-e",
            "ip.dst_host",
            "-e",
            "ipv6.dst_host",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    names = [line.strip() for line in out.splitlines()]
    assert names == [
        "app.chat.xiaomi.net",
        "api.account.xiaomi.com",
        "mixin.xiaomi.net",
        "app.chat.global.xiaomi.net",
        "resolver.msg.xiaomi.net",
        "app.chat.xiaomi.net",
    ]
    with open_capture(path) as r:
        list(r)  # names are collected as the file is read
        assert r.names["10.9.0.5"] == "app.chat.xiaomi.net" and r.names["fd00::6"] == "app.chat.global.xiaomi.net"


def test_tshark_finds_no_checksum_or_sequence_problems(tmp_path: Path, ca: LabCA) -> None:
    path = tmp_path / "clean.pcapng"
    write_capture(path, ca, LINKTYPE_ETHERNET, ng=True)
    out = tshark(
        path,
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-o",
        "ip.check_checksum:TRUE",
        "-Y",
        "tcp.checksum.status == 0 || udp.checksum.status == 0 || ip.checksum.status == 0 "
        "|| tcp.analysis.flags && !tcp.analysis.window_update && !tcp.analysis.reused_ports",
        "-T",
        "fields",
        "-e",
        "frame.number",
    )
    assert out.split() == []
