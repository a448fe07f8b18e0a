"""The lab's GSM modem: the AT machine (``at.py``) wired to the carrier and served on a real
pseudo-terminal and on a loopback TCP port (``socket://127.0.0.1:PORT``, pyserial's URL).

``EmulatedModem`` is the glue: a carrier subscriber with its own number and IMSI whose SMS
arrive as ``+CMTI`` and whose ``+CMGS`` go to the carrier. It is thread-safe: the carrier calls
in from any thread (a handset sending from a test), the server thread feeds the terminal's
bytes. ``ModemServer`` is one thread doing all the I/O: the pty master, the TCP listener and its
clients, and a wake-up pipe. Both ways in reach the same modem, like the several AT ports of a
USB modem: answers go to the port that asked, unsolicited result codes to every port, and the
settings (echo, +CMGF, +CNMI...) are the modem's, shared.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import termios
import threading
import time
import tty
from datetime import UTC, datetime

from ..sms.pdu import Address, PduError, SmsDeliver, SmsStatusReport, SmsSubmit
from .at import AtMachine, ModemIdentity, RadioChanged, SubmitSms
from .carrier import Carrier, CarrierError, SmsRecord, SmsSegment, normalise_number

__all__ = ["EmulatedModem", "ModemServer", "ModemIdentity"]

log = logging.getLogger("hostctl.emulator.modem")

MAX_BACKLOG = 256 * 1024  # bytes kept for a terminal that does not read (then the oldest go)
STALE_AFTER = 2.0  # s a full pty may go unread before its queued output is dropped


def _local(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC).astimezone()


class EmulatedModem:
    """One modem on the carrier. ``output`` callbacks receive every byte the modem sends."""

    def __init__(
        self, identity: ModemIdentity, carrier: Carrier, *, country_code: str, interleave_urcs: bool = False
    ) -> None:
        self.identity = identity
        self.carrier = carrier
        self.country_code = country_code
        self.machine = AtMachine(identity, interleave_urcs=interleave_urcs, clock=carrier.clock)
        self._lock = threading.RLock()
        self._sinks: list = []
        self.records: list[SmsRecord] = []  # what this modem submitted
        carrier.provision(identity.number, identity.imsi)

    # -- wiring ---------------------------------------------------------------------------------

    def add_sink(self, sink) -> None:
        with self._lock:
            self._sinks.append(sink)

    def attach(self) -> None:
        """Register on the network (the lab calls it once the modem is served)."""
        with self._lock:
            self.machine.set_registered(True)
            self._drain()
        self._sync_radio()

    def detach(self) -> None:
        self.carrier.detach(self.identity.number)

    def _sync_radio(self) -> None:
        if self.machine.radio_on and self.machine.registered:
            if not self.carrier.attached(self.identity.number):
                self.carrier.attach(self.identity.number, self, self.identity.imsi)
        else:
            self.carrier.detach(self.identity.number)

    # -- the terminal's bytes ---------------------------------------------------------------------

    def feed(self, data: bytes, reply_to=None) -> None:
        """Bytes from a terminal. What the modem answers goes to ``reply_to`` (that terminal)
        when given; unsolicited output that arises elsewhere goes to every sink."""
        with self._lock:
            self.machine.receive_data(data)
            events = self._drain(reply_to)
        self._handle(events, reply_to)

    def _drain(self, reply_to=None) -> list:
        """Send what the machine has for the terminal; return its events (lock held)."""
        out = self.machine.data_to_send()
        if out:
            for sink in [reply_to] if reply_to is not None else self._sinks:
                sink(out)
        events = []
        while (ev := self.machine.next_event()) is not None:
            events.append(ev)
        return events

    def _handle(self, events: list, reply_to=None) -> None:
        for ev in events:
            if isinstance(ev, SubmitSms):
                error = self._submit(ev.submit)
                with self._lock:
                    self.machine.submit_result(error)
                    more = self._drain(reply_to)
                self._handle(more, reply_to)
            elif isinstance(ev, RadioChanged):
                self._sync_radio()

    def _submit(self, submit: SmsSubmit) -> int | None:
        """Hand an SMS-SUBMIT to the SMSC; a +CMS error number when the network refuses it."""
        try:
            recipient = normalise_number(submit.recipient.number, self.country_code)
        except CarrierError:
            return 1  # unassigned (unallocated) number
        text = submit.text if submit.coding != "8bit" else submit.data.decode("latin-1")
        segment = SmsSegment(
            sender=self.identity.number,
            recipient=recipient,
            text=text,
            coding=submit.coding,
            concat=submit.concat,
            status_report=submit.status_report,
            message_ref=submit.message_ref,
        )
        record = self.carrier.submit(segment, self)
        self.records.append(record)
        if record.status == "failed":
            return 1 if "unallocated" in record.reason else 38
        return None

    # -- the carrier's side (Subscriber) ------------------------------------------------------------

    def sms_deliver(self, segment: SmsSegment) -> bool:
        try:
            sender = Address.parse(segment.sender)
            msg = SmsDeliver(
                sender,
                segment.text,
                _local(segment.timestamp),
                segment.coding,
                segment.concat,
                smsc=Address.parse(segment.smsc),
                data=segment.text.encode("latin-1", "replace") if segment.coding == "8bit" else b"",
            )
        except PduError as exc:
            log.warning("modem %s cannot take %r: %s", self.identity.number, segment, exc)
            return False
        with self._lock:
            taken = self.machine.deliver(msg)
            events = self._drain()
        self._handle(events)
        return taken

    def sms_status_report(self, record: SmsRecord) -> None:
        status = {"delivered": 0x00, "expired": 0x46}.get(record.status, 0x41)
        discharge = record.delivered_at or self.carrier.clock()
        report = SmsStatusReport(
            record.segment.message_ref,
            Address.parse(record.segment.recipient),
            _local(record.submitted_at),
            _local(discharge),
            status,
            smsc=Address.parse(record.segment.smsc),
        )
        with self._lock:
            self.machine.status_report(report)
            events = self._drain()
        self._handle(events)

    def info(self) -> dict:
        i = self.identity
        return {
            "number": i.number,
            "imsi": i.imsi,
            "imei": i.imei,
            "iccid": i.iccid,
            "manufacturer": i.manufacturer,
            "model": i.model,
        }


class _Link:
    """One way to the terminal: a file descriptor and the bytes waiting to be written to it."""

    def __init__(self, fd: int, kind: str, sock: socket.socket | None = None) -> None:
        self.fd, self.kind, self.sock = fd, kind, sock
        self.backlog = bytearray()
        self.stuck_since: float | None = None  # when a write last found the queue full


class ModemServer:
    """Serves an ``EmulatedModem`` on a pty (``.pty_path``) and a loopback port (``.url``)."""

    def __init__(self, modem: EmulatedModem, *, tcp: bool = True, pty: bool = True) -> None:
        self.modem = modem
        self._want_tcp, self._want_pty = tcp, pty
        self.pty_path: str | None = None
        self.port = 0
        self._master = self._slave = -1
        self._listener: socket.socket | None = None
        self._links: dict[int, _Link] = {}
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = -1, -1
        self._sel: selectors.BaseSelector | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    @property
    def url(self) -> str | None:
        return f"socket://127.0.0.1:{self.port}" if self.port else None

    def start(self) -> ModemServer:
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        if self._want_pty:
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave, termios.TCSANOW)  # bytes pass untouched; the modem echoes
            attrs = termios.tcgetattr(self._slave)
            attrs[4] = attrs[5] = termios.B115200
            termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
            os.set_blocking(self._master, False)
            self.pty_path = os.ttyname(self._slave)
            self._links[self._master] = _Link(self._master, "pty")
            self._sel.register(self._master, selectors.EVENT_READ, "pty")
        if self._want_tcp:
            self._listener = socket.socket()
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(("127.0.0.1", 0))
            self._listener.listen(4)
            self._listener.setblocking(False)
            self.port = self._listener.getsockname()[1]
            self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        self.modem.add_sink(self._send)
        self._thread = threading.Thread(target=self._run, name="hostctl-modem", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            for link in list(self._links.values()):
                if link.sock is not None:
                    with contextlib.suppress(OSError):
                        link.sock.close()
            self._links.clear()
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = self._wake_r = self._wake_w = -1
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        if self._sel is not None:
            with contextlib.suppress(Exception):
                self._sel.close()

    # -- output (any thread) ----------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        with self._lock:
            for link in self._links.values():
                link.backlog += data
                if len(link.backlog) > MAX_BACKLOG:
                    del link.backlog[: len(link.backlog) - MAX_BACKLOG]
                self._flush(link)
            pending = any(link.backlog for link in self._links.values())
        if pending:
            self._wake()

    def _send_to(self, fd: int, data: bytes) -> None:
        """The answer to what one terminal sent goes to that terminal only."""
        with self._lock:
            link = self._links.get(fd)
            if link is None:
                return
            link.backlog += data
            self._flush(link)
            pending = bool(link.backlog)
        if pending:
            self._wake()

    def _flush(self, link: _Link) -> None:
        """Write what the link's queue takes; the rest waits for the terminal to read (the I/O
        thread writes more when the fd is writable). A pty nobody has read for STALE_AFTER seconds
        loses its queued output, as a UART nobody listens to does (see ``_drop_stale``)."""
        while link.backlog:
            try:
                n = os.write(link.fd, link.backlog)
            except (BlockingIOError, InterruptedError):
                if link.stuck_since is None:
                    link.stuck_since = time.monotonic()
                return
            except OSError:
                link.backlog.clear()  # the client went away; its link closes on next read
                return
            del link.backlog[:n]
            link.stuck_since = None

    def _drop_stale(self) -> None:
        now = time.monotonic()
        with self._lock:
            for link in self._links.values():
                if (
                    link.kind == "pty"
                    and link.backlog
                    and link.stuck_since is not None
                    and now - link.stuck_since > STALE_AFTER
                ):
                    link.backlog.clear()
                    link.stuck_since = None
                    with contextlib.suppress(OSError):  # and what the kernel still queues
                        termios.tcflush(self._slave, termios.TCIFLUSH)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    # -- the I/O thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        assert self._sel is not None
        while not self._stopping:
            with self._lock:
                waiting = [link for link in self._links.values() if link.backlog]
            for link in waiting:
                self._modify(link.fd, selectors.EVENT_READ | selectors.EVENT_WRITE)
            try:
                ready = self._sel.select(timeout=0.5 if not waiting else 0.05)
            except (OSError, ValueError):
                if self._stopping:
                    return
                continue
            if waiting:
                self._drop_stale()
            for key, mask in ready:
                try:
                    self._ready(key, mask)
                except Exception:  # a fault with one client must not stop the modem
                    log.exception("modem I/O")

    def _selector(self) -> selectors.BaseSelector:
        if self._sel is None:
            raise RuntimeError("modem server: the I/O loop is not running")
        return self._sel

    def _modify(self, fd: int, events: int) -> None:
        sel = self._selector()
        with contextlib.suppress(KeyError, ValueError, OSError):
            sel.modify(fd, events, sel.get_key(fd).data)

    def _ready(self, key: selectors.SelectorKey, mask: int) -> None:
        what = key.data
        if what == "wake":
            with contextlib.suppress(OSError):
                os.read(self._wake_r, 4096)
            return
        if what == "listen":
            if self._listener is None:
                raise RuntimeError("modem server: a listen event without a listener")
            sock, _ = self._listener.accept()
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._links[sock.fileno()] = _Link(sock.fileno(), "tcp", sock)
            self._selector().register(sock, selectors.EVENT_READ, "tcp")
            return
        fd = key.fd
        if mask & selectors.EVENT_WRITE:
            with self._lock:
                link = self._links.get(fd)
                if link is not None:
                    self._flush(link)
                    if not link.backlog:
                        self._modify(fd, selectors.EVENT_READ)
        if mask & selectors.EVENT_READ:
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close(fd, what)
                return
            self.modem.feed(data, reply_to=lambda out, fd=fd: self._send_to(fd, out))

    def _close(self, fd: int, what: str) -> None:
        if what == "pty":
            return  # no terminal has the slave open; we hold it, so this does not happen
        with contextlib.suppress(Exception):
            self._selector().unregister(fd)
        with self._lock:
            link = self._links.pop(fd, None)
        if link is not None and link.sock is not None:
            with contextlib.suppress(OSError):
                link.sock.close()
