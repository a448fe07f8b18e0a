"""The emulated carrier (hostctl.emulator.carrier): routing, store-and-forward, reports."""

from __future__ import annotations

import threading

import pytest

from hostctl.emulator.carrier import Carrier, CarrierError, Reassembler, SmsSegment, normalise_number

A, B, C = "+8613800000001", "+8613800000002", "+8613800000003"


class Phone:
    def __init__(self, up: bool = True) -> None:
        self.up = up
        self.got: list[SmsSegment] = []
        self.reports: list = []

    def sms_deliver(self, segment):
        if self.up:
            self.got.append(segment)
        return self.up

    def sms_status_report(self, record):
        self.reports.append((record.segment.message_ref, record.status))


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


def test_numbering_plan():
    assert normalise_number("13800138000", "86") == "+8613800138000"
    assert normalise_number("+86 138-0013-8000", "86") == "+8613800138000"
    assert normalise_number("008613800138000", "44") == "+8613800138000"
    assert normalise_number("07700900123", "44") == "+447700900123"
    for bad in ("", "+", "abc", "+1234567890123456"):
        with pytest.raises(CarrierError):
            normalise_number(bad, "86")


def test_delivery_and_the_record_of_it():
    carrier, a, b = Carrier(), Phone(), Phone()
    seen = []
    carrier.on_record(lambda r: seen.append((r.id, r.status)))
    carrier.attach(A, a)
    carrier.attach(B, b)
    rec = carrier.submit(SmsSegment(A, B, "hi", message_ref=7, status_report=True))
    assert rec.status == "delivered" and b.got[0].text == "hi" and b.got[0].smsc == carrier.smsc
    assert b.got[0].timestamp == rec.submitted_at
    assert a.reports == [(7, "delivered")] and rec.report_sent_at is not None
    assert seen == [(rec.id, "delivered")] or seen == [(rec.id, "pending"), (rec.id, "delivered")]
    assert carrier.records(B) == [rec] and carrier.records(C) == []


def test_store_and_forward_until_the_recipient_attaches():
    carrier, a, b = Carrier(), Phone(), Phone()
    carrier.attach(A, a)
    carrier.provision(B)
    rec = carrier.submit(SmsSegment(A, B, "later", status_report=True, message_ref=1))
    assert rec.status == "pending" and a.reports == []
    carrier.attach(B, b)
    assert rec.status == "delivered" and [s.text for s in b.got] == ["later"]
    assert a.reports == [(1, "delivered")]


def test_unreachable_phone_keeps_it_stored_and_validity_ends_it():
    clock = Clock()
    carrier, a, b = Carrier(clock=clock, validity=60), Phone(), Phone(up=False)  # attached, radio busy
    carrier.attach(A, a)
    carrier.attach(B, b)
    rec = carrier.submit(SmsSegment(A, B, "x", status_report=True, message_ref=2))
    assert rec.status == "pending" and rec.attempts == 1
    clock.now += 61
    assert carrier.expire() == [rec] and rec.status == "expired"
    assert a.reports == [(2, "expired")]


def test_unallocated_number_fails_at_once():
    carrier, a = Carrier(), Phone()
    carrier.attach(A, a)
    rec = carrier.submit(SmsSegment(A, "+8613899999999", "x", status_report=True, message_ref=3))
    assert rec.status == "failed" and rec.reason == "unallocated number"
    assert a.reports == []  # refused at submission: the submit's answer says so, no report


def test_a_faulty_subscriber_does_not_break_the_network():
    class Broken(Phone):
        def sms_deliver(self, segment):
            raise RuntimeError("boom")

    carrier = Carrier()
    carrier.attach(B, Broken())
    carrier.provision(A)
    rec = carrier.submit(SmsSegment(A, B, "x"))
    assert rec.status == "pending" and "boom" in rec.reason


def test_concurrent_submissions_are_all_recorded_and_delivered():
    carrier, b = Carrier(), Phone()
    carrier.attach(B, b)
    carrier.provision(A)
    threads = [
        threading.Thread(target=lambda i=i: [carrier.submit(SmsSegment(A, B, f"{i}-{j}")) for j in range(50)])
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(carrier.records()) == 400 == len(b.got)
    assert len({r.id for r in carrier.records()}) == 400


def test_reassembly_in_any_order():
    r = Reassembler()
    parts = [SmsSegment(A, B, t, concat=(9, 3, i + 1)) for i, t in enumerate(("a", "b", "c"))]
    assert r.add(parts[2]) is None and r.add(parts[0]) is None
    assert [p.text for p in r.add(parts[1])] == ["a", "b", "c"]
    assert r.parts == {}
    single = SmsSegment(A, B, "whole")
    assert r.add(single) == [single]
