"""The GSM 7-bit default alphabet and its extension table (3GPP TS 23.038 clause 6.2.1), and
septet packing (TS 23.038 clause 6.1.2.1.1).

A character of the extension table costs two septets: ESC (0x1B) and its code. Packing puts
septet *i* at bit ``fill_bits + 7*i`` of the octet stream, least significant bit first; the
fill bits are what a user data header leaves before the first septet boundary (TS 23.040
clause 9.2.3.24).
"""

from __future__ import annotations

__all__ = [
    "BASIC",
    "ESC",
    "EXTENSION",
    "GsmEncodingError",
    "can_encode",
    "char_septets",
    "decode",
    "encode",
    "pack",
    "septet_length",
    "unpack",
]

ESC = 0x1B

# index = septet value; 0x1B is the escape to the extension table (never a character itself)
BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
assert len(BASIC) == 128

EXTENSION = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

_BASIC_CODE = {ch: i for i, ch in enumerate(BASIC) if i != ESC}
_EXT_CODE = {ch: code for code, ch in EXTENSION.items()}


class GsmEncodingError(ValueError):
    """A character has no code in the GSM 7-bit default alphabet or its extension table."""

    def __init__(self, char: str, position: int) -> None:
        self.char = char
        self.position = position
        super().__init__(f"{char!r} (U+{ord(char):04X}) at {position} is not in the GSM 7-bit alphabet")


def char_septets(ch: str) -> int:
    """1 for the basic table, 2 for the extension table, 0 when not encodable."""
    if ch in _BASIC_CODE:
        return 1
    return 2 if ch in _EXT_CODE else 0


def can_encode(text: str) -> bool:
    return all(ch in _BASIC_CODE or ch in _EXT_CODE for ch in text)


def septet_length(text: str) -> int:
    """Septets ``text`` takes (extension characters count two); GsmEncodingError if it cannot."""
    return len(encode(text))


def encode(text: str) -> list[int]:
    out: list[int] = []
    for i, ch in enumerate(text):
        code = _BASIC_CODE.get(ch)
        if code is not None:
            out.append(code)
            continue
        ext = _EXT_CODE.get(ch)
        if ext is None:
            raise GsmEncodingError(ch, i)
        out += (ESC, ext)
    return out


def decode(septets: list[int] | bytes) -> str:
    """Septet values to text. An escape followed by a code the extension table lacks shows the
    basic table's character (TS 23.038 6.2.1.1 note); a lone trailing escape shows a space."""
    out: list[str] = []
    escaped = False
    for s in septets:
        s &= 0x7F
        if escaped:
            out.append(EXTENSION.get(s) or (BASIC[s] if s != ESC else " "))
            escaped = False
        elif s == ESC:
            escaped = True
        else:
            out.append(BASIC[s])
    if escaped:
        out.append(" ")
    return "".join(out)


def pack(septets: list[int], fill_bits: int = 0) -> bytes:
    """Pack septets LSB first after ``fill_bits`` zero bits (0..6)."""
    if not 0 <= fill_bits <= 6:
        raise ValueError(f"fill_bits must be 0..6, not {fill_bits}")
    acc = 0
    for i, s in enumerate(septets):
        acc |= (s & 0x7F) << (fill_bits + 7 * i)
    nbits = fill_bits + 7 * len(septets)
    return acc.to_bytes((nbits + 7) // 8, "little")


def unpack(data: bytes, count: int, fill_bits: int = 0) -> list[int]:
    """The first ``count`` septets after ``fill_bits`` bits; ValueError when data is too short."""
    if fill_bits + 7 * count > 8 * len(data):
        raise ValueError(f"{len(data)} octets cannot hold {count} septets after {fill_bits} fill bits")
    acc = int.from_bytes(data, "little") >> fill_bits
    return [(acc >> (7 * i)) & 0x7F for i in range(count)]
