"""From packets to flows: link-layer and IP decoding, TCP reassembly, UDP datagrams.

`FlowTable` takes the packets of a capture and calls a `FlowConsumer` with what each connection
carried, in stream order, once: ``data`` for contiguous bytes of one direction (``offset`` is the
stream offset of the first byte), ``gap`` where bytes are missing (never captured, cut by the
snaplen, lost before the capture), ``datagram`` per UDP payload, and ``flow_start``/``flow_end``.

What the reassembly does, and why:

- Sequence numbers are compared as signed 32-bit distances from the next expected byte, so wrap
  and streams over 4 GiB work. A segment at the expected byte is delivered at once (the fast path);
  one that starts earlier is a retransmission and only its new tail, if any, is delivered
  (partially overlapping retransmissions included); one that starts later is held out of order.
- Out-of-order data is bounded by ``max_buffer`` bytes for the whole table. When it is full, the
  direction holding the most gives up waiting: the missing range becomes a `gap` and what it
  held is delivered. Memory therefore depends on the flows in flight, never on the capture size.
- Flows end on FIN from both sides ("fin"; if bytes before a FIN never come, when the flow is
  evicted or the capture ends, with the gap noted), on RST ("rst": ``RST_GRACE`` seconds of
  capture time after it, so bytes already in flight when it was sent are still delivered, as
  tshark's ``tcp.stream`` keeps them), when the table holds ``max_flows``
  and must make room or a flow stays idle past ``idle_timeout`` of capture time ("evicted"), when a
  new SYN reuses the ports ("reused"), or at `FlowTable.close` ("eof"). An ended flow lingers as a
  tombstone (for ``linger`` seconds of capture time) so its trailing ACKs and retransmitted FINs
  do not start a new flow, as Wireshark's ``tcp.stream`` does not.
- A flow seen without its SYN starts where its first data starts; the client is then the side
  with the higher port (the first sender when ports are equal).
- Contiguous data of one flow direction is held back and handed over in pieces of up to
  ``coalesce`` bytes (64 KiB), so consumers (protocol identification, the identifier scanner) make
  one call per burst, or per conversation of small packets, rather than one per segment. At most
  ``max_holding`` directions hold data (the oldest is released first), so this costs at most
  ``max_holding * coalesce`` bytes. Order: each direction's data and gaps come in stream order;
  a flow's ``flow_start`` comes before and its ``flow_end`` after all of its callbacks; within a
  flow, held data is released oldest first, so what one side sent before the other answered is
  handed over before the answer (a request before its response). Across flows, and between
  later bytes of one direction and earlier bytes of the other, callbacks may be later than
  capture order.
- IPv4 and IPv6 fragments are counted and skipped (handsets' TCP never fragments; a UDP datagram
  in fragments is reported missing rather than guessed at).

The decode reads fields straight from the reader's chunk with ``struct`` and slices only the
payloads it delivers; `FlowTable.run` drives a `CaptureReader` through that path.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from hostctl.wire.pcapread import RECORD, SPAN_PCAP, CaptureReader, Packet

try:  # the compiled walk of run()'s fast path, built by setup.py where a C compiler is present
    from hostctl.wire._flowwalk import walk as _walk  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - the same loop in Python
    _walk = None

# True when run() walks the common case in C (hostctl/wire/_flowwalk.pyx); HOSTCTL_WIRE_PURE=1
# turns it off (the tests compare both; a lab can rule it out when in doubt)
COMPILED = _walk is not None and os.environ.get("HOSTCTL_WIRE_PURE", "") in ("", "0")

__all__ = ["DEFAULT_MAX_BUFFER", "DEFAULT_MAX_FLOWS", "Flow", "FlowConsumer", "FlowKey", "FlowTable", "NullConsumer"]

DEFAULT_MAX_FLOWS = 65536
RST_GRACE = 1.0  # capture seconds a reset flow still takes data in flight
DEFAULT_MAX_BUFFER = 64 << 20
COALESCE = 64 << 10
MAX_HOLDING = 256

_TCP = struct.Struct("!HHIIBB")  # ports, seq, ack, data offset, flags
_UDP = struct.Struct("!HHH")
_V4 = struct.Struct("!BxHxxHxB")  # ver/ihl, total length, flags/fragment, protocol
_V6 = struct.Struct("!HB")  # payload length, next header (at +4)
_NULL_V6 = (24, 28, 30)
# The hot path's single reads: the ethertype (at the link type's offset) and then an IPv4 header
# of 20 bytes and TCP's ports, seq, data offset and flags; the same for IPv6 without extensions.
_FAST_ETH_V4 = struct.Struct("!HBxHxxHxBxx8xHHI4xBB")
_FAST_SLL2_V4 = struct.Struct("!H18xBxHxxHxBxx8xHHI4xBB")
_FAST_RAW_V4 = struct.Struct("!BxHxxHxBxx8xHHI4xBB")
_FAST_V6 = struct.Struct("!B3xHB33xHHI4xBB")
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
_V6_EXT = {0, 43, 60}  # hop-by-hop, routing, destination options: skipped over
_V6_FRAG = 44


@dataclass(frozen=True, slots=True)
class FlowKey:
    """Who talked to whom: ``client`` is the side that sent the SYN (without one, the side with
    the higher port). Addresses are text (``"10.0.0.2"``, ``"fd00::2"``)."""

    proto: str
    client: tuple[str, int]
    server: tuple[str, int]

    def __str__(self) -> str:
        def ep(a: tuple[str, int]) -> str:
            return f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}"

        return f"{self.proto} {ep(self.client)} -> {ep(self.server)}"


def _jumbo_length(buf: bytes, start: int, stop: int) -> int | None:
    """The Jumbo Payload option's length (type 0xc2, 4 bytes) in the hop-by-hop header at
    ``start`` (options from ``start + 2`` to ``stop``), or None."""
    i = start + 2
    while i < stop:
        kind = buf[i]
        if kind == 0:  # Pad1
            i += 1
            continue
        if i + 1 >= stop:
            return None
        size = buf[i + 1]
        if kind == 0xC2 and size == 4 and i + 6 <= stop:
            return int.from_bytes(buf[i + 2 : i + 6], "big")
        i += 2 + size
    return None


class _Dir:
    """One direction of a TCP flow: where the stream stands and what waits out of order."""

    __slots__ = ("done", "fin", "gapped", "held_data", "isn", "name", "next_seq", "offset", "ooo", "ooo_bytes")

    def __init__(self, name: str) -> None:
        self.name = name
        self.isn: int | None = None  # sequence number of this side's SYN
        self.next_seq: int | None = None  # absolute sequence number of the next byte expected
        self.offset = 0  # stream offset of that byte
        self.ooo: dict[int, tuple[bytes, int]] | None = None  # offset -> (captured bytes, length)
        self.ooo_bytes = 0  # bytes held in ooo
        self.fin: int | None = None  # stream offset of the FIN
        self.done = False  # FIN reached: every byte before it delivered or gapped
        self.gapped = 0  # bytes of the stream reported as gaps
        # in-order data not yet handed over: [offset, [chunks], ts of the first, hold number]. It
        # always ends where the stream stands (``offset``): anything else (a gap) releases it first
        self.held_data: list[Any] | None = None

    @property
    def bytes(self) -> int:
        """Stream bytes delivered (the offset reached, less what went missing)."""
        return self.offset - self.gapped


class Flow:
    """One TCP connection or UDP conversation. ``id`` is 1-based in order of first packet;
    ``protocol`` is filled by `hostctl.wire.protocols`; ``ended`` is None while the flow is open,
    then "fin", "rst", "eof", "evicted" or "reused". ``bytes_c2s``/``bytes_s2c`` count the stream
    bytes delivered (each once; retransmissions and gaps not counted; for UDP the payload bytes)."""

    __slots__ = (
        "_keys",
        "c2s",
        "ended",
        "first_ts",
        "id",
        "key",
        "last_ts",
        "midstream",
        "packets",
        "protocol",
        "rst_ts",
        "s2c",
        "sniff",
        "user",
    )

    def __init__(self, fid: int, key: FlowKey, ts: float) -> None:
        self.id = fid
        self.key = key
        self.first_ts = ts
        self.last_ts = ts
        self.packets = 0
        self.protocol: dict[str, Any] = {}
        self.ended: str | None = None
        self.c2s = _Dir("c2s")
        self.s2c = _Dir("s2c")
        self.midstream = False  # TCP flow whose SYN was not captured
        self.rst_ts: float | None = None  # when a RST was seen (the flow ends RST_GRACE later)
        self.sniff: Any = None  # protocols.py's per-flow state
        self.user: Any = None  # free for the consumer
        self._keys: tuple[bytes, bytes] = (b"", b"")

    @property
    def bytes_c2s(self) -> int:
        return self.c2s.bytes

    @property
    def bytes_s2c(self) -> int:
        return self.s2c.bytes

    def __repr__(self) -> str:
        return (
            f"Flow(id={self.id}, {self.key}, packets={self.packets}, c2s={self.bytes_c2s}, "
            f"s2c={self.bytes_s2c}, ended={self.ended})"
        )


class FlowConsumer(Protocol):
    """What a `FlowTable` tells. ``direction`` is "c2s" or "s2c"."""

    def flow_start(self, flow: Flow) -> None: ...
    def data(self, flow: Flow, direction: str, offset: int, data: bytes, ts: float) -> None: ...
    def gap(self, flow: Flow, direction: str, offset: int, length: int) -> None: ...
    def datagram(self, flow: Flow, direction: str, data: bytes, ts: float, index: int) -> None: ...
    def flow_end(self, flow: Flow) -> None: ...


class NullConsumer:
    """A consumer that ignores everything (benchmarks; a base to override selectively)."""

    def flow_start(self, flow: Flow) -> None:
        pass

    def data(self, flow: Flow, direction: str, offset: int, data: bytes, ts: float) -> None:
        pass

    def gap(self, flow: Flow, direction: str, offset: int, length: int) -> None:
        pass

    def datagram(self, flow: Flow, direction: str, data: bytes, ts: float, index: int) -> None:
        pass

    def flow_end(self, flow: Flow) -> None:
        pass


def _both_fins(flow: Flow) -> bool:
    """Both sides sent FIN, though bytes before one are still missing: the flow did end by FIN
    (the missing bytes are reported as a gap when it is ended)."""
    return flow.c2s.fin is not None and flow.s2c.fin is not None


def _ntop(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


class FlowTable:
    """Reassembles the TCP streams and collects the UDP datagrams of a capture.

    ``consumer`` gets the callbacks (see module doc). ``identify`` runs
    `hostctl.wire.protocols.observe` on each flow's first bytes so ``flow.protocol`` is filled by
    the time the consumer sees the data. ``stats`` counts packets, non_ip, fragments, malformed,
    tcp_flows, udp_flows, udp_datagrams, gaps, gap_bytes, retransmits, out_of_order, evicted,
    max_in_flight (most flows held at once, tombstones included) and buffer_peak (most bytes held
    out of order).
    """

    def __init__(
        self,
        consumer: FlowConsumer,
        *,
        max_flows: int = DEFAULT_MAX_FLOWS,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        idle_timeout: float | None = None,
        linger: float = 120.0,
        coalesce: int = COALESCE,
        max_holding: int = MAX_HOLDING,
        identify: bool = True,
        compiled: bool | None = None,
    ) -> None:
        if max_flows < 2:
            raise ValueError(f"max_flows must be at least 2, not {max_flows}")
        self.consumer = consumer
        self._data = consumer.data
        # run()'s fast path in C (None: as COMPILED says); the results are the same either way
        self.compiled = COMPILED if compiled is None else bool(compiled and _walk is not None)
        self.max_flows = max_flows
        self.max_buffer = max(0, max_buffer)
        self.idle_timeout = idle_timeout
        self.linger = linger
        self.coalesce = max(1, coalesce)
        self.max_holding = max(1, max_holding)
        self._observe = self._finish = None
        if identify:
            from hostctl.wire.protocols import finish, observe

            self._observe, self._finish = observe, finish
        self._tcp: dict[bytes, tuple[Flow, _Dir, _Dir]] = {}  # direction key -> (flow, this dir, other dir)
        # the flows in each table (open ones and tombstones), by id, in order of creation: what a
        # sweep walks (a table has two keys per flow)
        self._members: dict[str, dict[int, Flow]] = {"tcp": {}, "udp": {}}
        self._udp: dict[bytes, tuple[Flow, _Dir, _Dir]] = {}
        self._live = 0  # flows in the tables (tombstones included)
        self._next_id = 1
        self._ooo_bytes = 0  # out-of-order bytes held, all flows
        self._ooo_dirs: dict[_Dir, Flow] = {}  # directions holding out-of-order data
        self._held_dirs: dict[_Dir, Flow] = {}  # directions holding data back, oldest first
        self._hold_seq = 0
        self._index = 0
        self._next_sweep = float("-inf")
        self._closed = False
        self.stats: dict[str, int] = {
            "packets": 0,
            "non_ip": 0,
            "fragments": 0,
            "malformed": 0,
            "tcp_flows": 0,
            "udp_flows": 0,
            "udp_datagrams": 0,
            "gaps": 0,
            "gap_bytes": 0,
            "retransmits": 0,
            "out_of_order": 0,
            "evicted": 0,
            "max_in_flight": 0,
            "buffer_peak": 0,
        }

    # -- input --------------------------------------------------------------------------------

    def feed(self, pkt: Packet) -> None:
        """One packet (as `CaptureReader` iteration gives them)."""
        self._index = pkt.index - 1
        self.feed_record(pkt.ts, pkt.linktype, pkt.data, 0, pkt.caplen, pkt.origlen)

    def run(
        self,
        reader: CaptureReader | Iterable[tuple[float, int, bytes, int, int, int]],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Feeds every packet of ``reader`` and closes. ``progress(packets so far)`` is called
        about every 100,000 packets (between chunks of the file, so it costs nothing per packet).

        A `CaptureReader` is walked through `CaptureReader.spans`: this loop reads the record
        headers of plain pcap/pcapng records itself and handles an established TCP flow's next
        segment or pure ACK over IPv4 (no options) or IPv6 (no extension headers), fully captured,
        on Ethernet, raw IP or Linux SLL/SLL2, inline. Everything else goes through `feed_record`,
        which handles every case (the tests run both and compare). Other iterables of
        ``(ts, linktype, chunk, start, caplen, origlen)`` go through `feed_record` one by one.
        """
        if not isinstance(reader, CaptureReader):
            for n, rec in enumerate(reader, 1):
                self.feed_record(*rec)
                if progress is not None and not n % 100_000:
                    progress(n)
            self.close()
            return
        reported = 0
        feed = self.feed_record
        tcp = self._tcp
        tcp_get = tcp.get
        walker = _walk if self.compiled else None
        # per link type: (struct reading the ethertype + an IPv4/TCP header, its offset, IP offset)
        # (raw IP link types have no ethertype: l2 is None and the version nibble decides)
        fast = {
            1: (_FAST_ETH_V4.unpack_from, 12, 14),
            113: (_FAST_ETH_V4.unpack_from, 14, 16),
            276: (_FAST_SLL2_V4.unpack_from, 0, 20),
            101: (_FAST_RAW_V4.unpack_from, None, 0),
            228: (_FAST_RAW_V4.unpack_from, None, 0),
            229: (_FAST_RAW_V4.unpack_from, None, 0),
        }
        v6 = _FAST_V6.unpack_from
        co = self.coalesce
        deliver = self._deliver
        segment = self._tcp_segment
        next_sweep = self._next_sweep
        base = self._index  # frames fed before this run
        count = 0  # packets of this run so far
        slow = 0  # of them, those fed to feed_record
        gen = reader.spans()
        msg = next(gen, None)
        while msg is not None:
            if msg[0] == RECORD:
                ts, lt, buf, p, caplen, origlen = msg[1]
                count += 1
                slow += 1
                # (frame numbers as Wireshark counts them; see CaptureReader.frame_skew)
                self._index = base + count - 1 + reader.frame_skew
                feed(ts, lt, buf, p, caplen, origlen)
                next_sweep = self._next_sweep
                msg = next(gen, None)
                continue
            pcap = msg[0] == SPAN_PCAP
            if pcap:
                _k, buf, pos, end, lt, frac, units, maxcap, header = msg
            else:
                _k, buf, pos, end, ifid0, lt, scale, offset, epb7, u32 = msg
            v4, l2, ipo = fast.get(lt, (None, 0, 0))
            walked = 0
            ts = 0.0
            # the compiled walk of the fast path below (hostctl/wire/_flowwalk.pyx), if built
            cw = walker if v4 is not None and type(buf) is bytes else None
            if cw is not None:
                if pcap:
                    big = header.__self__.format[0] in "!>"
                    cargs = (False, big, frac, units, maxcap, 0, 0.0, 0.0, -1 if l2 is None else l2, ipo)
                else:
                    big = epb7.__self__.format[0] in "!>"
                    cargs = (True, big, 0.0, 0, 0, ifid0, scale, offset, -1 if l2 is None else l2, ipo)
            while True:
                if cw is not None:
                    pos, n, ts = cw(tcp, buf, pos, end, *cargs, next_sweep, co, deliver, ts)
                    walked += n
                # -- the record header (stop at anything the reader must look at itself)
                if pcap:
                    if end - pos < 16:
                        break
                    sec, sub, caplen, origlen = header(buf, pos)
                    p = pos + 16
                    nxt = p + caplen
                    if caplen > maxcap or sub >= units or nxt > end:
                        break
                    ts = sec + sub * frac
                else:
                    if end - pos < 32:
                        break
                    btype, blen, ifid, hi, lo, caplen, origlen = epb7(buf, pos)
                    if (
                        btype != 6
                        or ifid != ifid0
                        or not 32 + caplen <= blen <= end - pos
                        or blen & 3
                        or u32(buf, pos + blen - 4)[0] != blen
                    ):
                        break
                    ts = ((hi << 32) | lo) * scale + offset
                    p = pos + 28
                    nxt = pos + blen
                pos = nxt
                walked += 1
                # -- the packet
                if v4 is not None:
                    ip = p + ipo
                    fend = p + caplen
                    try:
                        if l2 is None:
                            vihl, total, frag, proto, sport, dport, seq, doff, flags = v4(buf, p)
                            et = 0x0800 if vihl >> 4 == 4 else 0x86DD if vihl >> 4 == 6 else 0
                        else:
                            et, vihl, total, frag, proto, sport, dport, seq, doff, flags = v4(buf, p + l2)
                        # (a header length, total >= 40, follows from the data offset checks below)
                        if et == 0x0800 and vihl == 0x45 and proto == 6 and not frag & 0x3FFF and ip + total <= fend:
                            key = buf[ip + 12 : ip + 24]
                            ip_end = ip + total
                            pstart = ip + 20 + (doff >> 4) * 4
                        elif et == 0x86DD:
                            vtc, plen, proto, sport, dport, seq, doff, flags = v6(buf, ip)
                            if vtc >> 4 == 6 and proto == 6 and ip + 40 + plen <= fend:
                                key = buf[ip + 8 : ip + 44]
                                ip_end = ip + 40 + plen
                                pstart = ip + 40 + (doff >> 4) * 4
                            else:
                                key = None
                        else:
                            key = None
                    except struct.error:  # header runs past the chunk: not a whole packet
                        key = None
                    if key is not None and doff >= 0x50 and pstart <= ip_end:
                        if not flags & 0x07 and ts < next_sweep:
                            entry = tcp_get(key)
                            if entry is not None:
                                flow, d, _other = entry
                                # (an ended flow's pure ACKs are counted the same way; its next_seq
                                # is -1, so none of its data gets past here)
                                if pstart == ip_end:  # a pure ACK
                                    flow.packets += 1
                                    flow.last_ts = ts
                                    continue
                                if seq == d.next_seq and d.ooo is None:  # the next bytes
                                    flow.packets += 1
                                    flow.last_ts = ts
                                    off = d.offset
                                    # (held data ends where the stream stands: off - held[0] is its size)
                                    held = d.held_data
                                    if held is not None and off - held[0] < co:
                                        held[1].append(buf[pstart:ip_end])
                                    else:
                                        deliver(flow, d, off, buf[pstart:ip_end], ts)
                                    d.offset = off + ip_end - pstart
                                    d.next_seq = (seq + ip_end - pstart) & 0xFFFFFFFF
                                    continue
                        # a well-formed TCP segment, just not a plain one: decoded already
                        segment(ts, buf, key, sport, dport, seq, flags, pstart, ip_end, fend)
                        next_sweep = self._next_sweep
                        continue
                slow += 1
                self._index = base + count + walked - 1 + reader.frame_skew
                feed(ts, lt, buf, p, caplen, origlen)
                next_sweep = self._next_sweep
            count += walked
            if progress is not None and count - reported >= 100_000:
                reported = count
                progress(count)
            try:
                msg = gen.send((pos, walked, ts))
            except StopIteration:
                msg = None
        self._index = base + count + reader.frame_skew
        self.stats["packets"] += count - slow  # the ones this loop handled itself
        self.close()

    def feed_record(self, ts: float, linktype: int, buf: bytes, p: int, caplen: int, origlen: int = 0) -> None:
        """One frame, ``buf[p:p + caplen]``, without copying it first."""
        self._index += 1
        self.stats["packets"] += 1
        end = p + caplen
        if caplen > len(buf) - p:
            end = len(buf)
        # -- link layer -> (ethertype-ish version, start of IP header)
        if linktype == 1:  # Ethernet
            if end - p < 14:
                self.stats["malformed"] += 1
                return
            et = buf[p + 12] << 8 | buf[p + 13]
            p += 14
            while et == 0x8100 or et == 0x88A8 or et == 0x9100:  # VLAN tags
                if end - p < 4:
                    self.stats["malformed"] += 1
                    return
                et = buf[p + 2] << 8 | buf[p + 3]
                p += 4
        elif linktype == 101 or linktype == 12 or linktype == 14 or linktype == 228 or linktype == 229:
            if end - p < 1:
                self.stats["malformed"] += 1
                return
            v = buf[p] >> 4
            et = 0x0800 if v == 4 else 0x86DD if v == 6 else 0
        elif linktype == 113:  # Linux cooked
            if end - p < 16:
                self.stats["malformed"] += 1
                return
            et = buf[p + 14] << 8 | buf[p + 15]
            p += 16
        elif linktype == 276:  # Linux cooked v2
            if end - p < 20:
                self.stats["malformed"] += 1
                return
            et = buf[p] << 8 | buf[p + 1]
            p += 20
        elif linktype == 9 or linktype == 50:
            # PPP (RFC 1661; pppd's ppp0, as older Android data links were) and PPP in HDLC-like
            # framing (RFC 1662): an optional ff 03 (address, control), then the protocol, 1 byte
            # when compressed (PFC: odd first byte) or 2 -- libpcap's DLT_PPP text says the same
            if end - p >= 2 and buf[p] == 0xFF and buf[p + 1] == 0x03:
                p += 2
            if end - p < 1:
                self.stats["malformed"] += 1
                return
            if buf[p] & 1:
                pproto = buf[p]
                p += 1
            elif end - p < 2:
                self.stats["malformed"] += 1
                return
            else:
                pproto = buf[p] << 8 | buf[p + 1]
                p += 2
            et = 0x0800 if pproto == 0x21 else 0x86DD if pproto == 0x57 else 0
        elif linktype == 0 or linktype == 108:  # BSD loopback: address family, host or network order
            if end - p < 4:
                self.stats["malformed"] += 1
                return
            af = int.from_bytes(buf[p : p + 4], "big" if linktype == 108 else "little")
            if af > 0xFFFF:
                af = int.from_bytes(buf[p : p + 4], "little" if linktype == 108 else "big")
            et = 0x0800 if af == 2 else 0x86DD if af in _NULL_V6 else 0
            p += 4
        else:
            et = 0
        if et == 0x0800:
            if end - p < 20:
                self.stats["malformed"] += 1
                return
            vihl, total, frag, proto = _V4.unpack_from(buf, p)
            ihl = (vihl & 0x0F) * 4
            if vihl >> 4 != 4 or ihl < 20 or (total < ihl and total) or end - p < ihl:
                self.stats["malformed"] += 1
                return
            if frag & 0x3FFF:
                self.stats["fragments"] += 1
                return
            # as the header says (it may run past a snaplen-cut capture); 0 is what TSO captures show
            ip_end = p + total if total else end
            l4 = p + ihl
            if ihl == 20:
                addrs = b""  # not used: the key is sliced whole from akey_start
                akey_start = p + 12
            else:
                addrs = buf[p + 12 : p + 20]
                akey_start = -1
        elif et == 0x86DD:
            if end - p < 40:
                self.stats["malformed"] += 1
                return
            if buf[p] >> 4 != 6:
                self.stats["malformed"] += 1
                return
            plen, proto = _V6.unpack_from(buf, p + 4)
            ip_end = p + 40 + plen
            l4 = p + 40
            addrs = b""  # not used: the key is sliced whole from akey_start
            akey_start = p + 8
            while proto in _V6_EXT or proto == _V6_FRAG:
                if proto == _V6_FRAG:
                    self.stats["fragments"] += 1
                    return
                if end - l4 < 8:
                    self.stats["malformed"] += 1
                    return
                if proto == 0 and plen == 0 and l4 == p + 40:
                    # a jumbogram (RFC 2675): payload length 0, the real one in the hop-by-hop
                    # Jumbo Payload option; Linux's BIG TCP sends them (tcpdump's own test
                    # capture bigtcp-ipv6-hbh.pcap, taken on such a host)
                    jumbo = _jumbo_length(buf, l4, min(end, l4 + (buf[l4 + 1] + 1) * 8))
                    if jumbo is not None:
                        ip_end = p + 40 + jumbo
                proto = buf[l4]
                l4 += (buf[l4 + 1] + 1) * 8
                addrs = buf[p + 8 : p + 40]
                akey_start = -1
        else:
            self.stats["non_ip"] += 1
            return
        if proto == 6:
            if end - l4 < 20 or ip_end - l4 < 20:
                self.stats["malformed"] += 1
                return
            key = buf[akey_start : l4 + 4] if akey_start >= 0 else addrs + buf[l4 : l4 + 4]
            sport, dport, seq, _ack, doff, flags = _TCP.unpack_from(buf, l4)
            doff = (doff >> 4) * 4
            pstart = l4 + doff
            if doff < 20 or pstart > ip_end:
                self.stats["malformed"] += 1
                return
            self._tcp_segment(ts, buf, key, sport, dport, seq, flags, pstart, ip_end, end)
        elif proto == 17:
            if end - l4 < 8 or ip_end - l4 < 8:
                self.stats["malformed"] += 1
                return
            key = buf[akey_start : l4 + 4] if akey_start >= 0 else addrs + buf[l4 : l4 + 4]
            sport, dport, ulen = _UDP.unpack_from(buf, l4)
            dend = min(ip_end, end, l4 + ulen if ulen >= 8 else ip_end)
            self._udp_datagram(ts, key, sport, dport, buf[l4 + 8 : dend])
        else:
            self.stats["non_ip"] += 1

    # -- TCP ----------------------------------------------------------------------------------

    def _new_flow(
        self, table: dict, key: bytes, proto: str, sport: int, dport: int, ts: float, src_is_client: bool
    ) -> tuple[Flow, _Dir, _Dir]:
        """A flow for the packet with direction key ``key`` (addresses, then ports); returns its
        table entry for that direction. An older flow on the same keys (a tombstone, or one
        ended as "reused") leaves the table."""
        half = (len(key) - 4) // 2
        src, dst = key[:half], key[half : 2 * half]
        rkey = dst + src + key[-2:] + key[-4:-2]
        a, b = (_ntop(src), sport), (_ntop(dst), dport)
        fk = FlowKey(proto, a, b) if src_is_client else FlowKey(proto, b, a)
        flow = Flow(self._next_id, fk, ts)
        self._next_id += 1
        for k in (key, rkey):
            old = table.get(k)
            if old is not None:
                self._drop(table, old[0])
        if self._live >= self.max_flows:
            self._sweep(ts, force=True)
        c2s_key, s2c_key = (key, rkey) if src_is_client else (rkey, key)
        flow._keys = (c2s_key, s2c_key)
        table[c2s_key] = (flow, flow.c2s, flow.s2c)
        table[s2c_key] = (flow, flow.s2c, flow.c2s)
        self._members[proto][flow.id] = flow
        self._live += 1
        if self._live > self.stats["max_in_flight"]:
            self.stats["max_in_flight"] = self._live
        self.stats["tcp_flows" if proto == "tcp" else "udp_flows"] += 1
        self.consumer.flow_start(flow)
        return table[key]

    def _tcp_segment(
        self,
        ts: float,
        buf: bytes,
        key: bytes,
        sport: int,
        dport: int,
        seq: int,
        flags: int,
        pstart: int,
        ip_end: int,
        end: int,
    ) -> None:
        if ts >= self._next_sweep:
            self._sweep(ts)
        entry = self._tcp.get(key)
        if entry is None:
            src_is_client = (not flags & ACK) if flags & SYN else (sport > dport or (sport == dport))
            entry = self._new_flow(self._tcp, key, "tcp", sport, dport, ts, src_is_client)
            if not flags & SYN:
                entry[0].midstream = True
        flow, d, other = entry
        if flags & SYN and not flags & ACK:
            # A SYN on known ports: the same SYN again belongs to its flow; another one is a new
            # connection reusing the ports (Wireshark starts a new tcp.stream on the same rule).
            c2s = flow.c2s
            if d is c2s and c2s.isn == seq:
                pass
            elif flow.ended is not None:
                flow, d, other = self._new_flow(self._tcp, key, "tcp", sport, dport, ts, True)
            elif d is c2s and (c2s.isn is not None or d.offset or other.offset):
                self._end(flow, "rst" if flow.rst_ts is not None else "reused")
                flow, d, other = self._new_flow(self._tcp, key, "tcp", sport, dport, ts, True)
        if flow.ended is not None:  # a straggler of an ended flow
            flow.packets += 1
            flow.last_ts = ts
            return
        flow.packets += 1
        flow.last_ts = ts
        length = ip_end - pstart
        if flags & SYN:
            if d.next_seq is None:
                d.next_seq = (seq + 1) & 0xFFFFFFFF
                d.isn = seq
            seq = (seq + 1) & 0xFFFFFFFF
        if length > 0:
            nxt = d.next_seq
            if nxt is None:
                d.next_seq = nxt = seq
            delta = ((seq - nxt + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            cap_end = ip_end if ip_end <= end else end
            if delta == 0 and d.ooo is None:
                # the fast path: the next bytes, nothing waiting
                off = d.offset
                if cap_end >= ip_end:
                    self._deliver(flow, d, off, buf[pstart:ip_end], ts)
                else:
                    if cap_end > pstart:
                        self._deliver(flow, d, off, buf[pstart:cap_end], ts)
                    self._gap(flow, d, off + max(0, cap_end - pstart), ip_end - max(pstart, cap_end))
                d.offset = off + length
                d.next_seq = (nxt + length) & 0xFFFFFFFF
            else:
                self._segment_slow(flow, d, delta, buf[pstart:cap_end] if cap_end > pstart else b"", length, ts)
        if flags & (FIN | RST):
            if flags & RST:
                if flow.rst_ts is None:
                    flow.rst_ts = ts
                    if ts + RST_GRACE < self._next_sweep:
                        self._next_sweep = ts + RST_GRACE
                return
            if d.next_seq is None:
                d.next_seq = seq
            if d.fin is None:
                delta = ((seq - d.next_seq + 0x80000000) & 0xFFFFFFFF) - 0x80000000
                d.fin = d.offset + delta + length
        if d.fin is not None and not d.done and d.offset >= d.fin and not d.ooo:
            d.done = True
        if d.done and other.done:
            self._end(flow, "fin")

    def _segment_slow(self, flow: Flow, d: _Dir, delta: int, data: bytes, length: int, ts: float) -> None:
        """A segment that is not simply the next bytes: a retransmission (whole or partly new),
        or out of order."""
        if delta < 0:
            self.stats["retransmits"] += 1
            if delta + length <= 0:
                return
            cut = -delta
            data = data[cut:]
            length -= cut
            delta = 0
        if delta == 0 and not d.ooo:
            off = d.offset
            if data:
                self._deliver(flow, d, off, data, ts)
            if len(data) < length:
                self._gap(flow, d, off + len(data), length - len(data))
            self._advance(d, length)
            return
        self.stats["out_of_order"] += delta > 0
        off = d.offset + delta
        if d.ooo is None:
            d.ooo = {}
        prev = d.ooo.get(off)
        if prev is not None:
            if prev[1] >= length:
                self.stats["retransmits"] += 1
                return
            self._ooo_bytes -= len(prev[0])
            d.ooo_bytes -= len(prev[0])
        d.ooo[off] = (data, length)
        d.ooo_bytes += len(data)
        self._ooo_bytes += len(data)
        self._ooo_dirs[d] = flow
        if self._ooo_bytes > self.stats["buffer_peak"]:
            self.stats["buffer_peak"] = self._ooo_bytes
        self._drain(flow, d, ts)
        while self._ooo_bytes > self.max_buffer and self._ooo_dirs:
            victim = max(self._ooo_dirs, key=lambda x: x.ooo_bytes)
            self._give_up(self._ooo_dirs[victim], victim, ts)

    def _advance(self, d: _Dir, length: int) -> None:
        d.offset += length
        d.next_seq = (d.next_seq + length) & 0xFFFFFFFF  # type: ignore[operator]

    def _drain(self, flow: Flow, d: _Dir, ts: float) -> None:
        """Delivers what the held segments now make contiguous."""
        ooo = d.ooo
        if not ooo:
            return
        while ooo:
            start = min(ooo)
            if start > d.offset:
                break
            data, length = ooo.pop(start)
            d.ooo_bytes -= len(data)
            self._ooo_bytes -= len(data)
            skip = d.offset - start
            if skip >= length:
                self.stats["retransmits"] += 1
                continue
            piece = data[skip:] if skip else data
            if piece:
                self._deliver(flow, d, d.offset, piece, ts)
            missing = (length - skip) - len(piece)
            if missing > 0:
                self._gap(flow, d, d.offset + len(piece), missing)
            self._advance(d, length - skip)
        if not ooo:
            d.ooo = None
            self._ooo_dirs.pop(d, None)
            if d.fin is not None and d.offset >= d.fin:
                d.done = True

    def _give_up(self, flow: Flow, d: _Dir, ts: float) -> None:
        """Stops waiting for the bytes before the held segments: they become gaps."""
        while d.ooo:
            start = min(d.ooo)
            if start > d.offset:
                missing = start - d.offset
                self._gap(flow, d, d.offset, missing)
                self._advance(d, missing)
            self._drain(flow, d, ts)

    # -- UDP ----------------------------------------------------------------------------------

    def _udp_datagram(self, ts: float, key: bytes, sport: int, dport: int, payload: bytes) -> None:
        if ts >= self._next_sweep:
            self._sweep(ts)
        entry = self._udp.get(key)
        if entry is None:
            entry = self._new_flow(self._udp, key, "udp", sport, dport, ts, sport > dport or sport == dport)
        flow, d, _other = entry
        flow.packets += 1
        flow.last_ts = ts
        self.stats["udp_datagrams"] += 1
        if self._observe is not None:
            self._observe(flow, d.name, d.offset, payload)
        d.offset += len(payload)
        self.consumer.datagram(flow, d.name, payload, ts, self._index)

    # -- delivery -----------------------------------------------------------------------------

    def _deliver(self, flow: Flow, d: _Dir, offset: int, data: bytes, ts: float) -> None:
        """Holds ``data`` back with what directly precedes it, to hand over in one piece."""
        held = d.held_data
        if held is not None:
            if offset - held[0] < self.coalesce:
                held[1].append(data)
                return
            self._release(flow, d)
        self._hold_seq += 1
        d.held_data = [offset, [data], ts, self._hold_seq]
        holders = self._held_dirs
        holders[d] = flow
        if len(holders) > self.max_holding:
            oldest = next(iter(holders))
            self._release(holders[oldest], oldest)

    def _release(self, flow: Flow, d: _Dir) -> None:
        """Hands over what ``d`` holds, after what the other direction holds if that began
        earlier (so a flow's data keeps its causal order: requests before their answers)."""
        other = flow.s2c if d is flow.c2s else flow.c2s
        oh = other.held_data
        if oh is not None and oh[3] < d.held_data[3]:  # type: ignore[index]
            self._emit(flow, other)
        self._emit(flow, d)

    def _release_flow(self, flow: Flow) -> None:
        c, s = flow.c2s.held_data, flow.s2c.held_data
        if c is not None and (s is None or c[3] < s[3]):
            self._emit(flow, flow.c2s)
        if flow.s2c.held_data is not None:
            self._emit(flow, flow.s2c)
        if flow.c2s.held_data is not None:
            self._emit(flow, flow.c2s)

    def _release_all(self) -> None:
        for d, flow in list(self._held_dirs.items()):
            if d.held_data is not None:
                self._emit(flow, d)

    def _emit(self, flow: Flow, d: _Dir) -> None:
        """Hands ``d``'s held data to protocol identification and the consumer."""
        offset, chunks, ts, _seq = d.held_data  # type: ignore[misc]
        d.held_data = None
        del self._held_dirs[d]
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if self._observe is not None and flow.sniff is not False:
            self._observe(flow, d.name, offset, data)
        self._data(flow, d.name, offset, data, ts)

    def _gap(self, flow: Flow, d: _Dir, offset: int, length: int) -> None:
        if length <= 0:
            return
        if d.held_data is not None:
            self._release(flow, d)
        self.stats["gaps"] += 1
        self.stats["gap_bytes"] += length
        d.gapped += length
        self.consumer.gap(flow, d.name, offset, length)

    # -- ending -------------------------------------------------------------------------------

    def _end(self, flow: Flow, how: str) -> None:
        """Ends ``flow``: what it holds is delivered (gaps noted), then ``flow_end``. It stays in
        the table as a tombstone."""
        if flow.ended is not None:
            return
        for d in (flow.c2s, flow.s2c):
            if d.ooo:
                self._give_up(flow, d, flow.last_ts)
            if d.fin is not None and d.fin > d.offset and how != "rst":
                self._gap(flow, d, d.offset, d.fin - d.offset)
                d.offset = d.fin
        self._release_flow(flow)
        flow.ended = how
        flow.c2s.next_seq = flow.s2c.next_seq = -1  # none of an ended flow's data passes run()'s fast path
        if self._finish is not None:
            self._finish(flow)
        self.consumer.flow_end(flow)

    def _drop(self, table: dict, flow: Flow) -> None:
        """Removes ``flow`` from ``table`` (ending it first if it is still open)."""
        if flow.ended is None:
            if flow.rst_ts is not None:
                self._end(flow, "rst")
            elif _both_fins(flow):
                self._end(flow, "fin")
            else:
                self._end(flow, "evicted")
                self.stats["evicted"] += 1
        for k in flow._keys:
            e = table.get(k)
            if e is not None and e[0] is flow:
                del table[k]
        self._members[flow.key.proto].pop(flow.id, None)
        self._live -= 1

    def _sweep(self, now: float, *, force: bool = False, keep: Flow | None = None) -> None:
        """Expires tombstones past ``linger`` and flows idle past ``idle_timeout``; with ``force``
        (the table is full) also the least recently active quarter, tombstones first."""
        self._next_sweep = now + max(1.0, min(self.linger, self.idle_timeout or self.linger) / 4)
        for table, members in ((self._tcp, self._members["tcp"]), (self._udp, self._members["udp"])):
            for f in list(members.values()):
                if f is keep:
                    continue
                if f.ended is not None and now - f.last_ts >= self.linger:
                    self._drop(table, f)
                elif f.ended is None and f.rst_ts is not None and now - f.rst_ts >= RST_GRACE:
                    self._end(f, "rst")
                elif f.ended is None and self.idle_timeout is not None and now - f.last_ts >= self.idle_timeout:
                    self._drop(table, f)
        if force and self._live >= self.max_flows:
            everyone = [
                (f.ended is None, f.last_ts, f.id, f, t)
                for t, members in ((self._tcp, self._members["tcp"]), (self._udp, self._members["udp"]))
                for f in members.values()
                if f is not keep
            ]
            everyone.sort(key=lambda x: x[:3])  # tombstones first, then the least recent
            target = self.max_flows - max(1, self.max_flows // 4)
            for _open, _ts, _id, f, t in everyone:
                if self._live <= target:
                    break
                self._drop(t, f)

    def close(self) -> None:
        """Ends every flow still open ("eof"), delivering what is held. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for table in (self._tcp, self._udp):
            seen: set[int] = set()
            for flow, _d, _o in list(table.values()):
                if id(flow) in seen:
                    continue
                seen.add(id(flow))
                if flow.ended is None:
                    self._end(flow, "rst" if flow.rst_ts is not None else "fin" if _both_fins(flow) else "eof")
            table.clear()
        for members in self._members.values():
            members.clear()
        self._release_all()
        self._live = 0
