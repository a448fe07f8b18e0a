"""Binder Parcel replies and the text `service call` prints for them.

``format_parcel`` reproduces ``Parcel::print`` with libutils' ``printHexData`` (16 bytes a line,
4-byte words shown as little-endian integers, a one-line form up to 16 bytes, the last line padded)
inside ``Result: Parcel(...)``, with TextOutput's two-space indent.
"""

from __future__ import annotations

import struct

__all__ = [
    "EX_SECURITY",
    "ParcelReader",
    "ParcelWriter",
    "exception_parcel",
    "format_parcel",
    "hexdump",
    "parcel_error_text",
]

EX_SECURITY = -1


class ParcelWriter:
    def __init__(self) -> None:
        self._buf = bytearray()

    def write_int32(self, value: int) -> ParcelWriter:
        self._buf += struct.pack("<i", value if value < 2**31 else value - 2**32)
        return self

    def write_int64(self, value: int) -> ParcelWriter:
        self._buf += struct.pack("<q", value)
        return self

    def write_string16(self, value: str | None) -> ParcelWriter:
        if value is None:
            return self.write_int32(-1)
        data = value.encode("utf-16-le")
        self.write_int32(len(data) // 2)
        data += b"\x00\x00"
        data += b"\x00" * (-len(data) % 4)
        self._buf += data
        return self

    def write_no_exception(self) -> ParcelWriter:
        return self.write_int32(0)

    def write_float(self, value: float) -> ParcelWriter:
        self._buf += struct.pack("<f", value)
        return self

    def write_double(self, value: float) -> ParcelWriter:
        self._buf += struct.pack("<d", value)
        return self

    def write_raw(self, data: bytes) -> ParcelWriter:
        self._buf += data
        return self

    def data(self) -> bytes:
        return bytes(self._buf)


def exception_parcel(code: int, message: str, sdk: int) -> bytes:
    """A reply as Java's ``Parcel.writeException`` writes it: the exception code, the message,
    and from Android 9 (SDK 28) the remote stack trace header, 0 (no trace) outside
    system_server."""
    w = ParcelWriter().write_int32(code).write_string16(message)
    if sdk >= 28:
        w.write_int32(0)
    return w.data()


class ParcelReader:
    """Reads a Parcel as libbinder does: a read past the end yields 0 (ints) or null (strings)
    and does not move the position; strings are int32 length + UTF-16 + NUL, 4-byte padded."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, n: int) -> bytes | None:
        padded = (n + 3) & ~3
        if self._pos + padded > len(self._data):
            return None
        chunk = self._data[self._pos : self._pos + n]
        self._pos += padded
        return chunk

    def read_int32(self) -> int:
        raw = self._take(4)
        return struct.unpack("<i", raw)[0] if raw is not None else 0

    def read_int64(self) -> int:
        raw = self._take(8)
        return struct.unpack("<q", raw)[0] if raw is not None else 0

    def read_string16(self) -> str | None:
        size = self.read_int32()
        if not 0 <= size < 2**31 - 1:
            return None
        raw = self._take((size + 1) * 2)
        if raw is None or raw[-2:] != b"\x00\x00":
            return None
        return raw[:-2].decode("utf-16-le", "replace")


_HEX2 = tuple(f"{v:02x}" for v in range(256))


def hexdump(data: bytes, bytes_per_line: int = 16, single_line_cutoff: int = 16, alignment: int = 4) -> list[str]:
    """printHexData's lines (without indentation), as Android's libutils prints them."""
    length = len(data)
    if length == 0:
        return ["(empty)"]
    one_line = length <= single_line_cutoff
    lines: list[str] = []
    offset = 0
    remaining_total = length
    while True:
        pos = offset
        remain = remaining_total
        buf = [] if one_line else [f"0x{offset:08x}: "]
        word = 0
        while word < bytes_per_line:
            align_offset = alignment - 1
            if 0 < remain <= align_offset:
                align_offset = remain - 1
            start = word + align_offset
            index = 0
            while index < alignment:
                if index == 0 and word > 0:
                    buf.append(" ")
                if remain > 0:
                    val = data[pos + start - index]
                    buf.append(_HEX2[val])
                elif not one_line:
                    buf.append("  ")
                remain -= 1
                index += 1
            word += index
        remain = remaining_total
        buf.append(" '")
        for index in range(bytes_per_line):
            if remain > 0:
                val = data[pos + index]
                buf.append(chr(val) if 32 <= val < 127 else ".")
            elif not one_line:
                buf.append(" ")
            remain -= 1
        buf.append("'")
        lines.append("".join(buf))
        if remaining_total <= bytes_per_line:
            break
        remaining_total -= bytes_per_line
        offset += bytes_per_line
    return lines


def format_parcel(data: bytes) -> str:
    """``Result: Parcel(...)`` followed by a newline, exactly as `service call` prints it."""
    if not data:
        return "Result: Parcel(NULL)\n"
    lines = hexdump(data)
    if len(data) <= 16:
        return f"Result: Parcel({lines[0]})\n"
    return "Result: Parcel(\n" + "\n".join("  " + line for line in lines) + ")\n"


def parcel_error_text(errno_value: int, message: str) -> str:
    """A transaction that failed with -errno (32-bit build), as Parcel::print shows it."""
    return f'Result: Parcel(Error: 0x{(-errno_value) & 0xFFFFFFFF:08x} "{message}")\n'
