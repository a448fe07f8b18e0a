"""Streams that are text, compressed streams and TLS, as connection layers.

- ``tls``: a TLS record header on either side. Without keys the records are opaque: the layer
  ends decoding (decrypted application data comes back in through
  `hostctl.wire.analysis.Connection` with chain ``tls``).
- ``xmpp``: an XML stream (``<?xml`` / ``<stream:stream``, or port 5222). XEP-0138 stream
  compression: the client's bytes after its ``</compress>`` and the server's after
  ``<compressed .../>`` are one zlib stream each (chain ``xmpp>zlib``); ``<proceed`` (XEP-0178
  STARTTLS) turns both sides into TLS.
- ``zlib-stream``: a direction that starts with a zlib (RFC 1950) or gzip (RFC 1952) header is
  inflated as one stream (chain ``zlib`` / ``gzip``).

A whole stream is bounded by the ratio bound and by ``STREAM_MAX`` bytes (a long session is
not a bomb).
"""

from __future__ import annotations

import dataclasses
import re

from hostctl.wire.decoders.base import Layer, Out
from hostctl.wire.decoders.body import Bomb, Malformed, ZlibDecoder, looks_compressed
from hostctl.wire.decoders.registry import REGISTRY, WAIT
from hostctl.wire.span import C2S, S2C

__all__ = ["Tls", "Xmpp", "ZlibStream"]

STREAM_MAX = 1 << 30


def _tls_record(head: bytes):
    if len(head) < 3:
        return WAIT if head and head[0] in (0x14, 0x15, 0x16, 0x17) else False
    return head[0] in (0x14, 0x15, 0x16, 0x17) and head[1] == 3 and head[2] <= 4


def _tls_sniff(c2s: bytes, s2c: bytes):
    a, b = _tls_record(c2s), _tls_record(s2c)
    if a is True or b is True:
        return True
    return WAIT if WAIT in (a, b) else False


@REGISTRY.layer("tls", sniff=_tls_sniff, priority=5)
class Tls(Layer):
    name = "tls"
    always_opaque = True

    def feed(self, direction: str, offset: int, data: bytes) -> None:
        pass

    @property
    def opaque(self) -> bool:
        return True


class _Stream:
    """One direction inflated as one zlib / gzip stream."""

    def __init__(self, layer: Layer, direction: str, at: int, kind: str) -> None:
        limits = dataclasses.replace(layer.conn.limits, max_decoded=STREAM_MAX)
        self.dec = ZlibDecoder("gzip" if kind == "gzip" else "zlib", limits)
        self.out = Out(layer.conn, layer.conn.span(direction, layer.chain + (kind,), at), walk=False)
        self.dead = False

    def feed(self, data: bytes) -> None:
        if self.dead:
            return
        try:
            self.out.write(self.dec.feed(data))
        except (Bomb, Malformed) as exc:
            self.out.note("bomb" if isinstance(exc, Bomb) else "malformed", str(exc))
            self.dead = True
            self.out.close()

    def close(self) -> None:
        if not self.dead:
            self.out.close()


def _xmpp_sniff(c2s: bytes, s2c: bytes):
    for head in (c2s, s2c):
        h = head[:64].lstrip()
        if h.startswith((b"<?xml", b"<stream:stream", b"<stream ")):
            return True
        if len(h) < 14 and h[:1] == b"<":
            return WAIT
    return False


def _xml_like(head: bytes) -> bool:
    h = head[:64].lstrip()
    return h[:1] == b"<" or (bool(h) and all(32 <= c < 127 or c in (9, 10, 13) for c in h))


_C2S_SWITCH = re.compile(rb"</compress\s*>")
_S2C_SWITCH = re.compile(rb"<compressed\b[^>]*/>|<compressed\b[^>]*>\s*</compressed\s*>")
_PROCEED = re.compile(rb"<proceed\b[^>]*/?>")
_TAIL = 96


@REGISTRY.layer("xmpp", sniff=_xmpp_sniff, ports=(5222, 5223, 5269), priority=40)
class Xmpp(Layer):
    name = "xmpp"

    def __init__(self, conn, chain=()) -> None:
        super().__init__(conn, chain)
        self.tail = {C2S: b"", S2C: b""}
        self.streams: dict[str, _Stream] = {}
        self.tls = False
        self.seen: set[str] = set()

    def feed(self, direction: str, offset: int, data: bytes) -> None:
        if self.tls:
            return
        if direction not in self.seen:
            self.seen.add(direction)
            if not _xml_like(data):
                # claimed by its port, but this side speaks no XML: nothing to follow
                self.tls = True
                return
        st = self.streams.get(direction)
        if st is not None:
            st.feed(data)
            return
        text = self.tail[direction] + data
        base = offset - len(self.tail[direction])
        rx = _C2S_SWITCH if direction == C2S else _S2C_SWITCH
        m = rx.search(text)
        if m is not None:
            self.tail[direction] = b""
            rest = text[m.end() :]
            st = self.streams[direction] = _Stream(self, direction, base + m.end(), "zlib")
            st.feed(rest)
            return
        if direction == S2C and _PROCEED.search(text):
            self.tls = True  # STARTTLS: both sides speak TLS from here
            return
        self.tail[direction] = text[-_TAIL:]

    @property
    def opaque(self) -> bool:
        return self.tls

    def close(self) -> None:
        for st in self.streams.values():
            st.close()


def _zlib_sniff(c2s: bytes, s2c: bytes):
    if (c2s and len(c2s) < 3) or (s2c and len(s2c) < 3) or not (c2s or s2c):
        return WAIT
    return bool((c2s and looks_compressed(c2s)) or (s2c and looks_compressed(s2c)))


@REGISTRY.layer("zlib-stream", sniff=_zlib_sniff, priority=80)
class ZlibStream(Layer):
    name = ""

    def __init__(self, conn, chain=()) -> None:
        super().__init__(conn, chain)
        self.streams: dict[str, _Stream | None] = {}

    def feed(self, direction: str, offset: int, data: bytes) -> None:
        if direction not in self.streams:
            kind = looks_compressed(data)
            self.streams[direction] = _Stream(self, direction, offset, kind) if kind else None
        st = self.streams[direction]
        if st is not None:
            st.feed(data)

    def close(self) -> None:
        for st in self.streams.values():
            if st is not None:
                st.close()
