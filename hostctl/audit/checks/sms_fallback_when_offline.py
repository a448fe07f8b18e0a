"""sms-fallback-when-offline: receiver offline or not a Cloud Messaging user: the message is
delivered as SMS.

Read from the send to the offline receiver (its sender row) and the send to the lab's modem (the
sender row, and the modem's own receipt when a modem is open).
"""

from __future__ import annotations

from ..evidence import Evidence
from ..record import CheckRecord, NotTestable, failed, passed

ID = "sms-fallback-when-offline"
TITLE = "SMS fallback when the receiver is offline"
CLAIM = "Receiver offline or not a Cloud Messaging user: the message is delivered as SMS."
READS = "the lab modem (peer phone) receives it; sender row"
NEEDS = ("device", "modem")


def evaluate(ev: Evidence) -> CheckRecord:
    off, modem = ev.send_offline, ev.send_modem
    if off is None and modem is None:
        raise NotTestable(ev.send_offline_skipped or "no send to an offline receiver or to the modem was made")
    rows, bad = [], []
    if off is not None:
        rows.append(ev.message_row(off, "sender"))
        if off.get("route") != "sms":
            bad.append(f"to the offline receiver: route {off.get('route')!r}")
    if modem is not None:
        rows.append(ev.message_row(modem, "sender"))
        got = (modem.get("evidence") or {}).get("modem")
        if modem.get("route") != "sms" or (ev.modem_present and not got):
            bad.append(f"to the modem: route {modem.get('route')!r}, modem received {'it' if got else 'nothing'}")
    if bad:
        return failed("; ".join(bad), rows)
    skipped = ev.send_offline_skipped
    return passed(
        "delivered as SMS when the receiver was offline or not a Cloud Messaging user"
        + (f" (the offline-receiver case was not run: {skipped})" if skipped else ""),
        rows,
    )
