# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled walk of `hostctl.wire.flows.FlowTable.run`'s common case (optional).

`FlowTable.run` walks the records of a capture span itself; almost every record of a capture is
either a pure ACK or the next in-order segment of an established TCP flow, and for those the
Python loop costs about a microsecond a packet. `walk` does exactly that loop's fast path in C
and nothing else: it starts at a record header and walks records for as long as each one is

- a plain record (the same header tests as the Python loop: classic pcap with 16-byte headers,
  or a pcapng Enhanced Packet Block of the span's interface), whose packet is
- IPv4 without options or IPv6 without extension headers, carrying TCP, fully captured, on one
  of the link types the Python loop handles inline, and
- of a flow already in the table, without SYN/FIN/RST, before the next sweep time, and either a
  pure ACK or the segment whose sequence number is the one expected with nothing out of order.

It stops *before* the first record that is anything else and returns ``(position, records
walked, timestamp of the last)``: the Python loop then handles that record with its own code, so
every decision other than the fast path's stays in one place (flows.py). The tests run captures
through both (``HOSTCTL_WIRE_PURE=1`` turns this module off) and compare every event.

Built by setup.py with Cython when a C compiler is present; without it hostctl runs the same
loop in Python (slower, same results).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_GetItem
from cpython.ref cimport PyObject
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t


cdef inline uint16_t be16(const uint8_t* b) noexcept nogil:
    return (<uint16_t>b[0] << 8) | b[1]


cdef inline uint32_t be32(const uint8_t* b) noexcept nogil:
    return (<uint32_t>b[0] << 24) | (<uint32_t>b[1] << 16) | (<uint32_t>b[2] << 8) | b[3]


cdef inline uint32_t le32(const uint8_t* b) noexcept nogil:
    return (<uint32_t>b[3] << 24) | (<uint32_t>b[2] << 16) | (<uint32_t>b[1] << 8) | b[0]


cdef inline uint32_t u32(const uint8_t* b, bint big) noexcept nogil:
    return be32(b) if big else le32(b)


def walk(
    dict tcp,
    bytes buf,
    Py_ssize_t pos,
    Py_ssize_t end,
    bint pcapng,
    bint big,
    double frac,
    uint64_t units,
    uint64_t maxcap,
    uint64_t ifid0,
    double scale,
    double offset,
    int l2,
    Py_ssize_t ipo,
    double next_sweep,
    Py_ssize_t co,
    object deliver,
    double ts,
):
    """See the module's text. ``l2``: offset of the ethertype from the frame's start, or -1 for
    a raw IP link type (the version nibble decides); ``ipo``: offset of the IP header."""
    cdef const uint8_t* b = <const uint8_t*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t blen_total = len(buf)
    cdef Py_ssize_t walked = 0
    cdef Py_ssize_t p, nxt, fend, ip, ip_end, pstart, q, klen, kstart, n
    cdef uint64_t sec, sub, caplen, btype, rlen, ifid, hi, lo
    cdef double t
    cdef uint32_t seq, et, vihl, total, frag, proto, plen, vtc
    cdef uint8_t doff, flags
    cdef PyObject* found
    cdef object entry, flow, d, key, held, data, nseq
    cdef Py_ssize_t off
    if end > blen_total:
        end = blen_total
    while True:
        # -- the record header: as the Python loop tests it
        if not pcapng:
            if end - pos < 16:
                break
            sec = u32(b + pos, big)
            sub = u32(b + pos + 4, big)
            caplen = u32(b + pos + 8, big)
            p = pos + 16
            if caplen > maxcap or sub >= units or p + <Py_ssize_t>caplen > end:
                break
            nxt = p + <Py_ssize_t>caplen
            t = <double>sec + <double>sub * frac
        else:
            if end - pos < 32:
                break
            btype = u32(b + pos, big)
            rlen = u32(b + pos + 4, big)
            ifid = u32(b + pos + 8, big)
            hi = u32(b + pos + 12, big)
            lo = u32(b + pos + 16, big)
            caplen = u32(b + pos + 20, big)
            if (
                btype != 6
                or ifid != ifid0
                or not (32 + caplen <= rlen and rlen <= <uint64_t>(end - pos))
                or rlen & 3
                or u32(b + pos + <Py_ssize_t>rlen - 4, big) != rlen
            ):
                break
            t = <double>((hi << 32) | lo) * scale + offset
            p = pos + 28
            nxt = pos + <Py_ssize_t>rlen
        # -- the packet: IPv4 (no options) or IPv6 (no extension headers), TCP, whole
        fend = p + <Py_ssize_t>caplen
        ip = p + ipo
        if ip + 34 > blen_total:  # (the Python loop's struct reads up to the TCP flags)
            break
        if l2 < 0:
            vihl = b[p]
            et = 0x0800 if vihl >> 4 == 4 else (0x86DD if vihl >> 4 == 6 else 0)
        else:
            q = p + l2
            et = be16(b + q)
            vihl = b[q + 2]
        if et == 0x0800:
            if vihl != 0x45:
                break
            total = be16(b + ip + 2)
            frag = be16(b + ip + 6)
            proto = b[ip + 9]
            if proto != 6 or frag & 0x3FFF or ip + total > fend:
                break
            kstart = ip + 12
            klen = 12
            ip_end = ip + total
            doff = b[ip + 32]
            flags = b[ip + 33]
            seq = be32(b + ip + 24)
            pstart = ip + 20 + (doff >> 4) * 4
        elif et == 0x86DD:
            if ip + 54 > blen_total:
                break
            vtc = b[ip]
            plen = be16(b + ip + 4)
            proto = b[ip + 6]
            if vtc >> 4 != 6 or proto != 6 or ip + 40 + plen > fend:
                break
            kstart = ip + 8
            klen = 36
            ip_end = ip + 40 + plen
            doff = b[ip + 52]
            flags = b[ip + 53]
            seq = be32(b + ip + 44)
            pstart = ip + 40 + (doff >> 4) * 4
        else:
            break
        if doff < 0x50 or pstart > ip_end or flags & 0x07 or not t < next_sweep:
            break
        key = PyBytes_FromStringAndSize(<const char*>(b + kstart), klen)
        found = PyDict_GetItem(tcp, key)
        if found is NULL:
            break
        entry = <object>found
        flow = entry[0]
        d = entry[1]
        if pstart == ip_end:  # a pure ACK
            flow.packets += 1
            flow.last_ts = t
        else:
            nseq = d.next_seq
            if nseq is None or <uint32_t>nseq != seq or d.ooo is not None:
                break
            n = ip_end - pstart
            flow.packets += 1
            flow.last_ts = t
            off = d.offset
            held = d.held_data
            data = PyBytes_FromStringAndSize(<const char*>(b + pstart), n)
            if held is not None and off - <Py_ssize_t>held[0] < co:
                held[1].append(data)
            else:
                deliver(flow, d, off, data, t)
            d.offset = off + n
            d.next_seq = (<uint64_t>seq + <uint64_t>n) & 0xFFFFFFFF
        pos = nxt
        ts = t
        walked += 1
    return pos, walked, ts
