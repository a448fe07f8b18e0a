"""HTTP/1.x (RFC 9112) as an observer sees it: both directions of someone else's conversation,
requests and responses paired in order (pipelining), bodies framed by Content-Length, chunked
coding or the close, and decoded by their ``Content-Encoding`` (`hostctl.wire.decoders.body`).

Each body is one decoded message, chain ``http-body`` (plus its codings, e.g. ``http-body>gzip``);
an identity body that was not chunked is the wire's own bytes and is only handed to the body
walkers. ``101 Switching Protocols`` hands the connection to the registry's decoder for the
upgrade token (``websocket``, ``h2c``); a ``2xx`` answer to ``CONNECT`` hands it back to the
registry to sniff the tunnel (usually TLS, PCAPdroid's proxy captures). A stream that starts
mid-message, or with stray bytes (a keep-alive byte, a CRLF), is re-synchronised at the next
request or status line.
"""

from __future__ import annotations

import re

from hostctl.wire.decoders.base import FEED_STEP, Layer, Out
from hostctl.wire.decoders.body import Bomb, Malformed, _Bounded, coding
from hostctl.wire.decoders.registry import REGISTRY, WAIT
from hostctl.wire.span import C2S, DIRECTIONS, S2C

__all__ = ["Http1"]

METHODS = (b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE")
_REQUEST = re.compile(rb"(?:" + b"|".join(METHODS) + rb") [^ \r\n]+ HTTP/1\.[01]\r?\n")
_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})[^\r\n]*\r?\n")
_START = {C2S: _REQUEST, S2C: _STATUS}
_JUNK = 16  # stray bytes before a message start that a sniff still accepts


_STARTS = tuple(m + b" " for m in METHODS) + (b"HTTP/1.",)


def _sniff(c2s: bytes, s2c: bytes):
    for head, rx in ((c2s, _REQUEST), (s2c, _STATUS)):
        if not head:
            continue
        if head[: _JUNK + 8].lstrip(b"\r\n\x00 ").startswith(_STARTS):
            return True  # a method or version word: the rest of the line may follow
        if head.find(b"HTTP/1.", 0, _JUNK + 2048) >= 0:  # cheap before the regular expression
            m = rx.search(head, 0, _JUNK + 2048)
            if m and m.start() <= _JUNK:
                return True
        if len(head) < 64 and head.find(b"\n") < 0:
            return WAIT
    return False


def _headers(head: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for line in head.split(b"\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            key = name.strip().lower()
            out[key] = out[key] + b", " + value.strip() if key in out else value.strip()
    return out


class _Body:
    """One message body: the content decoders (outermost last in the header, so undone in
    reverse) and the Out it fills."""

    __slots__ = ("decoders", "failed", "out", "verbatim")

    def __init__(self, out: Out, decoders: list, verbatim: bool) -> None:
        self.out, self.decoders, self.verbatim, self.failed = out, decoders, verbatim, False

    def write(self, data: bytes) -> None:
        if self.failed:
            return
        if not self.decoders:
            self.out.write(data, verbatim=self.verbatim)
            return
        self.out.encoded(data)
        # a whole body in one piece (an agent's SSL_write): fed in steps, so each piece of output
        # is bounded (FEED_STEP) and scanned before the next is made
        for i in range(0, len(data), FEED_STEP):
            piece = data[i : i + FEED_STEP]
            try:
                for d in self.decoders:
                    piece = d.feed(piece)
            except Bomb as exc:
                self.failed = True
                self.out.note("bomb", str(exc))
                return
            except Malformed as exc:
                self.failed = True
                self.out.note("malformed", str(exc))
                return
            self.out.write(piece)

    def close(self) -> None:
        if not self.failed:
            try:
                for i, d in enumerate(self.decoders):
                    tail = d.close()
                    for d2 in self.decoders[i + 1 :]:
                        tail = d2.feed(tail)
                    self.out.write(tail)
            except Bomb as exc:
                self.out.note("bomb", str(exc))
            except Malformed as exc:
                self.out.note("malformed", str(exc))
        self.out.close()


class _Dir:
    __slots__ = ("at", "body", "buf", "hold_next", "left", "mode", "msg_at")

    def __init__(self) -> None:
        self.buf = bytearray()  # bytes of a head / chunk line not yet complete
        self.at = 0  # stream offset of buf[0]
        self.mode = "head"  # head | body | chunk-size | chunk-data | chunk-crlf | trailer | close | lost | hold
        self.left = 0  # body / chunk bytes still to come
        self.body: _Body | None = None
        self.msg_at = 0  # stream offset of the current message's head
        # the message being read asked to switch (Upgrade with a body, RFC 9110 7.8: a POST
        # with Upgrade: h2c): what follows its body waits for the answer, as after a bodiless one
        self.hold_next = False


@REGISTRY.layer("http1", sniff=_sniff, ports=(80, 8080, 8000, 3128), priority=20)
class Http1(Layer):
    name = ""  # bodies name their own layer ("http-body"); the connection adds nothing

    def __init__(self, conn, chain=()) -> None:
        super().__init__(conn, chain)
        self.d = {C2S: _Dir(), S2C: _Dir()}
        self.pending: list[tuple[bytes, bytes | None]] = []  # (method, upgrade token) per request
        self.held: bytearray | None = None  # c2s bytes after an Upgrade/CONNECT
        self.held_at = 0

    # -- feeding ------------------------------------------------------------------------------
    def feed(self, direction: str, offset: int, data: bytes) -> None:
        d = self.d[direction]
        if d.mode == "hold":
            if self.held is not None and len(self.held) + len(data) <= self.conn.limits.max_held:
                self.held += data
            else:
                d.mode = "lost"
            return
        mv = memoryview(data)
        pos = 0
        while pos < len(mv) and self.conn.layer is self:
            mode = d.mode
            if mode == "lost":
                return
            if mode == "close":
                self._body_write(d, bytes(mv[pos:]))
                return
            if mode in ("body", "chunk-data"):
                n = min(d.left, len(mv) - pos)
                self._body_write(d, bytes(mv[pos : pos + n]))
                d.left -= n
                pos += n
                if d.left == 0:
                    if mode == "body":
                        self._end_message(direction, d)
                        if direction == C2S and d.mode == "hold":
                            self.held, self.held_at = bytearray(mv[pos:]), offset + pos
                            return
                    else:
                        d.mode = "chunk-crlf"
                continue
            # line-oriented modes: gather into buf
            if not d.buf:
                d.at = offset + pos
            rest = bytes(mv[pos:])
            if mode == "head":
                end = self._find_head_end(d, rest)
            else:
                nl = (bytes(d.buf[-1:]) + rest).find(b"\n") if d.buf else rest.find(b"\n")
                end = -1 if nl < 0 else (nl if not d.buf else nl - 1) + 1
            if end < 0:
                d.buf += rest
                if len(d.buf) > self.conn.limits.max_head:
                    self._lose(direction, d, "head or chunk line over the bound")
                return
            line = bytes(d.buf) + rest[:end]
            d.buf = bytearray()
            pos += end
            line_at = d.at
            self._line(direction, d, line, line_at, offset + pos)
            if self.conn.layer is not self:  # handed over (101, CONNECT): the rest is theirs
                self.conn.pass_on(direction, offset + pos, bytes(mv[pos:]))
                return
            if direction == C2S and d.mode == "hold":
                self.held, self.held_at = bytearray(mv[pos:]), offset + pos
                return

    def _find_head_end(self, d: _Dir, rest: bytes) -> int:
        """Index in ``rest`` just past the blank line ending the head, or -1."""
        joined = bytes(d.buf[-3:]) + rest
        k = len(joined) - len(rest)
        for sep in (b"\r\n\r\n", b"\n\n"):
            i = joined.find(sep)
            if i >= 0:
                return i + len(sep) - k
        return -1

    def _line(self, direction: str, d: _Dir, line: bytes, line_at: int, after: int) -> None:
        mode = d.mode
        if mode == "head":
            self._head(direction, d, line, line_at, after)
        elif mode == "chunk-crlf":
            d.mode = "chunk-size"
            if line.strip():  # not the CRLF after chunk data: read it as the size line
                self._line(direction, d, line, line_at, after)
        elif mode == "chunk-size":
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self._lose(direction, d, f"bad chunk size line at stream offset {line_at}")
                return
            if size == 0:
                d.mode = "trailer"
            else:
                d.mode, d.left = "chunk-data", size
        elif mode == "trailer" and not line.strip():
            self._end_message(direction, d)

    # -- messages -----------------------------------------------------------------------------
    def _head(self, direction: str, d: _Dir, head: bytes, at: int, after: int) -> None:
        m = _START[direction].search(head)
        if m is None:
            if head.strip():
                self.conn.note(
                    self.conn.span(direction, self.chain + ("http",), at),
                    "resync",
                    f"{len(head)} bytes that are no HTTP message head skipped",
                )
            return
        if m.start():
            skipped = head[: m.start()]
            if skipped.strip(b"\r\n\x00 "):
                self.conn.note(
                    self.conn.span(direction, self.chain + ("http",), at),
                    "resync",
                    f"{m.start()} bytes before the message head skipped",
                )
            at += m.start()
            head = head[m.start() :]
        d.msg_at = at
        headers = _headers(head)
        if direction == C2S:
            method = head.split(b" ", 1)[0]
            upgrade = headers.get(b"upgrade") if b"upgrade" in headers.get(b"connection", b"").lower() else None
            self.pending.append((method, upgrade.split(b",")[0].strip() if upgrade else None))
            self._frame_body(direction, d, headers, request=True, method=method)
            if upgrade or method == b"CONNECT":
                if d.mode == "head":
                    d.mode = "hold"
                else:
                    d.hold_next = True  # after the body
            return
        status = int(m.group(1))  # m: _STATUS's match at what is now head's start
        method, upgrade = self.pending[0] if self.pending else (b"", None)
        if status == 101 and upgrade is not None:
            self.pending.pop(0)
            self._switch_upgrade(upgrade, headers, after)
            return
        if 100 <= status < 200:
            return  # informational; the real response follows
        if self.pending:
            self.pending.pop(0)
        if method == b"CONNECT" and 200 <= status < 300:
            self._switch_tunnel(after)
            return
        self._release_hold()
        if method == b"HEAD" or status in (204, 304):
            return
        self._frame_body(direction, d, headers, request=False, method=method)

    def _frame_body(
        self, direction: str, d: _Dir, headers: dict[bytes, bytes], *, request: bool, method: bytes
    ) -> None:
        te = headers.get(b"transfer-encoding", b"").lower()
        chunked = b"chunked" in te
        length = None
        if not chunked:
            cl = headers.get(b"content-length")
            if cl is not None:
                try:
                    length = int(cl.split(b",")[0])
                except ValueError:
                    self._lose(direction, d, "bad Content-Length")
                    return
            elif request:
                length = 0
        if length == 0:
            return
        names = [
            c.strip().decode("latin-1").lower() for c in headers.get(b"content-encoding", b"").split(b",") if c.strip()
        ]
        names = [n for n in names if n != "identity"]
        decoders: list[_Bounded] = []
        span_chain = self.chain + ("http-body",)
        for n in reversed(names):
            dec = coding(n, self.conn.limits)
            span_chain += (n,)
            if dec is None:
                self.conn.note(
                    self.conn.span(direction, span_chain, d.msg_at),
                    "unknown-coding",
                    f"Content-Encoding {n!r} not decoded",
                )
                decoders = []
                break
            decoders.append(dec)
        if not decoders:
            span_chain = self.chain + ("http-body",)
        # an identity body that is not chunked is the wire's own bytes: scanned below already
        out = Out(self.conn, self.conn.span(direction, span_chain, d.msg_at), scan=bool(decoders) or chunked)
        d.body = _Body(out, decoders, verbatim=not decoders)
        if chunked:
            d.mode = "chunk-size"
        elif length is None:
            d.mode = "close"
        else:
            d.mode, d.left = "body", length

    def _body_write(self, d: _Dir, data: bytes) -> None:
        if d.body is not None and data:
            d.body.write(data)

    def _end_message(self, direction: str, d: _Dir) -> None:
        if d.body is not None:
            body, d.body = d.body, None
            body.close()
        d.mode = "head"
        if d.hold_next:  # the answer to the switch has not come yet (it clears the flag)
            d.hold_next = False
            d.mode = "hold"

    def _lose(self, direction: str, d: _Dir, why: str) -> None:
        self.conn.note(self.conn.span(direction, self.chain + ("http",), d.msg_at), "malformed", why)
        if d.body is not None:
            self._end_message(direction, d)
        d.mode = "lost"

    # -- hand-overs ---------------------------------------------------------------------------
    def _release_hold(self) -> None:
        c = self.d[C2S]
        c.hold_next = False  # answered (not with a switch) while its body was still coming
        if c.mode == "hold":
            c.mode = "head"
            held, self.held = self.held, None
            if held:
                self.feed(C2S, self.held_at, bytes(held))

    def _switch_upgrade(self, token: bytes, headers: dict[bytes, bytes], after: int) -> None:
        factory = self.conn.registry.upgrade(token.decode("latin-1"))
        if factory is None:
            self.conn.note(
                self.conn.span(S2C, self.chain + ("http",), after), "unknown-upgrade", f"Upgrade {token!r} not decoded"
            )
            for d in DIRECTIONS:
                self.d[d].mode = "lost"
            return
        held = {C2S: (self.held_at, bytes(self.held or b""))}
        self.held = None
        self.conn.upgrade_headers = headers
        self.conn.switch(factory, held)

    def _switch_tunnel(self, after: int) -> None:
        held = {C2S: (self.held_at, bytes(self.held or b""))}
        self.held = None
        self.conn.switch(None, held, chain=self.chain + ("http-connect",))

    def gap(self, direction: str, offset: int, length: int) -> None:
        d = self.d[direction]
        if d.body is not None:
            d.body.out.note("gap", f"{length} bytes missing at stream offset {offset}")
            self._end_message(direction, d)
        d.buf = bytearray()
        d.mode = "head"  # resynchronise at the next message start

    def close(self) -> None:
        for direction, d in self.d.items():
            if d.body is not None:
                self._end_message(direction, d)
