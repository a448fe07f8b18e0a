"""WebSocket (RFC 6455) after an HTTP/1.1 ``101`` with ``Upgrade: websocket``: frames read with a
small reader of the base framing (section 5.2), payloads unmasked, fragments joined into one
message (chain ``websocket``), and ``permessage-deflate`` (RFC 7692) inflated when the 101's
``Sec-WebSocket-Extensions`` accepted it (chain ``websocket>permessage-deflate``), with the
sliding window kept across messages unless ``*_no_context_takeover`` was agreed.

A small reader rather than wsproto's ``FrameProtocol``: that is one endpoint's parser, which
insists on the masking rule of its own role and raises on the first oddity; an observer reads
both directions and notes oddities. Control frames (close, ping, pong) are not messages.
"""

from __future__ import annotations

import zlib

from hostctl.wire.decoders.base import FEED_STEP, Layer, Out
from hostctl.wire.decoders.body import Bomb, Malformed, ZlibDecoder
from hostctl.wire.decoders.registry import REGISTRY
from hostctl.wire.span import C2S, S2C

__all__ = ["WebSocket"]

_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.2: removed by the sender, appended here


class _Inflate(ZlibDecoder):
    """permessage-deflate for one direction: one raw inflater, bounded per message."""

    def __init__(self, limits) -> None:
        super().__init__("permessage-deflate", limits)
        self.d = zlib.decompressobj(-15)

    def message(self) -> None:
        self.consumed = self.produced = 0
        if self.ended:  # no context takeover: a fresh window
            self.d = zlib.decompressobj(-15)
            self.ended = False


class _Dir:
    __slots__ = ("at", "buf", "compressed", "inflate", "lost", "out", "takeover")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.at = 0
        self.out: Out | None = None
        self.compressed = False
        self.inflate: _Inflate | None = None
        self.lost = False
        self.takeover = True


def _inflater(d: _Dir) -> _Inflate:
    """The inflater of a direction whose message is compressed (set together with ``compressed``)."""
    if d.inflate is None:
        raise RuntimeError("websocket: a compressed message without permessage-deflate state")
    return d.inflate


@REGISTRY.layer("websocket", upgrade=("websocket",), priority=90)
class WebSocket(Layer):
    name = ""

    def __init__(self, conn, chain=()) -> None:
        super().__init__(conn, chain)
        self.d = {C2S: _Dir(), S2C: _Dir()}
        ext = conn.upgrade_headers.get(b"sec-websocket-extensions", b"").lower()
        if b"permessage-deflate" in ext:
            for direction, d in self.d.items():
                d.inflate = _Inflate(conn.limits)
                side = b"client" if direction == C2S else b"server"
                d.takeover = side + b"_no_context_takeover" not in ext

    def feed(self, direction: str, offset: int, data: bytes) -> None:
        d = self.d[direction]
        if d.lost:
            return
        if not d.buf:
            d.at = offset
        d.buf += data
        buf, p = d.buf, 0
        while len(buf) - p >= 2:
            b0, b1 = buf[p], buf[p + 1]
            n, h = b1 & 0x7F, 2
            if n == 126:
                if len(buf) - p < 4:
                    break
                n, h = int.from_bytes(buf[p + 2 : p + 4], "big"), 4
            elif n == 127:
                if len(buf) - p < 10:
                    break
                n, h = int.from_bytes(buf[p + 2 : p + 10], "big"), 10
            masked = b1 & 0x80
            key_at = p + h
            h += 4 if masked else 0
            if n > self.conn.limits.max_frame:
                self._lose(direction, d, f"frame of {n} bytes at stream offset {d.at + p}")
                return
            if len(buf) - p < h + n:
                break
            payload = bytes(buf[p + h : p + h + n])
            if masked:
                key = bytes(buf[key_at : key_at + 4]) * (n // 4 + 1)
                payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key[:n], "big")).to_bytes(n, "big")
            self._frame(direction, d, b0, payload, d.at + p, verbatim=not masked)
            if d.lost:
                return
            p += h + n
        del buf[:p]
        d.at += p

    def _frame(self, direction: str, d: _Dir, b0: int, payload: bytes, at: int, *, verbatim: bool) -> None:
        fin, rsv1, opcode = b0 & 0x80, b0 & 0x40, b0 & 0x0F
        if opcode >= 8:
            return  # control frame
        if opcode in (1, 2):
            if d.out is not None:
                d.out.note("malformed", "a new message before the last one ended")
                d.out.close()
            d.compressed = bool(rsv1) and d.inflate is not None
            chain = self.chain + (("websocket", "permessage-deflate") if d.compressed else ("websocket",))
            d.out = Out(self.conn, self.conn.span(direction, chain, at))
            if d.compressed:
                _inflater(d).message()
        elif opcode != 0 or d.out is None:
            self.conn.note(
                self.conn.span(direction, self.chain + ("websocket",), at), "malformed", f"opcode {opcode} out of place"
            )
            return
        out = d.out
        if d.compressed:
            inflate = _inflater(d)
            if verbatim:
                out.encoded(payload)
            data = payload + (_TAIL if fin else b"")
            try:
                for i in range(0, len(data), FEED_STEP):  # bounded output pieces, scanned in turn
                    out.write(inflate.feed(data[i : i + FEED_STEP]))
            except (Bomb, Malformed) as exc:
                out.note("bomb" if isinstance(exc, Bomb) else "malformed", str(exc))
                d.compressed = False
                d.inflate = None
                d.out = None
                out.close()
                return
            if fin and not d.takeover:
                inflate.ended = True
        else:
            out.write(payload, verbatim=verbatim)
        if fin:
            out.close()
            d.out = None

    def _lose(self, direction: str, d: _Dir, why: str) -> None:
        self.conn.note(self.conn.span(direction, self.chain + ("websocket",), d.at), "malformed", why)
        d.lost = True
        d.buf = bytearray()
        if d.out is not None:
            d.out.close()
            d.out = None

    def gap(self, direction: str, offset: int, length: int) -> None:
        if not self.d[direction].lost:
            self._lose(direction, self.d[direction], f"{length} bytes missing at stream offset {offset}")

    def close(self) -> None:
        for d in self.d.values():
            if d.out is not None:
                d.out.close()
                d.out = None
