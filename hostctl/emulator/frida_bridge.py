"""Frida's portal join, with an Android app's identity: package name as identifier, label as name.

frida-server on a real Android handset lists an app process with its package name as the
application identifier and the app's label as its name (``frida-ps -Ua``: ``Messaging
com.android.mms``; frida >= 15 also names the *process* by its label, frida/frida#1828, #2031).
An emulated handset's app is a host process that Frida's agent joins to the handset's
``PortalService``, and the agent reports what it can see of itself: frida-core
``lib/agent/agent.vala`` ``join_portal`` builds ``HostApplicationInfo (identifier =
readlink("/proc/self/exe"), name = basename(it), pid, parameters)`` ("TODO: Detect app ID"), and
nothing in the Python API, the ``PortalService`` or the join options overrides it. The portal keeps
whatever the node joined with (``src/portal-service.vala`` ``handle_join_request``: ``new Application
(identifier, app.name, pid, ...)``) and answers ``EnumerateApplications``, ``EnumerateProcesses``,
``GetFrontmostApplication``, attach-by-identifier and the spawn/node signals from it.

So the fix sits at the one place the identity enters: between the app's agent and the portal's
cluster endpoint. :class:`JoinProxy` is a loopback TCP relay in front of the cluster port; in the
agent -> portal direction a sans-IO :class:`JoinRewriter` decodes the first D-Bus messages and
rewrites the ``Join`` call's ``HostApplicationInfo`` (identifier, name) for processes the lab
registered (pid and executable path must both match), then relays everything else untouched. The
portal -- and every controller through it, over adb's ``tcp:27042`` or directly -- sees the app as
frida-server on Android shows it.

Framing (frida 17): the agent's ``PortalClient`` (``lib/payload/portal-client.vala``
``establish_connection``) does an HTTP/1.1 upgrade to a WebSocket (``lib/base/socket.vala``
``negotiate_connection``: ``GET /ws``), then runs a ``GDBusConnection`` with no authentication
(flags ``DELAY_MESSAGE_PROCESSING`` only) over it. ``WebConnection`` treats the WebSocket as a
byte stream (each message is appended to a receive queue), so D-Bus messages need not align with
frames and the rewriter may re-frame what it decodes. The call is ``re.frida.PortalSession17.Join``
at ``/re/frida/PortalSession`` (``lib/base/session.vala`` ``interface PortalSession``), first
argument ``HostApplicationInfo`` = ``(ssua{sv})``.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("hostctl.emulator.frida_bridge")

__all__ = ["AppIdentity", "DBusError", "JoinProxy", "JoinRewriter", "marshal_message", "unmarshal_message"]

# Bounds of the rewriting phase: the Join comes first or nearly so (after an optional
# Authenticate and, on a reconnect, nothing else on the wire), so what is still undecided after
# this much goes through untouched.
MAX_HTTP_HEAD = 16 * 1024
MAX_FRAME = 1024 * 1024  # libsoup's limit on the portal side is 256 KiB + 1 (socket.vala)
MAX_MESSAGE = 1024 * 1024
MAX_DECODED_MESSAGES = 16
MAX_DEPTH = 64  # D-Bus specification: 32 array + 32 struct nesting

PORTAL_SESSION_PATH = "/re/frida/PortalSession"
PORTAL_SESSION_IFACE_PREFIX = "re.frida.PortalSession"


class DBusError(ValueError):
    """A D-Bus message the rewriter cannot decode (the remote side broke the wire format)."""


# --- D-Bus marshalling (specification, "Message Format" / "Marshaling") -------------------------

_FIXED = {
    "y": ("B", 1),
    "b": ("I", 4),
    "n": ("h", 2),
    "q": ("H", 2),
    "i": ("i", 4),
    "u": ("I", 4),
    "x": ("q", 8),
    "t": ("Q", 8),
    "d": ("d", 8),
    "h": ("I", 4),
}
_ALIGN = {**{k: v[1] for k, v in _FIXED.items()}, "s": 4, "o": 4, "g": 1, "a": 4, "(": 8, "{": 8, "v": 1}


def split_signature(sig: str) -> list[str]:
    """The complete types of a signature, in order."""
    out, i = [], 0
    while i < len(sig):
        j = _end_of_type(sig, i)
        out.append(sig[i:j])
        i = j
    return out


def _end_of_type(sig: str, i: int, depth: int = 0) -> int:
    if depth > MAX_DEPTH:
        raise DBusError("signature nests too deeply")
    if i >= len(sig):
        raise DBusError(f"truncated signature {sig!r}")
    c = sig[i]
    if c in _FIXED or c in "sogv":
        return i + 1
    if c == "a":
        return _end_of_type(sig, i + 1, depth + 1)
    if c in "({":
        close = ")" if c == "(" else "}"
        j = i + 1
        while j < len(sig) and sig[j] != close:
            j = _end_of_type(sig, j, depth + 1)
        if j >= len(sig) or j == i + 1:
            raise DBusError(f"bad container in signature {sig!r}")
        return j + 1
    raise DBusError(f"unknown type code {c!r} in signature {sig!r}")


class _Reader:
    def __init__(self, buf: bytes, endian: str, pos: int = 0) -> None:
        self.buf, self.e, self.pos = buf, endian, pos

    def align(self, n: int) -> None:
        pad = (-self.pos) % n
        if self.buf[self.pos : self.pos + pad].strip(b"\0"):
            raise DBusError("non-zero padding")
        self.pos += pad

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise DBusError("value runs past the end of the message")
        b = self.buf[self.pos : self.pos + n]
        self.pos += n
        return b

    def read(self, t: str, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise DBusError("value nests too deeply")
        c = t[0]
        if c in _FIXED:
            fmt, size = _FIXED[c]
            self.align(size)
            return struct.unpack(self.e + fmt, self.take(size))[0]
        if c in "so":
            self.align(4)
            n = struct.unpack(self.e + "I", self.take(4))[0]
            s = self.take(n + 1)
            if s[-1:] != b"\0":
                raise DBusError("string without its NUL")
            return s[:-1].decode("utf-8", errors="strict")
        if c == "g":
            n = self.take(1)[0]
            s = self.take(n + 1)
            if s[-1:] != b"\0":
                raise DBusError("signature without its NUL")
            return s[:-1].decode("ascii")
        if c == "v":
            sig = self.read("g")
            if len(split_signature(sig)) != 1:
                raise DBusError(f"variant signature {sig!r} is not one complete type")
            return (sig, self.read(sig, depth + 1))
        if c == "a":
            self.align(4)
            n = struct.unpack(self.e + "I", self.take(4))[0]
            if n > 64 * 1024 * 1024:
                raise DBusError("array longer than 64 MiB")
            elem = t[1:]
            self.align(_ALIGN[elem[0]])
            end = self.pos + n
            if end > len(self.buf):
                raise DBusError("array runs past the end of the message")
            items = []
            while self.pos < end:
                items.append(self.read(elem, depth + 1))
            if self.pos != end:
                raise DBusError("array length does not end on an element")
            return items
        if c in "({":
            self.align(8)
            return tuple(self.read(f, depth + 1) for f in split_signature(t[1:-1]))
        raise DBusError(f"unknown type {t!r}")


class _Writer:
    def __init__(self, endian: str, pos: int = 0) -> None:
        self.e, self.out, self.start = endian, bytearray(), pos

    @property
    def pos(self) -> int:
        return self.start + len(self.out)

    def align(self, n: int) -> None:
        self.out += b"\0" * ((-self.pos) % n)

    def write(self, t: str, v: Any) -> None:
        c = t[0]
        if c in _FIXED:
            fmt, size = _FIXED[c]
            self.align(size)
            self.out += struct.pack(self.e + fmt, v)
        elif c in "so":
            b = v.encode("utf-8")
            self.align(4)
            self.out += struct.pack(self.e + "I", len(b)) + b + b"\0"
        elif c == "g":
            b = v.encode("ascii")
            self.out += bytes([len(b)]) + b + b"\0"
        elif c == "v":
            sig, inner = v
            self.write("g", sig)
            self.write(sig, inner)
        elif c == "a":
            self.align(4)
            at = len(self.out)
            self.out += b"\0\0\0\0"
            elem = t[1:]
            self.align(_ALIGN[elem[0]])
            first = len(self.out)
            for item in v:
                self.write(elem, item)
            struct.pack_into(self.e + "I", self.out, at, len(self.out) - first)
        elif c in "({":
            self.align(8)
            for f, x in zip(split_signature(t[1:-1]), v, strict=True):
                self.write(f, x)
        else:
            raise DBusError(f"unknown type {t!r}")


# header field codes (specification, "Header Fields")
PATH, INTERFACE, MEMBER, SIGNATURE = 1, 2, 3, 8
METHOD_CALL = 1


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded D-Bus message: the header kept as bytes, the body as values."""

    endian: str  # "<" or ">"
    msg_type: int
    fields: dict[int, Any]  # header field code -> value
    header: bytes  # fixed header + fields + padding, as received
    body_sig: str
    body: tuple

    @property
    def member(self) -> str | None:
        return self.fields.get(MEMBER)


def message_length(buf: bytes | bytearray) -> int | None:
    """Length of the message at the start of ``buf`` once 16 bytes are there, else None."""
    if len(buf) < 16:
        return None
    e = {0x6C: "<", 0x42: ">"}.get(buf[0])
    if e is None:
        raise DBusError(f"bad endianness byte {buf[0]:#x}")
    body_len, _, fields_len = struct.unpack(e + "III", bytes(buf[4:16]))
    header_len = 16 + fields_len + (-(16 + fields_len)) % 8
    total = header_len + body_len
    if total > MAX_MESSAGE:
        raise DBusError(f"message of {total} bytes is over the {MAX_MESSAGE} byte bound")
    return total


def unmarshal_message(data: bytes) -> Message:
    e = {0x6C: "<", 0x42: ">"}.get(data[0]) if data else None
    if e is None or len(data) < 16:
        raise DBusError("not a D-Bus message")
    if data[3] != 1:
        raise DBusError(f"protocol version {data[3]} (1 expected)")
    r = _Reader(data, e, 12)
    fields = {code: value for code, (_sig, value) in r.read("a(yv)")}
    r.align(8)
    header = data[: r.pos]
    body_len = struct.unpack(e + "I", data[4:8])[0]
    if r.pos + body_len != len(data):
        raise DBusError("body length does not match the message")
    sig = fields.get(SIGNATURE, "")
    body = tuple(r.read(t) for t in split_signature(sig))
    if r.pos != len(data):
        raise DBusError("body has bytes past its signature")
    return Message(e, data[1], fields, header, sig, body)


def marshal_message(msg: Message, body: tuple) -> bytes:
    """The message with a new body of the same signature (the header is kept, its length set)."""
    w = _Writer(msg.endian, len(msg.header))
    for t, v in zip(split_signature(msg.body_sig), body, strict=True):
        w.write(t, v)
    header = bytearray(msg.header)
    struct.pack_into(msg.endian + "I", header, 4, len(w.out))
    return bytes(header) + bytes(w.out)


# --- the rewriter (sans-IO) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppIdentity:
    """What the lab registered for one app process: the join it expects and what to show."""

    pid: int
    executable: str  # what the agent reports: readlink("/proc/PID/exe")
    package: str  # -> HostApplicationInfo.identifier
    label: str  # -> HostApplicationInfo.name


Lookup = Callable[[int, str], "AppIdentity | None"]


def rewrite_join(msg: Message, lookup: Lookup) -> tuple | None:
    """The new body of a ``PortalSession.Join`` call for a registered app, else None."""
    if (
        msg.msg_type != METHOD_CALL
        or msg.member != "Join"
        or msg.fields.get(PATH) != PORTAL_SESSION_PATH
        or not str(msg.fields.get(INTERFACE, "")).startswith(PORTAL_SESSION_IFACE_PREFIX)
        or not msg.body_sig.startswith("(ssu")
    ):
        return None
    (identifier, _name, pid, *rest), *args = msg.body
    ident = lookup(pid, identifier)
    if ident is None:
        log.info("Join of pid %d (%s) is not a registered app: left as is", pid, identifier)
        return None
    return ((ident.package, ident.label, pid, *rest), *args)


class JoinRewriter:
    """The agent -> portal byte stream, with the ``Join`` call rewritten (sans-IO).

    ``receive(data) -> bytes`` returns what to send on. Phases: the HTTP upgrade request (as is),
    then WebSocket frames whose payloads are decoded as D-Bus messages until the Join went by
    (or the bounds above were reached), then everything as is. Frames it decoded are sent on
    re-framed (masked, as a client must); the portal reads them as one byte stream.
    """

    def __init__(self, lookup: Lookup, *, mask: Callable[[], bytes] = lambda: os.urandom(4)) -> None:
        self._lookup = lookup
        self._mask = mask
        self._phase = "http"  # http -> frames -> relay
        self._buf = bytearray()  # undecided input
        self._stream = bytearray()  # D-Bus bytes from frames, not yet a whole message
        self._in_fragment = False
        self._decoded = 0
        self.rewritten: tuple[str, str] | None = None  # (old identifier, new identifier)
        self.gave_up: str | None = None

    def receive(self, data: bytes) -> bytes:
        if self._phase == "relay":
            return data
        self._buf += data
        out = bytearray()
        if self._phase == "http":
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HTTP_HEAD:
                    return self._give_up("no end of the HTTP upgrade request", out)
                return b""
            out += self._buf[: end + 4]
            del self._buf[: end + 4]
            if not out.startswith(b"GET /ws "):
                return self._give_up("not a WebSocket upgrade to /ws", out)
            self._phase = "frames"
        while self._phase == "frames":
            try:
                frame = self._next_frame()
            except DBusError as exc:
                return self._give_up(str(exc), out)
            if frame is None:
                break
            fin, opcode, payload, raw = frame
            if opcode >= 8:  # control frames go on as they came
                out += raw
                continue
            if opcode not in (0, 2) or (opcode == 0) != self._in_fragment:
                return self._give_up(f"WebSocket opcode {opcode} in the D-Bus stream", out, raw)
            self._in_fragment = not fin
            self._stream += payload
            try:
                self._decode_messages(out)
            except (ValueError, KeyError, IndexError, struct.error) as exc:  # DBusError, bad UTF-8, ...
                return self._give_up(f"D-Bus: {exc}", out)
            if (self.rewritten or self._decoded >= MAX_DECODED_MESSAGES) and not self._in_fragment:
                if not self.rewritten:
                    self.gave_up = f"no Join in the first {MAX_DECODED_MESSAGES} messages"
                return self._to_relay(out)
        return bytes(out)

    def _next_frame(self) -> tuple[bool, int, bytes, bytes] | None:
        """RFC 6455 section 5.2: one whole frame off the input, else None."""
        b = self._buf
        if len(b) < 2:
            return None
        fin, rsv, opcode = bool(b[0] & 0x80), b[0] & 0x70, b[0] & 0x0F
        masked, n, pos = bool(b[1] & 0x80), b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, pos = struct.unpack(">H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, pos = struct.unpack(">Q", b[2:10])[0], 10
        if rsv or n > MAX_FRAME:  # frida negotiates no extensions
            raise DBusError(f"WebSocket frame with RSV bits {rsv:#x} or {n} bytes")
        key = b""
        if masked:
            if len(b) < pos + 4:
                return None
            key, pos = bytes(b[pos : pos + 4]), pos + 4
        if len(b) < pos + n:
            return None
        payload = bytes(b[pos : pos + n])
        raw = bytes(b[: pos + n])
        del b[: pos + n]
        if masked:
            payload = _unmask(payload, key)
        return fin, opcode, payload, raw

    def _decode_messages(self, out: bytearray) -> None:
        while (n := message_length(self._stream)) is not None and len(self._stream) >= n:
            data = bytes(self._stream[:n])
            msg = unmarshal_message(data)  # on error the bytes stay for the relay
            del self._stream[:n]
            self._decoded += 1
            body = rewrite_join(msg, self._lookup) if not self.rewritten else None
            if body is not None:
                old = msg.body[0][0]
                data = marshal_message(msg, body)
                self.rewritten = (old, body[0][0])
                log.info("Join of pid %d: identifier %s -> %s, name %r", body[0][2], old, body[0][0], body[0][1])
            out += self._frame(data)

    def _frame(self, payload: bytes) -> bytes:
        n = len(payload)
        head = bytes([0x82])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        key = self._mask()
        return head + key + _unmask(payload, key)

    def _to_relay(self, out: bytearray) -> bytes:
        if self._stream:  # part of a message: sent on as its own frame
            out += self._frame(bytes(self._stream))
            self._stream.clear()
        out += self._buf
        self._buf.clear()
        self._phase = "relay"
        return bytes(out)

    def _give_up(self, why: str, out: bytearray, raw: bytes = b"") -> bytes:
        # what could not be decided goes on as is: the join happens under Frida's own identity
        self.gave_up = why
        log.warning("frida join rewriter: %s; relaying as is", why)
        out += raw
        return self._to_relay(out)


def _unmask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return b""
    k = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(len(payload), "big")


# --- the relay -------------------------------------------------------------------------------


class JoinProxy:
    """Loopback TCP relay in front of a portal's cluster endpoint that runs :class:`JoinRewriter`
    on each agent connection (the agent reconnects and re-joins after a portal restart: each
    connection is rewritten on its own)."""

    CONNECT_TIMEOUT = 5.0

    def __init__(self, target: tuple[str, int] | Callable[[], tuple[str, int]], *, name: str = "") -> None:
        self._target = target  # or a callable: read at each connection
        self.name = name
        self._apps: dict[int, AppIdentity] = {}
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self.port = 0

    @property
    def target(self) -> tuple[str, int]:
        return self._target() if callable(self._target) else self._target

    # -- registry --
    def register(self, ident: AppIdentity) -> None:
        with self._lock:
            self._apps[ident.pid] = ident

    def unregister(self, pid: int) -> None:
        with self._lock:
            self._apps.pop(pid, None)

    def lookup(self, pid: int, executable: str) -> AppIdentity | None:
        with self._lock:
            ident = self._apps.get(pid)
        return ident if ident is not None and ident.executable == executable else None

    # -- lifecycle --
    def start(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.target[0], 0))  # loopback, as the portal's own endpoints
        s.listen(16)
        self._listener, self.port = s, s.getsockname()[1]
        threading.Thread(target=self._accept_loop, args=(s,), name=f"frida-join-{self.name}", daemon=True).start()

    def stop(self) -> None:
        s, self._listener = self._listener, None
        if s is not None:
            _close(s)
        with self._lock:
            conns, self._conns = self._conns, set()
        for c in conns:
            _close(c)

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                agent, _ = listener.accept()
            except OSError:
                return
            threading.Thread(
                target=self._serve, args=(agent,), daemon=True, name=f"frida-join-{self.name}-conn"
            ).start()

    def _serve(self, agent: socket.socket) -> None:
        target = self.target
        try:
            portal = socket.create_connection(target, timeout=self.CONNECT_TIMEOUT)
        except OSError as exc:
            log.info("frida join proxy %s: portal %s:%d refused: %s", self.name, *target, exc)
            _close(agent)
            return
        portal.settimeout(None)
        for s in (agent, portal):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self._listener is None:
                _close(agent)
                _close(portal)
                return
            self._conns |= {agent, portal}
        rewriter = JoinRewriter(self.lookup)
        down = threading.Thread(target=_pump, args=(portal, agent, None), daemon=True)
        down.start()
        _pump(agent, portal, rewriter.receive)
        down.join(5)
        with self._lock:
            self._conns -= {agent, portal}
        _close(agent)
        _close(portal)


def _pump(src: socket.socket, dst: socket.socket, transform: Callable[[bytes], bytes] | None) -> None:
    try:
        while data := src.recv(65536):
            if transform is not None:
                data = transform(data)
            if data:
                dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        _close(dst)
        _close(src)


def _close(s: socket.socket) -> None:
    try:
        s.close()
    except OSError:
        pass
