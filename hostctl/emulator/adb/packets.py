"""ADB transport packets: the 24-byte header and its payload, framed without any I/O.

Header: six little-endian uint32 — command, arg0, arg1, payload length, payload byte-sum (hosts on
protocol 0x01000001 and later ignore it; we send it only to older peers and never check it), magic = command ^ 0xffffffff.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum


class Command(IntEnum):
    SYNC = 0x434E5953
    CNXN = 0x4E584E43
    AUTH = 0x48545541
    OPEN = 0x4E45504F
    OKAY = 0x59414B4F
    CLSE = 0x45534C43
    WRTE = 0x45545257
    STLS = 0x534C5453


HEADER = struct.Struct("<6I")
HEADER_SIZE = HEADER.size
U32_MAX = 0xFFFFFFFF

# Protocol versions: the original one, and the one that dropped payload checksums (skip_checksum).
VERSION_MIN = 0x01000000
VERSION_SKIP_CHECKSUM = 0x01000001
MAX_PAYLOAD = 1024 * 1024
# A CNXN may arrive before maxdata is negotiated; the host's banner fits easily in this.
MAX_PAYLOAD_BEFORE_CNXN = 256 * 1024


class ProtocolError(Exception):
    """A breach of the ADB protocol. ``side`` says who broke it: "remote" (the peer sent
    something invalid) or "local" (our own code asked for something the protocol forbids)."""

    def __init__(self, message: str, *, side: str = "remote") -> None:
        super().__init__(f"{side} protocol error: {message}")
        self.side = side
        self.reason = message


@dataclass(frozen=True, slots=True)
class Packet:
    command: Command
    arg0: int
    arg1: int
    payload: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.command, Command):
            raise ProtocolError(f"unknown command 0x{int(self.command):08x}", side="local")
        for name in ("arg0", "arg1"):
            value = getattr(self, name)
            if not 0 <= value <= U32_MAX:
                raise ProtocolError(f"{name}={value} is not a uint32", side="local")
        if len(self.payload) > MAX_PAYLOAD:
            raise ProtocolError(f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD}", side="local")

    def encode(self, *, checksum: bool = False) -> bytes:
        """Wire bytes. Peers on protocol >= VERSION_SKIP_CHECKSUM ignore the sum, so it is only
        computed when asked for (summing a 1 MiB payload costs more than the rest of the send)."""
        cmd = int(self.command)
        check = sum(self.payload) & U32_MAX if checksum else 0
        header = HEADER.pack(cmd, self.arg0, self.arg1, len(self.payload), check, cmd ^ U32_MAX)
        return header + self.payload

    def __repr__(self) -> str:  # compact, for logs
        body = self.payload[:32]
        more = "..." if len(self.payload) > 32 else ""
        return f"{self.command.name}({self.arg0:#x}, {self.arg1:#x}, {body!r}{more} [{len(self.payload)}])"


class PacketReader:
    """Incremental decoder: feed bytes, take whole packets. Raises ProtocolError (remote)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.max_payload = MAX_PAYLOAD_BEFORE_CNXN

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_packet(self) -> Packet | None:
        buf = self._buf
        if len(buf) < HEADER_SIZE:
            return None
        cmd, arg0, arg1, length, _check, magic = HEADER.unpack_from(buf)
        if magic != cmd ^ U32_MAX:
            raise ProtocolError(f"bad magic 0x{magic:08x} for command 0x{cmd:08x}")
        try:
            command = Command(cmd)
        except ValueError:
            raise ProtocolError(f"unknown command 0x{cmd:08x}") from None
        if length > self.max_payload:
            raise ProtocolError(f"{command.name} payload of {length} bytes exceeds maxdata {self.max_payload}")
        end = HEADER_SIZE + length
        if len(buf) < end:
            return None
        payload = bytes(buf[HEADER_SIZE:end])
        del buf[:end]
        return Packet(command, arg0, arg1, payload)

    @property
    def buffered(self) -> int:
        return len(self._buf)
