"""phone-numbers-encrypted: no phone number reaches Cloud Messaging servers readable: not in
clear, not encoded, not merely hashed.

Read from the wire report's msisdn findings (capture and agent plaintext, every encoding and
digest it tries); deterministic encryption and fixed IVs are warnings (linkable, not readable).
"""

from __future__ import annotations

from ..evidence import Evidence
from ..record import CheckRecord, NotTestable, failed, passed

ID = "phone-numbers-encrypted"
TITLE = "Phone numbers are encrypted"
CLAIM = "No phone number reaches Cloud Messaging servers readable: not in clear, not encoded, not merely hashed."
READS = "TLS plaintext hooks + wire, all encodings and digests"
NEEDS = ("capture", "trace")


def evaluate(ev: Evidence) -> CheckRecord:
    why = ev.missing_wire()
    if why:
        raise NotTestable(why)
    found = ev.sent(kinds=("msisdn",))
    warnings = ev.deterministic_warnings()
    if found:
        return failed(
            "phone numbers reached Xiaomi hosts " + ", ".join(sorted({f["verdict"] for _, f in found})),
            [ev.finding(h, f) for h, f in found],
            warnings,
        )
    if not ev.plaintext_seen():
        raise NotTestable(
            "the wire shows no readable number, but without TLS plaintext (trace) the inside of TLS is unseen"
        )
    return passed("no phone number readable, encoded or merely hashed in what was sent", warnings=warnings)
