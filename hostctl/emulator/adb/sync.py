"""The ``sync:`` file-transfer protocol, device side, without I/O.

Requests are a 4-byte id and a uint32 LE length (then that many bytes of path). v1 verbs: STAT,
LIST, SEND ("path,mode"), RECV, QUIT. v2 verbs: STA2, LST2 (stat without following the last
symlink), LIS2, SND2 and RCV2 (followed by a second header carrying mode/flags). A SEND is
followed by DATA chunks (<= 64 KiB each) and DONE with the mtime. Replies are built by the
``reply_*`` functions; the driver performs the file operations.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .packets import ProtocolError

SYNC_DATA_MAX = 64 * 1024
MAX_PATH = 1024
_ID_LEN = struct.Struct("<4sI")
_U32x3 = struct.Struct("<4sII")  # SND2 second header: id, mode, flags
_STAT_V1 = struct.Struct("<4sIII")  # id, mode, size, mtime
_DENT_V1 = struct.Struct("<4sIIII")  # id, mode, size, mtime, namelen
_STAT_V2 = struct.Struct("<4sIQQIIIIQqqq")  # id, error, dev, ino, mode, nlink, uid, gid, size, a/m/ctime
_DENT_V2 = struct.Struct("<4sIQQIIIIQqqqI")  # ... + namelen


@dataclass(frozen=True, slots=True)
class Stat:
    path: str
    verb: str  # "STAT", "STA2" or "LST2"


@dataclass(frozen=True, slots=True)
class ListDir:
    path: str
    v2: bool


@dataclass(frozen=True, slots=True)
class SendBegin:
    path: str
    mode: int
    flags: int  # v2 compression flags; 0 = none
    v2: bool


@dataclass(frozen=True, slots=True)
class SendData:
    data: bytes


@dataclass(frozen=True, slots=True)
class SendDone:
    mtime: int


@dataclass(frozen=True, slots=True)
class Recv:
    path: str
    flags: int
    v2: bool


@dataclass(frozen=True, slots=True)
class Quit:
    pass


SyncEvent = Stat | ListDir | SendBegin | SendData | SendDone | Recv | Quit


@dataclass(frozen=True, slots=True)
class FileStat:
    mode: int
    size: int
    mtime: int
    atime: int = 0
    ctime: int = 0
    dev: int = 0
    ino: int = 0
    nlink: int = 1
    uid: int = 0
    gid: int = 0


class SyncParser:
    """Bytes in (``feed``), request events out. Raises ProtocolError on a malformed request."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._pending: tuple[str, str] | None = None  # (verb, path) waiting for a v2 header
        self._in_send = False

    def feed(self, data: bytes) -> list[SyncEvent]:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data
        events: list[SyncEvent] = []
        while (ev := self._next()) is not None:
            events.append(ev)
        return events

    def _take(self, n: int) -> memoryview | None:
        if len(self._buf) - self._pos < n:
            return None
        view = memoryview(self._buf)[self._pos : self._pos + n]
        self._pos += n
        return view

    def _take_all(self, n: int) -> bytes:
        """``n`` bytes the caller has checked are buffered."""
        view = self._take(n)
        if view is None:
            raise ProtocolError(f"sync: {n} bytes expected, fewer buffered")
        return bytes(view)

    def _peek_header(self) -> tuple[str, int] | None:
        if len(self._buf) - self._pos < 8:
            return None
        raw_id, length = _ID_LEN.unpack_from(self._buf, self._pos)
        try:
            verb = raw_id.decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError(f"sync request id {raw_id!r} is not ASCII") from None
        return verb, length

    def _next(self) -> SyncEvent | None:
        if self._pending is not None:
            return self._v2_header()
        hdr = self._peek_header()
        if hdr is None:
            return None
        verb, length = hdr
        if self._in_send:
            return self._send_chunk(verb, length)
        if verb not in ("STAT", "STA2", "LST2", "LIST", "LIS2", "SEND", "SND2", "RECV", "RCV2", "QUIT"):
            raise ProtocolError(f"unknown sync request {verb!r}")
        if verb == "QUIT":
            self._pos += 8
            return Quit()
        if length > MAX_PATH:
            raise ProtocolError(f"sync {verb} path of {length} bytes is too long")
        if len(self._buf) - self._pos < 8 + length:
            return None
        self._pos += 8
        path = self._take_all(length).decode("utf-8", "surrogateescape")
        if verb in ("STAT", "STA2", "LST2"):
            return Stat(path, verb)
        if verb in ("LIST", "LIS2"):
            return ListDir(path, verb == "LIS2")
        if verb == "RECV":
            return Recv(path, 0, False)
        if verb == "SEND":
            name, sep, mode_text = path.rpartition(",")
            if not sep:
                name, mode = path, 0o100644
            else:
                try:
                    mode = int(mode_text)
                except ValueError:
                    raise ProtocolError(f"SEND mode {mode_text!r} is not a number") from None
            self._in_send = True
            return SendBegin(name, mode, 0, False)
        self._pending = (verb, path)  # SND2 / RCV2: a second header follows
        return self._v2_header()

    def _v2_header(self) -> SyncEvent | None:
        verb, path = self._pending  # type: ignore[misc]
        size = 12 if verb == "SND2" else 8
        raw = self._take(size)
        if raw is None:
            return None
        self._pending = None
        if verb == "SND2":
            rid, mode, flags = _U32x3.unpack(raw)
            if rid != b"SND2":
                raise ProtocolError(f"SND2 second header has id {bytes(rid)!r}")
            self._in_send = True
            return SendBegin(path, mode, flags, True)
        rid, flags = _ID_LEN.unpack(raw)
        if rid != b"RCV2":
            raise ProtocolError(f"RCV2 second header has id {bytes(rid)!r}")
        return Recv(path, flags, True)

    def _send_chunk(self, verb: str, length: int) -> SyncEvent | None:
        if verb == "DONE":
            self._pos += 8
            self._in_send = False
            return SendDone(length)
        if verb != "DATA":
            raise ProtocolError(f"expected DATA or DONE during SEND, got {verb!r}")
        if length > SYNC_DATA_MAX:
            raise ProtocolError(f"sync DATA chunk of {length} bytes exceeds {SYNC_DATA_MAX}")
        if len(self._buf) - self._pos < 8 + length:
            return None
        self._pos += 8
        return SendData(self._take_all(length))


# --- replies ---------------------------------------------------------------------------------


def reply_stat_v1(st: FileStat | None) -> bytes:
    if st is None:
        return _STAT_V1.pack(b"STAT", 0, 0, 0)
    return _STAT_V1.pack(b"STAT", st.mode, st.size & 0xFFFFFFFF, st.mtime & 0xFFFFFFFF)


def reply_stat_v2(verb: str, st: FileStat | None, errno_: int = 0) -> bytes:
    if st is None:
        return _STAT_V2.pack(verb.encode(), errno_, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return _STAT_V2.pack(
        verb.encode(), 0, st.dev, st.ino, st.mode, st.nlink, st.uid, st.gid, st.size, st.atime, st.mtime, st.ctime
    )


def reply_dent(name: bytes, st: FileStat, v2: bool) -> bytes:
    if v2:
        return (
            _DENT_V2.pack(
                b"DNT2",
                0,
                st.dev,
                st.ino,
                st.mode,
                st.nlink,
                st.uid,
                st.gid,
                st.size,
                st.atime,
                st.mtime,
                st.ctime,
                len(name),
            )
            + name
        )
    return _DENT_V1.pack(b"DENT", st.mode, st.size & 0xFFFFFFFF, st.mtime & 0xFFFFFFFF, len(name)) + name


def reply_list_done(v2: bool) -> bytes:
    if v2:
        return _DENT_V2.pack(b"DONE", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return _DENT_V1.pack(b"DONE", 0, 0, 0, 0)


def reply_data(chunk: bytes) -> bytes:
    return _ID_LEN.pack(b"DATA", len(chunk)) + chunk


def reply_done() -> bytes:
    return _ID_LEN.pack(b"DONE", 0)


def reply_okay() -> bytes:
    return _ID_LEN.pack(b"OKAY", 0)


def reply_fail(message: str) -> bytes:
    data = message.encode()
    return _ID_LEN.pack(b"FAIL", len(data)) + data
