"""Splitting a text into SMS parts, as a phone's SMS stack does (cf. Android's
``SmsMessage.fragmentText``): GSM 7-bit when every character has a code there, else UCS-2.

One part holds 160 septets or 70 UCS-2 units; a part of a concatenated message loses the user
data header's room: 153 septets / 67 units with an 8-bit reference (IEI 0x00), 152 / 66 with a
16-bit one (IEI 0x08). An extension-table character (two septets) and a surrogate pair (two
units) are never cut in half.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import gsm7

__all__ = ["Part", "split_message", "ucs2_units"]


@dataclass(frozen=True, slots=True)
class Part:
    text: str
    coding: str  # "gsm7" | "ucs2"
    concat: tuple[int, int, int] | None = None  # (reference, total, sequence 1..total)

    @property
    def units(self) -> int:
        """Septets (GSM 7-bit) or UTF-16 code units (UCS-2) of this part's text."""
        return gsm7.septet_length(self.text) if self.coding == "gsm7" else ucs2_units(self.text)


def ucs2_units(text: str) -> int:
    """UTF-16 code units: a character outside the BMP counts two (a surrogate pair)."""
    return sum(2 if ord(c) > 0xFFFF else 1 for c in text)


def split_message(text: str, *, reference: int, coding: str | None = None, concat16: bool = False) -> list[Part]:
    """The parts ``text`` is sent as. ``coding`` forces "gsm7" or "ucs2" (default: GSM 7-bit when
    possible); ``reference`` (0..255, or 0..65535 with ``concat16``) goes into every part of a
    concatenated message."""
    if coding is None:
        coding = "gsm7" if gsm7.can_encode(text) else "ucs2"
    if coding not in ("gsm7", "ucs2"):
        raise ValueError(f"coding must be gsm7 or ucs2, not {coding!r}")
    if not 0 <= reference <= (0xFFFF if concat16 else 0xFF):
        raise ValueError(f"concatenation reference {reference} out of range")
    if coding == "gsm7":
        cost, single, multi = gsm7.char_septets, 160, (152 if concat16 else 153)
        if not gsm7.can_encode(text):
            gsm7.encode(text)  # raises GsmEncodingError naming the character
    else:
        cost, single, multi = (lambda ch: 2 if ord(ch) > 0xFFFF else 1), 70, (66 if concat16 else 67)
    if sum(cost(c) for c in text) <= single:
        return [Part(text, coding)]
    chunks: list[str] = []
    current: list[str] = []
    used = 0
    for ch in text:
        n = cost(ch)
        if used + n > multi:
            chunks.append("".join(current))
            current, used = [], 0
        current.append(ch)
        used += n
    chunks.append("".join(current))
    if len(chunks) > 255:
        raise ValueError(f"text needs {len(chunks)} parts; a concatenated SMS has at most 255")
    return [Part(c, coding, (reference, len(chunks), i + 1)) for i, c in enumerate(chunks)]
