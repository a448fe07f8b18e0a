"""tls-plaintext-agrees: what the app handed to TLS is exactly what crossed the network, so no
second TLS stack or pinned library escaped the hooks.

Read from each handset's capture decrypted with the TLS secrets its own trace collected, compared
per TLS flow with the agent's ``ssl`` events (:func:`hostctl.wire.crosscheck.cross_check`, run by
the audit's analysis into ``HandsetEvidence.tls``, file ``handsets/<label>/tls-crosscheck.json``).
Only flows that began while the hooks were in place (first ``hook-status`` to the trace's stop)
are compared, unless a hooked session names them.

- FAIL: a flow whose decrypted bytes differ from the hooked plaintext, bytes on one side only
  (decrypted on the wire but never through a hooked call, or hooked but never on the wire), a TLS
  session of the capture whose secrets the hooked libraries never produced while they produced
  others (``no-secret``: a TLS stack the agent did not hook), or a hooked session no flow carried.
  Each piece of evidence names the capture, flow, direction, offset in the decrypted stream, the
  record that carried it and its wire offset.
- NOT-TESTABLE (fail closed): no capture or no trace; the trace collected no TLS secret; a flow
  our decryption could not open (wrong secret, unsupported suite, truncated...), which cannot be
  judged either way; no TLS flow while the hooks were in place; a disagreement on a handset whose
  trace broke (a host fault: the hooks' gap is then ours, not the app's).
"""

from __future__ import annotations

from typing import Any

from ..evidence import Evidence, HandsetEvidence, Locator
from ..record import CheckRecord, NotTestable, failed, passed

ID = "tls-plaintext-agrees"
TITLE = "TLS plaintext agrees with the decrypted wire"
CLAIM = ("What the app handed to TLS is exactly what crossed the network: no second TLS stack or pinned "
         "library escaped the hooks.")
READS = "capture decrypted with the trace's TLS secrets + TLS plaintext"
NEEDS = ("capture", "trace")

_ONE_SIDED = ("differ", "wire-only", "agent-only")


def _flow_evidence(h: HandsetEvidence, f: dict[str, Any]) -> list[Locator]:
    cap = h.capture_rel()
    out = []
    for e in f.get("evidence") or []:
        kind = e.get("kind", f["status"])
        length = f" {e['length']} bytes" if e.get("length") is not None else ""
        where = f", record {e['record']} at wire offset {e['wire_offset']}" if e.get("record") is not None else ""
        out.append(Locator(file=cap, flow=f["flow"], offset=e.get("offset"), host=f["server"],
                           record=e.get("record"), wire_offset=e.get("wire_offset"),
                           event=e.get("event_seq"),
                           text=f"{h.label}: flow {f['flow']} {f['client']} -> {f['server']} {e.get('direction')}: "
                                f"{kind}{length} at decrypted offset {e.get('offset')}{where}: {f['why']}"))
    if not out:
        out.append(Locator(file=cap, flow=f["flow"], offset=0, host=f["server"],
                           text=f"{h.label}: flow {f['flow']} {f['client']} -> {f['server']}: {f['status']}: {f['why']}"))
    return out


def evaluate(ev: Evidence) -> CheckRecord:
    judged = [h for h in ev.handsets if h.tls is not None]
    unjudged = [h for h in ev.handsets if h.tls is None and (h.capture_file or h.events_file or h.tls_error)]
    if not judged:
        reasons = [f"{h.label}: {r}" for h in ev.handsets for r in (h.tls_error, h.capture_error, h.trace_error, h.gone)
                   if r]
        raise NotTestable("no handset's capture could be decrypted with its trace's secrets"
                          + (": " + "; ".join(dict.fromkeys(reasons)) if reasons else
                             " (no capture with a trace was recorded)"))
    found: list[Locator] = []
    undecided: list[str] = []
    warnings: list[str] = []
    flows_agreeing = 0
    # a trace that broke (our tooling: it did not start, died, or adb failed under it) misses hooked
    # calls by itself: on that handset a disagreement is not the app's doing, so it decides nothing
    broken = {f.get("handset"): f["message"] for f in ev.host_faults if f.get("kind") in ("trace", "adb")}
    for h in judged:
        tls = h.tls or {}
        if h.label in broken:
            bad = [f for f in (tls.get("cross_check") or {}).get("flows") or [] if f["status"] != "agree"]
            if bad or (tls.get("cross_check") or {}).get("agent_only_sessions"):
                undecided.append(f"{h.label}: {len(bad)} TLS flows disagree with the hooks, but its trace broke "
                                 f"({broken[h.label]})")
                continue
        cc = tls.get("cross_check") or {}
        secrets = (tls.get("decryption") or {}).get("sessions", 0)
        flows = cc.get("flows") or []
        if not secrets:
            undecided.append(f"{h.label}: its trace collected no TLS secret, so no flow of its capture can be "
                             f"decrypted ({len(flows)} TLS flows while hooked)")
            continue
        if not flows:
            undecided.append(f"{h.label}: no TLS flow in its capture while the hooks were in place")
            continue
        for f in flows:
            if f["status"] == "agree":
                flows_agreeing += 1
            elif f["status"] in _ONE_SIDED:
                found += _flow_evidence(h, f)
            elif f["status"] == "not-decrypted" and f.get("tls_status") == "no-secret":
                found.append(Locator(file=h.capture_rel(), flow=f["flow"], offset=0, host=f["server"],
                                     text=f"{h.label}: flow {f['flow']} {f['client']} -> {f['server']}: a TLS session "
                                          "whose secrets no hooked library produced (a TLS stack the agent did not "
                                          "hook), so its plaintext escaped the hooks"))
            else:
                undecided.append(f"{h.label}: flow {f['flow']} ({f['server']}): {f['why']}")
        for s in cc.get("agent_only_sessions") or []:
            found.append(Locator(file=h.events_file or f"{h.rel}/trace/events.jsonl", host=s.get("where") or None,
                                 text=f"{h.label}: hooked TLS session {s['client_random'][:16]}... "
                                      f"({s.get('events')} SSL events, {s.get('bytes')} bytes) to "
                                      f"{s.get('where') or '?'}: no flow of the capture carried it"))
    for h in unjudged:
        undecided.append(f"{h.label}: not decrypted: {h.tls_error or h.capture_error or h.trace_error or h.gone}")
    if found:
        return failed("bytes seen on one side only: the decrypted wire and the hooked TLS plaintext do not agree",
                      found, warnings + undecided)
    if undecided:
        raise NotTestable("; ".join(undecided))
    return passed(f"every TLS flow while hooked ({flows_agreeing}) was decrypted and agrees byte for byte with "
                  "the plaintext the hooked library handled", warnings=warnings)
