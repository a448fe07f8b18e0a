"""presence-lookup-minimal: a presence look-up sends only the looked-up number.

Read from the findings in each look-up's window (from it to the next one, its handset only): any
identifier but the looked-up number is a FAIL. Needs the TLS plaintext of the look-up.
"""

from __future__ import annotations

from ..evidence import Evidence
from ..record import CheckRecord, NotTestable, failed, passed

ID = "presence-lookup-minimal"
TITLE = "Presence look-up sends only the number"
CLAIM = "A presence look-up sends only the looked-up number."
READS = "TLS plaintext of the look-up"
NEEDS = ("device", "trace")


def evaluate(ev: Evidence) -> CheckRecord:
    looks = ev.lookups
    if not looks:
        raise NotTestable("no presence look-up was made")
    if not ev.plaintext_seen():
        raise NotTestable("needs the TLS plaintext of the look-up (trace)")
    found = []
    for i, lk in enumerate(looks):
        end = looks[i + 1]["from"] if i + 1 < len(looks) else lk["to"]
        for h, f in ev.sent(since=lk["from"], until=end):
            if h.label != lk["handset"] or f["kind"] == "text":
                continue
            if f["kind"] == "msisdn" and f["value"] == lk["number"]:
                continue
            found.append(ev.finding(h, f))
    if found:
        return failed(
            "a look-up sent more than the looked-up number: " + ", ".join(sorted({e.identifier or "?" for e in found})),
            found,
        )
    return passed(f"{len(looks)} look-up(s) sent no identifier but the looked-up number")
