"""HTTP/2 (RFC 9113) seen from outside: frames split with ``hyperframe``, header blocks decoded
with one ``hpack`` decoder per direction (each side's encoder keeps its own dynamic table), DATA
joined per stream and undone by its ``content-encoding``.

Claimed by the client preface (prior knowledge), by TLS ALPN ``h2`` (inside decrypted or agent
plaintext), and by an HTTP/1.1 ``Upgrade: h2c`` answered with ``101`` (the client then sends the
preface too; the server's first frames follow the 101 at once). Decoded messages: each header
block (chain ``h2-header``, one ``name: value`` line per field) and each stream's DATA per
direction (``h2-data``, plus codings: ``h2-data>gzip``). A header value sent as an HPACK literal
without Huffman coding is on the wire as it is, so matches wholly inside it are the wire's.
"""

from __future__ import annotations

import hpack
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, HeadersFrame, PushPromiseFrame, RstStreamFrame

from hostctl.wire.decoders.base import FEED_STEP, Layer, Out
from hostctl.wire.decoders.body import Bomb, Malformed, _Bounded, coding
from hostctl.wire.decoders.registry import REGISTRY, WAIT
from hostctl.wire.span import C2S, S2C

__all__ = ["PREFACE", "Http2"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_STREAMS = 256  # open streams followed per direction (more: the oldest closed)
_HEADER_TABLE = 1 << 16  # the largest dynamic table a decoder accepts


def _sniff(c2s: bytes, _s2c: bytes):
    if not c2s:
        return WAIT if not _s2c else False
    n = min(len(c2s), len(PREFACE))
    if c2s[:n] != PREFACE[:n]:
        return False
    return True if n == len(PREFACE) else WAIT


class _Stream:
    __slots__ = ("decoders", "failed", "out")

    def __init__(self, out: Out, decoders: list) -> None:
        self.out, self.decoders, self.failed = out, decoders, False


class _Dir:
    __slots__ = (
        "at",
        "block",
        "block_at",
        "block_raw",
        "block_stream",
        "buf",
        "codings",
        "hpack",
        "lost",
        "preface",
        "streams",
    )

    def __init__(self, preface: bool) -> None:
        self.buf = bytearray()
        self.at = 0
        self.hpack = hpack.Decoder()
        self.hpack.max_allowed_table_size = _HEADER_TABLE
        self.block = bytearray()
        self.block_raw: list[bytes] = []
        self.block_at = 0
        self.block_stream = 0
        self.streams: dict[int, _Stream] = {}
        self.codings: dict[int, list[str]] = {}
        self.lost = False
        self.preface = preface  # the client preface may still come first


@REGISTRY.layer("http2", sniff=_sniff, alpn=("h2",), upgrade=("h2c",), priority=10)
class Http2(Layer):
    name = ""

    def __init__(self, conn, chain=()) -> None:
        super().__init__(conn, chain)
        self.d = {C2S: _Dir(True), S2C: _Dir(False)}

    def feed(self, direction: str, offset: int, data: bytes) -> None:
        d = self.d[direction]
        if d.lost:
            return
        if not d.buf:
            d.at = offset
        d.buf += data
        if d.preface:
            n = min(len(d.buf), len(PREFACE))
            if d.buf[:n] != PREFACE[:n]:
                d.preface = False
            elif n < len(PREFACE):
                return
            else:
                del d.buf[: len(PREFACE)]
                d.at += len(PREFACE)
                d.preface = False
        buf, p = d.buf, 0
        limit = self.conn.limits.max_frame
        while len(buf) - p >= 9:
            length = int.from_bytes(buf[p : p + 3], "big")
            if length > limit:
                self._lose(direction, d, f"frame of {length} bytes at stream offset {d.at + p}")
                return
            if len(buf) - p - 9 < length:
                break
            at = d.at + p
            try:
                frame, _ = Frame.parse_frame_header(memoryview(buf)[p : p + 9])
                frame.parse_body(memoryview(bytes(buf[p + 9 : p + 9 + length])))
            except (HyperframeError, ValueError) as exc:
                self._lose(direction, d, f"frame at stream offset {at}: {exc}")
                return
            self._frame(direction, d, frame, at, at + 9)
            p += 9 + length
        del buf[:p]
        d.at += p

    def _frame(self, direction: str, d: _Dir, frame: Frame, at: int, payload_at: int) -> None:
        if isinstance(frame, (HeadersFrame, PushPromiseFrame)):
            d.block = bytearray(frame.data)
            d.block_raw = [frame.data]
            d.block_at = at
            d.block_stream = frame.stream_id
            if "END_HEADERS" in frame.flags:
                self._headers(direction, d)
            if isinstance(frame, HeadersFrame) and "END_STREAM" in frame.flags:
                self._end_stream(d, frame.stream_id)
        elif isinstance(frame, ContinuationFrame):
            if len(d.block) + len(frame.data) > self.conn.limits.max_head:
                self._lose(direction, d, f"header block over {self.conn.limits.max_head} bytes")
                return
            d.block += frame.data
            d.block_raw.append(frame.data)
            if "END_HEADERS" in frame.flags:
                self._headers(direction, d)
        elif isinstance(frame, DataFrame):
            self._data(direction, d, frame, at)
            if "END_STREAM" in frame.flags:
                self._end_stream(d, frame.stream_id)
        elif isinstance(frame, RstStreamFrame):
            self._end_stream(self.d[C2S], frame.stream_id)
            self._end_stream(self.d[S2C], frame.stream_id)

    def _headers(self, direction: str, d: _Dir) -> None:
        span = self.conn.span(direction, self.chain + ("h2-header",), d.block_at)
        try:
            fields = d.hpack.decode(bytes(d.block), raw=True)
        except hpack.HPACKError as exc:
            # the dynamic table is now unknown: later blocks of this direction cannot be read
            self.conn.note(span, "malformed", f"HPACK: {exc}")
            d.lost = True
            return
        out = Out(self.conn, span, walk=False)
        raw = d.block_raw
        for name, value in fields:
            out.write(name + b": ")
            out.write(value, verbatim=len(value) > 0 and any(value in r for r in raw))
            out.write(b"\r\n")
            if name == b":authority" and direction == C2S:
                # the flow's host name, as HTTP/1's Host header names it (RFC 9113 8.3.1)
                named = getattr(self.conn.sink, "authority", None)
                if named is not None:
                    named(value.decode("latin-1"))
            if name == b"content-encoding":
                names = [c.strip().decode("latin-1").lower() for c in value.split(b",") if c.strip()]
                d.codings[d.block_stream] = [n for n in names if n != "identity"]
        out.close()
        d.block = bytearray()
        d.block_raw = []

    def _data(self, direction: str, d: _Dir, frame: DataFrame, at: int) -> None:
        sid = frame.stream_id
        st = d.streams.get(sid)
        if st is None:
            if len(d.streams) >= MAX_STREAMS:
                self._end_stream(d, next(iter(d.streams)))
            chain = self.chain + ("h2-data",)
            decoders: list[_Bounded] = []
            for n in reversed(d.codings.get(sid, [])):
                dec = coding(n, self.conn.limits)
                chain += (n,)
                if dec is None:
                    self.conn.note(
                        self.conn.span(direction, chain, at), "unknown-coding", f"content-encoding {n!r} not decoded"
                    )
                    decoders = []
                    chain = self.chain + ("h2-data",)
                    break
                decoders.append(dec)
            st = d.streams[sid] = _Stream(Out(self.conn, self.conn.span(direction, chain, at)), decoders)
        if st.failed or not frame.data:
            return
        data = frame.data
        if not st.decoders:
            st.out.write(data, verbatim=True)
            return
        st.out.encoded(data)
        for i in range(0, len(data), FEED_STEP):  # a frame may be up to 16 MiB: bounded pieces
            piece = data[i : i + FEED_STEP]
            try:
                for dec in st.decoders:
                    piece = dec.feed(piece)
            except (Bomb, Malformed) as exc:
                st.failed = True
                st.out.note("bomb" if isinstance(exc, Bomb) else "malformed", str(exc))
                return
            st.out.write(piece)

    def _end_stream(self, d: _Dir, sid: int) -> None:
        st = d.streams.pop(sid, None)
        d.codings.pop(sid, None)
        if st is None:
            return
        if not st.failed:
            try:
                for i, dec in enumerate(st.decoders):
                    tail = dec.close()
                    for d2 in st.decoders[i + 1 :]:
                        tail = d2.feed(tail)
                    st.out.write(tail)
            except (Bomb, Malformed) as exc:
                st.out.note("bomb" if isinstance(exc, Bomb) else "malformed", str(exc))
        st.out.close()

    def _lose(self, direction: str, d: _Dir, why: str) -> None:
        self.conn.note(self.conn.span(direction, self.chain + ("h2",), d.at), "malformed", why)
        d.lost = True
        d.buf = bytearray()

    def gap(self, direction: str, offset: int, length: int) -> None:
        d = self.d[direction]
        if not d.lost:
            self.conn.note(
                self.conn.span(direction, self.chain + ("h2",), offset),
                "gap",
                f"{length} bytes missing: the frames of this direction are lost",
            )
            d.lost = True
            d.buf = bytearray()

    def close(self) -> None:
        for d in self.d.values():
            for sid in list(d.streams):
                self._end_stream(d, sid)
