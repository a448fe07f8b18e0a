"""SMS on the host side, pure (no I/O): the GSM 7-bit alphabet, UCS-2, TPDUs and splitting.

Used by the modem driver (``hostctl.lab.modem``) and by the emulator (carrier, handsets, modem).
"""

from .gsm7 import GsmEncodingError
from .pdu import (
    Address,
    EncodedPdu,
    PduError,
    SmsDeliver,
    SmsStatusReport,
    SmsSubmit,
    decode,
    encode,
    validity_from_seconds,
    validity_seconds,
)
from .split import Part, split_message, ucs2_units

__all__ = [
    "Address",
    "EncodedPdu",
    "GsmEncodingError",
    "Part",
    "PduError",
    "SmsDeliver",
    "SmsStatusReport",
    "SmsSubmit",
    "decode",
    "encode",
    "split_message",
    "ucs2_units",
    "validity_from_seconds",
    "validity_seconds",
]
