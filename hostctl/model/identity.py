"""The Luhn check (ISO/IEC 7812-1 annex B) that IMEIs (3GPP TS 23.003 section 6.2.1) and
ICCIDs (ITU-T E.118) carry as their last digit."""

from __future__ import annotations

__all__ = ["luhn_digit", "luhn_ok"]


def luhn_digit(partial: str) -> str:
    """The Luhn check digit to append to ``partial`` (a string of digits)."""
    if not partial.isdigit():
        raise ValueError(f"not a digit string: {partial!r}")
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_ok(digits: str) -> bool:
    """True when ``digits`` (check digit last) passes the Luhn test."""
    if len(digits) < 2 or not digits.isdigit():
        return False
    return luhn_digit(digits[:-1]) == digits[-1]


# E.164 country calling codes are prefix-free (ITU-T E.164 Annex): 1 and 7 are the one-digit
# codes, these the two-digit ones, every other code has three digits.
CC1 = frozenset({"1", "7"})
CC2 = frozenset(
    [
        "20",
        "27",
        "30",
        "31",
        "32",
        "33",
        "34",
        "36",
        "39",
        "40",
        "41",
        "43",
        "44",
        "45",
        "46",
        "47",
        "48",
        "49",
        "51",
        "52",
        "53",
        "54",
        "55",
        "56",
        "57",
        "58",
        "60",
        "61",
        "62",
        "63",
        "64",
        "65",
        "66",
        "81",
        "82",
        "84",
        "86",
        "90",
        "91",
        "92",
        "93",
        "94",
        "95",
        "98",
    ]
)
