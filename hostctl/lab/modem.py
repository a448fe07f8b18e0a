"""The lab's GSM modem (the peer phone), driven over AT commands with pyserial.

``Modem.open(port)`` takes a device path (``/dev/ttyUSB2``, the emulated modem's
``/dev/pts/N``) or any pyserial URL (``socket://127.0.0.1:PORT``, ``loop://``, ``rfc2217://``),
so the same code runs on hardware, on the emulated lab and in memory.

How it reads: every byte read is kept in one buffer and split into lines; lines that are
unsolicited result codes (``+CMTI``, ``+CMT`` with its PDU line, ``+CDS``, ``+CDSI``,
``+CREG``... when not asked for) go to a queue whatever command is running, so a URC arriving
in the middle of another command's response is kept and that command still completes.
Nothing read is dropped: bytes after a final result code wait for the next call. Every call
has a deadline; a port that vanishes raises ``ModemGoneError``.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import HostctlError
from ..sms.errors import cme_meaning, cms_meaning
from ..sms.pdu import (
    Address,
    EncodedPdu,
    PduError,
    SmsDeliver,
    SmsStatusReport,
    SmsSubmit,
    decode,
    encode,
    validity_from_seconds,
)
from ..sms.split import split_message

__all__ = [
    "CmeError",
    "CmsError",
    "Modem",
    "ModemCommandError",
    "ModemError",
    "ModemGoneError",
    "ModemInfo",
    "ModemOpenError",
    "ModemProtocolError",
    "ModemTimeoutError",
    "Registration",
    "SignalQuality",
    "Sms",
    "StoredSms",
    "Urc",
]

DEFAULT_TIMEOUT = 10.0
SEND_TIMEOUT = 60.0  # the network's answer to +CMGS can take a while on real networks
_READ_SLICE = 0.05

FINAL_OK = ("OK",)
FINAL_ERRORS = ("ERROR", "NO CARRIER", "NO DIALTONE", "BUSY", "NO ANSWER", "COMMAND NOT SUPPORT", "TOO MANY PARAMETERS")
# lines that are unsolicited unless the running command asked for that prefix ("^" and "*":
# vendor URCs such as Huawei's ^RSSI / ^BOOT)
URC_PREFIXES = (
    "+CMTI:",
    "+CMT:",
    "+CDS:",
    "+CDSI:",
    "+CBM:",
    "+CREG:",
    "+CGREG:",
    "+CEREG:",
    "RING",
    "+CRING:",
    "+CLIP:",
    "+CUSD:",
    "^",
    "*",
    "+PBREADY",
    "+CPIN:",
    "+CFUN:",
    "+QIND:",
    "+STIN:",
    "+CIEV:",
)
_TWO_LINE_URCS = ("+CMT:", "+CDS:", "+CBM:")

REGISTRATION = {
    0: "not registered, not searching",
    1: "registered, home network",
    2: "not registered, searching",
    3: "registration denied",
    4: "unknown",
    5: "registered, roaming",
}


# --- errors -----------------------------------------------------------------------------------


class ModemError(HostctlError):
    """Something went wrong with the modem on ``port``."""

    def __init__(self, message: str, *, port: str, command: str | None = None, lines: Iterable[str] = ()) -> None:
        self.port = port
        self.command = command
        self.lines = list(lines)
        super().__init__(message)


class ModemOpenError(ModemError):
    """The port could not be opened (no such device, busy, permission, bad URL)."""


class ModemGoneError(ModemError):
    """The port vanished (unplugged, the emulated lab stopped) while in use."""


class ModemTimeoutError(ModemError):
    """No final result code within the deadline. ``lines`` holds what did come."""

    def __init__(self, message: str, *, timeout: float, **kw: Any) -> None:
        self.timeout = timeout
        super().__init__(message, **kw)


class ModemProtocolError(ModemError):
    """The modem answered something that cannot be what the command returns."""


class ModemCommandError(ModemError):
    """The command ended in ERROR (or NO CARRIER, ...): ``result`` is that final line."""

    def __init__(self, message: str, *, result: str, **kw: Any) -> None:
        self.result = result
        super().__init__(message, **kw)


class CmeError(ModemCommandError):
    """``+CME ERROR: <code>`` (3GPP TS 27.007 9.2): ``code`` and ``meaning``."""

    def __init__(self, code: int | None, meaning: str, **kw: Any) -> None:
        self.code, self.meaning = code, meaning
        super().__init__(f"+CME ERROR {code if code is not None else ''}: {meaning}".replace(" :", ":"), **kw)


class CmsError(ModemCommandError):
    """``+CMS ERROR: <code>`` (3GPP TS 27.005 3.2.5): ``code`` and ``meaning``."""

    def __init__(self, code: int | None, meaning: str, **kw: Any) -> None:
        self.code, self.meaning = code, meaning
        super().__init__(f"+CMS ERROR {code if code is not None else ''}: {meaning}".replace(" :", ":"), **kw)


# --- values -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Urc:
    """An unsolicited result code: the line, and the PDU line that follows a +CMT / +CDS."""

    line: str
    data: str | None = None
    received: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return self.line.split(":", 1)[0].strip()

    @property
    def args(self) -> list[str]:
        rest = self.line.split(":", 1)[1] if ":" in self.line else ""
        return _split_fields(rest)


@dataclass(frozen=True, slots=True)
class Registration:
    stat: int
    lac: str | None = None
    cell_id: str | None = None

    @property
    def registered(self) -> bool:
        return self.stat in (1, 5)

    @property
    def meaning(self) -> str:
        return REGISTRATION.get(self.stat, f"status {self.stat}")


@dataclass(frozen=True, slots=True)
class SignalQuality:
    rssi: int  # 0..31, 99 unknown
    ber: int  # 0..7, 99 unknown

    @property
    def dbm(self) -> int | None:
        return None if self.rssi == 99 else -113 + 2 * self.rssi


@dataclass(frozen=True, slots=True)
class ModemInfo:
    manufacturer: str
    model: str
    revision: str
    imei: str
    imsi: str | None
    iccid: str | None
    number: str | None
    sim: str | None
    registration: Registration | None
    signal: SignalQuality | None
    operator: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "manufacturer": self.manufacturer,
            "model": self.model,
            "revision": self.revision,
            "imei": self.imei,
            "imsi": self.imsi,
            "iccid": self.iccid,
            "number": self.number,
            "sim": self.sim,
            "operator": self.operator,
            "registration": None
            if self.registration is None
            else {
                "stat": self.registration.stat,
                "meaning": self.registration.meaning,
                "registered": self.registration.registered,
                "lac": self.registration.lac,
                "cell_id": self.registration.cell_id,
            },
            "signal": None
            if self.signal is None
            else {"rssi": self.signal.rssi, "ber": self.signal.ber, "dbm": self.signal.dbm},
        }


STATUS_NAMES = ("REC UNREAD", "REC READ", "STO UNSENT", "STO SENT")


@dataclass(frozen=True, slots=True)
class StoredSms:
    """One stored message (one PDU) as ``+CMGR``/``+CMGL`` give it in PDU mode."""

    index: int
    status: str  # REC UNREAD | REC READ | STO UNSENT | STO SENT
    message: SmsDeliver | SmsSubmit | SmsStatusReport
    storage: str | None = None

    @property
    def address(self) -> str:
        m = self.message
        return str(m.sender if isinstance(m, SmsDeliver) else m.recipient)

    @property
    def text(self) -> str:
        return getattr(self.message, "text", "")


@dataclass(frozen=True, slots=True)
class Sms:
    """A whole message: concatenated parts joined, in order."""

    sender: str
    text: str
    timestamp: datetime | None
    parts: tuple[StoredSms, ...]
    complete: bool = True

    @property
    def indexes(self) -> list[int]:
        return [p.index for p in self.parts]

    def to_json(self) -> dict[str, Any]:
        return {
            "sender": self.sender,
            "text": self.text,
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
            "indexes": self.indexes,
            "complete": self.complete,
            "status": sorted({p.status for p in self.parts}),
        }


def join_parts(items: Iterable[StoredSms]) -> list[Sms]:
    """Received messages with their concatenated parts joined (incomplete ones kept, flagged)."""
    singles: list[Sms] = []
    groups: dict[tuple[str, int, int], list[tuple[int, StoredSms, SmsDeliver]]] = {}  # (sequence, stored, PDU)
    order: list[Any] = []
    for st in items:
        m = st.message
        if not isinstance(m, SmsDeliver):
            continue
        if m.concat is None:
            order.append(Sms(str(m.sender), m.text, m.timestamp, (st,)))
            continue
        key = (str(m.sender), m.concat[0], m.concat[1])
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append((m.concat[2], st, m))
    for item in order:
        if isinstance(item, Sms):
            singles.append(item)
            continue
        entries = sorted(groups[item], key=lambda e: e[0])
        parts = [st for _, st, _ in entries]
        pdus = [pdu for _, _, pdu in entries]
        seqs = {seq for seq, _, _ in entries}
        complete = seqs == set(range(1, item[2] + 1))
        if all(pdu.coding == "ucs2" and pdu.octets for pdu in pdus):
            # join the octets, not the texts: a surrogate pair may straddle two parts
            text = b"".join(pdu.octets for pdu in pdus).decode("utf-16-be", errors="replace")
        else:
            text = "".join(p.text for p in parts)
        singles.append(Sms(item[0], text, pdus[0].timestamp, tuple(parts), complete))
    return singles


def _split_fields(text: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text.strip():
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return out


# --- the driver ----------------------------------------------------------------------------------


class Modem:
    """A GSM modem on a serial port or pyserial URL. Thread-safe: one command at a time."""

    def __init__(self, port: Any, *, name: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._port = port
        self.name = name or str(getattr(port, "port", None) or port)
        self.timeout = timeout
        self._buf = bytearray()
        self._urcs: deque[Urc] = deque()
        self._lock = threading.RLock()
        self._closed = False
        self._mem_read: str | None = None
        self.unclaimed: list[str] = []  # lines that answered no running command (late answers)
        self._mr_reports: dict[int, SmsStatusReport] = {}

    # -- opening and closing ----------------------------------------------------------------------

    @classmethod
    def open(cls, port: str, *, baudrate: int = 115200, timeout: float = DEFAULT_TIMEOUT, init: bool = True) -> Modem:
        """Open a path or URL, then (``init``) bring the modem to a known state."""
        import serial

        try:
            ser = serial.serial_for_url(
                port, baudrate=baudrate, timeout=_READ_SLICE, write_timeout=timeout, do_not_open=False
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ModemOpenError(f"cannot open modem port {port}: {exc}", port=port) from None
        modem = cls(ser, name=port, timeout=timeout)
        if init:
            try:
                modem.initialise()
            except BaseException:
                modem.close()
                raise
        return modem

    def close(self) -> None:
        self._closed = True
        try:
            self._port.close()
        except Exception:  # noqa: BLE001 - closing a vanished port must not raise
            pass

    def __enter__(self) -> Modem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw I/O ----------------------------------------------------------------------------------

    def _write(self, data: bytes, command: str | None) -> None:
        import serial

        try:
            self._port.write(data)
            flush = getattr(self._port, "flush", None)
            if flush is not None:
                flush()
        except serial.SerialTimeoutException:
            raise ModemTimeoutError(
                f"{self.name}: writing {command!r} did not finish within {self.timeout:.0f} s",
                port=self.name,
                command=command,
                timeout=self.timeout,
            ) from None
        except (serial.SerialException, OSError, AttributeError, TypeError) as exc:
            raise self._gone(command, exc) from None

    def _gone(self, command: str | None, exc: BaseException) -> ModemGoneError:
        return ModemGoneError(f"{self.name}: the modem port went away ({exc})", port=self.name, command=command)

    def _fill(self, deadline: float, command: str | None, *, block: bool = True) -> bool:
        """Read what is there (waiting one read slice for a first byte when ``block``); False
        when nothing came."""
        import serial

        if self._closed:
            raise ModemGoneError(f"{self.name}: the modem port is closed", port=self.name, command=command)
        try:
            waiting = getattr(self._port, "in_waiting", 0)
            if not waiting and not block:
                return False
            data = self._port.read(min(waiting or 1, 4096))
        except (serial.SerialException, OSError, AttributeError, TypeError) as exc:
            raise self._gone(command, exc) from None
        if data:
            self._buf += data
        return bool(data)

    def _take_line(self) -> str | None:
        """The next complete line from the buffer (without its end), or None."""
        m = re.search(rb"\r\n|\r|\n", self._buf)
        if m is None:
            return None
        if m.group() == b"\r" and m.end() == len(self._buf):
            return None  # maybe a CR LF split over two reads: wait for more
        line = bytes(self._buf[: m.start()])
        del self._buf[: m.end()]
        return line.replace(b"\x00", b"").decode("latin-1").strip()

    def _read_lines(self, deadline: float, command: str | None) -> Iterable[str]:
        """Lines as they arrive until the deadline; URCs are diverted to the queue by the caller."""
        while True:
            line = self._take_line()
            if line is not None:
                yield line
                continue
            if time.monotonic() >= deadline:
                return
            self._fill(deadline, command)

    # -- URCs --------------------------------------------------------------------------------------

    def _is_urc(self, line: str, asked: tuple[str, ...]) -> bool:
        if any(line.startswith(a) for a in asked):
            return False
        return line.startswith(URC_PREFIXES)

    def _keep_urc(self, line: str, deadline: float = 0.0, data: str | None = None) -> None:
        """Queue a URC; a two-line one (+CMT, +CDS with a PDU) takes its second line from the
        port unless ``data`` is given."""
        if data is None and line.startswith(_TWO_LINE_URCS):
            data = self._next_line(deadline or time.monotonic() + 2.0)
        urc = Urc(line, data)
        if urc.name == "+CDS" and data:
            try:
                report = decode(data)
                if isinstance(report, SmsStatusReport):
                    self._mr_reports[report.message_ref] = report
            except PduError:
                pass
        self._urcs.append(urc)

    def _next_line(self, deadline: float) -> str | None:
        while True:
            line = self._take_line()
            if line is not None:
                return line
            if time.monotonic() >= deadline:
                return None
            self._fill(deadline, None)

    def poll(self, timeout: float = 0.0) -> list[Urc]:
        """Read what the modem sent on its own (waiting up to ``timeout``) and return every
        URC queued so far, oldest first."""
        with self._lock:
            deadline = time.monotonic() + timeout
            while True:
                while (line := self._take_line()) is not None:
                    if line and self._is_urc(line, ()):
                        self._keep_urc(line, deadline=deadline + 2.0)
                if self._urcs or time.monotonic() >= deadline:
                    break
                self._fill(deadline, None)
            out = list(self._urcs)
            self._urcs.clear()
            return out

    def wait_urc(self, prefix: str, timeout: float | None = None) -> Urc:
        """The next URC whose line starts with ``prefix`` (others stay queued)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._lock:
            while True:
                for urc in list(self._urcs):
                    if urc.line.startswith(prefix):
                        self._urcs.remove(urc)
                        return urc
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ModemTimeoutError(
                        f"{self.name}: no {prefix} within {timeout or self.timeout:.1f} s",
                        port=self.name,
                        timeout=timeout or self.timeout,
                    )
                line = self._next_line(deadline)
                if line and self._is_urc(line, ()):
                    self._keep_urc(line, deadline=deadline + 2.0)

    # -- commands ----------------------------------------------------------------------------------

    def command(self, cmd: str, *, timeout: float | None = None) -> list[str]:
        """Run one command line (``AT`` prefix added if missing); its information lines."""
        with self._lock:
            return self._command(cmd, timeout=timeout)

    def _command(self, cmd: str, *, timeout: float | None = None, body: bytes | None = None) -> list[str]:
        line = cmd if cmd[:2].upper() == "AT" else "AT" + cmd
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        self._drain_stale(line)
        asked = tuple(m.group() + ":" for m in re.finditer(r"[+^$%][A-Z0-9]+", line.upper()))
        self._write(line.encode("latin-1") + b"\r", line)
        if body is not None:
            self._await_prompt(line, deadline)
            self._write(body + b"\x1a", line)
        info: list[str] = []
        gen = self._read_lines(deadline, line)
        for text in gen:
            if not text or text == line or text.upper() == line.upper():
                continue  # blank line or the echo
            if text.startswith(">") and body is not None:
                continue
            if self._is_urc(text, asked):
                self._keep_urc(text, deadline=deadline)
                continue
            final = self._final(text, line, info)
            if final:
                return info
            info.append(text)
        raise ModemTimeoutError(
            f"{self.name}: {line} got no final result code within {limit:g} s"
            + (f" (got: {' | '.join(info)[:200]})" if info else ""),
            port=self.name,
            command=line,
            lines=info,
            timeout=limit,
        )

    def _drain_stale(self, line: str) -> None:
        """Before a command: lines already here (a late answer to a command that timed out,
        URCs) are not this command's. URCs are queued; the rest is kept in ``unclaimed``."""
        while self._fill(time.monotonic(), line, block=False):
            pass
        while (text := self._take_line()) is not None:
            if not text:
                continue
            if self._is_urc(text, ()):
                self._keep_urc(text, deadline=time.monotonic() + 1.0)
            else:
                self.unclaimed.append(text)
        del self.unclaimed[:-100]

    def _final(self, text: str, line: str, info: list[str]) -> bool:
        if text in FINAL_OK or text == "0":
            return True
        if text.startswith("+CME ERROR:"):
            code, meaning = self._code(text, cme_meaning)
            raise CmeError(code, meaning, port=self.name, command=line, lines=info, result=text)
        if text.startswith("+CMS ERROR:"):
            code, meaning = self._code(text, cms_meaning)
            raise CmsError(code, meaning, port=self.name, command=line, lines=info, result=text)
        if text in FINAL_ERRORS or text == "4":
            raise ModemCommandError(
                f"{self.name}: {line} -> {text}", port=self.name, command=line, lines=info, result=text
            )
        return False

    @staticmethod
    def _code(text: str, meaning: Any) -> tuple[int | None, str]:
        value = text.split(":", 1)[1].strip()
        if value.isdigit():
            return int(value), meaning(int(value))
        return None, value  # +CMEE=2: the modem's own words

    def _await_prompt(self, line: str, deadline: float) -> None:
        """Wait for the ``> `` prompt of +CMGS/+CMGW (which has no line end)."""
        while True:
            idx = self._buf.find(b">")
            if idx >= 0:
                before = bytes(self._buf[:idx])
                del self._buf[: idx + 1]
                if self._buf[:1] == b" ":
                    del self._buf[:1]
                texts = [
                    t
                    for t in (r.decode("latin-1").strip() for r in re.split(rb"\r\n|\r|\n", before))
                    if t and t.upper() != line.upper()
                ]
                i = 0
                while i < len(texts):  # URCs that came before the prompt, as anywhere else
                    text = texts[i]
                    if self._is_urc(text, ()):
                        two = text.startswith(_TWO_LINE_URCS) and i + 1 < len(texts)
                        self._keep_urc(
                            text, data=texts[i + 1] if two else "" if text.startswith(_TWO_LINE_URCS) else None
                        )
                        i += 2 if two else 1
                    else:
                        self._final(text, line, [])
                        i += 1
                return
            # an error instead of the prompt
            m = re.search(rb"(\+CMS ERROR:[^\r\n]*|\+CME ERROR:[^\r\n]*|\bERROR)\r?\n", self._buf)
            if m:
                text = m.group(1).decode("latin-1").strip()
                del self._buf[: m.end()]
                self._final(text, line, [])
            if time.monotonic() >= deadline:
                self._write(b"\x1b", line)  # leave the prompt state if it comes late
                raise ModemTimeoutError(
                    f"{self.name}: no '> ' prompt after {line}", port=self.name, command=line, timeout=self.timeout
                )
            self._fill(deadline, line)

    # -- set-up -------------------------------------------------------------------------------------

    def initialise(self) -> None:
        """Bring the modem to a known state, whatever it was left in: leave a pending ``> ``
        prompt (ESC), get an OK to a bare ``AT`` (retrying past garbage), echo off, numeric
        errors, PDU mode, and new-message indications as +CMTI, status reports as +CDS."""
        with self._lock:
            self._write(b"\x1b\r", None)
            # whatever an earlier program left (numeric answers V0, quiet Q1, echo): restore
            # verbose answers blind, then throw away what that produced
            self._write(b"ATE0V1Q0\r", None)
            quiet_until = time.monotonic() + 0.3
            while time.monotonic() < quiet_until:
                if not self._fill(time.monotonic() + 0.1, None):
                    continue
            self._buf.clear()
            last: Exception | None = None
            for _ in range(4):
                try:
                    self._command("AT", timeout=min(2.0, self.timeout))
                    break
                except (ModemTimeoutError, ModemCommandError) as exc:
                    last = exc
            else:
                raise (
                    last
                    if last
                    else ModemTimeoutError(f"{self.name}: no answer to AT", port=self.name, timeout=self.timeout)
                )
            self._command("ATE0")
            self._optional("AT+CMEE=1")
            self._command("AT+CMGF=0")
            self.configure_notifications()
            try:
                cpms = self._command("AT+CPMS?")
                if cpms and cpms[0].startswith("+CPMS:"):
                    self._mem_read = _split_fields(cpms[0].split(":", 1)[1])[0]
            except ModemCommandError:
                self._mem_read = None

    def _optional(self, cmd: str) -> bool:
        try:
            self._command(cmd)
            return True
        except ModemCommandError:
            return False

    def configure_notifications(self, *, status_reports: bool = True) -> str:
        """``+CNMI``: new SMS stored and announced by +CMTI, status reports routed as +CDS.
        Modems differ in what they accept; the first combination that works is used."""
        ds = 1 if status_reports else 0
        for combo in (f"2,1,0,{ds},0", f"1,1,0,{ds},0", "2,1,0,0,0", "1,1,0,0,0", "2,1", "1,1"):
            if self._optional(f"AT+CNMI={combo}"):
                return combo
        raise ModemCommandError(
            f"{self.name}: the modem accepts no +CNMI setting that announces new messages",
            port=self.name,
            command="AT+CNMI",
            result="ERROR",
        )

    # -- identity and state -------------------------------------------------------------------------

    def _value(self, cmd: str, prefix: str | None = None) -> str | None:
        try:
            lines = self.command(cmd)
        except ModemCommandError:
            return None
        for line in lines:
            if prefix and line.upper().startswith(prefix.upper()):
                return line.split(":", 1)[1].strip().strip('"')
            if not prefix:
                return line.strip()
        return None

    def identify(self) -> ModemInfo:
        manufacturer = self._value("AT+CGMI") or ""
        model = self._value("AT+CGMM") or ""
        revision = self._value("AT+CGMR") or ""
        imei = self._value("AT+CGSN") or ""
        imei = re.sub(r"^\+CGSN:\s*", "", imei).strip('"')
        imsi = self._value("AT+CIMI")
        iccid = self._value("AT+CCID", "+CCID") or self._value("AT+ICCID", "+ICCID")
        number = None
        cnum = self._value("AT+CNUM", "+CNUM")
        if cnum:
            fields = _split_fields(cnum)
            number = fields[1] if len(fields) > 1 and fields[1] else None
        try:
            reg = self.registration()
        except ModemError:
            reg = None
        try:
            sig = self.signal()
        except ModemError:
            sig = None
        operator = None
        cops = self._value("AT+COPS?", "+COPS")
        if cops:
            fields = _split_fields(cops)
            operator = fields[2] if len(fields) > 2 else None
        return ModemInfo(manufacturer, model, revision, imei, imsi, iccid, number, self.sim_state(), reg, sig, operator)

    def sim_state(self) -> str | None:
        """``READY``, ``SIM PIN``, ... from +CPIN?; None when the modem does not say."""
        try:
            lines = self.command("AT+CPIN?")
        except CmeError as exc:
            return f"error: {exc.meaning}"
        except ModemCommandError:
            return None
        for line in lines:
            if line.startswith("+CPIN:"):
                return line.split(":", 1)[1].strip()
        return None

    def registration(self) -> Registration:
        lines = self.command("AT+CREG?")
        for line in lines:
            if line.startswith("+CREG:"):
                f = _split_fields(line.split(":", 1)[1])
                try:
                    stat = int(f[1]) if len(f) > 1 else int(f[0])
                except ValueError:
                    break
                return Registration(stat, f[2] if len(f) > 2 else None, f[3] if len(f) > 3 else None)
        raise ModemProtocolError(f"{self.name}: no +CREG in {lines}", port=self.name, command="AT+CREG?", lines=lines)

    def signal(self) -> SignalQuality:
        lines = self.command("AT+CSQ")
        for line in lines:
            m = re.match(r"\+CSQ:\s*(\d+)\s*,\s*(\d+)", line)
            if m:
                return SignalQuality(int(m.group(1)), int(m.group(2)))
        raise ModemProtocolError(f"{self.name}: no +CSQ in {lines}", port=self.name, command="AT+CSQ", lines=lines)

    # -- sending ------------------------------------------------------------------------------------

    def send_pdu(self, pdu: EncodedPdu | str, *, timeout: float = SEND_TIMEOUT) -> int:
        """Send one SMS-SUBMIT PDU (SMSC field first); the TP-MR the modem reports."""
        if isinstance(pdu, str):
            raw = bytes.fromhex(pdu)
            pdu = EncodedPdu(pdu.upper(), len(raw) - raw[0] - 1)
        with self._lock:
            self._command("AT+CMGF=0")
            lines = self._command(f"AT+CMGS={pdu.tpdu_length}", body=pdu.hex.encode(), timeout=timeout)
        return self._message_ref(lines, "+CMGS")

    def _message_ref(self, lines: list[str], verb: str) -> int:
        for line in lines:
            if line.startswith(verb + ":"):
                try:
                    return int(_split_fields(line.split(":", 1)[1])[0])
                except ValueError:
                    break
        raise ModemProtocolError(f"{self.name}: no {verb}: <mr> in {lines}", port=self.name, command=verb, lines=lines)

    def send_sms(
        self,
        to: str,
        text: str,
        *,
        mode: str = "pdu",
        status_report: bool = False,
        coding: str | None = None,
        validity: float | None = 24 * 3600,
        reference: int | None = None,
        timeout: float = SEND_TIMEOUT,
    ) -> list[int]:
        """Send ``text`` to ``to``: split into parts (GSM 7-bit with the extension table, or UCS-2;
        concatenated with a UDH when long). ``mode="text"`` uses +CMGF=1 (one part only, as text
        mode has no user data header). Returns each part's TP-MR."""
        if mode not in ("pdu", "text"):
            raise ValueError(f"mode must be pdu or text, not {mode!r}")
        ref = reference if reference is not None else (int(time.monotonic() * 1000) & 0xFF)
        parts = split_message(text, reference=ref, coding=coding)
        vp = None if validity is None else validity_from_seconds(validity)
        if mode == "text":
            if len(parts) > 1:
                raise ValueError(f"text mode sends one part; this text needs {len(parts)} (use PDU mode)")
            return [self._send_text(to, text, parts[0].coding, status_report, vp, timeout)]
        recipient = Address.parse(to)
        refs = []
        for p in parts:
            pdu = encode(SmsSubmit(recipient, p.text, p.coding, p.concat, status_report=status_report, validity=vp))
            refs.append(self.send_pdu(pdu, timeout=timeout))
        return refs

    def _send_text(self, to: str, text: str, coding: str, status_report: bool, vp: int | None, timeout: float) -> int:
        fo = 0x01 | (0x10 if vp is not None else 0) | (0x20 if status_report else 0)
        dcs = 8 if coding == "ucs2" else 0
        hexed = text.encode("utf-16-be").hex().upper()
        number = to.encode("utf-16-be").hex().upper()
        toda = 145 if to.startswith("+") else 129
        with self._lock:
            self._command("AT+CMGF=1")
            try:
                self._command('AT+CSCS="UCS2"')
                self._command(f"AT+CSMP={fo},{vp if vp is not None else 167},0,{dcs}")
                lines = self._command(f'AT+CMGS="{number}",{toda}', body=hexed.encode(), timeout=timeout)
            finally:
                self._optional('AT+CSCS="IRA"')
                self._optional("AT+CMGF=0")
        return self._message_ref(lines, "+CMGS")

    # -- reading ------------------------------------------------------------------------------------

    def _use_storage(self, storage: str | None) -> None:
        if storage and storage != self._mem_read:
            self._command(f'AT+CPMS="{storage}"')
            self._mem_read = storage

    def read_sms(self, index: int, *, storage: str | None = None) -> StoredSms:
        with self._lock:
            self._use_storage(storage)
            self._command("AT+CMGF=0")
            lines = self._command(f"AT+CMGR={index}")
        if len(lines) < 2 or not lines[0].startswith("+CMGR:"):
            raise ModemProtocolError(
                f"{self.name}: +CMGR={index} gave {lines}", port=self.name, command=f"AT+CMGR={index}", lines=lines
            )
        stat = _split_fields(lines[0].split(":", 1)[1])[0]
        return StoredSms(
            index, self._status(stat), self._decode(lines[1], f"AT+CMGR={index}"), storage or self._mem_read
        )

    def _status(self, stat: str) -> str:
        if stat.isdigit() and int(stat) < 4:
            return STATUS_NAMES[int(stat)]
        return stat.strip('"').upper()

    def _decode(self, pdu: str, command: str) -> SmsDeliver | SmsSubmit | SmsStatusReport:
        try:
            return decode(pdu)
        except PduError as exc:
            raise ModemProtocolError(
                f"{self.name}: {command} gave an undecodable PDU: {exc}", port=self.name, command=command, lines=[pdu]
            ) from None

    def list_sms(self, status: str = "ALL") -> list[StoredSms]:
        """Every stored message with that status (``ALL``, ``REC UNREAD``, ...), PDU mode."""
        code = {"REC UNREAD": 0, "REC READ": 1, "STO UNSENT": 2, "STO SENT": 3, "ALL": 4}[status.upper()]
        with self._lock:
            self._command("AT+CMGF=0")
            lines = self._command(f"AT+CMGL={code}")
        out: list[StoredSms] = []
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("+CMGL:") and i + 1 < len(lines):
                f = _split_fields(line.split(":", 1)[1])
                try:
                    out.append(
                        StoredSms(int(f[0]), self._status(f[1]), self._decode(lines[i + 1], "AT+CMGL"), self._mem_read)
                    )
                except (ValueError, IndexError):
                    raise ModemProtocolError(
                        f"{self.name}: bad +CMGL line {line!r}", port=self.name, command="AT+CMGL", lines=lines
                    ) from None
                i += 2
            else:
                i += 1
        return out

    def inbox(self, *, status: str = "ALL") -> list[Sms]:
        """Received messages, concatenated parts joined."""
        return join_parts(s for s in self.list_sms(status) if isinstance(s.message, SmsDeliver))

    def delete_sms(self, index: int) -> None:
        self.command(f"AT+CMGD={index}")

    def delete_all(self) -> None:
        with self._lock:
            if not self._optional("AT+CMGD=1,4"):
                for st in self.list_sms("ALL"):
                    self._command(f"AT+CMGD={st.index}")

    # -- receiving ----------------------------------------------------------------------------------

    def wait_sms(self, timeout: float | None = None) -> StoredSms:
        """Wait for the next +CMTI (or +CMT) and return that message."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            urc = self._wait_any(("+CMTI:", "+CMT:"), deadline)
            if urc.name == "+CMT" and urc.data:
                return StoredSms(0, "REC UNREAD", self._decode(urc.data, "+CMT"))
            args = urc.args
            try:
                return self.read_sms(int(args[1]), storage=args[0] or None)
            except (IndexError, ValueError):
                continue

    def _wait_any(self, prefixes: tuple[str, ...], deadline: float) -> Urc:
        with self._lock:
            while True:
                for urc in list(self._urcs):
                    if urc.line.startswith(prefixes):
                        self._urcs.remove(urc)
                        return urc
                if time.monotonic() >= deadline:
                    raise ModemTimeoutError(
                        f"{self.name}: no {' or '.join(prefixes)} in time", port=self.name, timeout=self.timeout
                    )
                line = self._next_line(deadline)
                if line and self._is_urc(line, ()):
                    self._keep_urc(line, deadline=deadline + 2.0)

    def wait_message(self, timeout: float | None = None) -> Sms:
        """Wait until a whole message (every part of a concatenated one) has arrived."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        got: list[StoredSms] = []
        while True:
            got.append(self.wait_sms(max(0.0, deadline - time.monotonic())))
            for sms in join_parts(got):
                if sms.complete:
                    return sms

    def wait_status_report(self, message_ref: int, timeout: float | None = None) -> SmsStatusReport:
        """The status report (+CDS) for the SMS-SUBMIT with ``message_ref``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            with self._lock:
                if message_ref in self._mr_reports:
                    return self._mr_reports.pop(message_ref)
            try:
                urc = self._wait_any(("+CDS:", "+CDSI:"), deadline)
                if urc.name == "+CDSI":  # stored (+CNMI ds=2): read it from storage
                    args = urc.args
                    st = self.read_sms(int(args[1]), storage=args[0] or None)
                    if isinstance(st.message, SmsStatusReport):
                        with self._lock:
                            self._mr_reports[st.message.message_ref] = st.message
            except ModemTimeoutError:
                raise ModemTimeoutError(
                    f"{self.name}: no status report for TP-MR {message_ref}", port=self.name, timeout=self.timeout
                ) from None
