"""Identity strategy logic on scripted devices: slot ordering, cross-slot answers, absent SIMs,
redaction of quoted replies. (End-to-end runs on every profile are in test_cli_identity.py.)"""

from __future__ import annotations

import re

from hostctl.device import ShellResult
from hostctl.emulator.shell.parcel import ParcelWriter, format_parcel
from hostctl.identity import Attempt, IdentityReport, SlotIdentity, _Reader, read_identity, redact_text, tables_for

IMSI0, IMSI1 = "234150000000017", "234159999999925"
IMEI0, IMEI1 = "864804023599400", "864804023599418"


def reply(value: str | None) -> str:
    return format_parcel(ParcelWriter().write_no_exception().write_string16(value).data())


class ScriptedHandset:
    """Answers getprop and `service call iphonesubinfo` from a table; records what it was asked."""

    serial, server = "scripted", "127.0.0.1:1"

    def __init__(self, props: dict[str, str], answers: dict[str, str | None]) -> None:
        self.props, self.answers, self.asked = props, answers, []

    def getprops(self, timeout=None):
        return dict(self.props)

    def batch(self, commands, timeout=None):
        self.asked += commands
        return [
            ShellResult(c, 0, reply(self.answers.get(c.removeprefix("service call iphonesubinfo ")))) for c in commands
        ]

    def shell(self, command, timeout=None):
        return ShellResult(command, 0, "")


def android11(state: str = "READY,READY") -> dict[str, str]:
    return {
        "ro.build.version.sdk": "30",
        "persist.radio.multisim.config": "dsds",
        "gsm.sim.state": state,
        "gsm.sim.operator.numeric": "23415,23415",
    }


def test_a_default_subscription_answer_for_the_wrong_slot_is_refused():
    # slot 0's own subscription says nothing; the default getSubscriberId answers slot 1's IMSI
    h = ScriptedHandset(
        android11(),
        {
            "4 i32 0 s16 com.android.shell": IMEI0,
            "4 i32 1 s16 com.android.shell": IMEI1,
            "10 i32 2 s16 com.android.shell": IMSI1,
            "8 s16 com.android.shell": IMSI1,
        },
    )
    report = read_identity(h, strategies=("service_call",))
    s0, s1 = report.slots
    assert (s0.imei, s1.imei, s1.imsi) == (IMEI0, IMEI1, IMSI1)
    assert s0.imsi is None
    refused = [a for a in report.attempts if a.slot == 0 and a.field == "imsi" and "getSubscriberId," in a.detail]
    assert refused and "the same imsi as slot 1" in refused[0].error


def test_a_slot_without_a_sim_is_asked_only_for_its_imei():
    h = ScriptedHandset(
        android11("ABSENT,READY"),
        {
            "4 i32 0 s16 com.android.shell": IMEI0,
            "4 i32 1 s16 com.android.shell": IMEI1,
            "10 i32 2 s16 com.android.shell": IMSI1,
        },
    )
    report = read_identity(h, strategies=("service_call",))
    assert report.slots[0].imei == IMEI0 and report.slots[1].imsi == IMSI1
    assert not any(
        re.search(r" i32 1 s16", c) and not c.startswith("service call iphonesubinfo 4 ") for c in h.asked
    ), h.asked  # nothing SIM-related asked of slot 0
    assert any(a.slot == 0 and "ABSENT" in (a.error or "") for a in report.attempts)


def test_candidate_order_single_vs_dual_sim():
    table = tables_for(30, {})[0]
    single = _Reader.__new__(_Reader)
    single.slots = [SlotIdentity(0)]
    dual = _Reader.__new__(_Reader)
    dual.slots = [SlotIdentity(0), SlotIdentity(1)]
    first = lambda r, slot, kind: [m.name for m, _ in r.candidates(table, slot, kind)]  # noqa: E731
    assert first(single, 0, "imsi")[0] == "getSubscriberId"  # the default sub is slot 0
    assert first(dual, 0, "imsi")[0] == "getSubscriberIdForSubscriber"  # addressed first
    assert first(dual, 0, "imsi")[-1] in ("getSubscriberId", "getSubscriberIdWithFeature")
    assert "getSubscriberId" not in first(dual, 1, "imsi")  # never for slot 1
    args = dict((m.name, a) for m, a in dual.candidates(table, 1, "imei"))
    assert args["getDeviceIdForPhone"] == " i32 1 s16 com.android.shell"  # feature id left out


def test_redaction_masks_digits_quoted_from_replies():
    quoted = "the ASCII column does not match: expected '0.4.0.2.6.0.9.1.', found '0.4.0.2.6.0.9.2'"
    assert "0.4.0.2" not in redact_text(quoted) and "*.*.*.*" in redact_text(quoted)
    assert redact_text("SDK 30, user 2000, code 1") == "SDK 30, user 2000, code 1"
    report = IdentityReport(
        "s",
        "srv",
        30,
        None,
        [SlotIdentity(0, imei=IMEI0)],
        [Attempt("service_call", "`iphonesubinfo 1`", False, 0, "imei", quoted)],
    )
    text = str(report.to_json(redact=True)) + report.summary_of_failures(redact=True)
    assert IMEI0 not in text and "0.4.0.2.6" not in text and "04026091" not in text
    assert IMEI0[-4:] in text
