"""What a flow speaks, from the first bytes of each direction: TLS (and its hellos), clear HTTP,
other text, or unknown.

`observe` is called by `FlowTable` with each flow's data in stream order and fills
``flow.protocol``:

- TLS: ``{"name": "tls", "sni": "app.chat.xiaomi.net", "client_versions": ["TLS 1.3", "TLS 1.2"],
  "version": "TLS 1.3", "cipher": "TLS_AES_128_GCM_SHA256", "cipher_id": "0x1301",
  "client_ciphers": [...], "alpn": [...], "alpn_selected": ...}``. The offered versions come from
  the ClientHello's ``supported_versions`` extension when present (TLS 1.3 clients), otherwise
  its legacy version; the negotiated one likewise from the ServerHello (whose legacy field says
  TLS 1.2 for every TLS 1.3 connection). A HelloRetryRequest is noted and the real ServerHello
  awaited. Names come from a compact IANA table of the suites handsets and servers use; others
  show as ``0xXXXX``. GREASE values (RFC 8701) are left out of the lists.
- HTTP/1.x: ``{"name": "http", "host": ..., "requests": [{"method", "path", "host", "status"}...]}``.
  Messages are framed as HTTP does it (Content-Length, chunked, HEAD/1xx/204/304 without body,
  read-until-close) so every request of a keep-alive connection is seen, not just the first.
- HTTP/2 with prior knowledge (the client preface): ``{"name": "http2", "requests": []}`` (its
  frames are read by `hostctl.wire.decoders.http2`).
- ``{"name": "text", "first_line": ...}`` when the first bytes are printable (XMPP, SMTP, JSON
  lines, ...), else ``{"name": "unknown"}``.

A hand-written framer rather than h11 (a dependency, used by the emulated servers): h11 is one
party's state machine, which must send before it may receive and rejects what it would not send;
an observer sees both sides of someone else's conversation and must carry on past oddities.

Nothing here raises on bad input: a malformed hello records ``"error"`` naming the message and the
stream offset, and parsing of that direction stops.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

from hostctl.wire.decoders.registry import REGISTRY

__all__ = [
    "CIPHER_SUITES",
    "cipher_name",
    "finish",
    "observe",
    "parse_client_hello",
    "parse_server_hello",
    "version_name",
]

MAX_HELLO = 1 << 16  # bytes of handshake kept while waiting for a whole hello
MAX_HEADER = 1 << 16  # bytes of an HTTP head kept while waiting for its end
MAX_REQUESTS = 200  # requests listed per flow (all are counted)
DECIDE = 8  # first bytes needed to tell TLS from HTTP from text ("OPTIONS ")

CIPHER_SUITES = {
    0x0000: "TLS_NULL_WITH_NULL_NULL",
    0x0001: "TLS_RSA_WITH_NULL_MD5",
    0x0002: "TLS_RSA_WITH_NULL_SHA",
    0x0003: "TLS_RSA_EXPORT_WITH_RC4_40_MD5",
    0x0006: "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5",
    0x0008: "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA",
    0x0009: "TLS_RSA_WITH_DES_CBC_SHA",
    0x0014: "TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA",
    0x0015: "TLS_DHE_RSA_WITH_DES_CBC_SHA",
    0x0018: "TLS_DH_anon_WITH_RC4_128_MD5",
    0x001B: "TLS_DH_anon_WITH_3DES_EDE_CBC_SHA",
    0x0034: "TLS_DH_anon_WITH_AES_128_CBC_SHA",
    0x003B: "TLS_RSA_WITH_NULL_SHA256",
    0xC006: "TLS_ECDHE_ECDSA_WITH_NULL_SHA",
    0xC010: "TLS_ECDHE_RSA_WITH_NULL_SHA",
    0xC016: "TLS_ECDH_anon_WITH_RC4_128_SHA",
    0xC018: "TLS_ECDH_anon_WITH_AES_128_CBC_SHA",
    0x0004: "TLS_RSA_WITH_RC4_128_MD5",
    0x0005: "TLS_RSA_WITH_RC4_128_SHA",
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    0x0016: "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x0039: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256",
    0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x0067: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    0x006B: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    0x008C: "TLS_PSK_WITH_AES_128_CBC_SHA",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0x00A8: "TLS_PSK_WITH_AES_128_GCM_SHA256",
    0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256",
    0x1305: "TLS_AES_128_CCM_8_SHA256",
    0x5600: "TLS_FALLBACK_SCSV",
    0xC007: "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC011: "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    0xC012: "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xC0AC: "TLS_ECDHE_ECDSA_WITH_AES_128_CCM",
    0xC0AD: "TLS_ECDHE_ECDSA_WITH_AES_256_CCM",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAA: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}
_VERSIONS = {
    0x0200: "SSL 2.0",
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
}
# SHA-256("HelloRetryRequest"): the random of a ServerHello that is really a HelloRetryRequest
_HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
_EXT_SNI, _EXT_ALPN, _EXT_VERSIONS = 0, 16, 43


def _grease(v: int) -> bool:
    return v & 0x0F0F == 0x0A0A and v >> 8 == v & 0xFF


def version_name(v: int) -> str:
    """``"TLS 1.2"`` for 0x0303; TLS 1.3 drafts as ``"TLS 1.3 (draft N)"``; else ``"0xXXXX"``."""
    if v in _VERSIONS:
        return _VERSIONS[v]
    if v >> 8 == 0x7F:
        return f"TLS 1.3 (draft {v & 0xFF})"
    return f"0x{v:04X}"


def _wireshark_suites() -> dict[int, str]:
    """Every suite Wireshark names (hostctl/data/tls_cipher_suites.json, 422 code points, with
    where it came from): the table above has the common ones only, and a suite without a name
    could not be judged weak (export, RC4, DES, NULL, anon suites of Android 4.x's defaults)."""
    path = Path(__file__).resolve().parent.parent / "data" / "tls_cipher_suites.json"
    try:
        suites = json.loads(path.read_text(encoding="utf-8"))["suites"]
        return {int(k, 16): str(v) for k, v in suites.items()}
    except (OSError, ValueError, KeyError, TypeError):  # pragma: no cover - a broken install
        return {}


CIPHER_SUITES.update({k: v for k, v in _wireshark_suites().items() if k not in CIPHER_SUITES})


def cipher_name(v: int) -> str:
    """The IANA name of cipher suite ``v``, or ``"0xXXXX"``."""
    return CIPHER_SUITES.get(v, f"0x{v:04X}")


class _Malformed(Exception):
    """Inside this module only: a hello that does not parse (becomes ``"error"``)."""


class _Reader:
    """Bounds-checked reads over one handshake message."""

    __slots__ = ("b", "end", "p")

    def __init__(self, b: bytes, p: int = 0, end: int | None = None) -> None:
        self.b, self.p, self.end = b, p, len(b) if end is None else end

    def take(self, n: int) -> bytes:
        if self.p + n > self.end:
            raise _Malformed(f"needs {n} bytes at {self.p}, has {self.end - self.p}")
        out = self.b[self.p : self.p + n]
        self.p += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("!H", self.take(2))[0]

    def vec(self, lenbytes: int) -> _Reader:
        n = int.from_bytes(self.take(lenbytes), "big")
        start = self.p
        self.take(n)
        return _Reader(self.b, start, start + n)

    def left(self) -> int:
        return self.end - self.p


def _extensions(r: _Reader) -> dict[int, _Reader]:
    out: dict[int, _Reader] = {}
    if r.left() == 0:  # extensions are optional before TLS 1.3
        return out
    exts = r.vec(2)
    while exts.left():
        etype = exts.u16()
        out.setdefault(etype, exts.vec(2))
    return out


def parse_client_hello(body: bytes) -> dict[str, Any]:
    """The fields of a ClientHello handshake body (after the 4-byte handshake header)."""
    r = _Reader(body)
    legacy = r.u16()
    r.take(32)
    r.vec(1)  # session id
    suites_r = r.vec(2)
    suites = [suites_r.u16() for _ in range(suites_r.left() // 2)]
    r.vec(1)  # compression methods
    exts = _extensions(r)
    out: dict[str, Any] = {
        "client_legacy_version": version_name(legacy),
        "client_ciphers": [cipher_name(s) for s in suites if not _grease(s)],
    }
    if _EXT_SNI in exts:
        names = exts[_EXT_SNI].vec(2)
        while names.left():
            kind = names.u8()
            name = names.vec(2)
            if kind == 0:
                out["sni"] = name.take(name.left()).decode("ascii", "replace")
                break
    if _EXT_VERSIONS in exts:
        vs = exts[_EXT_VERSIONS].vec(1)
        versions = [vs.u16() for _ in range(vs.left() // 2)]
        out["client_versions"] = [version_name(v) for v in versions if not _grease(v)]
    else:
        out["client_versions"] = [version_name(legacy)]
    if _EXT_ALPN in exts:
        protos = exts[_EXT_ALPN].vec(2)
        alpn = []
        while protos.left():
            p = protos.vec(1)
            alpn.append(p.take(p.left()).decode("ascii", "replace"))
        out["alpn"] = alpn
    return out


def parse_server_hello(body: bytes) -> dict[str, Any]:
    """The fields of a ServerHello handshake body; ``hello_retry`` marks a HelloRetryRequest."""
    r = _Reader(body)
    legacy = r.u16()
    random = r.take(32)
    r.vec(1)
    suite = r.u16()
    r.u8()
    exts = _extensions(r)
    version = legacy
    if _EXT_VERSIONS in exts:
        version = exts[_EXT_VERSIONS].u16()
    out: dict[str, Any] = {
        "version": version_name(version),
        "cipher": cipher_name(suite),
        "cipher_id": f"0x{suite:04X}",
    }
    if random == _HRR_RANDOM:
        out["hello_retry"] = True
    if _EXT_ALPN in exts:
        protos = exts[_EXT_ALPN].vec(2)
        if protos.left():
            p = protos.vec(1)
            out["alpn_selected"] = p.take(p.left()).decode("ascii", "replace")
    return out


# ---------------------------------------------------------------------------------------------

_METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE ")
_REQUEST_LINE = re.compile(rb"([A-Z]+) (\S+) HTTP/(1\.[01])\r?$")
_STATUS_LINE = re.compile(rb"HTTP/(1\.[01]) (\d{3})(?: ([^\r\n]*))?\r?$")
_PRINTABLE = re.compile(rb"[\t\n\r\x20-\x7e]{8,}")
_TLS_AFTER_TEXT = re.compile(rb"[\n>](\x16\x03[\x00-\x04])")
_MESSAGE_LINE = re.compile(
    rb"(?:^|\n)((?:" + b"|".join(m.strip() for m in _METHODS) + rb") \S+ HTTP/1\.[01]\r?\n"
    rb"|HTTP/1\.[01] \d{3}\b)"
)
_SEARCH = 4096  # bytes searched for a first message line (joined mid-session)
_LINE_STARTS = (*_METHODS, b"HTTP/1.")  # how a request or status line begins


def _message_start(data: bytes) -> int | None:
    """Where the first HTTP/1.x request or status line begins in ``data``: at its start, after
    a few stray bytes, or after a line break within the first ``_SEARCH`` bytes; else None."""
    if data.startswith(_LINE_STARTS):
        return 0
    head = data[:16].lstrip(b"\r\n\x00 ")
    if head.startswith(_LINE_STARTS):
        return data.index(head[:4])
    if data.find(b"HTTP/1.", 0, _SEARCH) < 0:  # every request and status line has it: cheap test first
        return None
    m = _MESSAGE_LINE.search(data[:_SEARCH])
    return m.start(1) if m else None


_PRINTABLE_SHORT = re.compile(rb"[\t\n\r\x20-\x7e]+")  # all a short flow said


class _TlsDir:
    """Collects one direction's handshake bytes out of TLS records until the hello is whole."""

    __slots__ = ("done", "hs", "lenient", "records", "want")

    def __init__(self, want: int) -> None:
        self.records = b""  # record-layer bytes not yet split into records
        self.hs = b""  # handshake-protocol bytes gathered from records
        self.want = want  # handshake type wanted: 1 ClientHello, 2 ServerHello
        self.done = False
        self.lenient = False  # this side spoke in clear before TLS began


class _HttpDir:
    """HTTP/1.x message framing for one direction (requests c2s, responses s2c)."""

    __slots__ = ("body", "chunk_state", "chunked", "head", "lost", "until_close")

    def __init__(self) -> None:
        self.head = b""  # bytes of a message head still being gathered
        self.body = 0  # body bytes still to skip (Content-Length or current chunk)
        self.chunked = False
        self.chunk_state = ""  # "size" | "data-crlf" | "trailer" while chunked
        self.until_close = False
        self.lost = False  # a gap or garbage: stop following this direction


class _Sniff:
    __slots__ = ("connect_wait", "decided", "head", "http", "next", "pending_methods", "proxy", "tls", "tunnel")

    def __init__(self) -> None:
        self.next = {"c2s": 0, "s2c": 0}
        self.head = {"c2s": b"", "s2c": b""}  # first bytes, until there are enough to decide
        self.tls: dict[str, _TlsDir] | None = None
        self.http: dict[str, _HttpDir] | None = None
        self.decided = {"c2s": False, "s2c": False}
        self.pending_methods: list[int] = []  # indices of requests awaiting their response
        self.tunnel: str | None = None  # CONNECT's target once the proxy said 2xx
        self.proxy: dict[str, Any] | None = None  # the CONNECT exchange, once inside the tunnel
        # client bytes after a CONNECT, until the proxy answers it: the tunnel's first bytes if it
        # says 2xx, more HTTP otherwise (a piece of one direction may run past the other's answer)
        self.connect_wait: bytearray | None = None


def observe(flow: Any, direction: str, offset: int, data: bytes) -> None:
    """Feeds the next bytes of one direction of ``flow`` (a `hostctl.wire.flows.Flow`)."""
    st = flow.sniff
    if st is None:
        st = flow.sniff = _Sniff()
    if st is False:
        return
    proto = flow.protocol
    expected = st.next.get(direction, 0)
    st.next[direction] = offset + len(data)
    if offset != expected:  # bytes went missing before these
        _lose(st, proto, direction, f"gap before stream offset {offset}")
    if not data:
        return
    if st.tls is not None:
        _tls_feed(st, proto, direction, offset, data)
        if st.tls["c2s"].done and st.tls["s2c"].done:
            flow.sniff = False  # both hellos read (or given up on)
        return
    if st.http is not None:
        _http_feed(st, proto, direction, data)
        return
    if not proto or proto.get("name") in ("unknown", "text"):
        head = st.head[direction] + data
        if len(head) < DECIDE and not st.decided[direction]:
            st.head[direction] = head  # too few bytes to tell yet
            return
        st.head[direction] = b""
        _decide(st, flow, direction, st.next[direction] - len(head), head)


def finish(flow: Any) -> None:
    """The flow ended: decide from the few bytes held, if that is all there was."""
    st = flow.sniff
    if not st:
        return
    for direction in ("c2s", "s2c"):
        head = st.head[direction]
        if head and (not flow.protocol or flow.protocol.get("name") in ("unknown", "text")):
            st.head[direction] = b""
            _decide(st, flow, direction, st.next[direction] - len(head), head)
    if st.proxy is not None:
        flow.protocol["proxy"] = st.proxy
    if "name" not in flow.protocol:
        flow.protocol["name"] = "unknown"


def _lose(st: _Sniff, proto: dict[str, Any], direction: str, why: str) -> None:
    if st.tls is not None:
        d = st.tls[direction]
        if not d.done:
            d.done = True
            proto.setdefault("error", f"{direction}: {why} (handshake incomplete)")
    elif st.http is not None:
        st.http[direction].lost = True


def _decide(st: _Sniff, flow: Any, direction: str, offset: int, data: bytes) -> None:
    proto = flow.protocol
    if proto.get("name") == "text":
        # STARTTLS (XMPP <proceed/>, SMTP/IMAP "220"/"OK Begin TLS" then a ClientHello): a
        # handshake record may follow the clear text within one piece
        m = _TLS_AFTER_TEXT.search(data)
        if m is not None and m.start(1) > 0:
            offset, data = offset + m.start(1), data[m.start(1) :]
    # which protocol: the decoders' registry says, by its named heuristics (the same that pick
    # the decoder stack's layers); a capture joined mid-session gets one more look for an HTTP
    # message line after the tail of the message in progress
    head = data[:4096]
    c2s, s2c = (head, b"") if direction == "c2s" else (b"", head)
    name = REGISTRY.name_of(c2s, s2c, final=True, among=_STARTER_NAMES)  # (None: none of them)
    if name not in _STARTERS and _message_start(data) is not None:
        name = "http1"
    start = _STARTERS.get(name)
    if start is not None:
        start(st, flow, direction, offset, data)
        if st.proxy is not None:
            flow.protocol["proxy"] = st.proxy
        return
    if st.proxy is not None:
        proto["proxy"] = st.proxy
    if proto.keys() <= {"proxy"}:
        m = _PRINTABLE.match(data[:256]) or (_PRINTABLE_SHORT.fullmatch(data) if len(data) < 8 else None)
        if m:
            line = m.group().split(b"\n", 1)[0].rstrip(b"\r")
            proto.update({"name": "text", "first_line": line[:120].decode("ascii", "replace")})
        else:
            proto["name"] = "unknown"
    st.decided[direction] = True
    if all(st.decided.values()) and proto["name"] == "unknown":
        flow.sniff = False  # nothing more to learn: later calls return at once
    # (text flows stay watched: a STARTTLS handshake may follow the clear text)


def _start_tls(st: _Sniff, flow: Any, direction: str, offset: int, data: bytes) -> None:
    proto = flow.protocol
    before = proto.get("first_line")
    proto.clear()
    proto["name"] = "tls"
    if before is not None:
        proto["cleartext_first_line"] = before  # STARTTLS: text first (XMPP, SMTP), then TLS
    st.tls = {"c2s": _TlsDir(1), "s2c": _TlsDir(2)}
    for d in ("c2s", "s2c"):
        if d != direction and st.next[d] > 0:
            # that side spoke in clear already: its hello, if any, comes with its next bytes
            # (STARTTLS); if those are no TLS record, it is not TLS on that side, not an error
            st.tls[d].lenient = True
    _tls_feed(st, proto, direction, offset, data)
    _replay_other(st, proto, direction, _tls_feed)


def _start_http(st: _Sniff, flow: Any, direction: str, offset: int, data: bytes) -> None:
    # a request or status line, after at most a few stray bytes (a keep-alive byte, a CRLF left
    # from the message before) or, for a capture that joined mid-session, after the tail of the
    # message in progress
    proto = flow.protocol
    skip = _message_start(data) or 0
    proto.clear()
    proto.update({"name": "http", "requests": [], **({"skipped": skip} if skip else {})})
    st.http = {"c2s": _HttpDir(), "s2c": _HttpDir()}
    _http_feed(st, proto, direction, data[skip:])
    _replay_other(st, proto, direction, lambda st, proto, d, _offset, data: _http_feed(st, proto, d, data))


def _start_http2(st: _Sniff, flow: Any, direction: str, offset: int, data: bytes) -> None:
    # HTTP/2 in clear (prior knowledge): the decoder stack reads its frames; here it is named so
    # the flow counts as clear HTTP
    flow.protocol.clear()
    flow.protocol.update({"name": "http2", "requests": []})
    flow.sniff = False


# registry layer name -> what reads that protocol's metadata (the other layers' flows are text or
# unknown here)
_STARTERS = {"tls": _start_tls, "http1": _start_http, "http2": _start_http2}
_STARTER_NAMES = frozenset(_STARTERS)


def _replay_other(st: _Sniff, proto: dict[str, Any], direction: str, feed: Any) -> None:
    """The other side's first few bytes, held while too few to decide, go to the parser chosen."""
    other = "s2c" if direction == "c2s" else "c2s"
    head = st.head[other]
    if head:
        st.head[other] = b""
        feed(st, proto, other, st.next[other] - len(head), head)


def _tls_feed(st: _Sniff, proto: dict[str, Any], direction: str, offset: int, data: bytes) -> None:
    d = st.tls[direction]  # type: ignore[index]
    if d.done:
        return
    d.records += data
    # split complete records; keep the handshake ones' payloads
    p, buf = 0, d.records
    encrypted = False
    while len(buf) - p >= 5:
        ctype, major, _minor, length = buf[p], buf[p + 1], buf[p + 2], int.from_bytes(buf[p + 3 : p + 5], "big")
        if major != 3 or ctype not in (0x14, 0x15, 0x16, 0x17):
            d.done = True
            if not (d.lenient and p == 0 and not d.hs):
                proto.setdefault("error", f"{direction}: not a TLS record near stream offset {offset}")
            return
        if len(buf) - p - 5 < length:
            break
        if ctype == 0x16:
            d.hs += buf[p + 5 : p + 5 + length]
        elif ctype == 0x17 or ctype == 0x15:
            # application data or an alert: no handshake in clear follows (TLS 1.3 encrypts
            # everything after the ServerHello)
            encrypted = True
            break
        p += 5 + length
    d.records = buf[p:]
    # the first handshake message of the wanted type
    while len(d.hs) >= 4:
        htype = d.hs[0]
        hlen = int.from_bytes(d.hs[1:4], "big")
        if len(d.hs) < 4 + hlen:
            break
        body, d.hs = d.hs[4 : 4 + hlen], d.hs[4 + hlen :]
        if htype != d.want:
            continue
        try:
            fields = parse_client_hello(body) if htype == 1 else parse_server_hello(body)
        except _Malformed as e:
            d.done = True
            proto.setdefault("error", f"{direction}: malformed {'Client' if htype == 1 else 'Server'}Hello: {e}")
            return
        if fields.pop("hello_retry", False):
            proto["hello_retry"] = True
            continue  # the real ServerHello follows
        proto.update(fields)
        d.done = True
        d.records = d.hs = b""
        return
    if encrypted:
        d.done = True
        d.records = d.hs = b""
    elif len(d.records) + len(d.hs) > MAX_HELLO:
        d.done = True
        proto.setdefault("error", f"{direction}: no whole hello in the first {MAX_HELLO} bytes")


def _headers(head: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for line in head.split(b"\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            out.setdefault(name.strip().lower(), value.strip())
    return out


def _http_feed(st: _Sniff, proto: dict[str, Any], direction: str, data: bytes) -> None:
    h = st.http[direction]  # type: ignore[index]
    if direction == "c2s" and st.connect_wait is not None:
        if len(st.connect_wait) + len(data) > MAX_CONNECT_WAIT:
            h.lost = True  # no answer to the CONNECT in sight: stop following HTTP here
            st.connect_wait = None
        else:
            st.connect_wait += data
        return
    while data and not h.lost:
        if h.until_close:
            return
        if h.body:  # skipping a body (or a chunk's data)
            n = min(h.body, len(data))
            h.body -= n
            data = data[n:]
            if h.body == 0 and h.chunked:
                h.chunk_state = "data-crlf"
            continue
        if h.chunked:
            data = _chunked(h, data)
            continue
        h.head += data
        data = b""
        end = h.head.find(b"\r\n\r\n")
        sep = 4
        if end < 0:
            end, sep = h.head.find(b"\n\n"), 2
        if end < 0:
            if len(h.head) > MAX_HEADER:
                h.lost = True
            return
        head, data = h.head[:end], h.head[end + sep :]
        h.head = b""
        was_waiting = st.connect_wait is not None
        _http_message(st, proto, direction, h, head)
        if st.tunnel is not None:
            _enter_tunnel(st, proto, direction, data)
            return
        if direction == "c2s" and st.pending_methods and _pending_connect(st, proto):
            st.connect_wait = bytearray(data)  # held until the proxy answers
            return
        if was_waiting and direction == "s2c" and not _pending_connect(st, proto):
            # the CONNECT was refused: what the client sent meanwhile is HTTP after all
            held, st.connect_wait = bytes(st.connect_wait or b""), None
            if held:
                _http_feed(st, proto, "c2s", held)


def _pending_connect(st: _Sniff, proto: dict[str, Any]) -> bool:
    """The request awaiting its answer is the last one, and a CONNECT."""
    i = st.pending_methods[-1] if st.pending_methods else -1
    reqs = proto.get("requests") or []
    return 0 <= i < len(reqs) and reqs[i]["method"] == "CONNECT" and "status" not in reqs[i]


def _enter_tunnel(st: _Sniff, proto: dict[str, Any], direction: str, data: bytes) -> None:
    """A CONNECT was answered 2xx: what follows on both sides is the tunnelled protocol, told
    as any flow's first bytes are (TLS in PCAPdroid's proxy captures; clear HTTP through a
    proxy to port 80 is clear HTTP, and is reported so). The flow keeps the proxy exchange
    under ``proxy``; bytes after the 2xx head in the same piece are the tunnel's first."""
    st.proxy = {"requests": proto.get("requests", []), "host": proto.get("host"), "tunnel": st.tunnel}
    proto.clear()  # (undecided again: _decide names the tunnel's protocol and puts proxy back)
    st.http = None
    st.tls = None
    st.tunnel = None
    st.pending_methods = []  # (the proxy's requests are answered: the tunnel's start afresh)
    st.decided = {"c2s": False, "s2c": False}
    st.head = {"c2s": b"", "s2c": b""}
    st.head[direction] = data  # (st.next already counts them: decided with the next piece, or at the end)
    if st.connect_wait is not None:  # what the client sent after its CONNECT: the tunnel's first bytes
        st.head["c2s"] = bytes(st.connect_wait)
        st.connect_wait = None


def _chunked(h: _HttpDir, data: bytes) -> bytes:
    """Walks chunked framing (sizes, data CRLFs, trailers); returns what follows the message."""
    while data:
        if h.chunk_state == "data-crlf":
            h.head += data
            data = b""
            if len(h.head) < 2:
                return b""
            data, h.head = h.head[2:], b""
            h.chunk_state = "size"
            continue
        h.head += data
        data = b""
        nl = h.head.find(b"\n")
        if nl < 0:
            if len(h.head) > MAX_HEADER:
                h.lost = True
            return b""
        line, data = h.head[:nl].strip(), h.head[nl + 1 :]
        h.head = b""
        if h.chunk_state == "trailer":
            if not line:
                h.chunked = False
                h.chunk_state = ""
                return data
            continue
        try:
            size = int(line.split(b";", 1)[0], 16)
        except ValueError:
            h.lost = True
            return b""
        if size == 0:
            h.chunk_state = "trailer"
        else:
            h.body = size
            return data
    return b""


MAX_CONNECT_WAIT = 1 << 16  # client bytes held while a CONNECT awaits its answer


def _http_message(st: _Sniff, proto: dict[str, Any], direction: str, h: _HttpDir, head: bytes) -> None:
    first = head.split(b"\n", 1)[0]
    headers = _headers(head)
    reqs: list[dict[str, Any]] = proto["requests"]
    if direction == "c2s":
        m = _REQUEST_LINE.match(first)
        if not m:
            h.lost = True
            return
        host = headers.get(b"host", b"").decode("latin-1")
        proto["request_count"] = proto.get("request_count", 0) + 1
        if len(reqs) < MAX_REQUESTS:
            reqs.append({"method": m.group(1).decode(), "path": m.group(2).decode("latin-1"), "host": host})
            st.pending_methods.append(len(reqs) - 1)
        else:
            st.pending_methods.append(-1)
        if host:
            proto.setdefault("host", host)
        _body_framing(h, headers, request=True)
        return
    m = _STATUS_LINE.match(first)
    if not m:
        h.lost = True
        return
    status = int(m.group(2))
    if 100 <= status < 200:
        return  # informational: the real response follows
    head_request = False
    if st.pending_methods:
        i = st.pending_methods.pop(0)
        if i >= 0:
            reqs[i]["status"] = status
            head_request = reqs[i]["method"] == "HEAD"
            if reqs[i]["method"] == "CONNECT" and 200 <= status < 300:
                st.tunnel = reqs[i]["path"]
                return
    if head_request or status in (204, 304):
        return
    _body_framing(h, headers, request=False)


def _body_framing(h: _HttpDir, headers: dict[bytes, bytes], *, request: bool) -> None:
    te = headers.get(b"transfer-encoding", b"").lower()
    if b"chunked" in te:
        h.chunked = True
        h.chunk_state = "size"
        return
    cl = headers.get(b"content-length")
    if cl is not None:
        try:
            h.body = max(0, int(cl))
        except ValueError:
            h.lost = True
        return
    if not request:
        h.until_close = True  # a response without length runs to the close
