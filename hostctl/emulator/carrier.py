"""The emulated carrier: numbering plan, SMSC, SMS routing between subscribers, delivery reports.

Every handset SIM of a lab and the lab's GSM modem are subscribers, attached by number while they
are reachable (powered, registered, not in airplane mode). The carrier moves SMS *segments*, as a
network does (one TP-PDU each; a concatenated message is several segments that the receiving
phone or modem reassembles), keeps a record of every segment it saw (what a test or an audit
reads as "what the carrier saw"), stores segments for an unreachable subscriber until it attaches
again or the validity period ends, and sends status reports to senders who asked for them.

No I/O inside: subscribers are objects whose methods the carrier calls; the lab wires them to
handsets (``LabHandset``) and to the emulated modem. Thread-safe (the modem's pty runs in a
thread of its own); callbacks run outside the carrier's lock.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

__all__ = ["Carrier", "CarrierError", "SmsRecord", "SmsSegment", "Subscriber", "normalise_number"]

DEFAULT_SMSC = "+8613800100500"
DEFAULT_VALIDITY = 3 * 24 * 3600.0  # seconds a stored segment waits for its recipient


class CarrierError(ValueError):
    pass


def normalise_number(number: str, country_code: str) -> str:
    """E.164 with '+': "+8613800138000", "008613800138000" and national "13800138000" (for
    country code 86) are one number. Spaces, dashes and parentheses are ignored."""
    digits = re.sub(r"[\s\-().]", "", number)
    if digits.startswith("+"):
        body = digits[1:]
    elif digits.startswith("00"):
        body = digits[2:]
    else:
        body = country_code + digits.lstrip("0")
    if not body.isdigit() or not 3 <= len(body) <= 15:
        raise CarrierError(f"not a phone number: {number!r}")
    return "+" + body


@dataclass(frozen=True)
class SmsSegment:
    """One SMS as it crosses the network (the content of one SMS-SUBMIT / SMS-DELIVER TPDU)."""

    sender: str  # E.164 (the SMS-DELIVER's originating address)
    recipient: str  # E.164
    text: str  # this segment's text
    coding: str = "gsm7"  # "gsm7" | "ucs2" | "8bit"
    concat: tuple[int, int, int] | None = None  # (reference, parts, sequence 1..parts)
    status_report: bool = False  # the sender asked for a delivery report
    message_ref: int = 0  # TP-MR the sender gave it
    smsc: str = DEFAULT_SMSC
    timestamp: float = 0.0  # when the SMSC received it (the SMS-DELIVER's TP-SCTS)


@dataclass
class SmsRecord:
    """What the carrier saw of one segment, and what became of it."""

    id: int
    segment: SmsSegment
    submitted_at: float
    status: str = "pending"  # pending | delivered | failed | expired
    delivered_at: float | None = None
    reason: str = ""
    report_sent_at: float | None = None
    attempts: int = 0

    def to_json(self) -> dict:
        s = self.segment
        return {
            "id": self.id,
            "sender": s.sender,
            "recipient": s.recipient,
            "text": s.text,
            "coding": s.coding,
            "concat": list(s.concat) if s.concat else None,
            "status_report": s.status_report,
            "message_ref": s.message_ref,
            "smsc": s.smsc,
            "submitted_at": self.submitted_at,
            "status": self.status,
            "delivered_at": self.delivered_at,
            "reason": self.reason,
            "report_sent_at": self.report_sent_at,
        }


class Subscriber(Protocol):
    """A phone or modem on the network."""

    def sms_deliver(self, segment: SmsSegment) -> bool:
        """Hand the segment over; False when the subscriber cannot take it now (it stays stored)."""

    def sms_status_report(self, record: SmsRecord) -> None:
        """A status report for a segment this subscriber sent with ``status_report``."""


@dataclass
class _Line:
    subscriber: Subscriber
    imsi: str = ""


class Carrier:
    """The network all of a lab's SIMs are on (interconnected operators, one SMSC)."""

    def __init__(
        self, *, smsc: str = DEFAULT_SMSC, validity: float = DEFAULT_VALIDITY, clock: Callable[[], float] = time.time
    ) -> None:
        self.smsc = smsc
        self.validity = validity
        self.clock = clock
        self._lock = threading.RLock()
        self._lines: dict[str, _Line] = {}  # attached numbers
        self._known: dict[str, str] = {}  # every provisioned number -> IMSI
        self._records: list[SmsRecord] = []
        self._ids = itertools.count(1)
        self._listeners: list[Callable[[SmsRecord], None]] = []

    # -- subscribers --------------------------------------------------------------------------

    def provision(self, number: str, imsi: str = "") -> None:
        """Allocate a number (a SIM exists for it), reachable or not."""
        with self._lock:
            self._known[number] = imsi

    def attach(self, number: str, subscriber: Subscriber, imsi: str = "") -> None:
        """The subscriber registered: deliver what was stored for it."""
        with self._lock:
            self._known.setdefault(number, imsi)
            self._lines[number] = _Line(subscriber, imsi)
        self._flush(number)

    def detach(self, number: str) -> None:
        with self._lock:
            self._lines.pop(number, None)

    def attached(self, number: str) -> bool:
        with self._lock:
            return number in self._lines

    def numbers(self) -> list[str]:
        with self._lock:
            return sorted(self._known)

    def on_record(self, callback: Callable[[SmsRecord], None]) -> None:
        """Call ``callback(record)`` whenever a record is created or changes state."""
        with self._lock:
            self._listeners.append(callback)

    # -- traffic ------------------------------------------------------------------------------

    def submit(self, segment: SmsSegment, submitter: Subscriber | None = None) -> SmsRecord:
        """The SMSC accepts a segment (SMS-SUBMIT) and routes it; returns its record.
        (``submitter`` is the submitting line; reports go to the sender's attached line.)"""
        now = self.clock()
        seg = replace(segment, smsc=self.smsc, timestamp=now)
        with self._lock:
            record = SmsRecord(next(self._ids), seg, submitted_at=now)
            self._records.append(record)
            if seg.recipient not in self._known:
                record.status, record.reason = "failed", "unallocated number"
        self._changed(record)
        if record.status == "pending":
            self._try(record)
        # a refused submission is answered by the submit itself (RP-ERROR, +CMS ERROR on a modem):
        # the SMSC never took the message, so no status report follows
        return record

    def expire(self) -> list[SmsRecord]:
        """Give up on stored segments older than the validity period (call it now and then)."""
        now = self.clock()
        with self._lock:
            old = [r for r in self._records if r.status == "pending" and now - r.submitted_at > self.validity]
            for r in old:
                r.status, r.reason = "expired", "validity period ended"
        for r in old:
            self._changed(r)
            if r.segment.status_report:
                self._report(r)
        return old

    def records(self, number: str | None = None) -> list[SmsRecord]:
        """Every segment the carrier saw (to or from ``number`` if given), oldest first."""
        with self._lock:
            return [r for r in self._records if number is None or number in (r.segment.sender, r.segment.recipient)]

    def _flush(self, number: str) -> None:
        with self._lock:
            waiting = [r for r in self._records if r.status == "pending" and r.segment.recipient == number]
        for record in waiting:
            self._try(record)

    def _try(self, record: SmsRecord) -> None:
        with self._lock:
            line = self._lines.get(record.segment.recipient)
            record.attempts += 1
        if line is None:
            return  # stored until the recipient attaches
        try:
            taken = line.subscriber.sms_deliver(record.segment)
        except Exception as exc:  # noqa: BLE001 - a subscriber fault is the subscriber's, not the network's
            taken, record.reason = False, f"delivery raised {exc!r}"
        if not taken:
            return
        with self._lock:
            if record.status != "pending":
                return
            record.status, record.delivered_at = "delivered", self.clock()
        self._changed(record)
        if record.segment.status_report:
            self._report(record)

    def _report(self, record: SmsRecord) -> None:
        with self._lock:
            line = self._lines.get(record.segment.sender)
        if line is None:
            return  # the sender is not attached now: the report is lost, as on a network
        target = line.subscriber
        try:
            target.sms_status_report(record)
        except Exception:  # noqa: BLE001 - a report the sender cannot take is dropped, as on a network
            return
        with self._lock:
            record.report_sent_at = self.clock()

    def _changed(self, record: SmsRecord) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for cb in listeners:
            cb(record)


@dataclass
class Reassembler:
    """Joins concatenated segments per (sender, reference), as a receiving phone does."""

    parts: dict[tuple[str, int], dict[int, SmsSegment]] = field(default_factory=dict)

    def add(self, segment: SmsSegment) -> list[SmsSegment] | None:
        """The complete message's segments in order once the last one arrives, else None."""
        if segment.concat is None:
            return [segment]
        ref, total, seq = segment.concat
        key = (segment.sender, ref)
        got = self.parts.setdefault(key, {})
        got[seq] = segment
        if len(got) < total or any(i not in got for i in range(1, total + 1)):
            return None
        del self.parts[key]
        return [got[i] for i in range(1, total + 1)]
