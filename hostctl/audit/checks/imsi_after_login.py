"""imsi-after-login: does the IMSI leave the device after Mi Cloud login (a finding, reported).

Each handset against its own login: an IMSI sent before that handset's login (or by a handset that
never logged in) is a FAIL; one sent after is a PASS with a warning that says where it went.
"""

from __future__ import annotations

from ..evidence import Evidence
from ..record import CheckRecord, NotTestable, failed, passed

ID = "imsi-after-login"
TITLE = "IMSI after Mi Cloud login"
CLAIM = "Does the IMSI leave the device after Mi Cloud login (a finding, reported)."
READS = "wire + hooks"
NEEDS = ("device", "capture", "trace")


def evaluate(ev: Evidence) -> CheckRecord:
    why = ev.missing_wire()
    if why:
        raise NotTestable(why)
    login = ev.login
    sent = ev.sent(kinds=("imsi",))
    before = [(h, f) for h, f in sent if login.get(h.label) is None or (f.get("ts") or 0) < login[h.label]]
    if before:
        return failed(
            "the IMSI left " + ", ".join(sorted({h.label for h, _ in before})) + " before any Mi Cloud login on it",
            [ev.finding(h, f) for h, f in before],
        )
    if not login:
        raise NotTestable("Mi Cloud login could not be done on this testbed (no IMSI was sent before it)")
    if sent:
        return passed(
            "the IMSI leaves the device only after Mi Cloud login (reported)",
            [ev.finding(h, f) for h, f in sent],
            ["IMSI sent after Mi Cloud login to " + ", ".join(sorted({f.get("host") or "?" for _, f in sent}))],
        )
    return passed("no IMSI left the device, before or after Mi Cloud login")
