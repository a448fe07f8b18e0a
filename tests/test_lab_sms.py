"""SMS between lab handsets through the carrier: rows on both ends, what the carrier saw,
store-and-forward while the receiver is off or in airplane mode, delivery reports."""

from __future__ import annotations

import pytest

from hostctl.emulator.handset import Intent
from hostctl.emulator.lab import LabConfig, LabThread
from tests.conftest import free_port


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with LabThread(
        LabConfig(adb_port=free_port(), handsets=2, with_apps=False, modem=False, home=tmp_path_factory.mktemp("sms"))
    ) as lt:
        yield lt


def rows(lh, uri, cols):
    names, found = lh.handset.sms_query(uri, cols, sort="_id")
    return [dict(zip(names, r)) for r in found]


def inbox(lh):
    return rows(lh, "content://sms/inbox", ["address", "body", "type", "mx_status", "sim_id"])


def run(lt, fn):
    async def call():
        return fn()

    return lt.call(call())


def test_sms_between_handsets_with_rows_on_both_ends_and_a_carrier_record(pair):
    a, b = pair.lab.handsets
    text = "Hello over SMS, " + "x" * 200  # two parts
    row, records = run(pair, lambda: a.send_sms(b.identity.sims[0].msisdn, text, status_report=True))
    assert len(records) == 2 and all(r.status == "delivered" for r in records)
    assert [r.segment.concat[1:] for r in records] == [(2, 1), (2, 2)]
    got = inbox(b)[-1]
    assert got["address"] == a.identity.sims[0].msisdn and got["body"] == text
    assert (got["type"], got["mx_status"]) == (1, 0)
    sent = rows(a, f"content://sms/{row}", ["type", "status", "body"])[0]
    assert (sent["type"], sent["status"], sent["body"]) == (2, 0, text)  # delivered report arrived
    assert pair.lab.carrier.records(b.identity.sims[0].msisdn)[-2:] == records


def test_stored_while_off_and_delivered_on_power_on(pair):
    a, b = pair.lab.handsets
    pair.call(b.power_off())
    try:
        _, records = run(pair, lambda: a.send_sms(b.identity.sims[0].msisdn, "while you were off"))
        assert records[0].status == "pending"
        before = len(inbox(b))
    finally:
        pair.call(b.power_on(with_apps=False))
    assert records[0].status == "delivered" and len(inbox(b)) == before + 1
    assert inbox(b)[-1]["body"] == "while you were off"


def test_airplane_mode_detaches_until_it_is_turned_off(pair):
    a, b = pair.lab.handsets
    h = b.handset

    def airplane(on):
        h.settings_put("global", "airplane_mode_on", "1" if on else "0")
        h.broadcast(Intent(kind="broadcast", action="android.intent.action.AIRPLANE_MODE", extras={"state": on}))

    run(pair, lambda: airplane(True))
    assert not pair.lab.carrier.attached(b.identity.sims[0].msisdn)
    _, records = run(pair, lambda: a.send_sms(b.identity.sims[0].msisdn, "plane"))
    assert records[0].status == "pending"
    run(pair, lambda: airplane(False))
    assert records[0].status == "delivered" and inbox(b)[-1]["body"] == "plane"


def test_unallocated_number_fails_and_the_row_says_so(pair):
    a = pair.lab.handsets[0]
    row, records = run(pair, lambda: a.send_sms("+8613999999999", "nobody"))
    assert records[0].status == "failed"
    assert rows(a, f"content://sms/{row}", ["type"])[0]["type"] == 5
