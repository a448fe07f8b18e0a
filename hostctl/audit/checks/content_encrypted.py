"""content-encrypted: message text never travels readable.

Read from the wire report's findings of the audit's own message texts; a PASS needs the TLS
plaintext and a message that actually went over IP.
"""

from __future__ import annotations

from ..evidence import Evidence
from ..record import CheckRecord, NotTestable, failed, passed

ID = "content-encrypted"
TITLE = "Message content is encrypted"
CLAIM = "Message text never travels readable."
READS = "wire + TLS plaintext"
NEEDS = ("capture", "trace")


def evaluate(ev: Evidence) -> CheckRecord:
    why = ev.missing_wire()
    if why:
        raise NotTestable(why)
    found = ev.sent(kinds=("text",))
    if found:
        return failed(
            "message text reached Xiaomi hosts " + ", ".join(sorted({f["verdict"] for _, f in found})),
            [ev.finding(h, f) for h, f in found],
        )
    if not ev.plaintext_seen():
        raise NotTestable("without TLS plaintext (trace) the inside of TLS is unseen")
    if (ev.send_online or {}).get("route") != "ip":
        raise NotTestable("no message went over IP, so no message content went to the service")
    return passed("no message text readable in what was sent")
