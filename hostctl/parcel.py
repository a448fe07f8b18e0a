"""Decode the Binder reply that ``adb shell service call SERVICE CODE`` prints.

``service call`` (AOSP ``cmds/service/service.cpp``) prints ``"Result: " << reply``;
``Parcel::print`` writes ``Parcel(`` + a hex dump made by libbinder/libutils ``printHexData`` +
``)``. The dump shows each 4-byte word as a little-endian int32 in hex (so a word's bytes appear
reversed), 16 bytes a line behind a ``0x%08x: `` offset, then the line's bytes between single
quotes with non-printables as dots. A reply of 16 bytes or less is one line with no offset and no
padding. Everything here is pure: text in, value (or a typed error) out; no I/O.

Variants handled, each with a real example (sources: AOSP code, and dumps quoted in public code):

* Android 2.x-13, short reply -- ``Parcel::print(TextOutput&)``, ``indent << HexDump << dedent``::

      Result: Parcel(00000000 00000001   '........')

  (AndroidViewClient's 2012 ``viewclient.py`` compares a reply with exactly this, ``\\r\\n``
  line end included.)
* Android 2.x-13, longer reply -- a newline, then lines indented by TextOutput (two spaces)::

      Result: Parcel(
        0x00000000: 00000000 0000000f 00350033 00360033 '........3.5.3.6.'
        0x00000010: 00360032 00370030 00300032 00300039 '2.6.0.7.2.0.9.0.'
        0x00000020: 00380033 00000039                   '3.8.9...        ')

  (an IMEI reply quoted in Chromium catapult's ``devil/android/device_utils.py``.)
* Android 14+ -- ``Parcel::print`` writes to a ``std::ostream`` with ``"\\t" << HexDump``
  (frameworks/native commit 7063b526, "libbinder : Use logging from liblog", 2022; absent from
  android-13, present from android-14): a tab after ``Parcel(`` and no indentation::

      Result: Parcel(\\t00000000    '....')
      Result: Parcel(\\t
      0x00000000: 00000001 00000000 00000001 00000000 '................'
      0x00000010: 00000000                            '....            ')

  (both quoted in public test suites, the first as "seen live on the Galaxy A36, Android 16".)
* The transaction itself failed (``errorCheck() != NO_ERROR``): ``Error: (void*)err
  "strerror(-err)"``, 8 hex digits from a 32-bit ``service`` binary, 16 from a 64-bit one::

      Result: Parcel(Error: 0xffffffb6 "Not a data message")
      Result: Parcel(Error: 0xffffffffffffffff "Operation not permitted")

  -> :class:`ParcelTransactionError` (status -74 = UNKNOWN_TRANSACTION, -1 = PERMISSION_DENIED).
* A reply with no data: ``Result: Parcel(NULL)`` (``parcel_bytes`` gives ``b""``; the decoders
  raise :class:`ParcelFormatError`). printHexData's own ``(empty)`` is treated the same.
* A reply carrying binder objects: ``Object #i @ 0x..: <type> = <binder>`` after the dump, on its
  own line before Android 14, glued to the last ``'`` from 14 on; skipped::

      Result: Parcel(
        0x00000000: 00000000 73682a85 00000100 00000002 '.....*hs........'
        0x00000010: 00000000 00000000 00000000 0000000c '................'
      Object #0 @ 0x4: 'sh*' = 2)

As people get them, too: ``\\r\\n`` or ``\\r\\r\\n`` line ends (adb shell v1 through a pty), text
before and after the ``Result:`` block (prompt, echoed command), extra indentation, upper- or
lower-case hex, offsets present or stripped, the ASCII column present or missing, ``)`` on the last
line or its own, and lines wrapped by a terminal (the break may fall between words, inside a word,
or inside the ASCII column; breaks inside ``Result: Parcel(`` or inside an offset are not mended).

The ASCII column is never read as hex: the bytes come from the words alone, and each column is
consumed by matching it against the text its own line's bytes must show (whitespace-tolerant), so
quotes, parentheses or hex-looking text inside it cannot end it early. A column that does not match
its words means the dump was damaged, and is an error rather than a guess. Offsets, when present,
must count the bytes so far. Dumps of data whose length is not a multiple of 4 (never a Parcel) are
read as printHexData prints them since 2017 (a short last word); older releases printed such a
tail wrongly.

Reply layout (``Parcel.writeNoException``/``writeException``, ``Parcel.readExceptionCode``):
int32 exception code (0 = none), then the result; for a string, int32 length in UTF-16 units
(-1 = null) then the units, NUL-terminated, padded to 4 bytes. Two Android 11+ reply headers may
come first, and are skipped exactly as ``Parcel.readExceptionCode`` does:

* -127 ``EX_HAS_NOTED_APPOPS_REPLY_HEADER`` (``AppOpsManager.prefixParcelWithAppOpsIfNeeded``):
  int32 count, then count x (string16 attribution tag, int64, int64); then the next int32 is read
  as the code again.
* -128 ``EX_HAS_STRICTMODE_REPLY_HEADER`` (``EX_HAS_REPLY_HEADER`` before Android 11): int32 header
  size *including that int32*, then StrictMode violations. It stands in for the 0 code: "fat
  response headers are currently only used when there are no exceptions", so no second code
  follows -- the result starts right after the header (libbinder ``Status::readFromParcel`` agrees).

A non-zero code raises :class:`ParcelExceptionError`, with the exception's message string16 when it
can be read. A length-0 string needs no terminator here: ``Result: Parcel(00000000 00000000
'........')`` -- also what any int 0 / ``false`` reply looks like -- decodes to ``""``, where Java's
``readString`` would find no room for the NUL and give null. A longer string must have all its units
and, if the reply goes on, its NUL. Strings are decoded with ``surrogatepass``, so a Java string
holding a lone surrogate comes back as it was instead of failing.
"""

from __future__ import annotations

import re
import struct

__all__ = [
    "EXCEPTION_NAMES",
    "ParcelError",
    "ParcelExceptionError",
    "ParcelFormatError",
    "ParcelTransactionError",
    "decode_parcel",
    "decode_parcel_int",
    "parcel_bytes",
]

EX_HAS_NOTED_APPOPS_REPLY_HEADER = -127
EX_HAS_STRICTMODE_REPLY_HEADER = -128

#: The exception codes of android.os.Parcel (EX_SECURITY ... EX_TRANSACTION_FAILED), named after the
#: exception a Java client gets; -9 and -129 have no fixed Java class and are named after the constant.
EXCEPTION_NAMES: dict[int, str] = {
    -1: "SecurityException",
    -2: "BadParcelableException",
    -3: "IllegalArgumentException",
    -4: "NullPointerException",
    -5: "IllegalStateException",
    -6: "NetworkOnMainThreadException",
    -7: "UnsupportedOperationException",
    -8: "ServiceSpecificException",
    -9: "ParcelableException",
    -129: "TransactionFailedException",
}


class ParcelError(ValueError):
    """The text is not a usable `service call` reply (base of every error raised here)."""


class ParcelFormatError(ParcelError):
    """Not a well-formed ``Result: Parcel(...)`` dump, or its bytes are not the expected reply."""


class ParcelTransactionError(ParcelError):
    """``Result: Parcel(Error: 0x... "...")``: the transaction itself failed (e.g. an unknown code)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status  # a negative errno / status_t, e.g. -74 (UNKNOWN_TRANSACTION)
        self.message = message  # strerror(-status) as the handset printed it
        super().__init__(f"transaction failed with status {status}: {message}")

    def __reduce__(self):
        return type(self), (self.status, self.message)


class ParcelExceptionError(ParcelError):
    """The service answered with an exception: a non-zero exception code in the reply."""

    def __init__(self, code: int, message: str | None) -> None:
        self.code = code
        self.name = EXCEPTION_NAMES.get(code, "UnknownException")
        self.message = message  # the exception's message; None if null or unreadable
        text = f"{self.name} (exception code {code})"
        super().__init__(text if message is None else f"{text}: {message}")

    def __reduce__(self):
        return type(self), (self.code, self.message)


# --- the dump ---------------------------------------------------------------------------------

_RESULT_RE = re.compile(r"Result:[ \t]*Parcel\(")
_ERROR_RE = re.compile(r'Error:\s*(0[xX][0-9a-fA-F]{1,16}|-?[0-9]{1,20})(?![0-9a-zA-Z])(?:\s*"([^"]*)")?')
_OFFSET_RE = re.compile(r"0[xX]([0-9a-fA-F]{8}):")
_WORD_RE = re.compile(r"[0-9a-fA-F]+(?=[\s')]|\Z)")
_WRAPPED_WORD_RE = re.compile(r"\n[ \t]*([0-9a-fA-F]+)(?=[\s')]|\Z)")


def parcel_bytes(text: str | bytes) -> bytes:
    """The reply bytes a ``Result: Parcel(...)`` dump shows (``b""`` for ``Parcel(NULL)``).

    Raises :class:`ParcelTransactionError` for ``Parcel(Error: ...)`` and
    :class:`ParcelFormatError` for anything that is not a well-formed dump.
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    s = re.sub(r"\r+\n?", "\n", text)
    m = _RESULT_RE.search(s)
    if m is None:
        raise ParcelFormatError("no 'Result: Parcel(' in the text")
    fast = _canonical_dump(s, m.end())
    if fast is not None:
        return fast
    p = _skip_space(s, m.end())
    if s.startswith("Error:", p):
        raise _transaction_error(s, p)
    for empty in ("NULL", "(empty)"):
        if s.startswith(empty, p):
            q = _skip_space(s, p + len(empty))
            if s.startswith(")", q):
                return b""
    return _scan_dump(s, p)


# The layout `service call` prints up to Android 13, read line by line with one regex; anything
# else (wraps, stripped offsets, Android 14's layout, damage) goes to the general scanner.
_CANON_LINE = re.compile(
    r"[ \t]*0x([0-9a-fA-F]{8}): ((?:[0-9a-fA-F]{8} ){0,3}[0-9a-fA-F]{8}) +"
    r"'(.{16})'(\))?\n?"
)
_CANON_ONE = re.compile(r"((?:[0-9a-fA-F]{8} ){0,3}[0-9a-fA-F]{8}) +'(.{1,16})'\)")
_SHOWN = bytes(b if 32 <= b < 127 else 46 for b in range(256))  # printHexData's ASCII column


def _words(text: str) -> bytes:
    return b"".join(bytes.fromhex(w)[::-1] for w in text.split(" "))


def _canonical_dump(s: str, p: int) -> bytes | None:
    """The bytes of a dump in the exact canonical layout, or None to use the general scanner."""
    m = _CANON_ONE.match(s, p)
    if m:
        data = _words(m.group(1))
        return data if data.translate(_SHOWN).decode() == m.group(2) else None
    if not s.startswith("\n", p):
        return None
    got, p = bytearray(), p + 1
    while True:
        m = _CANON_LINE.match(s, p)
        if m is None or int(m.group(1), 16) != len(got):
            return None
        chunk = _words(m.group(2))
        if chunk.translate(_SHOWN).decode().ljust(16) != m.group(3):
            return None
        got += chunk
        p = m.end()
        if m.group(4):
            return bytes(got)
        if len(chunk) != 16:
            return None


def _skip_space(s: str, p: int) -> int:
    while p < len(s) and s[p].isspace():
        p += 1
    return p


def _transaction_error(s: str, p: int) -> ParcelError:
    m = _ERROR_RE.match(s, p)
    if m is None:
        return ParcelFormatError(f"unreadable transaction error: {s[p : p + 40]!r}")
    number = m.group(1)
    if number[:2] in ("0x", "0X"):
        # (void*)(intptr_t)err: 8 digits from a 32-bit binary, 16 from a 64-bit one
        bits = 64 if len(number) > 10 else 32
        status = int(number, 16)
        if status >= 1 << (bits - 1):
            status -= 1 << bits
    else:
        status = int(number)
    return ParcelTransactionError(status, (m.group(2) or "").replace("\n", ""))


def _scan_dump(s: str, p: int) -> bytes:
    """Read words (and skip offsets and ASCII columns) from ``s[p:]`` up to the closing ``)``."""
    data = bytearray()
    line_start = 0  # where the bytes of the dump line being read begin
    short_word = False
    while True:
        p = _skip_space(s, p)
        if p >= len(s):
            raise ParcelFormatError("the dump ends before its closing ')'")
        if s[p] == ")":
            return bytes(data)
        if s.startswith("Object #", p):  # binder objects listed after the data
            if s.find(")", p) < 0:
                raise ParcelFormatError("the dump ends before its closing ')'")
            return bytes(data)
        m = _OFFSET_RE.match(s, p)
        if m:
            offset = int(m.group(1), 16)
            if offset != len(data):
                raise ParcelFormatError(
                    f"offset 0x{offset:08x} where 0x{len(data):08x} was due (a line is missing or repeated)"
                )
            line_start, p = len(data), m.end()
            continue
        m = _WORD_RE.match(s, p)
        if m:
            word, p = m.group(), m.end()
            while len(word) < 8:  # a terminal wrap inside the word: "0035\n0033"
                w = _WRAPPED_WORD_RE.match(s, p)
                if w is None or len(word) + len(w.group(1)) > 8:
                    break
                word, p = word + w.group(1), w.end()
            if len(word) > 8 or len(word) % 2:
                raise ParcelFormatError(f"{word[:20]!r} is not a word of 1-4 bytes in hex")
            if short_word:
                raise ParcelFormatError("a word shorter than 4 bytes is not the last one")
            short_word = len(word) < 8
            data += bytes.fromhex(word)[::-1]
            continue
        if s[p] == "'":
            p = _skip_ascii_column(s, p, bytes(data[line_start:]))
            line_start = len(data)
            continue
        raise ParcelFormatError(f"unexpected text in the dump: {s[p : p + 20]!r}")


def _skip_ascii_column(s: str, p: int, line: bytes) -> int:
    """Consume the quoted column at ``s[p]`` that must show ``line``; return the position after it."""
    if len(line) > 16:  # offsets stripped and an earlier line without its column
        line = line[-((len(line) - 1) % 16 + 1) :]
    expected = "".join(chr(b) if 32 <= b < 127 else "." for b in line)
    start, p = p, p + 1
    i = 0
    wrapped = False  # just after a line break: indentation may follow
    while i < len(expected):
        if p >= len(s):
            raise ParcelFormatError("the dump ends inside an ASCII column")
        c, e = s[p], expected[i]
        if c == e:
            i, p = i + 1, p + 1
            wrapped = wrapped and c == " "
        elif c == "\n":
            p, wrapped = p + 1, True
        elif wrapped and c in " \t":
            p += 1
        elif e == " ":  # a space lost where a terminal wrapped the line
            i += 1
        else:
            raise ParcelFormatError(
                f"the ASCII column does not match its hex words: expected "
                f"{expected!r}, found {s[start + 1 : p + 1]!r}..."
            )
    while p < len(s) and s[p] in " \t\n":  # the last line's padding
        p += 1
    if not s.startswith("'", p):
        raise ParcelFormatError(f"the ASCII column {expected!r} is not closed where it should be: {s[p : p + 20]!r}")
    return p + 1


# --- the reply --------------------------------------------------------------------------------


def _int32(data: bytes, pos: int, what: str) -> int:
    if pos + 4 > len(data):
        raise ParcelFormatError(f"the reply ({len(data)} bytes) ends before {what}")
    return struct.unpack_from("<i", data, pos)[0]


def _string16(data: bytes, pos: int, what: str) -> tuple[str | None, int]:
    """``Parcel.readString16`` at ``pos``: (value, position after it)."""
    n = _int32(data, pos, f"the length of {what}")
    pos += 4
    if n == -1:
        return None, pos
    if n < 0:
        raise ParcelFormatError(f"{what} has a negative length ({n})")
    end = pos + 2 * n
    if end > len(data):
        raise ParcelFormatError(
            f"{what} is {n} UTF-16 units long but the reply holds only {(len(data) - pos) // 2} after its length"
        )
    if end + 2 <= len(data) and data[end : end + 2] != b"\0\0":
        raise ParcelFormatError(f"{what} is not NUL-terminated after its {n} units")
    return data[pos:end].decode("utf-16-le", "surrogatepass"), min(end + 2 + (-(end + 2) % 4), len(data))


def _result_offset(data: bytes) -> int:
    """Skip the reply header (``Parcel.readExceptionCode``); raise if it carries an exception."""
    if not data:
        raise ParcelFormatError("the reply is empty (Parcel(NULL)): there is no exception code")
    code, pos = _int32(data, 0, "the exception code"), 4
    if code == EX_HAS_NOTED_APPOPS_REPLY_HEADER:
        count = _int32(data, pos, "the noted-app-ops count")
        pos += 4
        if count < 0:
            raise ParcelFormatError(f"the noted-app-ops header counts {count} entries")
        for _ in range(count):
            _, pos = _string16(data, pos, "an app-op attribution tag")
            if pos + 16 > len(data):
                raise ParcelFormatError("the reply ends inside the noted-app-ops header")
            pos += 16
        code = _int32(data, pos, "the exception code after the noted-app-ops header")
        pos += 4
    if code == EX_HAS_STRICTMODE_REPLY_HEADER:
        size = _int32(data, pos, "the StrictMode reply header size")
        size = size or 4  # Java logs "Unexpected zero-sized Parcel reply header." and reads on
        if size < 4 or pos + size > len(data):
            raise ParcelFormatError(
                f"the StrictMode reply header claims {size} bytes at offset {pos} of a {len(data)}-byte reply"
            )
        return pos + size
    if code != 0:
        try:
            message, _ = _string16(data, pos, "the exception message")
        except ParcelFormatError:
            message = None
        raise ParcelExceptionError(code, message)
    return pos


def decode_parcel(text: str | bytes) -> str | None:
    """The string16 a `service call` reply carries (e.g. ``service call iphonesubinfo 1``).

    Returns the string, ``None`` for a null string (length -1) and ``""`` for an empty one
    (length 0). Raises :class:`ParcelExceptionError` if the service threw,
    :class:`ParcelTransactionError` if the transaction failed, :class:`ParcelFormatError` otherwise.
    """
    data = parcel_bytes(text)
    value, _ = _string16(data, _result_offset(data), "the string")
    return value


def decode_parcel_int(text: str | bytes) -> int:
    """The int32 a `service call` reply carries after its exception code (booleans are 0/1)."""
    data = parcel_bytes(text)
    return _int32(data, _result_offset(data), "the int32 result")
