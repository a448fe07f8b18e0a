"""shell v2 framing: each packet is an id byte, a uint32 LE length, then the data."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from .packets import ProtocolError

_HDR = struct.Struct("<BI")
MAX_SHELL_PACKET = 1024 * 1024


class ShellId(IntEnum):
    STDIN = 0
    STDOUT = 1
    STDERR = 2
    EXIT = 3
    CLOSE_STDIN = 4
    WINDOW_SIZE = 5


@dataclass(frozen=True, slots=True)
class ShellPacket:
    id: ShellId
    data: bytes


def encode(packet_id: ShellId, data: bytes = b"") -> bytes:
    return _HDR.pack(packet_id, len(data)) + data


def encode_exit(code: int) -> bytes:
    return encode(ShellId.EXIT, bytes([code & 0xFF]))


class ShellV2Decoder:
    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[ShellPacket]:
        self._buf += data
        out: list[ShellPacket] = []
        while len(self._buf) >= _HDR.size:
            pid, length = _HDR.unpack_from(self._buf)
            if length > MAX_SHELL_PACKET:
                raise ProtocolError(f"shell v2 packet of {length} bytes")
            try:
                kind = ShellId(pid)
            except ValueError:
                raise ProtocolError(f"unknown shell v2 packet id {pid}") from None
            end = _HDR.size + length
            if len(self._buf) < end:
                break
            out.append(ShellPacket(kind, bytes(self._buf[_HDR.size : end])))
            del self._buf[:end]
        return out


def parse_window_size(data: bytes) -> tuple[int, int] | None:
    """ "rowsxcols,xpixelsxypixels" -> (rows, cols)."""
    try:
        rc = data.split(b"\0", 1)[0].decode().split(",", 1)[0]
        rows, cols = rc.split("x")
        return int(rows), int(cols)
    except (ValueError, UnicodeDecodeError):
        return None
