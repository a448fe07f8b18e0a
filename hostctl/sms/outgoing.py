"""What a message a user sends may hold, checked before anything reaches a handset.

``hostctl send`` types the text into Messaging's compose screen through ``am start ... --es
sms_body TEXT`` and reads it back from ``uiautomator dump``; the handset's SMS stack then sends it
as one or several SMS parts (or one MX message over IP). Each of those has a limit, and a text
beyond one must be refused at once, with the limit, rather than half-sent:

- the number: 3GPP TS 23.040 9.1.2.5 gives an address at most 20 digits (10 octets of
  semi-octets); a ``+`` marks the international format. Spaces, dashes, dots and parentheses a
  person types are dropped (Android's ``PhoneNumberUtils.stripSeparators``). Anything else is not
  a number, and could not even be put in the ``smsto:`` URI safely.
- the text: not empty (Messaging's Send button stays disabled on an empty draft); no control
  characters but tab, line feed and carriage return (XML 1.0, which ``uiautomator dump`` writes,
  cannot carry the others, and no SMS alphabet has them); no lone surrogates (not text at all).
- the length: a long text goes out as Android sends it, a concatenated SMS
  (``SmsManager.divideMessage`` / ``sendMultipartTextMessage``; ``hostctl.sms.split``), which has at
  most 255 parts (the concatenation IE's 8-bit count, TS 23.040 9.2.3.24.1): 39,015 GSM 7-bit
  characters (153 a part with the 8-bit reference Android uses) or 17,085 UCS-2 units (67 a part).
  MIUI sends the same text over IP as one MX message when the receiver is online. The command that carries it is one adb request, at most 65,535 bytes (adb's
  4-hex-digit length prefix, AOSP adb SERVICES.TXT).
"""

from __future__ import annotations

import re
import unicodedata

from .split import split_message

__all__ = ["ADB_REQUEST_MAX", "MAX_NUMBER_DIGITS", "MAX_PARTS", "OutgoingError", "check_number", "check_text"]

MAX_NUMBER_DIGITS = 20  # TS 23.040 9.1.2.5: Address-Value of at most 10 octets
MAX_PARTS = 255  # TS 23.040 9.2.3.24.1: an 8-bit part count
ADB_REQUEST_MAX = 0xFFFF  # adb's smart-socket requests: a 4-hex-digit length
SEND_COMMAND_OVERHEAD = 200  # "shell,v2,raw:am start -a ... -d smsto:NUMBER --es sms_body ''"
_SEPARATORS = re.compile(r"[\s\-.()]")
_ALLOWED_CONTROLS = "\t\n\r"


class OutgoingError(ValueError):
    """A number or text that cannot be sent; the message names the limit."""


def check_number(to: str) -> str:
    """The number as it will be dialled (separators dropped); OutgoingError if it is not one."""
    raw = _SEPARATORS.sub("", to or "")
    digits = raw[1:] if raw.startswith("+") else raw
    if not digits.isascii() or not digits.isdigit():
        raise OutgoingError(
            f"--to {to!r} is not a phone number: digits only, an optional leading +, "
            f"at most {MAX_NUMBER_DIGITS} digits (spaces, dashes, dots, parentheses allowed)"
        )
    if len(digits) > MAX_NUMBER_DIGITS:
        raise OutgoingError(
            f"--to {to!r} has {len(digits)} digits; an SMS address holds at most {MAX_NUMBER_DIGITS} (3GPP TS 23.040)"
        )
    return raw


def check_text(text: str) -> int:
    """How many SMS parts ``text`` takes (1 for a short one); OutgoingError if it cannot be sent."""
    if not text:
        raise OutgoingError("--text is empty: Messaging does not send an empty message")
    for i, ch in enumerate(text):
        if ch in _ALLOWED_CONTROLS:
            continue
        cat = unicodedata.category(ch)
        if cat == "Cc":
            raise OutgoingError(
                f"--text holds the control character U+{ord(ch):04X} at position {i}: only "
                "tab, line feed and carriage return can be typed into a message"
            )
        if cat == "Cs":
            raise OutgoingError(f"--text holds a lone surrogate U+{ord(ch):04X} at position {i}: not text")
    quoted = len(text.encode("utf-8")) + 3 * text.count("'")  # the shell quoting adds 3 per quote
    if quoted + SEND_COMMAND_OVERHEAD > ADB_REQUEST_MAX:
        raise OutgoingError(
            f"--text is {len(text.encode('utf-8'))} bytes; the command carrying it must fit "
            f"one adb request ({ADB_REQUEST_MAX} bytes), so at most "
            f"{ADB_REQUEST_MAX - SEND_COMMAND_OVERHEAD} bytes of text"
        )
    try:
        parts = split_message(text, reference=0)
    except ValueError:
        raise OutgoingError(
            f"--text needs more than {MAX_PARTS} SMS parts: a long message is sent as a "
            f"concatenated SMS of at most {MAX_PARTS} parts ({MAX_PARTS * 153} GSM 7-bit "
            f"characters, or {MAX_PARTS * 67} UCS-2 units if it needs UCS-2)"
        ) from None
    return len(parts)
