"""opt-in-default: after a factory reset, Cloud Messaging is off until the user turns it on.

Read from the setting (``secure/cloud_messaging_on`` through the app's own state, per handset,
after a reset the lab made or the operator vouched for), and from the traffic before opt-in:
connections to the Cloud Messaging hosts or activation paths in the capture, activation and
channel binds in the agent's TLS plaintext.
"""

from __future__ import annotations

from ..evidence import Evidence, HandsetEvidence, Locator
from ..record import CheckRecord, NotTestable, failed, passed

ID = "opt-in-default"
TITLE = "Cloud Messaging is off by default"
CLAIM = "After a factory reset, Cloud Messaging is off until the user turns it on."
READS = "setting state; no activation/registration traffic"
NEEDS = ("device", "capture", "trace")

CM_HOSTS = ("app.chat.xiaomi.net", "app.chat.global.xiaomi.net")
ACTIVATION_PATHS = ("/mx/activate", "/pass/activate")


def evaluate(ev: Evidence) -> CheckRecord:
    default = ev.cm_default
    if not default:
        raise NotTestable("the Cloud Messaging state could not be read before opting in")
    not_reset = [lbl for lbl in default if lbl not in ev.reset]
    if not_reset:
        raise NotTestable(
            f"{', '.join(not_reset)} not factory-reset: the default state cannot be told "
            "(reset by hand and run with --assume-reset)"
        )
    found, bad = [], []
    for lbl, st in default.items():
        if st.get("enabled") or any(s.get("enabled") for s in st.get("sims", [])):
            bad.append(lbl)
            found.append(
                Locator(
                    file=f"handsets/{lbl}/steps.json",
                    text=f"{lbl}: Cloud Messaging on after a factory reset "
                    f"(secure/cloud_messaging_on={st.get('sources', {}).get('setting')})",
                )
            )
    for h in ev.handsets:
        traffic = _traffic_before(h, ev.opt_in_at)
        if traffic:
            bad.append(h.label)
            found += traffic
    if found:
        return failed(f"Cloud Messaging is on by default on {', '.join(sorted(set(bad)))}", found)
    if not any(h.wire for h in ev.handsets):
        # the setting says off, but no recorder saw the traffic before opt-in: not a PASS
        raise NotTestable("the setting is off, but no capture or trace shows the traffic before opting in")
    return passed("off after a factory reset; no activation or registration traffic before the user turned it on")


def _traffic_before(h: HandsetEvidence, until: float | None) -> list[Locator]:
    out: list[Locator] = []
    if until is None:
        return out
    for fl in (h.wire or {}).get("flows", []):
        paths = [r.get("path", "") for r in (fl.get("protocol") or {}).get("requests", [])]
        to_cm = fl.get("host") in CM_HOSTS or any(p.startswith(ACTIVATION_PATHS) for p in paths)
        if to_cm and fl.get("first_ts") and fl["first_ts"] < until:
            out.append(
                Locator(
                    file=h.capture_rel(),
                    flow=fl["id"],
                    offset=0,
                    host=fl.get("host"),
                    text=f"{h.label}: Cloud Messaging traffic before opting in ({fl.get('host')})",
                )
            )
    writes = 0
    for w in h.agent_writes:
        if w.ts >= until:
            continue
        if any(p.encode() in w.head for p in ACTIVATION_PATHS) or b'"type":"bind"' in w.head:
            first = w.head.split(b"\r\n")[0][:80].decode("latin-1")
            out.append(
                Locator(file=h.events_file, event=w.line, host=w.sni, text=f"{h.label}: {first} before opting in")
            )
            writes += 1
            if writes >= 5:
                break
    return out
