"""Reading captures: a streaming reader for classic pcap and pcapng files.

The wire analyser reads captures from handsets, from ``tcpdump`` on a lab host, from PCAPdroid and
from the emulated lab's tap; some are hundreds of megabytes and some are damaged (a capture app
killed mid-write, a copy cut short). So the reader

- never loads the file: it reads 1 MiB chunks (an unfinished record is read again with the next
  chunk rather than copied onto it, when the file can seek) and walks records inside them with
  precompiled ``struct`` unpackers. `CaptureReader.records` hands out ``(ts, linktype, chunk,
  start, caplen, origlen)`` with no per-packet object beyond that tuple; `CaptureReader.spans`
  lets the flow table walk plain records itself and hands back anything unusual to the reader's
  own code; iterating the reader gives `Packet` objects for everyone else;
- reads classic pcap (both byte orders; microsecond, nanosecond and Kuznetzov "modified" magics),
  gzip-compressed files, and pcapng (both byte orders, several sections, one IDB per interface with
  its link type, ``if_tsresol``, ``if_tsoffset`` and snaplen; EPB, SPB and the obsolete PB;
  name resolution blocks go to `CaptureReader.names`);
- keeps the payload of each Decryption Secrets Block (type 0x0000000A: secrets type, length,
  data; pcapng draft-ietf-opsawg-pcapng section 4.7) in `CaptureReader.secrets` as
  ``(secrets type, bytes)``, as it is read (a TLS key log is type 0x544c534b, "TLSK");
- skips and counts every block it has no use for (interface statistics,
  PCAPdroid's custom blocks 0x00000BAD/0x40000BAD, unknown types) in ``stats["skipped_blocks"]``;
- on damage (a length that cannot be right, a trailer that does not match, garbage between
  records, a cut at the end) notes what and where in ``stats["errors"]`` and carries on from the
  next plausible record (found by a search, not a byte-by-byte Python loop), or stops cleanly at
  the end of the file. A file that is not a capture at all, or whose header cannot be read, raises
  `CaptureError`, as does any damage when ``strict=True``. Nothing else escapes.
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import os
import re
import struct
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from hostctl.errors import HostctlError

__all__ = ["RECORD", "SPAN_PCAP", "SPAN_PCAPNG", "CaptureError", "CaptureReader", "Packet", "open_capture"]

CHUNK = 1 << 20
MAX_PACKET = 262144  # Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD
MAX_BLOCK = 16 << 20  # the largest pcapng block we accept (Wireshark's limit is the same order)
MAX_ERRORS = 100  # errors kept in stats["errors"] (all are counted in "error_count")
RECORD, SPAN_PCAP, SPAN_PCAPNG = 0, 1, 2  # what CaptureReader.spans() yields

_PCAP_MAGICS = {
    # first four bytes as read -> (byte order, fraction units per second, record header size)
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000, 16),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000, 16),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000, 16),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000, 16),
    b"\x34\xcd\xb2\xa1": ("<", 1_000_000, 24),  # Kuznetzov's patched libpcap ("modified pcap")
    b"\xa1\xb2\xcd\x34": (">", 1_000_000, 24),
}
_SHB_MAGIC = b"\x0a\x0d\x0d\x0a"
SHB, IDB, PB, SPB, NRB, ISB, EPB, DSB = 0x0A0D0D0A, 1, 2, 3, 4, 5, 6, 0x0A
MAX_SECRETS = 64 << 20  # DSB payload bytes kept (a key log line is ~180 bytes)
_KNOWN_TYPES = {SHB, IDB, PB, SPB, NRB, ISB, EPB, 0x0A, 0x0BAD, 0x40000BAD}
# Where a damaged pcapng stream may resume: a known block type (checked further by its lengths).
_RESYNC = {
    "<": re.compile(rb"(?=[\x01-\x06\x0a]\x00\x00\x00|\x0a\x0d\x0d\x0a|\xad\x0b\x00[\x00\x40])"),
    ">": re.compile(rb"(?=\x00\x00\x00[\x01-\x06\x0a]|\x0a\x0d\x0d\x0a|[\x00\x40]\x00\x0b\xad)"),
}


# Resynchronising a classic pcap without a previous timestamp: where caplen (bytes 8-11) is under
# 5 * 65536 and origlen (12-15) under 2**24, as the plausibility check then demands anyway.
_PCAP_LENGTHS = {
    "<": re.compile(rb"(?=.{10}[\x00-\x04]\x00.{3}\x00)", re.S),
    ">": re.compile(rb"(?=.{8}\x00[\x00-\x04].{2}\x00)", re.S),
}


class _Prefixed:
    """Bytes already read, then the rest of the file: what gzip must read from the start."""

    def __init__(self, head: bytes, f: BinaryIO | gzip.GzipFile) -> None:
        self.head, self.f = head, f

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                out, self.head = self.head + self.f.read(), b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            return out
        return self.f.read(n)

    def seek(self, n: int) -> int:
        # gzip only seeks its file to rewind, which a reader never does (the stream is read once)
        raise io.UnsupportedOperation("a gzip'd capture is read as a stream")

    def close(self) -> None:
        self.f.close()


class CaptureError(HostctlError):
    """A capture that cannot be read (or, with ``strict``, one that is damaged): names the file and
    the byte offset where reading failed."""

    def __init__(self, name: str, offset: int, reason: str) -> None:
        self.name = name
        self.offset = offset
        self.reason = reason
        super().__init__(f"{name}: at byte {offset}: {reason}")


@dataclass(slots=True)
class Packet:
    """One captured frame. ``index`` is Wireshark's frame number (1-based, in file order; pcapng
    custom blocks take a number, as Wireshark 4 lists them; damaged records skipped do not);
    ``data`` holds ``caplen`` bytes of a frame that was ``origlen`` long."""

    index: int
    ts: float
    linktype: int
    data: bytes
    caplen: int
    origlen: int


@dataclass(slots=True)
class _Interface:
    linktype: int
    snaplen: int
    scale: float  # seconds per timestamp unit
    offset: float  # if_tsoffset, seconds


def _tsresol_scale(v: int) -> float:
    return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0**-v


class CaptureReader:
    """Streams the packets of one capture file.

    ``f_or_path`` is a path (opened and closed here) or a binary file object (left open). The file
    header is read at once, so a file that is no capture fails here with `CaptureError`. Iterate
    for `Packet` objects, or use `records` for the cheaper tuples. ``stats`` (kept up to date):
    ``format``, ``packets``, ``skipped_blocks`` ({block type: count}), ``truncated_packets``,
    ``errors`` (first `MAX_ERRORS` messages, each naming its byte offset), ``error_count``,
    ``skipped_bytes`` (passed over while resynchronising), ``interfaces``.
    """

    def __init__(
        self,
        f_or_path: str | os.PathLike[str] | BinaryIO,
        *,
        name: str | None = None,
        strict: bool = False,
        chunk_size: int = CHUNK,
    ) -> None:
        self._owned = isinstance(f_or_path, (str, os.PathLike))
        if isinstance(f_or_path, (str, os.PathLike)):
            self.name = name or os.fspath(f_or_path)
            try:
                # unbuffered: reads are large, and a buffer would only add a copy
                self._f: BinaryIO | gzip.GzipFile = open(f_or_path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
            except OSError as e:
                raise CaptureError(self.name, 0, f"cannot open: {e.strerror or e}") from e
        else:
            self._f = f_or_path
            self.name = name or str(getattr(f_or_path, "name", "<capture>"))
        self.strict = strict
        self._chunk = max(4096, chunk_size)
        self._buf = b""
        self._pos = 0
        self._base = 0  # file offset of self._buf[0]
        self._eof = False
        self._started = False
        try:
            self._seekable = bool(self._f.seekable()) and self._f.tell() == 0
        except (OSError, ValueError, AttributeError):
            self._seekable = False
        self.names: dict[str, str] = {}  # from name resolution blocks, as they are read
        self.secrets: list[tuple[int, bytes]] = []  # from decryption secrets blocks, as they are read
        self._secret_bytes = 0
        # frame numbers used by records that are not packets (Wireshark 4 numbers pcapng custom
        # blocks as frames): a packet's Wireshark frame number is its count plus this, as it
        # stands when the packet is handed out
        self.frame_skew = 0
        self.stats: dict = {
            "format": None,
            "packets": 0,
            "skipped_blocks": {},
            "truncated_packets": 0,
            "errors": [],
            "error_count": 0,
            "skipped_bytes": 0,
            "interfaces": [],
        }
        try:
            self._open_header()
        except BaseException:
            self.close()
            raise

    # -- plumbing -----------------------------------------------------------------------------

    def _read(self, n: int) -> bytes:
        try:
            return self._f.read(n)
        except (OSError, EOFError, zlib.error, ValueError) as e:  # gzip.BadGzipFile is an OSError
            if self.stats["format"] is None or self.strict:
                raise CaptureError(self.name, self._base + len(self._buf), f"read failed: {e}") from e
            # a cut or damaged gzip stream past the header: keep what was read, like a cut file
            self._error(self._base + len(self._buf), f"read failed, treated as the end of the file: {e}")
            return b""

    def _fill(self, pos: int, need: int) -> int:
        """Make ``self._buf[pos:]`` hold at least ``need`` bytes if the file has them; returns the
        new position of ``pos`` (the buffer is re-based there)."""
        have = len(self._buf) - pos
        if have >= need or self._eof:
            return pos
        if self._seekable and have < self._chunk // 4:
            # Read the unfinished record again with the next chunk rather than joining the two:
            # one copy of the file's bytes less, which is most of the cost for large packets.
            try:
                self._f.seek(self._base + pos)
            except (OSError, ValueError):
                self._seekable = False
            else:
                self._base += pos
                self._buf = self._read(max(self._chunk, need))
                if len(self._buf) < need:
                    if len(self._buf) <= have:  # nothing new: the end of the file
                        self._eof = True
                        return 0
                    return self._fill(0, need)
                return 0
        parts = [self._buf[pos:]]
        while have < need and not self._eof:
            got = self._read(max(self._chunk, need - have))
            if not got:
                self._eof = True
                break
            parts.append(got)
            have += len(got)
        self._base += pos
        self._buf = b"".join(parts)
        return 0

    def _error(self, offset: int, reason: str) -> None:
        if self.strict:
            raise CaptureError(self.name, offset, reason)
        self.stats["error_count"] += 1
        if len(self.stats["errors"]) < MAX_ERRORS:
            self.stats["errors"].append(f"byte {offset}: {reason}")

    def _open_header(self) -> None:
        pos = self._fill(0, 4)
        magic = self._buf[pos : pos + 4]
        if magic[:2] == b"\x1f\x8b":
            # gzip'd capture (Wireshark reads these too): decompress as a stream
            raw = _Prefixed(self._buf, self._f)
            self._seekable = False
            self._f = gzip.GzipFile(fileobj=raw, mode="rb")
            self._raw = raw
            # small reads: a cut gzip stream raises at its end, and what a read had decompressed
            # before that is lost with it
            self._chunk = min(self._chunk, 1 << 16)
            self._buf, self._base, self._eof = b"", 0, False
            pos = self._fill(0, 4)
            magic = self._buf[pos : pos + 4]
        if magic in _PCAP_MAGICS:
            self._open_pcap(magic)
        elif magic == _SHB_MAGIC:
            self.stats["format"] = "pcapng"
            self.stats["sections"] = 0
            self._bo = "<"
            self._interfaces: list[_Interface] = []
            pos = self._fill(0, 12)
            if len(self._buf) < 12:
                raise CaptureError(self.name, 0, "pcapng file shorter than its section header")
            bom = self._buf[8:12]
            if bom == b"\x4d\x3c\x2b\x1a":
                self._bo = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                self._bo = ">"
            else:
                raise CaptureError(self.name, 8, f"pcapng section header with a bad byte-order magic {bom.hex()}")
            self._set_order(self._bo)
        else:
            if len(magic) < 4:
                raise CaptureError(self.name, 0, f"file too short to be a capture ({len(self._buf)} bytes)")
            raise CaptureError(self.name, 0, f"not a pcap or pcapng file (magic {magic.hex()})")

    def _open_pcap(self, magic: bytes) -> None:
        bo, units, rec = _PCAP_MAGICS[magic]
        self.stats["format"] = "pcap"
        pos = self._fill(0, 24)
        if len(self._buf) < 24:
            raise CaptureError(self.name, 0, f"pcap file header cut short ({len(self._buf)} of 24 bytes)")
        major, minor, _zone, _sigfigs, snaplen, network = struct.unpack_from(bo + "HHiIII", self._buf, pos + 4)
        if major != 2:
            raise CaptureError(self.name, 4, f"pcap version {major}.{minor} (only 2.x exists)")
        # The link type field's top bits carry FCS information in newer libpcap; the type is 16 bits.
        self._linktype = network & 0xFFFF
        self._snaplen = snaplen
        self._maxcap = max(MAX_PACKET, min(snaplen, MAX_BLOCK))
        self._units = units
        self._bo = bo
        self._rec_size = rec
        self._rec = struct.Struct(bo + "IIII")
        self._pos = pos + 24
        self.stats["interfaces"].append(
            {"linktype": self._linktype, "snaplen": snaplen, "tsresol": 6 if units == 1_000_000 else 9}
        )

    def _set_order(self, bo: str) -> None:
        self._bo = bo
        self._hdr = struct.Struct(bo + "II")
        self._epb = struct.Struct(bo + "IIIII")
        self._epb7 = struct.Struct(bo + "IIIIIII")  # block header + EPB fields, in one read
        self._u32 = struct.Struct(bo + "I")
        self._resync_re = _RESYNC[bo]

    def close(self) -> None:
        if self._owned:
            try:
                self._f.close()
                raw = getattr(self, "_raw", None)
                if raw is not None:
                    raw.close()
            except OSError:
                pass

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- iteration ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Packet]:
        for n, (ts, lt, buf, start, caplen, origlen) in enumerate(self.records(), 1):
            yield Packet(n + self.frame_skew, ts, lt, buf[start : start + caplen], caplen, origlen)

    def records(self) -> Iterator[tuple[float, int, bytes, int, int, int]]:
        """``(ts, linktype, chunk, start, caplen, origlen)`` per packet: the frame is
        ``chunk[start:start + caplen]``. ``chunk`` is immutable, so keeping it is safe (it keeps
        that 1 MiB chunk alive; slice what you keep). A reader is read once."""
        if self._started:
            raise ValueError(f"{self.name}: a CaptureReader can be iterated only once; open it again")
        self._started = True
        if self.stats["format"] == "pcap":
            return self._pcap_records(False)
        return self._pcapng_records(False)

    def spans(self) -> Generator[tuple, tuple[int, int, float], None]:
        """The records for a consumer that walks the common case itself (`FlowTable.run`).

        Yields either ``(RECORD, (ts, linktype, chunk, start, caplen, origlen))`` (continue with
        ``next()``) or a span of the current chunk that the consumer walks record by record,
        stopping at the first record that is not whole in ``chunk[pos:end]`` or not plain, then
        answering ``send((stop_position, records_walked, last_timestamp))``; the reader carries
        on from there with its general code (refills, damage, other block types). Spans:

        - ``(SPAN_PCAP, chunk, pos, end, linktype, frac, units, maxcap, unpack)``: classic pcap
          records of 16-byte headers (``unpack`` gives sec, fraction, caplen, origlen; a plain
          record has caplen <= maxcap and fraction < units; ts = sec + fraction * frac);
        - ``(SPAN_PCAPNG, chunk, pos, end, ifid, linktype, scale, offset, unpack7, unpack_u32)``:
          EPBs on interface ``ifid`` (``unpack7`` gives type, length, interface, ts high, ts low,
          caplen, origlen; plain: type 6, that interface, 32 + caplen <= length <= end - pos,
          length a multiple of 4 and equal to its trailer; ts = ticks * scale + offset).

        It saves the per-packet cost of a generator and a tuple, which is most of what reading
        costs next to decoding. A reader is read once, by `records` or by this.
        """
        if self._started:
            raise ValueError(f"{self.name}: a CaptureReader can be iterated only once; open it again")
        self._started = True
        if self.stats["format"] == "pcap":
            return self._pcap_records(True)
        return self._pcapng_records(True)

    # -- classic pcap -------------------------------------------------------------------------

    # what the span consumer sends back at a span yield: (position, records walked, time hint)
    def _pcap_records(self, spans: bool) -> Generator[tuple, tuple[int, int, float], None]:
        unpack = self._rec.unpack_from
        lt, hsize, maxcap = self._linktype, self._rec_size, self._maxcap
        frac = 1.0 / self._units
        units = self._units
        stats = self.stats
        n = last_sec = 0
        buf, pos = self._buf, self._pos
        end = len(buf)
        offer = spans and hsize == 16  # the consumer's walk knows 16-byte headers only
        try:
            while True:
                if offer:
                    pos, walked, hint = yield (SPAN_PCAP, buf, pos, end, lt, frac, units, maxcap, unpack)
                    if walked:
                        n += walked
                        last_sec = int(hint)
                if end - pos < hsize:
                    pos = self._fill(pos, hsize)
                    buf = self._buf
                    end = len(buf)
                    if end - pos < hsize:
                        if end > pos:
                            stats["truncated_packets"] += 1
                            self._error(
                                self._base + pos, f"file ends inside a record header ({end - pos} of {hsize} bytes)"
                            )
                        return
                sec, sub, caplen, origlen = unpack(buf, pos)
                if caplen > maxcap or sub >= units:
                    self._error(
                        self._base + pos,
                        f"implausible record header (caplen {caplen}, fraction {sub}); searching for the next record",
                    )
                    self._buf, self._pos = buf, pos
                    if not self._pcap_resync(pos, last_sec):
                        return
                    buf, pos = self._buf, self._pos
                    end = len(buf)
                    continue
                nxt = pos + hsize + caplen
                if nxt > end:
                    pos = self._fill(pos, hsize + caplen)
                    buf = self._buf
                    end = len(buf)
                    nxt = pos + hsize + caplen
                    if nxt > end:
                        stats["truncated_packets"] += 1
                        self._error(
                            self._base + pos,
                            f"file ends inside a packet ({end - pos - hsize} of {caplen} bytes); packet dropped",
                        )
                        return
                n += 1
                last_sec = sec
                if spans:
                    yield RECORD, (sec + sub * frac, lt, buf, pos + hsize, caplen, origlen)
                else:
                    yield sec + sub * frac, lt, buf, pos + hsize, caplen, origlen
                pos = nxt
        finally:
            stats["packets"] += n
            self._buf, self._pos = buf, pos

    def _pcap_plausible(self, buf: bytes, p: int, last_sec: int) -> bool:
        """Is there a believable record header at ``p`` (with the next one believable too, or the
        end of the file right after it)?"""
        hsize, end = self._rec_size, len(buf)
        for _ in range(2):
            if end - p < hsize:
                return end == p and self._eof
            sec, sub, caplen, origlen = self._rec.unpack_from(buf, p)
            if caplen > self._maxcap or sub >= self._units or caplen > origlen or origlen > MAX_BLOCK:
                return False
            if last_sec and not last_sec - 86400 <= sec <= last_sec + 86400:
                return False
            p += hsize + caplen
            if p > end:
                return self._eof is False  # cannot check the next one yet: accept
        return True

    def _pcap_resync(self, bad: int, last_sec: int) -> bool:
        """Moves ``self._pos`` to the next plausible record after the bad one at ``bad``; False
        at EOF.

        The candidates are found by a regex, not a Python loop over every offset: with a previous
        timestamp, for its top two bytes (records within 18 hours share them, or differ by one);
        without, for a caplen under 320 KiB and an origlen under 16 MiB."""
        abs_start = self._base + bad
        pos = bad + 1
        bo = self._bo
        if last_sec:
            his = {(last_sec >> 16) + d for d in (-1, 0, 1) if 0 <= (last_sec >> 16) + d <= 0xFFFF}
            alts = b"|".join(re.escape(struct.pack(bo + "H", h)) for h in sorted(his))
            pat = re.compile((rb"(?=..(?:" if bo == "<" else rb"(?=(?:") + alts + rb"))", re.S)
        else:
            pat = _PCAP_LENGTHS[bo]
        while True:
            pos = self._fill(pos, 2 * MAX_PACKET)
            buf = self._buf
            end = len(buf)
            limit = end - self._rec_size + 1  # candidates must have a whole header
            for c in (m.start() for m in pat.finditer(buf, pos, max(pos, end))):
                if c >= limit:
                    break
                if self._pcap_plausible(buf, c, last_sec):
                    self._resumed(abs_start, c)
                    return True
            if self._eof:
                self._resumed(abs_start, end)
                return False
            pos = max(pos, limit)  # keep a tail that may start a record

    def _resumed(self, abs_start: int, pos: int) -> None:
        skipped = self._base + pos - abs_start
        self.stats["skipped_bytes"] += skipped
        self._pos = pos
        if pos < len(self._buf):
            self._error(self._base + pos, f"resumed after skipping {skipped} bytes")
        elif skipped:
            self._error(self._base + pos, f"skipped the last {skipped} bytes: no record found in them")

    # -- pcapng -------------------------------------------------------------------------------

    def _pcapng_records(self, spans: bool) -> Generator[tuple, tuple[int, int, float], None]:
        stats = self.stats
        n = 0
        buf, pos = self._buf, self._pos
        end = len(buf)
        last_ts = 0.0
        # the hot path: an EPB on the interface of the previous one, whole in the buffer
        cur_if, lt, scale, offset = -1, 0, 1e-6, 0.0
        epb7, u32 = self._epb7.unpack_from, self._u32.unpack_from
        try:
            while True:
                if spans and cur_if >= 0:
                    pos, walked, hint = yield (SPAN_PCAPNG, buf, pos, end, cur_if, lt, scale, offset, epb7, u32)
                    if walked:
                        n += walked
                        last_ts = hint
                if end - pos >= 32:
                    btype, blen, ifid, hi, lo, caplen, origlen = epb7(buf, pos)
                    if (
                        btype == EPB
                        and ifid == cur_if
                        and 32 + caplen <= blen <= end - pos
                        and not blen & 3
                        and u32(buf, pos + blen - 4)[0] == blen
                    ):
                        last_ts = ((hi << 32) | lo) * scale + offset
                        n += 1
                        if spans:
                            yield RECORD, (last_ts, lt, buf, pos + 28, caplen, origlen)
                        else:
                            yield last_ts, lt, buf, pos + 28, caplen, origlen
                        pos += blen
                        continue
                if end - pos < 12:
                    pos = self._fill(pos, 12)
                    buf = self._buf
                    end = len(buf)
                    if end - pos < 12:
                        if end > pos:
                            self._error(self._base + pos, f"file ends inside a block header ({end - pos} bytes)")
                        return
                btype, blen = self._hdr.unpack_from(buf, pos)
                if btype == SHB:
                    bom = buf[pos + 8 : pos + 12]
                    if bom == b"\x4d\x3c\x2b\x1a":
                        self._set_order("<")
                    elif bom == b"\x1a\x2b\x3c\x4d":
                        self._set_order(">")
                    else:
                        self._bad_block(pos, f"section header with a bad byte-order magic {bom.hex()}")
                        if not self._pcapng_resync(pos):
                            return
                        buf, pos, end = self._buf, self._pos, len(self._buf)
                        continue
                    btype, blen = self._hdr.unpack_from(buf, pos)
                if blen < 12 or blen & 3 or blen > MAX_BLOCK:
                    self._bad_block(pos, f"block type 0x{btype:08x} with an impossible length {blen}")
                    if not self._pcapng_resync(pos):
                        return
                    buf, pos, end = self._buf, self._pos, len(self._buf)
                    continue
                if end - pos < blen:
                    pos = self._fill(pos, blen)
                    buf = self._buf
                    end = len(buf)
                    if end - pos < blen:
                        if btype in (EPB, SPB, PB):
                            stats["truncated_packets"] += 1
                        self._error(
                            self._base + pos, f"file ends inside block type 0x{btype:08x} ({end - pos} of {blen} bytes)"
                        )
                        return
                if self._u32.unpack_from(buf, pos + blen - 4)[0] != blen:
                    self._bad_block(pos, f"block type 0x{btype:08x} length {blen} does not match its trailer")
                    if not self._pcapng_resync(pos):
                        return
                    buf, pos, end = self._buf, self._pos, len(self._buf)
                    continue
                if btype in (EPB, PB):
                    if blen < 32:
                        self._error(self._base + pos, f"packet block of {blen} bytes is too short; skipped")
                    else:
                        ifid, hi, lo, caplen, origlen = self._epb.unpack_from(buf, pos + 8)
                        if btype == PB:  # 16-bit interface id, then 16-bit drop count
                            ifid = ifid & 0xFFFF if self._bo == "<" else ifid >> 16
                        if caplen > blen - 32:
                            self._error(
                                self._base + pos,
                                f"packet of {caplen} bytes does not fit its {blen}-byte block; skipped",
                            )
                        elif ifid >= len(self._interfaces):
                            self._error(
                                self._base + pos,
                                f"packet on interface {ifid}, which this section does not describe; skipped",
                            )
                        else:
                            iface = self._interfaces[ifid]
                            if btype == EPB and blen <= MAX_BLOCK:
                                cur_if, lt, scale, offset = ifid, iface.linktype, iface.scale, iface.offset
                            last_ts = ((hi << 32) | lo) * iface.scale + iface.offset
                            n += 1
                            rec = (last_ts, iface.linktype, buf, pos + 28, caplen, origlen)
                            yield (RECORD, rec) if spans else rec
                elif btype == SPB:
                    if blen < 16 or not self._interfaces:
                        self._error(self._base + pos, "simple packet block without interface 0 or too short; skipped")
                    else:
                        origlen = self._u32.unpack_from(buf, pos + 8)[0]
                        iface = self._interfaces[0]
                        caplen = min(origlen, blen - 16, iface.snaplen or MAX_BLOCK)
                        n += 1
                        # SPBs carry no timestamp: the previous packet's stands in
                        rec = (last_ts, iface.linktype, buf, pos + 12, caplen, origlen)
                        yield (RECORD, rec) if spans else rec
                elif btype == IDB:
                    self._read_idb(buf, pos, blen)
                elif btype == SHB:
                    self._interfaces = []
                    stats["sections"] += 1
                    cur_if = -1
                    epb7, u32 = self._epb7.unpack_from, self._u32.unpack_from
                elif btype == NRB:
                    self._read_nrb(buf, pos, blen)
                elif btype == DSB:
                    self._read_dsb(buf, pos, blen)
                else:
                    sb = stats["skipped_blocks"]
                    sb[btype] = sb.get(btype, 0) + 1
                    if btype == 0x0BAD or btype == 0x40000BAD:
                        self.frame_skew += 1  # Wireshark 4 lists custom blocks as frames
                pos += blen
        finally:
            stats["packets"] += n
            self._buf, self._pos = buf, pos

    def _bad_block(self, pos: int, reason: str) -> None:
        self._error(self._base + pos, reason + "; searching for the next block")

    def _pcapng_resync(self, bad: int) -> bool:
        """Moves ``self._pos`` to the next block after the bad one at ``bad`` whose type is known
        and whose length agrees with its trailer; False at EOF."""
        abs_start = self._base + bad
        pos = bad + 1
        while True:
            pos = self._fill(pos, 12)
            buf = self._buf
            end = len(buf)
            m = self._resync_re.search(buf, pos)
            if m is None or end - m.start() < 12:
                if self._eof:
                    self._resumed(abs_start, end)
                    return False
                keep = max(pos, end - 11)
                pos = self._fill(keep, end - keep + 1)  # read on, keeping a possible block start
                continue
            c = m.start()
            if self._block_at(c):
                self._resumed(abs_start, self._pos)
                return True
            pos = self._pos + 1

    def _block_at(self, c: int) -> bool:
        """Is there a whole, self-consistent block at ``c``? Leaves ``self._pos`` at it (the buffer
        may be re-based to read the whole block)."""
        buf = self._buf
        btype, blen = self._hdr.unpack_from(buf, c)
        bo = self._bo
        if btype == SHB:
            bom = buf[c + 8 : c + 12]
            if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                self._pos = c
                return False
            bo = "<" if bom[0] == 0x4D else ">"
            blen = struct.unpack_from(bo + "I", buf, c + 4)[0]
        self._pos = c
        if btype not in _KNOWN_TYPES or blen < 12 or blen & 3 or blen > MAX_BLOCK:
            return False
        c = self._pos = self._fill(c, blen)
        buf = self._buf
        if len(buf) - c < blen:
            return False
        return struct.unpack_from(bo + "I", buf, c + blen - 4)[0] == blen

    def _read_idb(self, buf: bytes, pos: int, blen: int) -> None:
        if blen < 20:
            self._error(self._base + pos, f"interface description block of {blen} bytes is too short")
            linktype, snaplen, opts = 0, 0, {}
        else:
            linktype, _res, snaplen = struct.unpack_from(self._bo + "HHI", buf, pos + 8)
            opts = self._options(buf, pos + 16, pos + blen - 4)
        scale, offset = 1e-6, 0.0
        if opts.get(9):
            scale = _tsresol_scale(opts[9][0])
        if 14 in opts and len(opts[14]) == 8:
            offset = float(struct.unpack(self._bo + "q", opts[14])[0])
        self._interfaces.append(_Interface(linktype, snaplen, scale, offset))
        self.stats["interfaces"].append(
            {"linktype": linktype, "snaplen": snaplen, "tsresol": opts[9][0] if opts.get(9) else 6}
        )

    def _options(self, buf: bytes, p: int, end: int) -> dict[int, bytes]:
        """The options of a block (first value of each code); stops quietly at a malformed one."""
        out: dict[int, bytes] = {}
        while p + 4 <= end:
            code, length = struct.unpack_from(self._bo + "HH", buf, p)
            if code == 0:
                break
            if p + 4 + length > end:
                self._error(self._base + p, f"option {code} of {length} bytes runs past its block")
                break
            out.setdefault(code, buf[p + 4 : p + 4 + length])
            p += 4 + length + (-length % 4)
        return out

    def _read_dsb(self, buf: bytes, pos: int, blen: int) -> None:
        if blen < 20:
            self._error(self._base + pos, f"decryption secrets block of {blen} bytes is too short")
            return
        stype, slen = struct.unpack_from(self._bo + "II", buf, pos + 8)
        if 20 + slen > blen:
            self._error(self._base + pos, f"decryption secrets of {slen} bytes run past their {blen}-byte block")
            return
        if self._secret_bytes + slen > MAX_SECRETS:
            self._error(self._base + pos, f"more than {MAX_SECRETS} bytes of decryption secrets; the rest skipped")
            return
        self._secret_bytes += slen
        self.secrets.append((stype, bytes(buf[pos + 16 : pos + 16 + slen])))

    def _read_nrb(self, buf: bytes, pos: int, blen: int) -> None:
        p, end = pos + 8, pos + blen - 4
        while p + 4 <= end:
            rtype, length = struct.unpack_from(self._bo + "HH", buf, p)
            if rtype == 0:
                break
            value = buf[p + 4 : p + 4 + length]
            if p + 4 + length > end:
                self._error(self._base + p, "name resolution record runs past its block")
                break
            alen = 4 if rtype == 1 else 16 if rtype == 2 else 0
            if alen and length > alen:
                addr = str(ipaddress.ip_address(value[:alen]))
                for raw_name in value[alen:].split(b"\0"):
                    if raw_name:
                        self.names.setdefault(addr, raw_name.decode("utf-8", "replace"))
            p += 4 + length + (-length % 4)


def open_capture(path: str | os.PathLike[str], *, strict: bool = False) -> CaptureReader:
    """A `CaptureReader` on the file at ``path`` (pcap, pcapng, or either gzip'd)."""
    return CaptureReader(path, strict=strict)
