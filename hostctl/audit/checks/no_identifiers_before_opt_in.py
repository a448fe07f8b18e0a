"""no-identifiers-before-opt-in: with Cloud Messaging off, boot + contact add + SMS in/out + call
send no identifier to Xiaomi hosts.

Read from the wire report's findings (capture and agent plaintext) before the opt-in; a handset's
Mi Cloud login, and what follows it, is imsi-after-login's to judge.
"""

from __future__ import annotations

from ..evidence import Evidence
from ..record import CheckRecord, NotTestable, failed, passed

ID = "no-identifiers-before-opt-in"
TITLE = "No identifiers leave before opt-in"
CLAIM = "With Cloud Messaging off, boot + contact add + SMS in/out + call send no identifier to Xiaomi hosts."
READS = "wire capture, TLS plaintext hooks"
NEEDS = ("capture", "trace")


def evaluate(ev: Evidence) -> CheckRecord:
    why = ev.missing_wire()
    if why:
        raise NotTestable(why)
    found = [
        (h, f)
        for h, f in ev.sent(until=ev.opt_in_at)
        if ev.login.get(h.label) is None or (f.get("ts") or 0) < ev.login[h.label]
    ]
    if found:
        idents = sorted({f["identifier"] for _, f in found})
        hosts = sorted({f.get("host") or "?" for _, f in found})
        return failed(
            f"before opting in, the handsets sent {', '.join(idents)} to {', '.join(hosts)}",
            [ev.finding(h, f) for h, f in found],
        )
    if not ev.plaintext_seen():
        raise NotTestable("no TLS plaintext (trace) to look inside TLS; the wire alone shows nothing readable")
    return passed("boot, contact, SMS and call sent no identifier to Xiaomi hosts before opting in")
