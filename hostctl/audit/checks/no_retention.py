"""no-retention: the server keeps no content after delivery.

Read from the emulated Cloud Messaging server's store at the end of the protocol (only the lab's
own server can be inspected: NOT-TESTABLE on real handsets).
"""

from __future__ import annotations

import json
from typing import Any

from ..evidence import Evidence, Locator
from ..record import CheckRecord, NotTestable, failed, passed

ID = "no-retention"
TITLE = "No content retained after delivery"
CLAIM = "The server keeps no content after delivery."
READS = "emulator only; NOT-TESTABLE on hardware"
NEEDS = ("device", "lab")


def evaluate(ev: Evidence) -> CheckRecord:
    state = ev.cloud_state
    if state is None:
        raise NotTestable("the server's store can only be inspected on the emulated lab")
    retained = dict(state.get("retained") or {}) if isinstance(state, dict) else {}
    count = max(_count(retained.get("bodies")), _count(retained.get("messages")))
    if count:
        by = ev.cloud_state_by
        return failed(
            f"the server still holds {count} message bodies after delivery",
            [Locator(file=f"handsets/{by}/steps.json" if by else None, text=json.dumps(state)[:300])],
        )
    return passed("the server's store holds no message content after delivery")


def _count(x: Any) -> int:
    return x if isinstance(x, int) else len(x) if isinstance(x, (list, dict)) else 0
