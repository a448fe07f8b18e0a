"""ip-when-online: Cloud Messaging on at both ends, receiver online: the message goes over IP,
not SMS.

Read from the send's outcome (the sender's and receiver's message rows: ``mx_status`` 16/17 is
MIUI's "sent/delivered over MX", 0 a plain SMS) and the carrier's records (the emulated network's;
a real network shows none). The claim's premise is that the receiver is online: a receiver the
sender never saw online before the send leaves the claim untested (NOT-TESTABLE), it is no FAIL.
"""

from __future__ import annotations

from ..evidence import Evidence
from ..record import CheckRecord, NotTestable, failed, passed

ID = "ip-when-online"
TITLE = "IP delivery to an online receiver"
CLAIM = "Cloud Messaging on at both ends, receiver online: the message goes over IP, not SMS."
READS = "sender and receiver message rows (mx_status), carrier/peer sees no SMS"
NEEDS = ("device",)


def evaluate(ev: Evidence) -> CheckRecord:
    out = ev.send_online
    if out is None:
        raise NotTestable(
            ev.send_online_skipped or "no send to an online receiver was made (it failed: see the phase notes)"
        )
    rows = [ev.message_row(out, "sender"), ev.message_row(out, "receiver")]
    seen = ev.receiver_presence_before_send
    if seen is not None and not seen.get("online"):
        # the premise failed (a timing matter: the receiver's channel was not up yet), not the claim
        raise NotTestable(
            f"the receiver never showed online to the sender before the send (last presence answer: {seen})"
        )
    evidence = out.get("evidence") or {}
    carrier = evidence.get("carrier")
    if out.get("route") == "ip" and not carrier:
        if evidence.get("receiver") is None:
            return failed("sent over IP but the receiver never got it", rows)
        return passed(
            "the message went over IP (mx_status %s) and the network carried no SMS"
            % (evidence.get("sender") or {}).get("mx_status"),
            rows,
        )
    return failed(f"route {out.get('route')!r}" + (", the carrier carried it as SMS" if carrier else ""), rows)
