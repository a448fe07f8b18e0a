"""SMS TPDUs (3GPP TS 23.040 clause 9.2): SMS-SUBMIT, SMS-DELIVER and SMS-STATUS-REPORT, with
the SMSC address in front as ``AT+CMGS``/``+CMGR`` carry them in PDU mode (TS 27.005 clause 3).

``encode(message)`` gives an ``EncodedPdu`` (hex, and the TPDU length ``AT+CMGS=<length>``
wants); ``decode(hex)`` gives the message back. Messages are frozen dataclasses, validated when
built. Timestamps are aware ``datetime``s (TP-SCTS keeps the sender's zone in quarter hours).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from . import gsm7

__all__ = [
    "Address",
    "EncodedPdu",
    "PduError",
    "SmsDeliver",
    "SmsStatusReport",
    "SmsSubmit",
    "dcs_alphabet",
    "decode",
    "encode",
    "make_dcs",
    "validity_from_seconds",
    "validity_seconds",
    "STATUS_MEANINGS",
]

_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})*$")
_BCD = "0123456789*#abc"
CODINGS = ("gsm7", "8bit", "ucs2")

# TP-Status (TS 23.040 9.2.3.15): the meaning of the values a status report carries
STATUS_MEANINGS = {
    0x00: "received by the SME",
    0x01: "forwarded, delivery not confirmed",
    0x02: "replaced by the SC",
    0x20: "congestion, still trying",
    0x21: "SME busy, still trying",
    0x22: "no response from SME, still trying",
    0x23: "service rejected, still trying",
    0x24: "quality of service not available, still trying",
    0x25: "error in SME, still trying",
    0x40: "remote procedure error",
    0x41: "incompatible destination",
    0x42: "connection rejected by SME",
    0x43: "not obtainable",
    0x44: "quality of service not available",
    0x45: "no interworking available",
    0x46: "SM validity period expired",
    0x47: "SM deleted by originating SME",
    0x48: "SM deleted by SC administration",
    0x49: "SM does not exist",
    0x60: "congestion, SC gave up",
    0x61: "SME busy, SC gave up",
    0x62: "no response from SME, SC gave up",
    0x63: "service rejected, SC gave up",
    0x64: "quality of service not available, SC gave up",
    0x65: "error in SME, SC gave up",
}


class PduError(ValueError):
    """A PDU that cannot be decoded (truncated, malformed) or a message that cannot be encoded."""


# --- addresses (TS 23.040 9.1.2.5) ----------------------------------------------------------

TON_UNKNOWN, TON_INTERNATIONAL, TON_NATIONAL, TON_ALPHANUMERIC = 0, 1, 2, 5


@dataclass(frozen=True, slots=True)
class Address:
    """A TP address: ``+`` and digits for international numbers, digits for others, text for
    alphanumeric senders (TON 5)."""

    number: str
    ton: int = TON_UNKNOWN
    npi: int = 1  # ISDN/telephone numbering plan (E.164)

    def __post_init__(self) -> None:
        if not 0 <= self.ton <= 7 or not 0 <= self.npi <= 15:
            raise PduError(f"bad type of address: TON {self.ton}, NPI {self.npi}")
        if self.ton == TON_ALPHANUMERIC:
            if len(gsm7.encode(self.number)) > 11:
                raise PduError(f"alphanumeric address longer than 11 septets: {self.number!r}")
        else:
            digits = self.number[1:] if self.ton == TON_INTERNATIONAL and self.number.startswith("+") else self.number
            if len(digits) > 20 or any(c not in _BCD for c in digits.lower()):
                raise PduError(f"not a phone number: {self.number!r}")

    @classmethod
    def parse(cls, text: str) -> Address:
        """``+8613800138000`` international, ``10086`` unknown/national, ``MiCloud`` alphanumeric."""
        compact = re.sub(r"[\s\-().]", "", text)
        if compact.startswith("+") and compact[1:].isdigit():
            return cls(compact, TON_INTERNATIONAL)
        if compact and all(c in "0123456789*#" for c in compact):
            return cls(compact, TON_UNKNOWN)
        return cls(text, TON_ALPHANUMERIC, 0)

    @property
    def toa(self) -> int:
        """The type-of-address octet (129 unknown, 145 international, 208 alphanumeric)."""
        return 0x80 | (self.ton << 4) | self.npi

    @property
    def digits(self) -> str:
        return self.number.lstrip("+") if self.ton == TON_INTERNATIONAL else self.number

    def __str__(self) -> str:
        return self.number


def _semi_octets(digits: str) -> bytes:
    nibbles = [_BCD.index(c) for c in digits.lower()]
    if len(nibbles) % 2:
        nibbles.append(0xF)
    return bytes(nibbles[i] | (nibbles[i + 1] << 4) for i in range(0, len(nibbles), 2))


def _from_semi_octets(data: bytes, count: int | None = None) -> str:
    out = []
    for b in data:
        for nib in (b & 0xF, b >> 4):
            if nib == 0xF:
                continue
            out.append(_BCD[nib])
    return "".join(out[:count] if count is not None else out)


def _encode_address(addr: Address) -> bytes:
    if addr.ton == TON_ALPHANUMERIC:
        septets = gsm7.encode(addr.number)
        body = gsm7.pack(septets)
        return bytes([(len(septets) * 7 + 3) // 4, addr.toa]) + body
    digits = addr.digits
    return bytes([len(digits), addr.toa]) + _semi_octets(digits)


def _encode_smsc(addr: Address | None) -> bytes:
    if addr is None:
        return b"\x00"
    body = bytes([addr.toa]) + _semi_octets(addr.digits)
    return bytes([len(body)]) + body


def _address(ton: int, npi: int, number: str) -> Address:
    if ton == TON_INTERNATIONAL and number and not number.startswith("+"):
        number = "+" + number
    if ton == TON_INTERNATIONAL and not number:
        ton = TON_UNKNOWN
    return Address(number, ton, npi)


# --- timestamps (TS 23.040 9.2.3.11) --------------------------------------------------------


def _encode_time(when: datetime) -> bytes:
    if when.tzinfo is None:
        raise PduError("a TP-SCTS needs a time zone (an aware datetime)")
    offset = when.utcoffset() or timedelta(0)
    quarters = int(offset.total_seconds() // 900)
    digits = f"{when.year % 100:02d}{when.month:02d}{when.day:02d}{when.hour:02d}{when.minute:02d}{when.second:02d}"
    body = _semi_octets(digits)
    q = abs(quarters)
    tz = ((q % 10) << 4) | (q // 10) | (0x08 if quarters < 0 else 0)
    return body + bytes([tz])


def _decode_time(data: bytes) -> datetime:
    def bcd(b: int) -> int:
        lo, hi = b & 0xF, b >> 4
        if lo > 9 or hi > 9:
            raise PduError(f"bad BCD octet {b:02X} in a time stamp")
        return lo * 10 + hi

    year, month, day, hour, minute, second = (bcd(b) for b in data[:6])
    tzb = data[6]
    quarters = (tzb & 0x07) * 10 + (tzb >> 4)
    if (tzb >> 4) > 9:
        raise PduError(f"bad time zone octet {tzb:02X}")
    if tzb & 0x08:
        quarters = -quarters
    try:
        return datetime(
            2000 + year if year < 90 else 1900 + year,
            month,
            day,
            hour,
            minute,
            second,
            tzinfo=timezone(timedelta(minutes=15 * quarters)),
        )
    except ValueError as exc:
        raise PduError(f"bad time stamp {data.hex().upper()}: {exc}") from None


# --- validity period (TS 23.040 9.2.3.12.1, relative format) -------------------------------


def validity_seconds(vp: int) -> int:
    """Seconds a relative TP-VP octet stands for."""
    if not 0 <= vp <= 255:
        raise PduError(f"TP-VP must be 0..255, not {vp}")
    if vp <= 143:
        return (vp + 1) * 300
    if vp <= 167:
        return 12 * 3600 + (vp - 143) * 1800
    if vp <= 196:
        return (vp - 166) * 86400
    return (vp - 192) * 7 * 86400


def validity_from_seconds(seconds: float) -> int:
    """The smallest relative TP-VP octet that lasts at least ``seconds`` (capped at 63 weeks)."""
    for vp in range(256):
        if validity_seconds(vp) >= seconds:
            return vp
    return 255


# --- data coding scheme (TS 23.038 clause 4) -----------------------------------------------


def dcs_alphabet(dcs: int) -> str:
    """ "gsm7", "8bit" or "ucs2" for a TP-DCS octet (reserved alphabets read as GSM 7-bit, as the
    spec tells receivers to)."""
    group = dcs >> 4
    if group <= 0b0111:  # general data coding (and its auto-deletion twin)
        if dcs & 0x20:
            raise PduError(f"TP-DCS {dcs:02X}: compressed text is not supported")
        return ("gsm7", "8bit", "ucs2", "gsm7")[(dcs >> 2) & 3]
    if group in (0b1100, 0b1101):  # message waiting, discard/store, GSM 7-bit
        return "gsm7"
    if group == 0b1110:  # message waiting, store, UCS2
        return "ucs2"
    if group == 0b1111:  # data coding/message class
        return "8bit" if dcs & 0x04 else "gsm7"
    return "gsm7"  # 1000..1011 reserved


def make_dcs(coding: str, message_class: int | None = None) -> int:
    alphabet = {"gsm7": 0, "8bit": 1, "ucs2": 2}[coding]
    if message_class is None:
        return alphabet << 2
    return 0x10 | (alphabet << 2) | (message_class & 3)


# --- user data (TS 23.040 9.2.3.16, 9.2.3.24) ----------------------------------------------


def _udh(concat: tuple[int, int, int] | None, concat16: bool, other: tuple[tuple[int, bytes], ...]) -> bytes:
    ies = b""
    if concat is not None:
        ref, total, seq = concat
        if concat16 or ref > 255:
            ies += bytes([0x08, 4]) + ref.to_bytes(2, "big") + bytes([total, seq])
        else:
            ies += bytes([0x00, 3, ref, total, seq])
    for iei, data in other:
        ies += bytes([iei, len(data)]) + data
    return bytes([len(ies)]) + ies if ies else b""


def _encode_ud(text: str, coding: str, data: bytes, udh: bytes) -> tuple[int, bytes]:
    """(TP-UDL, TP-UD)."""
    if coding == "gsm7":
        septets = gsm7.encode(text)
        hdr_septets = (len(udh) * 8 + 6) // 7
        fill = hdr_septets * 7 - len(udh) * 8
        udl = hdr_septets + len(septets)
        if udl > 160:
            raise PduError(f"{udl} septets do not fit one SMS (160 at most)")
        return udl, udh + gsm7.pack(septets, fill)
    payload = text.encode("utf-16-be") if coding == "ucs2" else data
    if len(udh) + len(payload) > 140:
        raise PduError(f"{len(udh) + len(payload)} octets of user data do not fit one SMS (140 at most)")
    return len(udh) + len(payload), udh + payload


@dataclass(frozen=True, slots=True)
class _UserData:
    text: str
    coding: str
    data: bytes
    concat: tuple[int, int, int] | None
    concat16: bool
    ies: tuple[tuple[int, bytes], ...]
    octets: bytes = b""  # UCS-2 user data as received (see SmsDeliver.octets)


def _decode_ud(buf: bytes, udhi: bool, coding: str) -> _UserData:
    if not buf:
        raise PduError("TP-UDL missing")
    udl, ud = buf[0], buf[1:]
    udh = b""
    if udhi:
        if not ud:
            raise PduError("TP-UDHI set but the user data is empty")
        udhl = ud[0]
        udh = ud[: 1 + udhl]
        if len(udh) < 1 + udhl:
            raise PduError("user data header truncated")
    concat, concat16, ies = None, False, []
    i = 1
    while i < len(udh):
        if i + 2 > len(udh) or i + 2 + udh[i + 1] > len(udh):
            raise PduError("information element runs past the user data header")
        iei, ln = udh[i], udh[i + 1]
        value = udh[i + 2 : i + 2 + ln]
        if iei == 0x00 and ln == 3:
            concat = (value[0], value[1], value[2])
        elif iei == 0x08 and ln == 4:
            concat, concat16 = (int.from_bytes(value[:2], "big"), value[2], value[3]), True
        else:
            ies.append((iei, bytes(value)))
        i += 2 + ln
    if coding == "gsm7":
        hdr_septets = (len(udh) * 8 + 6) // 7
        count = udl - hdr_septets
        if count < 0:
            raise PduError(f"TP-UDL {udl} is shorter than the user data header")
        fill = hdr_septets * 7 - len(udh) * 8
        body = ud[len(udh) :]
        try:
            septets = gsm7.unpack(body, count, fill)
        except ValueError as exc:
            raise PduError(f"user data truncated: {exc}") from None
        return _UserData(gsm7.decode(septets), coding, b"", concat, concat16, tuple(ies))
    if udl > len(ud):
        raise PduError(f"TP-UDL {udl} but only {len(ud)} octets of user data")
    body = bytes(ud[len(udh) : udl])
    if coding == "ucs2":
        if len(body) % 2:
            body = body[:-1]
        text = body.decode("utf-16-be", errors="replace")
        # the octets too: a sender may split a surrogate pair across parts (Android 4.x did),
        # which only the joined octets decode
        return _UserData(text, coding, b"", concat, concat16, tuple(ies), body)
    return _UserData(body.decode("latin-1"), coding, body, concat, concat16, tuple(ies))


def _check_concat(msg: SmsSubmit | SmsDeliver) -> None:
    if msg.concat is None:
        return
    ref, total, seq = msg.concat
    if not (0 <= ref <= 0xFFFF and 1 <= total <= 255 and 1 <= seq <= total):
        raise PduError(f"bad concatenation (reference, parts, sequence): {msg.concat}")
    if ref > 0xFF:  # only IEI 0x08 can carry it
        object.__setattr__(msg, "concat16", True)


def _check_coding(coding: str) -> None:
    if coding not in CODINGS:
        raise PduError(f"coding must be one of {', '.join(CODINGS)}, not {coding!r}")


def _as_address(value: Address | str | None) -> Address | None:
    return Address.parse(value) if isinstance(value, str) else value


# --- messages --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmsSubmit:
    """MS -> SC (TS 23.040 9.2.2.2). ``validity`` is a relative TP-VP octet (167 = 24 h) or None."""

    recipient: Address
    text: str = ""
    coding: str = "gsm7"
    concat: tuple[int, int, int] | None = None  # (reference, parts, sequence 1..parts)
    concat16: bool = False  # IEI 0x08 (16-bit reference) instead of 0x00
    message_ref: int = 0
    status_report: bool = False  # TP-SRR
    validity: int | None = 167
    reject_duplicates: bool = False
    pid: int = 0
    message_class: int | None = None
    smsc: Address | None = None
    data: bytes = b""  # the payload of an 8-bit message
    # a UCS-2 message's octets as received: a sender may split a surrogate pair across parts
    # (Android 4.x did), which only the joined octets decode. Not part of equality.
    octets: bytes = field(default=b"", compare=False, repr=False)
    ies: tuple[tuple[int, bytes], ...] = ()  # other information elements (IEI, value)

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipient", _as_address(self.recipient))
        object.__setattr__(self, "smsc", _as_address(self.smsc))
        _check_coding(self.coding)
        _check_concat(self)
        if not 0 <= self.message_ref <= 255:
            raise PduError(f"TP-MR must be 0..255, not {self.message_ref}")
        if self.validity is not None and not 0 <= self.validity <= 255:
            raise PduError(f"TP-VP must be 0..255, not {self.validity}")


@dataclass(frozen=True, slots=True)
class SmsDeliver:
    """SC -> MS (TS 23.040 9.2.2.1)."""

    sender: Address
    text: str = ""
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    coding: str = "gsm7"
    concat: tuple[int, int, int] | None = None
    concat16: bool = False
    pid: int = 0
    message_class: int | None = None
    more_messages: bool = False  # TP-MMS is "no more" when False
    status_report_indication: bool = False  # TP-SRI
    reply_path: bool = False
    smsc: Address | None = None
    data: bytes = b""
    octets: bytes = field(default=b"", compare=False, repr=False)  # UCS-2 octets (see SmsSubmit)
    ies: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "sender", _as_address(self.sender))
        object.__setattr__(self, "smsc", _as_address(self.smsc))
        _check_coding(self.coding)
        _check_concat(self)


@dataclass(frozen=True, slots=True)
class SmsStatusReport:
    """SC -> MS (TS 23.040 9.2.2.3): what became of the SMS-SUBMIT with ``message_ref``."""

    message_ref: int
    recipient: Address
    timestamp: datetime  # TP-SCTS: when the SC received the SUBMIT
    discharge: datetime  # TP-DT: delivered, or the status changed
    status: int = 0  # TP-ST: 0 delivered; 0x40+ permanent error
    more_messages: bool = False
    qualifier: bool = False  # TP-SRQ: a report of an SMS-COMMAND
    smsc: Address | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipient", _as_address(self.recipient))
        object.__setattr__(self, "smsc", _as_address(self.smsc))
        if not 0 <= self.message_ref <= 255 or not 0 <= self.status <= 255:
            raise PduError("TP-MR and TP-ST are octets")

    @property
    def delivered(self) -> bool:
        return self.status < 0x20

    @property
    def meaning(self) -> str:
        return STATUS_MEANINGS.get(self.status, f"status {self.status:#04x}")


Message = SmsSubmit | SmsDeliver | SmsStatusReport


@dataclass(frozen=True, slots=True)
class EncodedPdu:
    hex: str  # upper-case, the SMSC field first
    tpdu_length: int  # octets after the SMSC field: the <length> of AT+CMGS / +CMGR

    def __str__(self) -> str:
        return self.hex


def encode(msg: Message, *, with_smsc: bool = True) -> EncodedPdu:
    """The PDU of a message, SMSC field first (``00``: the modem's default) unless
    ``with_smsc=False``."""
    if isinstance(msg, SmsSubmit):
        tpdu = _encode_submit(msg)
    elif isinstance(msg, SmsDeliver):
        tpdu = _encode_deliver(msg)
    elif isinstance(msg, SmsStatusReport):
        tpdu = _encode_status_report(msg)
    else:
        raise TypeError(f"not an SMS message: {msg!r}")
    smsc = _encode_smsc(msg.smsc) if with_smsc else b""
    return EncodedPdu((smsc + tpdu).hex().upper(), len(tpdu))


def _encode_submit(m: SmsSubmit) -> bytes:
    udh = _udh(m.concat, m.concat16, m.ies)
    first = (
        0x01
        | (0x04 if m.reject_duplicates else 0)
        | (0x10 if m.validity is not None else 0)
        | (0x20 if m.status_report else 0)
        | (0x40 if udh else 0)
    )
    udl, ud = _encode_ud(m.text, m.coding, m.data, udh)
    vp = bytes([m.validity]) if m.validity is not None else b""
    return (
        bytes([first, m.message_ref])
        + _encode_address(m.recipient)
        + bytes([m.pid, make_dcs(m.coding, m.message_class)])
        + vp
        + bytes([udl])
        + ud
    )


def _encode_deliver(m: SmsDeliver) -> bytes:
    udh = _udh(m.concat, m.concat16, m.ies)
    first = (
        0x00
        | (0 if m.more_messages else 0x04)
        | (0x20 if m.status_report_indication else 0)
        | (0x40 if udh else 0)
        | (0x80 if m.reply_path else 0)
    )
    udl, ud = _encode_ud(m.text, m.coding, m.data, udh)
    return (
        bytes([first])
        + _encode_address(m.sender)
        + bytes([m.pid, make_dcs(m.coding, m.message_class)])
        + _encode_time(m.timestamp)
        + bytes([udl])
        + ud
    )


def _encode_status_report(m: SmsStatusReport) -> bytes:
    first = 0x02 | (0 if m.more_messages else 0x04) | (0x20 if m.qualifier else 0)
    return (
        bytes([first, m.message_ref])
        + _encode_address(m.recipient)
        + _encode_time(m.timestamp)
        + _encode_time(m.discharge)
        + bytes([m.status])
    )


# --- decoding --------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise PduError(
                f"PDU truncated in {what} (needs {n} octet(s) at offset {self.pos}, has {len(self.data) - self.pos})"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def octet(self, what: str) -> int:
        return self.take(1, what)[0]

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out

    def address(self, what: str) -> Address:
        length = self.octet(what)
        toa = self.octet(what)
        ton, npi = (toa >> 4) & 7, toa & 0xF
        if ton == TON_ALPHANUMERIC:
            raw = self.take((length + 1) // 2, what)
            text = gsm7.decode(gsm7.unpack(raw, length * 4 // 7))
            return Address(text, ton, npi) if len(text) <= 11 else Address(text[:11], ton, npi)
        if length > 20:
            raise PduError(f"{what}: {length} digits is longer than any number")
        raw = self.take((length + 1) // 2, what)
        return _address(ton, npi, _from_semi_octets(raw, length))

    def smsc(self) -> Address | None:
        length = self.octet("SMSC length")
        if length == 0:
            return None
        if length > 11:
            raise PduError(f"SMSC field of {length} octets (at most 11): not an SMSC prefix")
        body = self.take(length, "SMSC address")
        ton, npi = (body[0] >> 4) & 7, body[0] & 0xF
        return _address(ton, npi, _from_semi_octets(body[1:]))


def _bytes(pdu: str | bytes) -> bytes:
    if isinstance(pdu, (bytes, bytearray)):
        return bytes(pdu)
    text = pdu.strip()
    if not _HEX.match(text):
        raise PduError(f"not a hex PDU: {text[:40]!r}")
    return bytes.fromhex(text)


def decode(pdu: str | bytes, *, with_smsc: bool = True) -> Message:
    """An SMS-DELIVER, SMS-SUBMIT or SMS-STATUS-REPORT from its PDU (TP-MTI 0, 1, 2 as a mobile
    sees them). ``with_smsc=False`` when the PDU starts at the TPDU."""
    r = _Reader(_bytes(pdu))
    smsc = r.smsc() if with_smsc else None
    first = r.octet("first octet")
    mti = first & 3
    if mti == 0:
        return _decode_deliver(r, first, smsc)
    if mti == 1:
        return _decode_submit(r, first, smsc)
    if mti == 2:
        return _decode_status_report(r, first, smsc)
    raise PduError(f"TP-MTI 3 is reserved (first octet {first:02X})")


def _dcs(dcs: int) -> tuple[str, int | None]:
    coding = dcs_alphabet(dcs)
    klass = None
    if dcs >> 4 == 0b1111 or (dcs >> 4 <= 0b0111 and dcs & 0x10):
        klass = dcs & 3
    return coding, klass


def _decode_deliver(r: _Reader, first: int, smsc: Address | None) -> SmsDeliver:
    sender = r.address("TP-OA")
    pid = r.octet("TP-PID")
    coding, klass = _dcs(r.octet("TP-DCS"))
    ts = _decode_time(r.take(7, "TP-SCTS"))
    ud = _decode_ud(r.rest(), bool(first & 0x40), coding)
    return SmsDeliver(
        sender,
        ud.text,
        ts,
        ud.coding,
        ud.concat,
        ud.concat16,
        pid,
        klass,
        more_messages=not first & 0x04,
        status_report_indication=bool(first & 0x20),
        reply_path=bool(first & 0x80),
        smsc=smsc,
        data=ud.data,
        ies=ud.ies,
        octets=ud.octets,
    )


def _decode_submit(r: _Reader, first: int, smsc: Address | None) -> SmsSubmit:
    mr = r.octet("TP-MR")
    recipient = r.address("TP-DA")
    pid = r.octet("TP-PID")
    coding, klass = _dcs(r.octet("TP-DCS"))
    vpf = (first >> 3) & 3
    validity = None
    if vpf == 2:
        validity = r.octet("TP-VP")
    elif vpf in (1, 3):  # enhanced / absolute: 7 octets, kept only as "given"
        r.take(7, "TP-VP")
        validity = 255
    ud = _decode_ud(r.rest(), bool(first & 0x40), coding)
    return SmsSubmit(
        recipient,
        ud.text,
        ud.coding,
        ud.concat,
        ud.concat16,
        mr,
        status_report=bool(first & 0x20),
        validity=validity,
        reject_duplicates=bool(first & 0x04),
        pid=pid,
        message_class=klass,
        smsc=smsc,
        data=ud.data,
        ies=ud.ies,
        octets=ud.octets,
    )


def _decode_status_report(r: _Reader, first: int, smsc: Address | None) -> SmsStatusReport:
    mr = r.octet("TP-MR")
    recipient = r.address("TP-RA")
    ts = _decode_time(r.take(7, "TP-SCTS"))
    dt = _decode_time(r.take(7, "TP-DT"))
    st = r.octet("TP-ST")
    return SmsStatusReport(
        mr, recipient, ts, dt, st, more_messages=not first & 0x04, qualifier=bool(first & 0x20), smsc=smsc
    )
