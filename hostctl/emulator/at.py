"""The emulated GSM modem's AT dialogue, as a state machine with no I/O inside (see STYLE.md).

``AtMachine.receive_data(bytes)`` takes what the terminal sent, ``data_to_send()`` gives the
bytes the modem answers (echo, responses, the ``> `` prompt, unsolicited result codes), and
``next_event()`` hands out what the world outside must act on: an SMS to submit to the network
(answered with ``submit_result``) or the radio going on or off (``+CFUN``). The network calls
``deliver(SmsDeliver)`` and ``status_report(SmsStatusReport)``.

What it follows: ITU-T V.250 for the command line (``AT`` prefix, basic commands concatenated,
extended ones separated by ``;``, S3/S5 editing, ``A/``, echo, V0/V1, Q1), 3GPP TS 27.007 for
identity, SIM and network, TS 27.005 for SMS in PDU and text mode (storages, ``+CNMI`` routing,
``+CMTI``/``+CMT``/``+CDS``/``+CDSI``, ``+CSDH`` long headers). Unsolicited result codes are
never put inside another command's response or after a ``> `` prompt: they wait until the
modem is idle, as in ``+CNMI`` mode 2 (unless ``interleave_urcs`` imitates modems that do).
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from ..sms import gsm7
from ..sms.errors import cme_meaning, cms_meaning
from ..sms.pdu import Address, PduError, SmsDeliver, SmsStatusReport, SmsSubmit, dcs_alphabet, decode, encode, make_dcs

__all__ = ["AtMachine", "ModemIdentity", "RadioChanged", "SubmitSms", "Stored"]

CR, LF, BS, CTRL_Z, ESC = 13, 10, 8, 0x1A, 0x1B
MAX_LINE = 2048
MAX_BODY = 4096

STAT_TEXT = ("REC UNREAD", "REC READ", "STO UNSENT", "STO SENT")
STORAGES = ("SM", "ME", "MT")
CHARSETS = ("IRA", "GSM", "UCS2", "8859-1", "HEX")


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubmitSms:
    """The terminal sent an SMS (``+CMGS``/``+CMSS``): submit it, then call ``submit_result``."""

    submit: SmsSubmit  # TP-MR is the one the modem gave it


@dataclass(frozen=True, slots=True)
class RadioChanged:
    """``+CFUN`` switched the radio: register with the network (True) or leave it (False)."""

    on: bool


Event = SubmitSms | RadioChanged


@dataclass(frozen=True, slots=True)
class ModemIdentity:
    manufacturer: str = "hostctl"
    model: str = "EM-GSM1"
    revision: str = "1.0.0 (emulated)"
    imei: str = "356938035643809"
    imsi: str = "460001234567890"
    iccid: str = "89860012345678901234"
    number: str = "+8613800138000"
    operator: str = "CHINA MOBILE"
    operator_short: str = "CMCC"
    mcc_mnc: str = "46000"
    smsc: str = "+8613800100500"
    lac: str = "2A3F"
    cell_id: str = "0000B3C1"


@dataclass(slots=True)
class Stored:
    """One message in a storage: ``stat`` 0 REC UNREAD, 1 REC READ, 2 STO UNSENT, 3 STO SENT."""

    index: int
    stat: int
    message: SmsDeliver | SmsSubmit | SmsStatusReport


class _Fail(Exception):
    """A command failed: ``kind`` "cme", "cms" or "plain" (just ERROR)."""

    def __init__(self, kind: str, code: int = 0) -> None:
        super().__init__(kind, code)
        self.kind, self.code = kind, code


def _cme(code: int) -> _Fail:
    return _Fail("cme", code)


def _cms(code: int) -> _Fail:
    return _Fail("cms", code)


_PLAIN = _Fail("plain")


@dataclass(frozen=True, slots=True)
class _Cmd:
    name: str  # "E", "&F", "S0", "+CMGF", "^SYSINFO"
    kind: str  # exec | set | read | test
    args: str = ""


# --- command line parsing (V.250 5.2) ------------------------------------------------------

_EXT_NAME = re.compile(r"[A-Za-z0-9!%\-./:_]+")
_PREFIXES = "+^$%*#!"
_DIGITS = re.compile(r"\d+")
_OPT_DIGITS = re.compile(r"\d*")


def _match(rx: re.Pattern[str], body: str, i: int) -> re.Match[str]:
    m = rx.match(body, i)
    if m is None:
        raise ValueError(f"no {rx.pattern} at {i}")
    return m


def parse_command_line(body: str) -> list[_Cmd]:
    """What follows ``AT`` on one line, as commands. ValueError when it cannot be parsed."""
    cmds: list[_Cmd] = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c in " ;":
            i += 1
            continue
        if c in _PREFIXES:
            m = _EXT_NAME.match(body, i + 1)
            if not m:
                raise ValueError(f"no command name at {i}")
            name = c + m.group().upper()
            i = m.end()
            if body.startswith("=?", i):
                cmds.append(_Cmd(name, "test"))
                i += 2
            elif body.startswith("?", i):
                cmds.append(_Cmd(name, "read"))
                i += 1
            elif body.startswith("=", i):
                j = _arg_end(body, i + 1)
                cmds.append(_Cmd(name, "set", body[i + 1 : j].strip()))
                i = j
            else:
                cmds.append(_Cmd(name, "exec"))
            continue
        u = c.upper()
        if u == "D":  # dial: the rest of the line
            cmds.append(_Cmd("D", "exec", body[i + 1 :]))
            break
        if u == "S" and i + 1 < n and body[i + 1].isdigit():
            m = _match(_DIGITS, body, i + 1)
            name = "S" + str(int(m.group()))
            i = m.end()
            if body.startswith("?", i):
                cmds.append(_Cmd(name, "read"))
                i += 1
            elif body.startswith("=", i):
                m2 = _match(_OPT_DIGITS, body, i + 1)
                cmds.append(_Cmd(name, "set", m2.group()))
                i = m2.end()
            else:
                cmds.append(_Cmd(name, "exec"))
            continue
        if u == "&":
            if i + 1 >= n or not body[i + 1].isalpha():
                raise ValueError("& without a letter")
            name, i = "&" + body[i + 1].upper(), i + 2
        elif u.isalpha():
            name, i = u, i + 1
        else:
            raise ValueError(f"unexpected {c!r}")
        m = _match(_OPT_DIGITS, body, i)
        if body.startswith("?", m.end()):
            cmds.append(_Cmd(name, "read", m.group()))
            i = m.end() + 1
        else:
            cmds.append(_Cmd(name, "exec", m.group()))
            i = m.end()
    return cmds


def _arg_end(body: str, i: int) -> int:
    quoted = False
    while i < len(body):
        if body[i] == '"':
            quoted = not quoted
        elif body[i] == ";" and not quoted:
            return i
        i += 1
    if quoted:
        raise ValueError("unterminated string")
    return i


def split_args(args: str) -> list[str | None]:
    """``"SM","ME",1,,x`` -> ["SM", "ME", "1", None, "x"]: quoted values keep their text exactly,
    others are stripped, an empty one is None."""
    out: list[str | None] = []
    cur: list[str] = []
    quoted = had_quote = False

    def close() -> None:
        text = "".join(cur)
        out.append(text if had_quote else (text.strip() or None))

    for ch in args:
        if ch == '"':
            if not quoted and not had_quote:
                cur.clear()  # text before the opening quote is not part of it
            quoted, had_quote = not quoted, True
        elif ch == "," and not quoted:
            close()
            cur, had_quote = [], False
        elif quoted or not had_quote:
            cur.append(ch)
    close()
    return out


def _int(value: str | None, lo: int, hi: int, default: int | None = None) -> int:
    if value is None or value.strip() == "":
        if default is None:
            raise _PLAIN_ARG
        return default
    try:
        v = int(value.strip())
    except ValueError:
        raise _PLAIN_ARG from None
    if not lo <= v <= hi:
        raise _PLAIN_ARG
    return v


class _ArgError(Exception):
    pass


_PLAIN_ARG = _ArgError()


# --- the machine ---------------------------------------------------------------------------------


@dataclass
class _Settings:
    echo: bool = True
    verbose: bool = True
    quiet: bool = False
    cmee: int = 0
    cmgf: int = 0
    cscs: str = "IRA"
    csdh: int = 0
    csms: int = 0
    cnmi: tuple[int, int, int, int, int] = (2, 1, 0, 0, 0)
    csmp: tuple[int, int, int, int] = (17, 167, 0, 0)
    creg: int = 0
    cgreg: int = 0
    cereg: int = 0
    cops_format: int = 0
    cpms: tuple[str, str, str] = ("SM", "SM", "SM")
    s_regs: dict[int, int] = field(default_factory=lambda: {0: 0, 3: 13, 4: 10, 5: 8, 7: 60, 8: 2, 10: 14})


class AtMachine:
    """One modem's AT dialogue. Not thread-safe by itself: the driver serialises calls."""

    def __init__(
        self,
        identity: ModemIdentity | None = None,
        *,
        capacity: dict[str, int] | None = None,
        clock: Callable[[], float] = time.time,
        interleave_urcs: bool = False,
        registered: bool = True,
    ) -> None:
        self.identity = identity or ModemIdentity()
        self.clock = clock
        self.interleave_urcs = interleave_urcs
        self.capacity = {"SM": 30, "ME": 100, **(capacity or {})}
        self.storage: dict[str, dict[int, Stored]] = {"SM": {}, "ME": {}}
        self.s = _Settings()
        self.smsc = self.identity.smsc
        self.smsc_toa = 145
        self.radio_on = True
        self.registered = registered
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._urcs: deque[bytes] = deque()
        self._line = bytearray()
        self._last_line = ""
        self._state = "command"  # command | body | network
        self._body = bytearray()
        self._body_ctx: dict[str, Any] = {}
        self._pending: list[bytes] = []  # input that arrived while waiting for the network
        self._mr = 0
        self._in_response = False

    # -- the terminal's side ------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        for b in data:
            if self._state == "network":
                self._pending.append(bytes([b]))
            elif self._state == "body":
                self._body_byte(b)
            else:
                self._command_byte(b)
        self._flush_urcs()

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    @property
    def idle(self) -> bool:
        return self._state == "command" and not self._line

    # -- the network's side ---------------------------------------------------------------------

    def submit_result(self, error: int | None = None) -> None:
        """The network took the SMS (``error`` None) or refused it with an RP/CMS cause."""
        if self._state != "network":
            return
        ctx, self._body_ctx = self._body_ctx, {}
        self._state = "command"
        if error is None:
            if ctx.get("store_index") is not None:
                st = self.storage[ctx["store_mem"]][ctx["store_index"]]
                st.stat = 3
            self._info(f"{ctx['verb']}: {ctx['mr']}")
            self._final_ok()
        else:
            self._final_error(_cms(error))
        pending, self._pending = b"".join(self._pending), []
        self._flush_urcs()
        if pending:
            self.receive_data(pending)

    def set_registered(self, registered: bool) -> None:
        changed = registered != self.registered
        self.registered = registered
        if changed:
            stat = self._reg_stat()
            for name, n in (("+CREG", self.s.creg), ("+CGREG", self.s.cgreg), ("+CEREG", self.s.cereg)):
                if n == 1:
                    self._urc(f"{name}: {stat}")
                elif n == 2:
                    self._urc(f'{name}: {stat},"{self.identity.lac}","{self.identity.cell_id}"')
            self._flush_urcs()

    def deliver(self, msg: SmsDeliver) -> bool:
        """An SMS-DELIVER from the network. False when it cannot be taken (radio off, storage
        full): the network keeps it and tries again later."""
        if not (self.radio_on and self.registered):
            return False
        mt = self.s.cnmi[1]
        if mt == 2 or (mt == 3 and msg.message_class == 3):
            self._urc(self._cmt(msg))
            self._flush_urcs()
            return True
        index = self._store(2, Stored(0, 0, msg))
        if index is None:
            return False
        if mt in (1, 3):
            self._urc(f'+CMTI: "{self.s.cpms[2]}",{index}')
            self._flush_urcs()
        return True

    def status_report(self, report: SmsStatusReport) -> bool:
        if not (self.radio_on and self.registered):
            return False
        ds = self.s.cnmi[3]
        if ds == 1:
            if self.s.cmgf == 0:
                pdu = encode(report)
                self._urc(f"+CDS: {pdu.tpdu_length}\r\n{pdu.hex}")
            else:
                self._urc("+CDS: " + self._status_text_fields(report))
        elif ds == 2:
            index = self._store(2, Stored(0, 0, report))
            if index is None:
                return False
            self._urc(f'+CDSI: "{self.s.cpms[2]}",{index}')
        self._flush_urcs()
        return True

    def messages(self) -> list[tuple[str, Stored]]:
        return [(mem, st) for mem in ("SM", "ME") for st in sorted(self.storage[mem].values(), key=lambda s: s.index)]

    # -- input handling --------------------------------------------------------------------------

    def _emit(self, data: bytes | str) -> None:
        self._out += data.encode("latin-1", "replace") if isinstance(data, str) else data

    def _command_byte(self, b: int) -> None:
        if b == 0:  # a stray NUL (some terminals send one before CR): ignored
            return
        if self.s.echo:
            self._out.append(b)
        if b == self.s.s_regs[3]:
            line = self._line.decode("latin-1")
            self._line.clear()
            self._run_line(line)
            return
        if b == self.s.s_regs[5]:
            if self._line:
                self._line.pop()
            return
        if b == LF and not self._line:
            return
        if len(self._line) >= MAX_LINE:
            self._line.clear()
            self._final_error(_PLAIN)
            return
        self._line.append(b)
        if self._line[-2:].upper() == b"A/":  # repeat the last command line, no CR needed
            self._line.clear()
            if self._last_line:
                if self.s.echo:
                    self._out += b"\r"
                self._run_line(self._last_line)

    def _run_line(self, raw: str) -> None:
        pos = raw.upper().find("AT")
        if pos < 0:
            return  # no AT prefix: not a command line (V.250 5.2.1)
        line = raw[pos:]
        self._last_line = line
        try:
            cmds = parse_command_line(line[2:])
        except ValueError:
            self._final_error(_PLAIN)
            return
        for cmd in cmds:
            self._in_response = False
            try:
                more = self._execute(cmd)
            except _ArgError:
                self._final_error(
                    _cme(4)
                    if cmd.name.startswith("+C") and not self._is_sms(cmd.name)
                    else (_cms(302) if self._is_sms(cmd.name) else _PLAIN)
                )
                return
            except _Fail as fail:
                self._final_error(fail)
                return
            if more == "prompt":
                return  # the rest of the line is ignored after +CMGS/+CMGW
            if self._state != "command":
                return
        self._final_ok()

    @staticmethod
    def _is_sms(name: str) -> bool:
        return name in {
            "+CMGS",
            "+CMGW",
            "+CMSS",
            "+CMGR",
            "+CMGL",
            "+CMGD",
            "+CPMS",
            "+CSCA",
            "+CSMP",
            "+CNMI",
            "+CMGF",
            "+CSDH",
            "+CSMS",
            "+CNMA",
            "+CMGC",
        }

    def _info(self, text: str) -> None:
        """One line of information text: ``<CR><LF>`` opens each command's response (V1)."""
        if self.s.verbose and not self._in_response:
            self._emit("\r\n")
        self._in_response = True
        self._emit(f"{text}\r\n")
        if self.interleave_urcs and self._urcs:  # a quirky modem: URCs inside the response
            while self._urcs:
                self._emit(b"\r\n" + self._urcs.popleft() + b"\r\n")
            self._in_response = False

    def _final(self, verbose: str, numeric: int) -> None:
        self._in_response = False
        if self.s.quiet:
            return
        self._emit(f"\r\n{verbose}\r\n" if self.s.verbose else f"{numeric}\r")

    def _final_ok(self) -> None:
        self._final("OK", 0)

    def _final_error(self, fail: _Fail) -> None:
        if fail.kind == "cme" and self.s.cmee:
            text = str(fail.code) if self.s.cmee == 1 else cme_meaning(fail.code)
            self._final(f"+CME ERROR: {text}", 4)
        elif fail.kind == "cms":
            text = str(fail.code) if self.s.cmee != 2 else cms_meaning(fail.code)
            self._final(f"+CMS ERROR: {text}", 4)
        else:
            self._final("ERROR", 4)

    def _urc(self, text: str) -> None:
        self._urcs.append(text.encode("latin-1", "replace"))

    def _flush_urcs(self) -> None:
        if not self.idle:
            return
        while self._urcs:
            self._emit(b"\r\n" + self._urcs.popleft() + b"\r\n")

    # -- SMS bodies after the prompt --------------------------------------------------------------

    def _prompt(self, ctx: dict[str, Any]) -> str:
        self._state = "body"
        self._body.clear()
        self._body_ctx = ctx
        self._emit("\r\n> ")
        return "prompt"

    def _body_byte(self, b: int) -> None:
        if b == ESC:  # cancel: nothing is sent
            self._state, self._body_ctx = "command", {}
            self._final_ok()
            return
        if b == CTRL_Z:
            if self.s.echo:
                self._out.append(b)
            self._state = "command"
            try:
                self._finish_body(bytes(self._body))
            except _Fail as fail:
                self._state, self._body_ctx = "command", {}
                self._final_error(fail)
            return
        if self.s.echo:
            self._out.append(b)
        if b == CR:
            if self._body_ctx["mode"] == "text":
                self._body += b"\n"
                self._emit("\r\n> ")
            return
        if b == LF or (b == 0 and self._body_ctx["mode"] == "pdu"):
            return  # (in text mode with +CSCS="GSM", 0x00 is "@")
        if b == BS:
            if self._body:
                self._body.pop()
            return
        if len(self._body) >= MAX_BODY:
            self._state, self._body_ctx = "command", {}
            self._final_error(_cms(304 if self.s.cmgf == 0 else 305))
            return
        self._body.append(b)

    def _finish_body(self, body: bytes) -> None:
        ctx = self._body_ctx
        if ctx["mode"] == "pdu":
            text = body.decode("latin-1").strip()
            try:
                raw = bytes.fromhex(text)
                msg = decode(raw)
            except (ValueError, PduError):
                raise _cms(304) from None
            smsc_len = raw[0] + 1
            if len(raw) - smsc_len != ctx["length"] or not isinstance(msg, SmsSubmit):
                raise _cms(304)
        else:
            msg = self._text_submit(ctx, body)
        if ctx["verb"] == "+CMGW":
            index = self._store(1, Stored(0, ctx.get("stat", 2), msg))
            if index is None:
                raise _cms(322)
            self._info(f"+CMGW: {index}")
            self._final_ok()
            return
        self._send(msg, "+CMGS")

    def _send(self, msg: SmsSubmit, verb: str, store: tuple[str, int] | None = None) -> None:
        if not (self.radio_on and self.registered):
            raise _cms(331)
        self._mr = (self._mr + 1) % 256
        smsc = msg.smsc or (Address.parse(self.smsc) if self.smsc else None)
        if smsc is None:
            raise _cms(330)
        msg = replace(msg, message_ref=self._mr, smsc=smsc)
        self._state = "network"
        self._body_ctx = {
            "verb": verb,
            "mr": self._mr,
            "store_mem": store and store[0],
            "store_index": store and store[1],
        }
        self._events.append(SubmitSms(msg))

    def _text_submit(self, ctx: dict[str, Any], body: bytes) -> SmsSubmit:
        fo, vp, pid, dcs = self.s.csmp
        text = self._from_charset(body)
        coding = dcs_alphabet(dcs) if dcs else "gsm7"
        if coding == "gsm7" and not gsm7.can_encode(text):
            coding = "ucs2"  # what the SMS can carry; a real modem would garble it
        try:
            return SmsSubmit(
                ctx["da"],
                text,
                coding,
                status_report=bool(fo & 0x20),
                validity=vp if (fo >> 3) & 3 == 2 else None,
                pid=pid,
                reject_duplicates=bool(fo & 0x04),
                data=text.encode("latin-1", "replace") if coding == "8bit" else b"",
            )
        except PduError:
            raise _cms(305) from None

    # -- charsets ------------------------------------------------------------------------------

    def _to_charset(self, text: str) -> str:
        cs = self.s.cscs
        if cs == "UCS2":
            return text.encode("utf-16-be").hex().upper()
        if cs in ("GSM", "HEX"):  # HEX: the GSM alphabet's codes, two hex digits each
            codes = bytes(gsm7.encode("".join(c if gsm7.char_septets(c) else "?" for c in text)))
            return codes.hex().upper() if cs == "HEX" else codes.decode("latin-1")
        if cs == "8859-1":
            return text.encode("latin-1", "replace").decode("latin-1")
        return text.encode("ascii", "replace").decode("ascii")

    def _from_charset(self, data: bytes | str) -> str:
        raw = data.encode("latin-1") if isinstance(data, str) else data
        cs = self.s.cscs
        if cs in ("UCS2", "HEX"):
            try:
                raw = bytes.fromhex(raw.decode("latin-1").replace("\n", ""))
                if cs == "UCS2":
                    return raw.decode("utf-16-be")
            except ValueError:
                raise _cms(305) from None
        if cs in ("GSM", "HEX"):
            return gsm7.decode(raw)
        return raw.decode("latin-1")

    # -- storage -------------------------------------------------------------------------------

    def _store(self, which: int, st: Stored) -> int | None:
        """Store in +CPMS storage ``which`` (0 read, 1 write, 2 receive); the index the terminal
        sees (MT is SM then ME), or None when full."""
        mem = self.s.cpms[which]
        for m, offset in (("SM", 0), ("ME", self.capacity["SM"])) if mem == "MT" else ((mem, 0),):
            for i in range(1, self.capacity[m] + 1):
                if i not in self.storage[m]:
                    st.index = i
                    self.storage[m][i] = st
                    return i + offset
        return None

    def _resolve(self, which: int, index: int) -> tuple[str, int]:
        mem = self.s.cpms[which]
        if mem == "MT":
            if index > self.capacity["SM"]:
                return "ME", index - self.capacity["SM"]
            return "SM", index
        return mem, index

    def _used(self, mem: str) -> tuple[int, int]:
        if mem == "MT":
            return (len(self.storage["SM"]) + len(self.storage["ME"]), self.capacity["SM"] + self.capacity["ME"])
        return len(self.storage[mem]), self.capacity[mem]

    def _listing(self, which: int) -> list[tuple[int, Stored]]:
        mem = self.s.cpms[which]
        if mem == "MT":
            return [(i, s) for i, s in sorted(self.storage["SM"].items())] + [
                (i + self.capacity["SM"], s) for i, s in sorted(self.storage["ME"].items())
            ]
        return sorted(self.storage[mem].items())

    # -- message rendering -------------------------------------------------------------------

    @staticmethod
    def _scts(when: datetime) -> str:
        off = when.utcoffset()
        q = int(off.total_seconds() // 900) if off is not None else 0
        return when.strftime("%y/%m/%d,%H:%M:%S") + f"{'+' if q >= 0 else '-'}{abs(q):02d}"

    def _addr(self, a: Address | None) -> tuple[str, int]:
        if a is None:
            return "", 129
        return self._to_charset(a.number), a.toa

    def _text_data(self, msg: SmsDeliver | SmsSubmit) -> tuple[str, int]:
        if msg.coding != "gsm7" or msg.concat is not None or msg.ies:
            pdu = bytes.fromhex(encode(msg, with_smsc=False).hex)
            ud = _user_data(pdu, msg)
            return ud.hex().upper(), len(ud)
        return self._to_charset(msg.text), len(msg.text)

    def _cmt(self, msg: SmsDeliver) -> str:
        if self.s.cmgf == 0:
            pdu = encode(msg)
            return f"+CMT: ,{pdu.tpdu_length}\r\n{pdu.hex}"
        oa, tooa = self._addr(msg.sender)
        data, length = self._text_data(msg)
        head = f'+CMT: "{oa}",,"{self._scts(msg.timestamp)}"'
        if self.s.csdh:
            sca, tosca = self._addr(msg.smsc)
            fo = bytes.fromhex(encode(msg, with_smsc=False).hex)[0]
            head += f',{tooa},{fo},{msg.pid},{make_dcs(msg.coding, msg.message_class)},"{sca}",{tosca},{length}'
        return f"{head}\r\n{data}"

    def _status_text_fields(self, r: SmsStatusReport) -> str:
        fo = bytes.fromhex(encode(r, with_smsc=False).hex)[0]
        ra, tora = self._addr(r.recipient)
        return f'{fo},{r.message_ref},"{ra}",{tora},"{self._scts(r.timestamp)}","{self._scts(r.discharge)}",{r.status}'

    def _render(self, st: Stored, index: int | None) -> tuple[str, str]:
        """(header, data) of +CMGR (index None) or +CMGL."""
        msg = st.message
        prefix = "+CMGR: " if index is None else f"+CMGL: {index},"
        if self.s.cmgf == 0:
            pdu = encode(msg)
            return f"{prefix}{st.stat},,{pdu.tpdu_length}", pdu.hex
        stat = f'"{STAT_TEXT[st.stat]}"'
        if isinstance(msg, SmsStatusReport):
            return f"{prefix}{stat},{self._status_text_fields(msg)}", ""
        data, length = self._text_data(msg)
        fo = bytes.fromhex(encode(msg, with_smsc=False).hex)[0]
        dcs = make_dcs(msg.coding, msg.message_class)
        sca, tosca = self._addr(msg.smsc)
        if isinstance(msg, SmsDeliver):
            oa, tooa = self._addr(msg.sender)
            scts = self._scts(msg.timestamp)
            if index is None:
                head = f'{prefix}{stat},"{oa}",,"{scts}"'
                if self.s.csdh:
                    head += f',{tooa},{fo},{msg.pid},{dcs},"{sca}",{tosca},{length}'
            else:
                head = f'{prefix}{stat},"{oa}",,"{scts}"'
                if self.s.csdh:
                    head += f",{tooa},{length}"
            return head, data
        da, toda = self._addr(msg.recipient)
        if index is None:
            head = f'{prefix}{stat},"{da}",'
            if self.s.csdh:
                vp = "" if msg.validity is None else str(msg.validity)
                head += f',{toda},{fo},{msg.pid},{dcs},{vp},"{sca}",{tosca},{length}'
        else:
            head = f'{prefix}{stat},"{da}",,'
            if self.s.csdh:
                head += f",{toda},{length}"
        return head, data

    # -- commands ------------------------------------------------------------------------------

    def _execute(self, cmd: _Cmd) -> str | None:
        handler = _HANDLERS.get(cmd.name)
        if handler is None:
            if cmd.name[0] in _PREFIXES:
                raise _PLAIN  # unknown (vendor) command: ERROR, whatever +CMEE says
            if cmd.name.startswith("S"):
                self._s_register(cmd)
                return None
            raise _PLAIN
        return handler(self, cmd)

    def _s_register(self, cmd: _Cmd) -> None:
        reg = int(cmd.name[1:])
        if reg > 255:
            raise _PLAIN
        if cmd.kind == "read":
            self._info(f"{self.s.s_regs.get(reg, 0):03d}")
        elif cmd.kind == "set":
            self.s.s_regs[reg] = _int(cmd.args, 0, 255)
        return None

    def _reg_stat(self) -> int:
        return 1 if (self.radio_on and self.registered) else 0

    def _set_radio(self, on: bool) -> None:
        if on != self.radio_on:
            self.radio_on = on
            self._events.append(RadioChanged(on))


def _user_data(tpdu: bytes, msg: SmsDeliver | SmsSubmit) -> bytes:
    """The TP-UD octets of an encoded TPDU: what text mode shows, in hex, for 8-bit and UCS-2
    data and for messages with a user data header (TS 27.005 3.1, <data>)."""
    if isinstance(msg, SmsDeliver):
        pos = 1 + 2 + (tpdu[1] + 1) // 2 + 2 + 7
    else:
        pos = 2 + 2 + (tpdu[2] + 1) // 2 + 2 + {0: 0, 2: 1}.get((tpdu[0] >> 3) & 3, 7)
    return tpdu[pos + 1 :]


# --- command handlers ------------------------------------------------------------------------


def _ok(m: AtMachine, cmd: _Cmd) -> None:
    return None


def _flag(attr: str) -> Callable[[AtMachine, _Cmd], None]:
    def handler(m: AtMachine, cmd: _Cmd) -> None:
        if cmd.kind == "read":
            m._info(f"{int(getattr(m.s, attr))}")
            return
        setattr(m.s, attr, bool(_int(cmd.args or "0", 0, 1)))

    return handler


def _reset(m: AtMachine, cmd: _Cmd) -> None:
    echo_default = True
    m.s = _Settings(echo=echo_default)
    m.smsc = m.identity.smsc


def _ati(m: AtMachine, cmd: _Cmd) -> None:
    i = m.identity
    for line in (
        f"Manufacturer: {i.manufacturer}",
        f"Model: {i.model}",
        f"Revision: {i.revision}",
        f"IMEI: {i.imei}",
        "+GCAP: +CGSM",
    ):
        m._info(line)


def _value(getter: Callable[[ModemIdentity], str]) -> Callable[[AtMachine, _Cmd], None]:
    def handler(m: AtMachine, cmd: _Cmd) -> None:
        if cmd.kind == "test":
            return
        if cmd.kind == "set":
            raise _PLAIN
        m._info(getter(m.identity))

    return handler


def _cgsn(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "test":
        m._info("+CGSN: (0-3)")
        return
    if cmd.kind == "set":
        n = _int(cmd.args, 0, 3)
        if n == 1:
            m._info(f'+CGSN: "{m.identity.imei}"')
            return
        if n != 0:
            raise _cme(4)
    m._info(m.identity.imei)


def _cimi(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "test":
        return
    m._info(m.identity.imsi)


def _cpin(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "read":
        m._info("+CPIN: READY")
    elif cmd.kind == "set":
        raise _cme(3)  # no PIN is asked for: entering one is not allowed


def _creg(attr: str, name: str) -> Callable[[AtMachine, _Cmd], None]:
    def handler(m: AtMachine, cmd: _Cmd) -> None:
        if cmd.kind == "test":
            m._info(f"{name}: (0-2)")
        elif cmd.kind == "set":
            setattr(m.s, attr, _int(cmd.args or "0", 0, 2))
        elif cmd.kind == "read":
            n = getattr(m.s, attr)
            extra = f',"{m.identity.lac}","{m.identity.cell_id}"' if n == 2 and m._reg_stat() else ""
            m._info(f"{name}: {n},{m._reg_stat()}{extra}")
        else:
            raise _PLAIN

    return handler


def _csq(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "test":
        m._info("+CSQ: (0-31,99),(0-7,99)")
    else:
        m._info("+CSQ: 21,0" if m._reg_stat() else "+CSQ: 99,99")


def _cops(m: AtMachine, cmd: _Cmd) -> None:
    i = m.identity
    if cmd.kind == "test":
        m._info(f'+COPS: (2,"{i.operator}","{i.operator_short}","{i.mcc_mnc}",0),,(0-4),(0-2)')
    elif cmd.kind == "read":
        if not m._reg_stat():
            m._info("+COPS: 0")
            return
        name = {0: i.operator, 1: i.operator_short, 2: i.mcc_mnc}[m.s.cops_format]
        m._info(f'+COPS: 0,{m.s.cops_format},"{name}",0')
    elif cmd.kind == "set":
        a = split_args(cmd.args)
        mode = _int(a[0], 0, 4, 0)
        if mode == 3 or (len(a) > 1 and a[1] is not None):
            m.s.cops_format = _int(a[1] if len(a) > 1 else None, 0, 2, 0)
        if mode == 2:  # deregister: as far as the network knows, the radio is off
            m._set_radio(False)
        elif mode in (0, 1, 4):
            m._set_radio(True)


def _cfun(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "test":
        m._info("+CFUN: (0,1,4),(0-1)")
    elif cmd.kind == "read":
        m._info(f"+CFUN: {1 if m.radio_on else 4}")
    elif cmd.kind == "set":
        a = split_args(cmd.args)
        fun = _int(a[0], 0, 4)
        if fun not in (0, 1, 4):
            raise _cme(4)
        m._set_radio(fun == 1)
    else:
        raise _PLAIN


def _int_setting(label: str, attr: str, hi: int):
    """An ``AT+X=n`` setting in 0..hi with the usual test/read forms (+CMEE, +CMGF, +CSDH)."""

    def handler(m: AtMachine, cmd: _Cmd) -> None:
        if cmd.kind == "test":
            m._info(f"{label}: (0{',1' if hi == 1 else f'-{hi}'})")
        elif cmd.kind == "read":
            m._info(f"{label}: {getattr(m.s, attr)}")
        else:
            setattr(m.s, attr, _int(cmd.args or "0", 0, hi))

    return handler


_cmee = _int_setting("+CMEE", "cmee", 2)
_cmgf = _int_setting("+CMGF", "cmgf", 1)
_csdh = _int_setting("+CSDH", "csdh", 1)


def _cscs(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "test":
        m._info('+CSCS: ("IRA","GSM","UCS2","8859-1","HEX")')
    elif cmd.kind == "read":
        m._info(f'+CSCS: "{m.s.cscs}"')
    elif cmd.kind == "set":
        value = (split_args(cmd.args)[0] or "").upper()
        if value not in CHARSETS:
            raise _cme(4)
        m.s.cscs = value
    else:
        raise _PLAIN


def _csms(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "test":
        m._info("+CSMS: (0,1)")
    elif cmd.kind == "read":
        m._info(f"+CSMS: {m.s.csms},1,1,1")
    elif cmd.kind == "set":
        m.s.csms = _int(cmd.args, 0, 1)
        m._info("+CSMS: 1,1,1")
    else:
        raise _PLAIN


def _csca(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "read":
        m._info(f'+CSCA: "{m._to_charset(m.smsc)}",{m.smsc_toa}')
    elif cmd.kind == "set":
        a = split_args(cmd.args)
        if not a[0]:
            raise _cms(304 if m.s.cmgf == 0 else 305)
        number = m._from_charset(a[0])
        try:
            addr = Address.parse(number)
        except PduError:
            raise _cms(330) from None
        m.smsc = addr.number
        m.smsc_toa = _int(a[1], 0, 255) if len(a) > 1 and a[1] else addr.toa
    elif cmd.kind != "test":
        raise _PLAIN


def _csmp(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "read":
        m._info("+CSMP: " + ",".join(str(x) for x in m.s.csmp))
    elif cmd.kind == "set":
        a = split_args(cmd.args) + [None] * 4
        old = m.s.csmp
        m.s.csmp = (
            _int(a[0], 0, 255, old[0]),
            _int(a[1], 0, 255, old[1]),
            _int(a[2], 0, 255, old[2]),
            _int(a[3], 0, 255, old[3]),
        )
    elif cmd.kind != "test":
        raise _PLAIN


def _cnmi(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "test":
        m._info("+CNMI: (0-3),(0-3),(0,2),(0-2),(0,1)")
    elif cmd.kind == "read":
        m._info("+CNMI: " + ",".join(str(x) for x in m.s.cnmi))
    elif cmd.kind == "set":
        a = split_args(cmd.args) + [None] * 5
        old = m.s.cnmi
        m.s.cnmi = (
            _int(a[0], 0, 3, old[0]),
            _int(a[1], 0, 3, old[1]),
            _int(a[2], 0, 3, old[2]),
            _int(a[3], 0, 2, old[3]),
            _int(a[4], 0, 1, old[4]),
        )
    else:
        raise _PLAIN


def _cnma(m: AtMachine, cmd: _Cmd) -> None:
    if m.s.csms == 0:
        raise _cms(340)


def _cpms(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "test":
        lst = "(" + ",".join(f'"{s}"' for s in STORAGES) + ")"
        m._info(f"+CPMS: {lst},{lst},{lst}")
    elif cmd.kind == "read":
        parts = []
        for mem in m.s.cpms:
            used, total = m._used(mem)
            parts.append(f'"{mem}",{used},{total}')
        m._info("+CPMS: " + ",".join(parts))
    elif cmd.kind == "set":
        a = [x.upper() if x else None for x in split_args(cmd.args)]
        if not a or len(a) > 3 or any(x is not None and x not in STORAGES for x in a) or a[0] is None:
            raise _cms(302)
        new = list(m.s.cpms)
        for i, x in enumerate(a):
            if x:
                new[i] = x
        m.s.cpms = (new[0], new[1], new[2])
        counts = []
        for mem in m.s.cpms:
            counts += list(m._used(mem))
        m._info("+CPMS: " + ",".join(str(c) for c in counts))
    else:
        raise _PLAIN


def _cmgs(m: AtMachine, cmd: _Cmd) -> str | None:
    if cmd.kind == "test":
        return None
    if cmd.kind != "set":
        raise _cms(302)
    a = split_args(cmd.args)
    if m.s.cmgf == 0:
        length = _int(a[0], 1, 180)
        return m._prompt({"mode": "pdu", "length": length, "verb": cmd.name})
    if not a[0]:
        raise _cms(305)
    try:
        da = Address.parse(m._from_charset(a[0]))
    except PduError:
        raise _cms(305) from None
    ctx = {"mode": "text", "da": da, "verb": cmd.name}
    if cmd.name == "+CMGW" and len(a) > 2 and a[2]:
        ctx["stat"] = STAT_TEXT.index(a[2]) if a[2] in STAT_TEXT else 2
    return m._prompt(ctx)


def _cmss(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "test":
        return
    a = split_args(cmd.args)
    mem, index = m._resolve(1, _int(a[0], 0, 100000))
    st = m.storage.get(mem, {}).get(index)
    if st is None:
        raise _cms(321)
    if not isinstance(st.message, SmsSubmit):
        raise _cms(302)
    msg = st.message
    if len(a) > 1 and a[1]:
        msg = replace(msg, recipient=Address.parse(m._from_charset(a[1])))
    m._send(msg, "+CMSS", (mem, index))


def _cmgr(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "test":
        return
    if cmd.kind != "set":
        raise _cms(302)
    mem, index = m._resolve(0, _int(split_args(cmd.args)[0], 0, 100000))
    st = m.storage.get(mem, {}).get(index)
    if st is None:
        raise _cms(321)
    head, data = m._render(st, None)
    m._info(head)
    if data:
        m._info(data)
    if st.stat == 0:
        st.stat = 1


def _cmgl(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "test":
        m._info('+CMGL: ("REC UNREAD","REC READ","STO UNSENT","STO SENT","ALL")' if m.s.cmgf else "+CMGL: (0-4)")
        return
    arg = split_args(cmd.args)[0] if cmd.kind == "set" else None
    if m.s.cmgf == 1:
        wanted = (arg or "REC UNREAD").upper()
        if wanted == "ALL":
            stats = {0, 1, 2, 3}
        elif wanted in STAT_TEXT:
            stats = {STAT_TEXT.index(wanted)}
        else:
            raise _cms(302)
    else:
        n = _int(arg, 0, 4, 0) if arg is not None and arg.isdigit() else (0 if arg is None else -1)
        if n < 0:
            raise _cms(302)
        stats = {0, 1, 2, 3} if n == 4 else {n}
    for index, st in m._listing(0):
        if st.stat not in stats:
            continue
        head, data = m._render(st, index)
        m._info(head)
        if data:
            m._info(data)
        if st.stat == 0:
            st.stat = 1


def _cmgd(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "test":
        used = ",".join(str(i) for i, _ in m._listing(0))
        m._info(f"+CMGD: ({used}),(0-4)")
        return
    if cmd.kind != "set":
        raise _cms(302)
    a = split_args(cmd.args) + [None]
    index = _int(a[0], 0, 100000)
    flag = _int(a[1], 0, 4, 0)
    if flag == 0:
        mem, i = m._resolve(0, index)
        if m.storage.get(mem, {}).pop(i, None) is None:
            raise _cms(321)
        return
    doomed = {1: {1}, 2: {1, 3}, 3: {1, 2, 3}, 4: {0, 1, 2, 3}}[flag]
    for public, st in m._listing(0):
        if st.stat in doomed:
            mem, i = m._resolve(0, public)
            m.storage[mem].pop(i, None)


def _cnum(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "test":
        return
    number = m.identity.number
    m._info(f'+CNUM: "","{m._to_charset(number)}",{145 if number.startswith("+") else 129}')


def _ccid(name: str) -> Callable[[AtMachine, _Cmd], None]:
    def handler(m: AtMachine, cmd: _Cmd) -> None:
        if cmd.kind == "test":
            return
        m._info(f"{name}: {m.identity.iccid}")

    return handler


def _cclk(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "read":
        now = datetime.fromtimestamp(m.clock(), UTC).astimezone()
        m._info(f'+CCLK: "{AtMachine._scts(now)}"')
    elif cmd.kind not in ("set", "test"):
        raise _PLAIN


def _cbc(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "test":
        m._info("+CBC: (0-2),(0-100)")
    else:
        m._info("+CBC: 0,100")


def _gcap(m: AtMachine, cmd: _Cmd) -> None:
    m._info("+GCAP: +CGSM")


def _clac(m: AtMachine, cmd: _Cmd) -> None:
    for name in sorted(n for n in _HANDLERS if n[0] in _PREFIXES):
        m._info(f"AT{name}")


def _dial(m: AtMachine, cmd: _Cmd) -> None:
    raise _Fail("plain")  # a data/voice call: this modem only does SMS


def _cscb(m: AtMachine, cmd: _Cmd) -> None:
    if cmd.kind == "read":
        m._info('+CSCB: 0,"",""')


def _simple_read(name: str, value: str) -> Callable[[AtMachine, _Cmd], None]:
    def handler(m: AtMachine, cmd: _Cmd) -> None:
        if cmd.kind == "read":
            m._info(f"{name}: {value}")

    return handler


_HANDLERS: dict[str, Callable[[AtMachine, _Cmd], Any]] = {
    "E": _flag("echo"),
    "V": _flag("verbose"),
    "Q": _flag("quiet"),
    "Z": _reset,
    "&F": _reset,
    "I": _ati,
    "X": _ok,
    "L": _ok,
    "M": _ok,
    "H": _ok,
    "&C": _ok,
    "&D": _ok,
    "&K": _ok,
    "&W": _ok,
    "&V": _ok,
    "D": _dial,
    "+CGMI": _value(lambda i: i.manufacturer),
    "+GMI": _value(lambda i: i.manufacturer),
    "+CGMM": _value(lambda i: i.model),
    "+GMM": _value(lambda i: i.model),
    "+CGMR": _value(lambda i: i.revision),
    "+GMR": _value(lambda i: i.revision),
    "+CGSN": _cgsn,
    "+GSN": _value(lambda i: i.imei),
    "+CIMI": _cimi,
    "+CCID": _ccid("+CCID"),
    "+ICCID": _ccid("+ICCID"),
    "+CNUM": _cnum,
    "+CPIN": _cpin,
    "+CREG": _creg("creg", "+CREG"),
    "+CGREG": _creg("cgreg", "+CGREG"),
    "+CEREG": _creg("cereg", "+CEREG"),
    "+CSQ": _csq,
    "+COPS": _cops,
    "+CFUN": _cfun,
    "+CMEE": _cmee,
    "+CSCS": _cscs,
    "+CMGF": _cmgf,
    "+CSDH": _csdh,
    "+CSMS": _csms,
    "+CSCA": _csca,
    "+CSMP": _csmp,
    "+CNMI": _cnmi,
    "+CNMA": _cnma,
    "+CPMS": _cpms,
    "+CMGS": _cmgs,
    "+CMGW": _cmgs,
    "+CMSS": _cmss,
    "+CMGR": _cmgr,
    "+CMGL": _cmgl,
    "+CMGD": _cmgd,
    "+CCLK": _cclk,
    "+CBC": _cbc,
    "+GCAP": _gcap,
    "+CLAC": _clac,
    "+CSCB": _cscb,
    "+CRC": _ok,
    "+CLIP": _ok,
    "+CR": _ok,
    "+CGATT": _simple_read("+CGATT", "1"),
    "+CPAS": lambda m, c: m._info("+CPAS: 0"),
}
