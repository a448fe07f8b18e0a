"""A handset's SMS/MX message rows, read through the telephony provider, each with its route.

``content query --uri content://sms`` works from the shell on every release this tool targets.
MIUI adds ``mx_status`` to the ``sms`` table; MISSION.md lists its values. The route of a row:

============  ==========================================================  =================
mx_status     meaning                                                     route
============  ==========================================================  =================
0             a plain SMS (with an ``mx_id``: an MX message re-sent as SMS)   ``sms`` /
                                                                          ``sms-fallback``
1             an MX message waiting (``type`` 4: to be re-sent as SMS)    ``ip-pending`` /
                                                                          ``sms-fallback``
16, 17, 256   MX sent, delivered, read                                    ``ip``
65537         MX received                                                 ``ip``
131073        MX failed                                                   ``ip-failed``
196609        from the web                                                ``web``
============  ==========================================================  =================

``sim_id`` is what MIUI stores: the SIM's subscription id (real MIUI rows show 1, 2 and 7; see
``tests/fixtures/real/``), not the 0-based slot. ``slot`` maps it back through the subscription
table (``content://telephony/siminfo``: ``_id`` is the subscription id, ``sim_id`` the slot index,
as AOSP's SubscriptionManager keeps it); ``None`` when the handset has no such table.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import asdict, dataclass
from typing import Any

from .device import Handset
from .errors import CommandError

__all__ = ["Message", "TYPES", "classify", "parse_content_rows", "parse_siminfo", "read_messages"]

TYPES = {1: "inbox", 2: "sent", 3: "draft", 4: "outbox", 5: "failed", 6: "queued"}
_COLUMNS = (
    "_id",
    "thread_id",
    "type",
    "mx_status",
    "mx_id",
    "sim_id",
    "status",
    "date",
    "date_sent",
    "address",
    "body",
)


@dataclass(frozen=True)
class Message:
    id: int
    thread_id: int | None
    type: int
    box: str
    direction: str  # in | out
    mx_status: int
    route: str
    sim_id: int | None  # as MIUI stores it: the subscription id
    slot: int | None  # the 0-based SIM slot that subscription is in (None: unknown)
    status: int | None
    date: int | None
    date_sent: int | None
    address: str | None
    body: str | None

    def to_json(self, redact: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if redact:
            a = data["address"] or ""
            data["address"] = ("*" * (len(a) - 4) + a[-4:]) if len(a) > 4 else a
            data["body"] = None if data["body"] is None else f"<{len(data['body'])} characters>"
        return data


def classify(msg_type: int, mx_status: int, mx_id: int | None = None) -> str:
    """The route of a row; an SMS that carries an ``mx_id`` was an MX message re-sent as SMS."""
    if mx_status == 0:
        return "sms-fallback" if mx_id is not None and msg_type != 1 else "sms"
    if mx_status == 1:
        return "sms-fallback" if msg_type == 4 else "ip-pending"
    if mx_status in (16, 17, 256, 65537):
        return "ip"
    if mx_status == 131073:
        return "ip-failed"
    if mx_status == 196609:
        return "web"
    return f"unknown({mx_status})"


def parse_content_rows(text: str, columns: tuple[str, ...]) -> list[dict[str, str | None]]:
    """``content query`` output for a known projection whose last column may hold anything
    (commas, ``=`` and newlines in an SMS body)."""
    rows = []
    chunks = re.split(r"(?m)^Row: \d+ ", text.replace("\r\n", "\n"))
    for chunk in chunks[1:]:
        row: dict[str, str | None] = {}
        pos = 0
        for i, col in enumerate(columns):
            if not chunk.startswith(f"{col}=", pos):
                raise ValueError(f"content query row without {col}= where expected: {chunk[:80]!r}")
            start = pos + len(col) + 1
            if i + 1 < len(columns):
                end = chunk.find(f", {columns[i + 1]}=", start)
                if end < 0:
                    raise ValueError(f"content query row ends before {columns[i + 1]}: {chunk[:80]!r}")
                value, pos = chunk[start:end], end + 2
            else:
                value = chunk[start:].removesuffix("\n")
            row[col] = None if value == "NULL" else value
        rows.append(row)
    return rows


def _int(v: str | None) -> int | None:
    return int(v) if v not in (None, "") and v.lstrip("-").isdigit() else None


def _slot_of(slots: dict[int, int], sim_id: str | None) -> int | None:
    """The slot of a message's subscription: none for an unreadable id, slot -1's for no id."""
    if sim_id is None:
        return slots.get(-1)
    sub = _int(sim_id)
    return None if sub is None else slots.get(sub)


def parse_siminfo(text: str) -> dict[int, int]:
    """``content query --uri content://telephony/siminfo --projection _id:sim_id``: subscription
    id -> slot index (a removed SIM keeps its row with slot -1: left out)."""
    out = {}
    for row in parse_content_rows(text, ("_id", "sim_id")):
        sub, slot = _int(row["_id"]), _int(row["sim_id"])
        if sub is not None and slot is not None and slot >= 0:
            out[sub] = slot
    return out


_SLOTS: weakref.WeakKeyDictionary[Handset, dict[int, int]] = weakref.WeakKeyDictionary()


def _sub_slots(h: Handset, timeout: float | None) -> dict[int, int]:
    """The handset's subscription ids -> slots, read once per Handset ({} when not available)."""
    if h not in _SLOTS:
        res = h.shell("content query --uri content://telephony/siminfo --projection _id:sim_id", timeout=timeout)
        try:
            _SLOTS[h] = parse_siminfo(res.stdout) if res.ok and "Row:" in res.stdout else {}
        except ValueError:
            _SLOTS[h] = {}
    return _SLOTS[h]


def read_messages(
    h: Handset, *, limit: int | None = None, after: int | None = None, timeout: float | None = None
) -> list[Message]:
    """Rows of content://sms, newest first: ``limit`` at most, only those with ``_id`` above
    ``after`` (the provider filters them, so polling for new rows stays cheap)."""
    where = f" --where '_id>{int(after)}'" if after is not None else ""
    res = h.shell(
        "content query --uri content://sms --projection " + ":".join(_COLUMNS) + where + " --sort '_id DESC'",
        timeout=timeout,
    )
    if not res.ok or "Error" in res.stdout[:200] or "Exception" in res.stdout[:400]:
        raise CommandError(
            f"{h.serial}: content query failed: {res.output.strip()[:200]}",
            serial=h.serial,
            command=res.command,
            output=res.output,
            exit_code=res.exit_code,
        )
    out = []
    slots = _sub_slots(h, timeout)
    for row in parse_content_rows(res.stdout, _COLUMNS):
        t, mx = _int(row["type"]) or 0, _int(row["mx_status"]) or 0
        mx_id = _int(row["mx_id"])
        out.append(
            Message(
                int(row["_id"] or 0),
                _int(row["thread_id"]),
                t,
                TYPES.get(t, str(t)),
                "in" if t == 1 else "out",
                mx,
                classify(t, mx, mx_id),
                _int(row["sim_id"]),
                _slot_of(slots, row["sim_id"]),
                _int(row["status"]),
                _int(row["date"]),
                _int(row["date_sent"]),
                row["address"],
                row["body"],
            )
        )
        if limit is not None and len(out) >= limit:
            break
    return out
