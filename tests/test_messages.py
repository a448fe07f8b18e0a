"""`hostctl messages`: rows through the provider, each with its route."""

from __future__ import annotations

import io
import json
import os

import pytest

from hostctl.cli import Environment, ExitStatus, main
from hostctl.emulator.lab import LabConfig, LabThread
from hostctl.messages import classify, parse_content_rows, parse_siminfo
from tests.conftest import free_port


def cli(lt, *argv):
    out, err = io.StringIO(), io.StringIO()
    env = {k: v for k, v in os.environ.items() if k != "ANDROID_SERIAL"}
    st = main(["--adb", f"127.0.0.1:{lt.config.adb_port}", *argv], Environment(stdout=out, stderr=err, vars=env))
    return st, out.getvalue(), err.getvalue()


def test_route_classification_follows_miui_mx_status():
    assert [
        classify(t, mx)
        for t, mx in ((1, 0), (2, 0), (2, 16), (2, 17), (1, 65537), (4, 1), (2, 1), (5, 131073), (1, 196609), (1, 7))
    ] == ["sms", "sms", "ip", "ip", "ip", "sms-fallback", "ip-pending", "ip-failed", "web", "unknown(7)"]


def test_content_rows_with_commas_equals_and_newlines_in_the_body():
    text = "Row: 0 _id=2, address=NULL, body=a, b=c\nRow: x\r\nRow: 1 _id=1, address=+1, body=\n"
    assert parse_content_rows(text, ("_id", "address", "body")) == [
        {"_id": "2", "address": None, "body": "a, b=c\nRow: x"},
        {"_id": "1", "address": "+1", "body": ""},
    ]
    with pytest.raises(ValueError):
        parse_content_rows("Row: 0 _id=1, body=x", ("_id", "address", "body"))


def test_messages_on_a_handset_after_an_sms_and_mx_rows(tmp_path):
    with LabThread(
        LabConfig(adb_port=free_port(), handsets=2, with_apps=False, modem=False, cloud=False, home=tmp_path / "h")
    ) as lt:
        a, b = lt.lab.handsets

        async def traffic():
            a.send_sms(b.identity.sims[0].msisdn, "plain one, with=commas\nand a line")
            b.handset.sms_insert(
                {"address": a.identity.sims[0].msisdn, "body": "over ip", "type": 1, "mx_status": 65537}
            )
            b.handset.sms_insert({"address": a.identity.sims[0].msisdn, "body": "waiting", "type": 4, "mx_status": 1})

        lt.call(traffic())
        st, out, err = cli(lt, "messages", "-s", b.serial, "--json")
        assert st == ExitStatus.OK, err
        rows = json.loads(out)["messages"]
        assert [(r["box"], r["route"], r["body"]) for r in rows] == [
            ("outbox", "sms-fallback", "waiting"),
            ("inbox", "ip", "over ip"),
            ("inbox", "sms", "plain one, with=commas\nand a line"),
        ]
        assert rows[2]["address"] == a.identity.sims[0].msisdn and rows[2]["direction"] == "in"
        # as on MIUI: sim_id is the SIM's subscription id (1 for slot 0 here), mapped back to the slot
        assert (rows[2]["sim_id"], rows[2]["slot"]) == (1, 0)
        assert (rows[0]["sim_id"], rows[0]["slot"]) == (0, None)  # a row naming no subscription
        st, out, _ = cli(lt, "messages", "-s", a.serial, "--json", "--redact")
        (sent,) = json.loads(out)["messages"]
        assert (sent["box"], sent["route"]) == ("sent", "sms") and sent["body"] == "<33 characters>"
        assert b.identity.sims[0].msisdn not in out
        from hostctl.device import AdbAddress, Handset
        from hostctl.messages import read_messages

        hb = Handset(b.serial, AdbAddress("127.0.0.1", lt.config.adb_port))
        assert [m.id for m in read_messages(hb, after=rows[1]["id"])] == [rows[0]["id"]]
        assert read_messages(hb, after=rows[0]["id"]) == []
        st, out, _ = cli(lt, "messages", "-s", b.serial, "--limit", "1")
        assert st == ExitStatus.OK and len(out.strip().splitlines()) == 2 and "sms-fallback" in out


def test_siminfo_maps_subscription_ids_to_slots():
    text = "Row: 0 _id=1, sim_id=0\nRow: 1 _id=2, sim_id=-1\nRow: 2 _id=7, sim_id=1\n"
    assert parse_siminfo(text) == {1: 0, 7: 1}  # a removed SIM (slot -1) maps to none
    assert parse_siminfo("No result found.\n") == {}
