"""Writing captures: pcapng and classic pcap files, and the packets to put in them.

The emulated lab's wire tap and the tests write captures that real tools (tshark, Wireshark) must
read and reassemble exactly as they would a capture from a handset. So the packets are complete
and correct: IPv4 header checksums, TCP/UDP checksums over the pseudo-header, sequence and
acknowledgement numbers that follow a real connection (`TcpConversation`), and link-layer headers
for the link types handsets and capture tools produce (Ethernet, raw IP, Linux cooked SLL/SLL2).

pcapng files carry timestamps in microseconds (``if_tsresol`` 6, the format's default): a Python
float holds an epoch time to about 0.2 µs, so nanoseconds would only record rounding noise. A
name resolution block (`PcapngWriter.add_names`) makes Wireshark show the lab's Xiaomi host names
for the synthetic server addresses. A decryption secrets block (`PcapngWriter.add_secrets`, DSB)
carries a TLS key log, so Wireshark decrypts the file with no key file given; `copy_with_secrets`
rewrites any capture with one in front of its packets (``wire-check --write-decrypted``).

Each block is built in memory and handed to ``f.write`` in one call, so writers sharing a buffered
file from several threads never interleave inside a block.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
import sys
import zlib
from array import array
from collections.abc import Callable, Mapping
from typing import BinaryIO, Literal

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "PcapWriter",
    "PcapngWriter",
    "TcpConversation",
    "frame",
    "inet_checksum",
    "ipv4_tcp",
    "ipv4_udp",
    "ipv6_tcp",
    "ipv6_udp",
    "ip_tcp",
    "ip_udp",
    "mac_for",
    "tcp_flags",
    "copy_with_secrets",
]

LINKTYPE_NULL = 0  # BSD loopback: 4-byte address family in the writer's byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9  # PPP (RFC 1661), as pppd's ppp0 is captured: here in HDLC-like framing (ff 03)
LINKTYPE_RAW = 101  # raw IP, version from the first nibble
LINKTYPE_LINUX_SLL = 113  # Linux "cooked" capture (tcpdump -i any, Android's tcpdump on rmnet)
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD

# pcapng block types and option codes (draft-ietf-opsawg-pcapng)
_SHB, _IDB, _EPB, _NRB, _DSB = 0x0A0D0D0A, 0x00000001, 0x00000006, 0x00000004, 0x0000000A
SECRETS_TLS_KEYLOG = 0x544C534B  # "TLSK": a DSB holding an NSS key log
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_OPT_END, _OPT_COMMENT = 0, 1
_SHB_USERAPPL = 4
_IF_NAME, _IF_TSRESOL = 2, 9
_NRB_END, _NRB_IPV4, _NRB_IPV6 = 0, 1, 2

_TCP_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}
_NATIVE_LITTLE = sys.byteorder == "little"


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * _pad4(len(value))


def _options(opts: list[tuple[int, bytes]]) -> bytes:
    if not opts:
        return b""
    return b"".join(_option(c, v) for c, v in opts) + struct.pack("<HH", _OPT_END, 0)


def _block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def _ts_parts(ts: float, per_second: int) -> tuple[int, int]:
    """Whole seconds and the fraction in units of 1/per_second, rounded once (no float drift)."""
    ticks = round(ts * per_second)
    return divmod(ticks, per_second)


class PcapngWriter:
    """A pcapng file with one section and one interface.

    Writes the section header block (SHB, naming the application) and one interface description
    block (IDB) with ``linktype``, ``snaplen`` and ``if_tsresol`` 6 (microseconds) at once; then one
    enhanced packet block (EPB) per `packet`. Frames longer than ``snaplen`` are cut, with the
    original length recorded, as a capture tool would. The caller owns ``f`` (not closed here).
    """

    def __init__(
        self,
        f: BinaryIO,
        *,
        linktype: int = LINKTYPE_ETHERNET,
        snaplen: int = 262144,
        application: str = "hostctl",
        comment: str | None = None,
        interface_name: str | None = None,
    ) -> None:
        if not 0 <= linktype <= 0xFFFF:
            raise ValueError(f"pcapng link type {linktype} is outside 0..65535")
        if snaplen <= 0:
            raise ValueError(f"snaplen must be positive, not {snaplen}")
        self.f = f
        self.linktype = linktype
        self.snaplen = snaplen
        self.packets = 0
        shb_opts = [(_SHB_USERAPPL, application.encode())]
        if comment:
            shb_opts.insert(0, (_OPT_COMMENT, comment.encode()))
        shb = struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1) + _options(shb_opts)
        idb_opts = [(_IF_TSRESOL, bytes([6]))]
        if interface_name:
            idb_opts.insert(0, (_IF_NAME, interface_name.encode()))
        idb = struct.pack("<HHI", linktype, 0, snaplen) + _options(idb_opts)
        f.write(_block(_SHB, shb) + _block(_IDB, idb))

    def add_names(self, names: Mapping[str, str]) -> None:
        """A name resolution block: IP address text -> host name (Wireshark shows the names).

        Best written before the packets that use the addresses; readers apply it to the whole file.
        """
        records = []
        for addr, name in names.items():
            ip = ipaddress.ip_address(addr)
            kind = _NRB_IPV4 if ip.version == 4 else _NRB_IPV6
            value = ip.packed + name.encode() + b"\0"
            records.append(_option(kind, value))
        if records:
            body = b"".join(records) + struct.pack("<HH", _NRB_END, 0)
            self.f.write(_block(_NRB, body))

    def add_secrets(self, data: bytes, secrets_type: int = SECRETS_TLS_KEYLOG) -> None:
        """A decryption secrets block (pcapng draft section 4.7): Wireshark uses it for the
        packets after it, so write it before them."""
        body = struct.pack("<II", secrets_type, len(data)) + data + b"\0" * _pad4(len(data))
        self.f.write(_block(_DSB, body))

    def packet(self, ts: float, data: bytes, *, comment: str | None = None) -> None:
        """One frame captured at ``ts`` (seconds since the epoch) as an enhanced packet block."""
        hi_lo = _ts_parts(ts, 1_000_000)
        ticks = hi_lo[0] * 1_000_000 + hi_lo[1]
        cap = data[: self.snaplen]
        opts = _options([(_OPT_COMMENT, comment.encode())]) if comment else b""
        body = (
            struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(cap), len(data))
            + cap
            + b"\0" * _pad4(len(cap))
            + opts
        )
        self.f.write(_block(_EPB, body))
        self.packets += 1

    def flush(self) -> None:
        self.f.flush()

    def __enter__(self) -> PcapngWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()


class PcapWriter:
    """A classic pcap file (what ``tcpdump -w`` and PCAPdroid write): microsecond timestamps,
    little-endian, one link type for the whole file. The caller owns ``f``."""

    def __init__(self, f: BinaryIO, *, linktype: int = LINKTYPE_ETHERNET, snaplen: int = 262144) -> None:
        if snaplen <= 0:
            raise ValueError(f"snaplen must be positive, not {snaplen}")
        self.f = f
        self.linktype = linktype
        self.snaplen = snaplen
        self.packets = 0
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))

    def packet(self, ts: float, data: bytes, *, comment: str | None = None) -> None:
        """One frame at ``ts``; ``comment`` is accepted for symmetry with pcapng and dropped
        (classic pcap has nowhere to keep it)."""
        sec, usec = _ts_parts(ts, 1_000_000)
        cap = data[: self.snaplen]
        self.f.write(struct.pack("<IIII", sec, usec, len(cap), len(data)) + cap)
        self.packets += 1

    def flush(self) -> None:
        self.f.flush()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()


# ---------------------------------------------------------------------------------------------
# Packets


def inet_checksum(data: bytes, initial: int = 0) -> int:
    """The Internet checksum (RFC 1071) of ``data``, as the 16-bit value to store big-endian.

    Sums 16-bit words in the machine's byte order (fast, via array) and swaps once at the end:
    the one's complement sum is byte-order independent (RFC 1071 section 2(B)).
    """
    if len(data) % 2:
        data = bytes(data) + b"\0"
    s = sum(array("H", data))
    if _NATIVE_LITTLE:
        s += ((initial & 0xFF) << 8) | (initial >> 8)
    else:
        s += initial
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    s = ~s & 0xFFFF
    if _NATIVE_LITTLE:
        s = ((s & 0xFF) << 8) | (s >> 8)
    return s


def tcp_flags(flags: int | str) -> int:
    """TCP flag bits from an int or letters (``"S"``, ``"SA"``, ``"PA"``, ``"FA"``, ``"R"``, ``"RA"``)."""
    if isinstance(flags, int):
        return flags & 0xFF
    bits = 0
    for ch in flags.upper():
        try:
            bits |= _TCP_FLAG_BITS[ch]
        except KeyError:
            raise ValueError(f"unknown TCP flag {ch!r} in {flags!r} (use F S R P A U E C)") from None
    return bits


def _tcp_segment(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int | str,
    payload: bytes,
    window: int,
    options: bytes,
    pseudo_sum: int,
) -> bytes:
    if len(options) % 4:
        options += b"\x01" * _pad4(len(options))  # NOP padding to a 32-bit boundary
    bits = tcp_flags(flags)
    doff = (20 + len(options)) // 4
    header = (
        struct.pack(
            "!HHIIBBHHH",
            sport,
            dport,
            seq & 0xFFFFFFFF,
            ack & 0xFFFFFFFF if bits & 0x10 else 0,
            doff << 4,
            bits,
            window,
            0,
            0,
        )
        + options
    )
    seg = header + payload
    csum = inet_checksum(seg, pseudo_sum)
    return seg[:16] + struct.pack("!H", csum) + seg[18:]


def _pseudo_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, proto, length)
    else:
        pseudo = src + dst + struct.pack("!IxxxB", length, proto)
    return ~inet_checksum(pseudo) & 0xFFFF


@functools.lru_cache(maxsize=4096)
def _packed(addr: str, version: int) -> bytes:
    """An address's bytes (cached: a conversation packs the same two addresses per packet)."""
    return (ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address)(addr).packed


def _ipv4(
    src: str, dst: str, proto: int, payload_fn: Callable[[bytes, bytes], bytes], *, ttl: int, ident: int
) -> bytes:
    s, d = _packed(src, 4), _packed(dst, 4)
    payload = payload_fn(s, d)
    total = 20 + len(payload)
    if total > 0xFFFF:
        raise ValueError(f"IPv4 packet of {total} bytes is over 65535; split the payload")
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident & 0xFFFF, 0x4000, ttl, proto, 0, s, d)
    csum = inet_checksum(header)
    return header[:10] + struct.pack("!H", csum) + header[12:] + payload


def _ipv6(src: str, dst: str, proto: int, payload_fn: Callable[[bytes, bytes], bytes], *, hop_limit: int) -> bytes:
    s, d = _packed(src, 6), _packed(dst, 6)
    payload = payload_fn(s, d)
    if len(payload) > 0xFFFF:
        raise ValueError(f"IPv6 payload of {len(payload)} bytes is over 65535; split the payload")
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), proto, hop_limit, s, d) + payload


def ipv4_tcp(
    src: str,
    sport: int,
    dst: str,
    dport: int,
    seq: int,
    ack: int,
    flags: int | str,
    payload: bytes = b"",
    *,
    window: int = 65535,
    options: bytes = b"",
    ttl: int = 64,
    ident: int = 0,
) -> bytes:
    """An IPv4 packet carrying one TCP segment, both checksums correct."""

    def seg(s: bytes, d: bytes) -> bytes:
        hlen = 20 + len(options) + _pad4(len(options))
        return _tcp_segment(
            sport, dport, seq, ack, flags, payload, window, options, _pseudo_sum(s, d, 6, hlen + len(payload))
        )

    return _ipv4(src, dst, 6, seg, ttl=ttl, ident=ident)


def ipv6_tcp(
    src: str,
    sport: int,
    dst: str,
    dport: int,
    seq: int,
    ack: int,
    flags: int | str,
    payload: bytes = b"",
    *,
    window: int = 65535,
    options: bytes = b"",
    hop_limit: int = 64,
) -> bytes:
    """An IPv6 packet (no extension headers) carrying one TCP segment, checksum correct."""

    def seg(s: bytes, d: bytes) -> bytes:
        hlen = 20 + len(options) + _pad4(len(options))
        return _tcp_segment(
            sport, dport, seq, ack, flags, payload, window, options, _pseudo_sum(s, d, 6, hlen + len(payload))
        )

    return _ipv6(src, dst, 6, seg, hop_limit=hop_limit)


def _udp(sport: int, dport: int, payload: bytes, s: bytes, d: bytes) -> bytes:
    length = 8 + len(payload)
    dgram = struct.pack("!HHHH", sport, dport, length, 0) + payload
    csum = inet_checksum(dgram, _pseudo_sum(s, d, 17, length)) or 0xFFFF  # 0 means "none" in UDP
    return dgram[:6] + struct.pack("!H", csum) + dgram[8:]


def ipv4_udp(src: str, sport: int, dst: str, dport: int, payload: bytes, *, ttl: int = 64, ident: int = 0) -> bytes:
    """An IPv4 packet carrying one UDP datagram, both checksums correct."""
    return _ipv4(src, dst, 17, lambda s, d: _udp(sport, dport, payload, s, d), ttl=ttl, ident=ident)


def ipv6_udp(src: str, sport: int, dst: str, dport: int, payload: bytes, *, hop_limit: int = 64) -> bytes:
    """An IPv6 packet carrying one UDP datagram, checksum correct."""
    return _ipv6(src, dst, 17, lambda s, d: _udp(sport, dport, payload, s, d), hop_limit=hop_limit)


def _is_v6(addr: str) -> bool:
    return ":" in addr


def ip_tcp(
    src: str,
    sport: int,
    dst: str,
    dport: int,
    seq: int,
    ack: int,
    flags: int | str,
    payload: bytes = b"",
    **kw: int | bytes,
) -> bytes:
    """`ipv4_tcp` or `ipv6_tcp`, chosen by the address family of ``src``."""
    fn = ipv6_tcp if _is_v6(src) else ipv4_tcp
    return fn(src, sport, dst, dport, seq, ack, flags, payload, **kw)  # type: ignore[arg-type]


def ip_udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    """`ipv4_udp` or `ipv6_udp`, chosen by the address family of ``src``."""
    return (ipv6_udp if _is_v6(src) else ipv4_udp)(src, sport, dst, dport, payload)


def mac_for(addr: str) -> bytes:
    """A stable, locally administered unicast MAC address for an IP address (synthetic hosts)."""
    h = zlib.crc32(addr.encode()).to_bytes(4, "big")
    return b"\x02\x00" + h


_SLL_OUTGOING, _SLL_HOST = 4, 0


def frame(
    linktype: int,
    ip_packet: bytes,
    *,
    src_mac: bytes | None = None,
    dst_mac: bytes | None = None,
    outgoing: bool = True,
) -> bytes:
    """Wraps an IP packet in the link-layer header of ``linktype``.

    Ethernet uses ``src_mac``/``dst_mac`` (synthetic defaults); Linux SLL/SLL2 record the sender's
    address and whether the packet was ``outgoing`` from the capturing host (SLL packet type 4) or
    addressed to it (0). NULL/loopback uses the little-endian address family (2, or 30 for IPv6,
    one of the values Wireshark accepts for AF_INET6).
    """
    if not ip_packet:
        raise ValueError("empty IP packet")
    version = ip_packet[0] >> 4
    if version not in (4, 6):
        raise ValueError(f"not an IP packet (version nibble {version})")
    ethertype = ETHERTYPE_IPV4 if version == 4 else ETHERTYPE_IPV6
    src_mac = src_mac or b"\x02\x00\x00\x00\x00\x01"
    dst_mac = dst_mac or b"\x02\x00\x00\x00\x00\x02"
    if linktype == LINKTYPE_ETHERNET:
        return dst_mac + src_mac + struct.pack("!H", ethertype) + ip_packet
    if linktype == LINKTYPE_RAW:
        return ip_packet
    if linktype in (LINKTYPE_IPV4, LINKTYPE_IPV6):
        want = 4 if linktype == LINKTYPE_IPV4 else 6
        if version != want:
            raise ValueError(f"link type {linktype} carries IPv{want} only, got IPv{version}")
        return ip_packet
    pkttype = _SLL_OUTGOING if outgoing else _SLL_HOST
    if linktype == LINKTYPE_LINUX_SLL:
        return struct.pack("!HHH8sH", pkttype, 1, 6, src_mac, ethertype) + ip_packet
    if linktype == LINKTYPE_LINUX_SLL2:
        return struct.pack("!HHIHBB8s", ethertype, 0, 1, 1, pkttype, 6, src_mac) + ip_packet
    if linktype == LINKTYPE_NULL:
        return struct.pack("<I", 2 if version == 4 else 30) + ip_packet
    if linktype == LINKTYPE_PPP:
        # address 0xff, control 0x03 (RFC 1662), then the protocol: 0x0021 IPv4, 0x0057 IPv6
        return b"\xff\x03" + struct.pack("!H", 0x0021 if version == 4 else 0x0057) + ip_packet
    raise ValueError(
        f"link type {linktype} is not one frame() writes "
        "(0 NULL, 1 Ethernet, 9 PPP, 101 raw, 113 SLL, 228 IPv4, 229 IPv6, 276 SLL2)"
    )


class TcpConversation:
    """Synthesises one TCP connection as packets with correct seq/ack so Wireshark/tshark
    reassemble it: 3-way handshake, data split at ``mss`` (default 1460), pure ACKs, then FIN/ACK
    (both halves at once with :meth:`close`, or one half at a time with :meth:`fin`) or a RST
    (:meth:`reset`, from either side); :meth:`refused` is a SYN answered by a RST.

    ``sink(ts, frame_bytes)`` receives each frame (typically ``writer.packet``). Packets of one
    call are spaced 1 µs apart after ``ts`` so their order survives microsecond timestamps. The
    receiver acknowledges every second segment and the last one, like a delayed-ACK stack. Initial
    sequence numbers are derived from the endpoints and the `open` time unless given (``isn``, the
    client's, here; or both, to `open`), so the same conversation gives the same bytes every time,
    and ports reused later get new ISNs as a real stack's would. Sequence numbers wrap at 2**32.
    IPv6 is used when the addresses are.
    """

    STEP = 1e-6

    def __init__(
        self,
        sink: Callable[[float, bytes], None],
        *,
        client: tuple[str, int],
        server: tuple[str, int],
        linktype: int = LINKTYPE_ETHERNET,
        mss: int = 1460,
        isn: int | None = None,
        window: int = 65535,
    ) -> None:
        if _is_v6(client[0]) != _is_v6(server[0]):
            raise ValueError(f"client {client[0]} and server {server[0]} are not the same IP version")
        if mss <= 0:
            raise ValueError(f"mss must be positive, not {mss}")
        self.sink = sink
        self.client = client
        self.server = server
        self.linktype = linktype
        self.mss = mss
        self.window = window
        self._isn = isn
        self._seq = {"c2s": 0, "s2c": 0}
        self._macs = {"c2s": (mac_for(client[0]), mac_for(server[0])), "s2c": (mac_for(server[0]), mac_for(client[0]))}
        self.fins: set[str] = set()  # the halves closed with fin()
        self.state = "new"

    def _emit(self, ts: float, direction: str, flags: int | str, payload: bytes = b"", *, options: bytes = b"") -> None:
        src, dst = (self.client, self.server) if direction == "c2s" else (self.server, self.client)
        other = "s2c" if direction == "c2s" else "c2s"
        ip = ip_tcp(
            src[0],
            src[1],
            dst[0],
            dst[1],
            self._seq[direction] & 0xFFFFFFFF,
            self._seq[other] & 0xFFFFFFFF,
            flags,
            payload,
            window=self.window,
            options=options,
        )
        smac, dmac = self._macs[direction]
        self.sink(ts, frame(self.linktype, ip, src_mac=smac, dst_mac=dmac, outgoing=direction == "c2s"))

    def _syn_option(self) -> bytes:
        return struct.pack("!BBH", 2, 4, min(self.mss, 0xFFFF))

    def _start(self, ts: float, isns: Mapping[str, int] | None) -> None:
        if self.state != "new":
            raise ValueError(f"open() on a conversation that is {self.state}")
        if isns is not None:
            self._seq = {"c2s": isns["c2s"], "s2c": isns["s2c"]}
            return
        # ISNs from the endpoints and the time: reproducible, and different when ports are reused
        c, s = self.client, self.server
        seed = zlib.crc32(f"{c[0]}|{c[1]}|{s[0]}|{s[1]}|{ts!r}".encode())
        self._seq = {
            "c2s": (seed if self._isn is None else self._isn) & 0xFFFFFFFF,
            "s2c": zlib.crc32(seed.to_bytes(4, "big")) & 0xFFFFFFFF,
        }

    def open(self, ts: float, *, isns: Mapping[str, int] | None = None, sent_c2s: int = 0, sent_s2c: int = 0) -> None:
        """SYN, SYN-ACK, ACK (both SYNs announce ``mss``). ``isns``: both sides' initial sequence
        numbers; ``sent_*``: bytes already exchanged before this record begins (a capture joining
        a connection late): the handshake is numbered so that what follows continues the
        connection's own numbering."""
        self._start(ts, isns)
        self._seq["c2s"] += sent_c2s
        self._seq["s2c"] += sent_s2c
        self._emit(ts, "c2s", "S", options=self._syn_option())
        self._seq["c2s"] += 1
        self._emit(ts + self.STEP, "s2c", "SA", options=self._syn_option())
        self._seq["s2c"] += 1
        self._emit(ts + 2 * self.STEP, "c2s", "A")
        self.state = "open"

    def refused(self, ts: float, *, isns: Mapping[str, int] | None = None) -> None:
        """The client's SYN answered by a RST (nothing accepted it)."""
        self._start(ts, isns)
        self._emit(ts, "c2s", "S", options=self._syn_option())
        self._seq["c2s"] += 1
        self._emit(ts + self.STEP, "s2c", "RA")
        self.state = "closed"

    def send(self, ts: float, direction: Literal["c2s", "s2c"], data: bytes) -> None:
        """``data`` from one side, in segments of at most ``mss`` bytes, acknowledged by the other."""
        if self.state != "open" or direction in self.fins:
            raise ValueError(
                f"send() on a conversation that is {self.state}"
                + (f" with {direction} closed" if direction in self.fins else "")
            )
        if direction not in ("c2s", "s2c"):
            raise ValueError(f"direction must be 'c2s' or 's2c', not {direction!r}")
        other = "s2c" if direction == "c2s" else "c2s"
        t = ts
        n = (len(data) + self.mss - 1) // self.mss
        for i in range(n):
            chunk = data[i * self.mss : (i + 1) * self.mss]
            last = i == n - 1
            self._emit(t, direction, "PA" if last else "A", chunk)
            self._seq[direction] += len(chunk)
            t += self.STEP
            if last or i % 2 == 1:
                self._emit(t, other, "A")
                t += self.STEP

    def fin(self, ts: float, direction: Literal["c2s", "s2c"]) -> None:
        """One side closes its half (FIN, acknowledged); the conversation is closed when both have."""
        if self.state != "open" or direction in self.fins:
            raise ValueError(
                f"fin() on a conversation that is {self.state}"
                + (f" with {direction} closed" if direction in self.fins else "")
            )
        other = "s2c" if direction == "c2s" else "c2s"
        self._emit(ts, direction, "FA")
        self._seq[direction] += 1
        self._emit(ts + self.STEP, other, "A")
        self.fins.add(direction)
        if self.fins == {"c2s", "s2c"}:
            self.state = "closed"

    def reset(self, ts: float, direction: Literal["c2s", "s2c"] = "c2s") -> None:
        """A RST-ACK from ``direction``'s sender (nothing when the conversation is not open)."""
        if self.state == "open":
            self._emit(ts, direction, "RA")
        self.state = "closed"

    def close(self, ts: float, *, reset: bool = False) -> None:
        """FIN from the client, FIN-ACK from the server, the client's last ACK; or one RST-ACK."""
        if self.state != "open":
            raise ValueError(f"close() on a conversation that is {self.state}")
        if reset:
            self.reset(ts, "c2s")
            return
        self._emit(ts, "c2s", "FA")
        self._seq["c2s"] += 1
        self._emit(ts + self.STEP, "s2c", "FA")
        self._seq["s2c"] += 1
        self._emit(ts + 2 * self.STEP, "c2s", "A")
        self.state = "closed"


def copy_with_secrets(captures: list[str], out: BinaryIO, keylog_text: str) -> int:
    """Writes the packets of ``captures`` (pcap or pcapng, in order) to ``out`` as pcapng, after a
    DSB holding ``keylog_text`` (an NSS key log). One interface per link type met, timestamps in
    nanoseconds (a capture's own precision is kept). Returns the packets written."""
    from .pcapread import open_capture

    shb = struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1) + _options([(_SHB_USERAPPL, b"hostctl wire-check")])
    out.write(_block(_SHB, shb))
    data = keylog_text.encode("ascii")
    out.write(_block(_DSB, struct.pack("<II", SECRETS_TLS_KEYLOG, len(data)) + data + b"\0" * _pad4(len(data))))
    interfaces: dict[int, int] = {}
    n = 0
    for path in captures:
        reader = open_capture(path)
        try:
            for ts, linktype, buf, start, caplen, origlen in reader.records():
                ifid = interfaces.get(linktype)
                if ifid is None:
                    ifid = interfaces[linktype] = len(interfaces)
                    idb = struct.pack("<HHI", linktype, 0, 262144) + _options([(_IF_TSRESOL, bytes([9]))])
                    out.write(_block(_IDB, idb))
                ticks = round(ts * 1_000_000_000)
                cap = buf[start : start + caplen]
                out.write(
                    _block(
                        _EPB,
                        struct.pack("<IIIII", ifid, ticks >> 32, ticks & 0xFFFFFFFF, caplen, origlen)
                        + cap
                        + b"\0" * _pad4(caplen),
                    )
                )
                n += 1
        finally:
            reader.close()
    return n
