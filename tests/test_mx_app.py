"""The Messaging app process's Cloud Messaging: the switch starts activation (HTTPS + SMS through
the carrier), the app keeps a TLS channel, and an MX message pushed to it becomes an inbox row."""

from __future__ import annotations

import json
import socket

import pytest

from hostctl.emulator import screens
from hostctl.emulator.cloudmsg import CHAT_HOST
from hostctl.emulator.handset import Intent
from hostctl.emulator.lab import LabConfig, LabThread
from tests.conftest import app_bound, free_port
from tests.conftest import wait_for as _wait_for


@pytest.fixture(scope="module")
def mxlab(tmp_path_factory):
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=2,
            modem=False,
            relay=False,
            consoles=False,
            profile="miui-v5-2014-08-10",
            home=tmp_path_factory.mktemp("mx"),
        )
    ) as lt:
        yield lt


def wait_for(pred, timeout=15.0):
    # app processes and TLS under load: a longer leash than the default
    return _wait_for(pred, timeout, interval=0.05)


def test_switch_on_activates_binds_and_receives_over_ip(mxlab):
    lh = mxlab.lab.handsets[0]
    h = lh.handset
    cm = mxlab.lab.cloud.cm
    number = lh.identity.sims[0].msisdn
    results = []
    h.add_intent_listener(
        lambda i: results.append(i.extras) if i.action == "com.xiaomi.mms.action.ENBALE_RESULT" else None
    )

    async def flip():
        screens.set_cloud_messaging(h, True, 0)

    mxlab.call(flip())
    wait_for(lambda: results)
    assert results[0] == {"success": True, "sim_index": 0}
    assert cm.presence(number)  # the channel is bound
    login = screens.pref_mx(h)["pref_mx_account_info"]["logins"][0]
    assert login["mid"] == cm.account(number).mid and login["enabled"] is True
    assert any(
        r.segment.recipient == cm.gateway and r.segment.sender == number for r in mxlab.lab.carrier.records()
    )  # the activation SMS
    assert {o.endpoint for o in cm.observed} >= {"account", "gateway", "chat"}

    # a peer on the service sends to the handset over IP
    peer = "+8613900000001"
    tok = cm.request_activation(peer)
    assert cm.gateway_sms(peer, tok)
    acct = cm.account(peer)
    addr, port = mxlab.lab.cloud.hosts()[CHAT_HOST]
    raw = socket.create_connection((addr, port), timeout=10)
    with mxlab.lab.cloud.ca.client_context().wrap_socket(raw, server_hostname=CHAT_HOST) as s:
        f = s.makefile("rwb")
        f.write(json.dumps({"type": "bind", "mid": acct.mid, "st": acct.st}).encode() + b"\n")
        f.flush()
        assert json.loads(f.readline())["ok"]
        f.write(json.dumps({"type": "message", "id": "p1", "to": number, "body": "over ip"}).encode() + b"\n")
        f.flush()
        assert json.loads(f.readline())["status"] == "sent"
        assert json.loads(f.readline()) == {"type": "receipt", "id": "p1", "status": "delivered", "to": number}
    names, rows = h.sms_query("content://sms/inbox", ["address", "body", "type", "mx_status"], sort="_id")
    assert dict(zip(names, rows[-1])) == {"address": peer, "body": "over ip", "type": 1, "mx_status": 65537}
    assert cm.retained() == {"messages": 0, "bytes": 0}

    async def off():
        screens.set_cloud_messaging(h, False, 0)

    mxlab.call(off())
    wait_for(lambda: not cm.presence(number))


def adb(lt, serial, *args):
    import os
    import subprocess

    from hostctl.emulator.lab import adb_binary

    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(lt.config.adb_port))
    return subprocess.run(
        [adb_binary(), "-s", serial, *args], env=env, capture_output=True, text=True, timeout=30
    ).stdout


def rows(lh, box="content://sms"):
    names, found = lh.handset.sms_query(box, ["_id", "address", "body", "type", "mx_status"], sort="_id")
    return [dict(zip(names, r)) for r in found]


def was_mx(lh, row) -> bool:
    """The fallback's mark: an SMS row that kept the mx_id it got as an MX message."""
    names, found = lh.handset.sms_query(f"content://sms/{row['_id']}", ["mx_id"])
    return found[0][0] is not None


def send_via_ui(lt, lh, to, text):
    """As a user (or `hostctl send`): SENDTO intent, then tap Send on the compose screen."""
    adb(
        lt,
        lh.serial,
        "shell",
        "am",
        "start",
        "-a",
        "android.intent.action.SENDTO",
        "-d",
        f"smsto:{to}",
        "--es",
        "sms_body",
        f"'{text}'",
    )
    xml = adb(lt, lh.serial, "shell", "uiautomator", "dump", "/sdcard/ui.xml") and adb(
        lt, lh.serial, "shell", "cat", "/sdcard/ui.xml"
    )
    import re

    m = re.search(r'resource-id="com.android.mms:id/send_button"[^>]*bounds="\[(\d+),(\d+)\]\[(\d+),(\d+)\]"', xml)
    x1, y1, x2, y2 = map(int, m.groups())
    adb(lt, lh.serial, "shell", "input", "tap", str((x1 + x2) // 2), str((y1 + y2) // 2))


def test_send_goes_over_ip_when_online_and_falls_back_to_sms_when_not(mxlab):
    a, b = mxlab.lab.handsets
    cm = mxlab.lab.cloud.cm
    na, nb = a.identity.sims[0].msisdn, b.identity.sims[0].msisdn

    async def on(lh, value):
        screens.set_cloud_messaging(lh.handset, value, 0)

    for lh in (a, b):
        mxlab.call(on(lh, True))
    wait_for(lambda: cm.presence(na) and cm.presence(nb) and app_bound(a))
    sms_before = len(mxlab.lab.carrier.records(nb))

    send_via_ui(mxlab, a, nb, "hello over ip")
    sent = wait_for(lambda: [r for r in rows(a) if r["body"] == "hello over ip" and r["mx_status"] == 17])
    assert sent[0]["type"] == 2
    got = wait_for(lambda: [r for r in rows(b, "content://sms/inbox") if r["body"] == "hello over ip"])
    assert got[0]["mx_status"] == 65537
    assert len(mxlab.lab.carrier.records(nb)) == sms_before  # the carrier saw no SMS

    mxlab.call(on(b, False))  # receiver opts out
    wait_for(lambda: not cm.presence(nb))
    send_via_ui(mxlab, a, nb, "hello by sms")
    fallback = wait_for(lambda: [r for r in rows(a) if r["body"] == "hello by sms" and r["type"] == 2])
    assert fallback[0]["mx_status"] == 0  # re-sent as a plain SMS
    names, found = a.handset.sms_query(f"content://sms/{fallback[0]['_id']}", ["mx_id"])
    assert found[0][0] is not None  # ...that was an MX message
    got = wait_for(lambda: [r for r in rows(b, "content://sms/inbox") if r["body"] == "hello by sms"])
    assert got[0]["mx_status"] == 0
    assert any(r.segment.sender == na and r.segment.text == "hello by sms" for r in mxlab.lab.carrier.records(nb))


def test_hostctl_send_reports_route_and_both_rows(mxlab):
    import io
    import os

    from hostctl.cli import Environment, ExitStatus, main

    a, b = mxlab.lab.handsets
    cm = mxlab.lab.cloud.cm
    nb = b.identity.sims[0].msisdn

    def cli(*argv):
        out, err = io.StringIO(), io.StringIO()
        env = {k: v for k, v in os.environ.items() if k != "ANDROID_SERIAL"}
        st = main(["--adb", f"127.0.0.1:{mxlab.config.adb_port}", *argv], Environment(stdout=out, stderr=err, vars=env))
        return st, out.getvalue(), err.getvalue()

    async def on(lh, value):
        screens.set_cloud_messaging(lh.handset, value, 0)

    for lh in (a, b):
        mxlab.call(on(lh, True))
    wait_for(lambda: cm.presence(nb) and app_bound(a))
    st, out, err = cli(
        "send", "-s", a.serial, "--to", nb, "--text", "it's via ip", "--receiver", b.serial, "--expect", "ip", "--json"
    )
    assert st == ExitStatus.OK, err
    doc = json.loads(out)
    assert doc["route"] == "ip" and doc["fallback"] is False and doc["ok"] is True
    assert doc["evidence"]["sender"]["mx_status"] == 17 and doc["evidence"]["receiver"]["mx_status"] == 65537
    mxlab.call(on(b, False))
    wait_for(lambda: not cm.presence(nb))
    st, out, err = cli(
        "send", "-s", a.serial, "--to", nb, "--text", "now sms", "--receiver", b.serial, "--expect", "ip", "--json"
    )
    doc = json.loads(out)
    assert st == ExitStatus.CHECK_FAILED and doc["route"] == "sms" and "expected route ip" in err
    assert doc["evidence"]["receiver"]["mx_status"] == 0 and doc["evidence"]["sender"]["type"] == 2
    st, out, err = cli(
        "send", "-s", a.serial, "--to", "+8613999990001", "--text", "to nobody", "--expect", "sms", "--json"
    )
    doc = json.loads(out)  # an unallocated number: the send fails
    assert st == ExitStatus.CHECK_FAILED and doc["route"] == "failed" and doc["ok"] is False
    assert doc["evidence"]["sender"]["type"] == 5


def test_receiver_in_airplane_mode_or_powered_down_gets_sms(mxlab):
    a, b = mxlab.lab.handsets
    cm = mxlab.lab.cloud.cm
    nb = b.identity.sims[0].msisdn

    async def on(lh, value):
        screens.set_cloud_messaging(lh.handset, value, 0)

    for lh in (a, b):
        mxlab.call(on(lh, True))
    wait_for(lambda: cm.presence(nb) and app_bound(a))

    async def airplane(value):
        b.handset.settings_put("global", "airplane_mode_on", "1" if value else "0")
        b.handset.broadcast(Intent(kind="broadcast", action="android.intent.action.AIRPLANE_MODE"))

    mxlab.call(airplane(True))
    wait_for(lambda: not cm.presence(nb))  # the channel dropped with the radio
    send_via_ui(mxlab, a, nb, "to a plane")
    row = wait_for(lambda: [r for r in rows(a) if r["body"] == "to a plane" and r["type"] == 2])
    assert row[0]["mx_status"] == 0 and was_mx(a, row[0])  # the fallback: an MX message re-sent
    mxlab.call(airplane(False))
    wait_for(lambda: cm.presence(nb))  # re-bound when the radio is back
    wait_for(lambda: [r for r in rows(b, "content://sms/inbox") if r["body"] == "to a plane"])

    mxlab.call(b.power_off())
    try:
        wait_for(lambda: not cm.presence(nb))
        send_via_ui(mxlab, a, nb, "to a dead phone")
        row = wait_for(lambda: [r for r in rows(a) if r["body"] == "to a dead phone" and r["type"] == 2])
        assert row[0]["mx_status"] == 0 and was_mx(a, row[0])
    finally:
        mxlab.call(b.power_on())

    send_via_ui(mxlab, a, "+8613999990000", "to a non-MIUI number")  # not a Cloud Messaging user
    row = wait_for(lambda: [r for r in rows(a) if r["body"] == "to a non-MIUI number" and r["type"] in (2, 5)])
    assert row[0]["mx_status"] == 0 and was_mx(a, row[0])


def test_presence_as_the_app_shows_it_follows_the_other_handsets_switch(mxlab):
    import io
    import os

    from hostctl.cli import Environment, ExitStatus, main

    a, b = mxlab.lab.handsets
    cm = mxlab.lab.cloud.cm
    nb = b.identity.sims[0].msisdn

    def presence():
        out = io.StringIO()
        env = {k: v for k, v in os.environ.items() if k != "ANDROID_SERIAL"}
        st = main(
            ["--adb", f"127.0.0.1:{mxlab.config.adb_port}", "presence", "-s", a.serial, nb, "--json"],
            Environment(stdout=out, stderr=io.StringIO(), vars=env),
        )
        assert st == ExitStatus.OK
        return json.loads(out.getvalue())["online"]

    async def on(lh, value):
        screens.set_cloud_messaging(lh.handset, value, 0)

    mxlab.call(on(a, True))
    mxlab.call(on(b, True))
    wait_for(lambda: cm.presence(nb) and cm.presence(a.identity.sims[0].msisdn) and app_bound(a))
    assert presence() is True
    mxlab.call(on(b, False))
    wait_for(lambda: not cm.presence(nb))
    assert presence() is False


def test_send_to_the_lab_modem_reports_its_receipt_and_the_carrier(tmp_path):
    import io
    import os

    from hostctl.cli import Environment, ExitStatus, main

    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=1,
            relay=False,
            consoles=False,
            profile="miui-v5-2014-08-10",
            home=tmp_path / "home",
        )
    ) as lt:
        a = lt.lab.handsets[0]
        modem_number = lt.lab.modem_info()["number"]
        out, err = io.StringIO(), io.StringIO()
        env = {k: v for k, v in os.environ.items() if k != "ANDROID_SERIAL"}
        env.update(HOSTCTL_HOME=str(tmp_path / "home"), ANDROID_ADB_SERVER_PORT=str(lt.config.adb_port))
        lt.lab._write_lab_file()
        st = main(
            [
                "send",
                "-s",
                a.serial,
                "--to",
                modem_number,
                "--text",
                "to the witness",
                "--modem",
                "lab",
                "--expect",
                "sms",
                "--json",
            ],
            Environment(stdout=out, stderr=err, vars=env),
        )
        assert st == ExitStatus.OK, err.getvalue()
        doc = json.loads(out.getvalue())
        assert doc["route"] == "sms"
        assert doc["evidence"]["modem"] == {"sender": a.identity.sims[0].msisdn, "text": "to the witness", "parts": 1}
        seen = doc["evidence"]["carrier"]
        assert seen and seen[0]["sender"] == a.identity.sims[0].msisdn and seen[0]["recipient"] == modem_number
