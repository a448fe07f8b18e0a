"""`hostctl send`'s input (issue 18.5): refused at once, with the limit, before the handset is
touched; a long text goes out as Android sends it (a concatenated SMS, or one MX message)."""

from __future__ import annotations

import io
import json
import os

import pytest

from hostctl.cli import Environment, ExitStatus, main
from hostctl.emulator import screens
from hostctl.emulator.lab import LabConfig, LabThread
from hostctl.sms.outgoing import OutgoingError, check_number, check_text
from tests.conftest import app_bound, free_port, wait_for


@pytest.fixture(scope="module")
def slab(tmp_path_factory):
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=2,
            modem=False,
            relay=False,
            consoles=False,
            profile="miui-v5-2014-08-10",
            home=tmp_path_factory.mktemp("send"),
        )
    ) as lt:
        yield lt


def cli(lt, *argv):
    out, err = io.StringIO(), io.StringIO()
    env = {k: v for k, v in os.environ.items() if k != "ANDROID_SERIAL"}
    st = main(["--adb", f"127.0.0.1:{lt.config.adb_port}", *argv], Environment(stdout=out, stderr=err, vars=env))
    return st, out.getvalue(), err.getvalue()


BAD = [
    ("hello\x01world", "U+0001"),  # crashed reading the UI dump
    ("bell\x07", "U+0007"),
    ("nul\x00", "U+0000"),
    ("del\x7f", "U+007F"),
    ("c1\x85", "U+0085"),
    ("x" * 100_000, "65535"),  # crashed on adb's request limit
    ("\u4e2d" * 17_086, "255 SMS parts"),  # one UCS-2 unit more than 255 parts hold
    ("a" * 39_016, "255 SMS parts"),  # one GSM character more
    ("", "empty"),  # waited out the timeout, left an outbox row
    ("\ud800", "surrogate"),
]


@pytest.mark.parametrize("text,limit", BAD, ids=[b[1] + str(i) for i, b in enumerate(BAD)])
def test_bad_text_exits_2_at_once_and_touches_nothing(slab, text, limit):
    a, b = slab.lab.handsets
    before = a.handset.sms_query("content://sms")
    cmds_before = len(a.emitted)
    st, out, err = cli(
        slab, "send", "-s", a.serial, "--to", b.identity.sims[0].msisdn, "--text", text, "--timeout", "60"
    )
    assert st == ExitStatus.USAGE, err
    assert limit in err and "Traceback" not in err and out == ""
    assert len(a.emitted) == cmds_before
    assert a.handset.sms_query("content://sms") == before  # no outbox row, no row at all


@pytest.mark.parametrize("to", ["abc", "+86 139x", "123;reboot", "'", "+" + "1" * 21, "", "+", "１２３"])
def test_a_to_that_is_not_a_number_exits_2_at_once(slab, to):
    a = slab.lab.handsets[0]
    st, out, err = cli(slab, "send", "-s", a.serial, "--to", to, "--text", "hi", "--timeout", "60")
    assert st == ExitStatus.USAGE, err
    assert "20 digits" in err or "at most 20" in err


def test_bad_input_is_refused_even_with_no_device_at_all(tmp_path):
    # validated before the adb server is asked anything: a dead server does not change the answer
    out, err = io.StringIO(), io.StringIO()
    st = main(
        ["--adb", f"127.0.0.1:{free_port()}", "send", "--to", "+8613900000001", "--text", ""],
        Environment(stdout=out, stderr=err, vars={}),
    )
    assert st == ExitStatus.USAGE and "empty" in err.getvalue()


def test_the_library_refuses_the_same_input():
    from hostctl.cloud import send_message

    with pytest.raises(OutgoingError, match="control character U\\+0001"):
        send_message(None, "+8613900000001", "a\x01b")  # never reaches the handset
    with pytest.raises(OutgoingError, match="not a phone number"):
        send_message(None, "12; reboot", "hi")


def test_limits_are_the_sms_and_adb_ones():
    assert check_text("a" * 160) == 1 and check_text("a" * 161) == 2
    assert check_text("a" * 39_015) == 255
    assert check_text("\u4e2d" * 70) == 1 and check_text("\u4e2d" * 17_085) == 255
    assert check_text("line\r\nnext\ttab") == 1
    assert check_number("+86 (139) 0000-0001") == "+8613900000001"
    with pytest.raises(OutgoingError, match="65535"):
        check_text("'" * 20_000)  # fits 255 parts, but its shell quoting does not fit a request


def test_a_long_text_goes_out_as_a_concatenated_sms(slab):
    a, b = slab.lab.handsets
    for lh in (a, b):  # Cloud Messaging off at both ends: the SMS route
        slab.call(_cm(lh, False))
    text = "long message " + "0123456789" * 50  # 513 characters: 4 parts of 153
    nb = b.identity.sims[0].msisdn
    st, out, err = cli(
        slab,
        "send",
        "-s",
        a.serial,
        "--to",
        nb,
        "--text",
        text,
        "--receiver",
        b.serial,
        "--expect",
        "sms",
        "--json",
        "--timeout",
        "60",
    )
    assert st == ExitStatus.OK, err
    doc = json.loads(out)
    assert doc["route"] == "sms" and doc["evidence"]["receiver"]["body"] == text
    parts = [
        r
        for r in slab.lab.carrier.records(nb)
        if r.segment.sender == a.identity.sims[0].msisdn and r.segment.concat is not None and r.segment.text in text
    ]
    assert sorted(r.segment.concat[2] for r in parts)[-4:] == [1, 2, 3, 4]
    assert all(r.segment.concat[1] == 4 for r in parts[-4:])


def test_a_long_text_goes_out_as_one_mx_message_over_ip(slab):
    a, b = slab.lab.handsets
    cm = slab.lab.cloud.cm
    nb = b.identity.sims[0].msisdn
    for lh in (a, b):
        slab.call(_cm(lh, True))
    wait_for(lambda: cm.presence(nb) and app_bound(a), 20)
    text = "\u4e2d\u6587 " * 300  # 900 UCS-2 units: 14 SMS parts, one MX message
    st, out, err = cli(
        slab,
        "send",
        "-s",
        a.serial,
        "--to",
        nb,
        "--text",
        text,
        "--receiver",
        b.serial,
        "--expect",
        "ip",
        "--json",
        "--timeout",
        "60",
    )
    assert st == ExitStatus.OK, err
    doc = json.loads(out)
    assert doc["route"] == "ip" and doc["evidence"]["receiver"]["body"] == text


async def _cm(lh, on):
    screens.set_cloud_messaging(lh.handset, on, 0)
