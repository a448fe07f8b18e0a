"""What the audit's run established, as one object the checks read: :class:`Evidence` (the facts
of the protocol's steps, and per handset its wire analysis and agent writes) and
:class:`Locator` (where in the run folder a piece of evidence is). No I/O here: the run
(:mod:`hostctl.audit.run`) fills it; each check (:mod:`hostctl.audit.checks`) only reads it, so a
test builds one by hand and calls ``evaluate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AgentWrite", "Evidence", "HandsetEvidence", "Locator", "Sighting"]


@dataclass(frozen=True, slots=True)
class Locator:
    """One piece of evidence, as the report names it (``checks[].evidence[]``): a file of the
    run folder and where in it (capture flow and offset, message row, agent event line)."""

    text: str
    file: str | None = None
    flow: int | None = None
    offset: int | None = None
    row: int | None = None
    event: int | None = None
    host: str | None = None
    identifier: str | None = None
    form: str | None = None
    record: int | None = None            # decrypted wire: number of the TLS record that carried it (1: its
                                         # direction's first record, the hello)
    wire_offset: int | None = None       # decrypted wire: its offset in the flow's TCP stream (``offset``: in the
                                         # decrypted plaintext)

    def to_json(self) -> dict[str, Any]:
        out = {"file": self.file, "flow": self.flow, "offset": self.offset, "row": self.row, "event": self.event,
               "host": self.host, "identifier": self.identifier, "form": self.form, "text": self.text}
        if self.record is not None or self.wire_offset is not None:
            out["record"], out["wire_offset"] = self.record, self.wire_offset
        return out


@dataclass(frozen=True, slots=True)
class AgentWrite:
    """One TLS write the agent saw (``SSL_write`` plaintext), its first bytes: line of
    ``trace/events.jsonl``, when, to which server name."""

    line: int
    ts: float
    sni: str | None
    head: bytes


@dataclass
class HandsetEvidence:
    """What one handset's recorders and its wire analysis gave."""

    label: str
    serial: str = ""
    numbers: tuple[str, ...] = ()
    capture_file: str | None = None      # run-relative path of its capture (None: none recorded)
    events_file: str | None = None       # run-relative path of its agent events (None: no trace)
    wire: dict[str, Any] | None = None   # its wire-check report (hostctl.wire-check/1), None: no analysis
    agent_writes: tuple[AgentWrite, ...] = ()
    capture_error: str | None = None
    trace_error: str | None = None
    gone: str | None = None              # why it stopped answering mid-audit
    tls: dict[str, Any] | None = None    # its capture decrypted with its trace's secrets and cross-checked
                                         # (see hostctl.audit.run._decrypt): None, not done (tls_error: why)
    tls_error: str | None = None

    @property
    def rel(self) -> str:
        return f"handsets/{self.label}"

    def capture_rel(self) -> str:
        return self.capture_file or f"{self.rel}/wire.pcapng"


Sighting = tuple[HandsetEvidence, dict[str, Any]]      # a handset and one finding of its wire report


@dataclass
class Evidence:
    """Everything the checks judge. Times are host epoch seconds; a ``None`` fact: the step that
    establishes it was not done (its ``*_skipped`` says why, where there is one)."""

    handsets: Sequence[HandsetEvidence] = ()
    started: float = 0.0
    reset: dict[str, str] = field(default_factory=dict)              # label -> how it was reset
    cm_default: dict[str, dict[str, Any]] = field(default_factory=dict)   # label -> Cloud Messaging state before opt-in
    opt_in_at: float | None = None
    login: dict[str, float] = field(default_factory=dict)            # label -> when Mi Cloud login began
    receiver_presence_before_send: dict[str, Any] | None = None
    send_online: dict[str, Any] | None = None                        # hostctl.cloud.SendOutcome.to_json()
    send_online_skipped: str | None = None
    send_offline: dict[str, Any] | None = None
    send_offline_skipped: str | None = None
    send_modem: dict[str, Any] | None = None
    modem_present: bool = False                                      # a peer modem was open
    lookups: list[dict[str, Any]] = field(default_factory=list)      # {"number", "from", "to", "handset", "result"}
    cloud_state: Any = None                                          # the emulated server's store
    cloud_state_by: str | None = None
    host_faults: list[dict[str, Any]] = field(default_factory=list)

    # -- reading the wire reports --------------------------------------------------------------
    def sent(self, *, kinds: Sequence[str] | None = None, since: float | None = None,
             until: float | None = None) -> list[Sighting]:
        """Findings of identifiers the handsets sent to Xiaomi hosts (readable, encoded or hashed)."""
        from ..wire.check import is_vendor_host

        out = []
        for h in self.handsets:
            for f in (h.wire or {}).get("findings", []):
                if f["direction"] not in ("c2s", "out") or not is_vendor_host(f.get("host")):
                    continue
                if kinds is not None and f["kind"] not in kinds:
                    continue
                ts = f.get("ts")
                if since is not None and (ts is None or ts < since):
                    continue
                if until is not None and (ts is None or ts >= until):
                    continue
                out.append((h, f))
        return out

    def plaintext_seen(self) -> bool:
        """Whether the agent saw any TLS plaintext (an attached tracer whose SSL hooks fired):
        without it, the inside of TLS is unseen and a check about it cannot PASS."""
        return any(sum(a["events"].get("ssl", 0) for a in (h.wire or {}).get("agent_events", [])) > 0
                   for h in self.handsets)

    def missing_wire(self) -> str | None:
        """Why no wire analysis can be judged (no handset has one), or None."""
        if any(h.wire for h in self.handsets):
            return None
        reasons = [r for h in self.handsets for r in (h.capture_error, h.trace_error, h.gone) if r]
        return "no capture or trace was recorded" + (": " + "; ".join(dict.fromkeys(reasons)) if reasons else "")

    def deterministic_warnings(self) -> list[str]:
        out = []
        for h in self.handsets:
            for d in (h.wire or {}).get("deterministic", []):
                who = d["identifier"] or "an opaque value"
                out.append(f"deterministic encryption: {who} in field {', '.join(d['fields']) or '?'} on {h.label}: "
                           f"{d['why']} (linkable)")
            for c in (h.wire or {}).get("cipher_calls", []):
                if c.get("iv_reused") and c.get("identifiers") and c.get("algorithm") \
                        and "cbc" in str(c["algorithm"]).lower():
                    out.append(f"fixed IV: {c['algorithm']} key {c['key'][:8]}... IV {c['iv']} encrypted "
                               f"{c['operations']} values ({', '.join(c['identifiers'])}) on {h.label}")
        return sorted(set(out))

    # -- locators ------------------------------------------------------------------------------
    def finding(self, h: HandsetEvidence, f: dict[str, Any]) -> Locator:
        """Where a wire report's finding is: the agent's events file (line) or the capture (flow,
        offset; for a finding in decrypted TLS, layer ``tls-decrypted...``, also the record that
        carried it and its offset on the wire)."""
        file = (h.events_file or f"{h.rel}/trace/events.jsonl") if f["source"] == "agent" else h.capture_rel()
        rec = f.get("record") if f["source"] != "agent" else None
        wire_off = f.get("wire_offset") if f["source"] != "agent" else None
        where = f", record {rec} at wire offset {wire_off}" if rec is not None else ""
        return Locator(file=file, flow=f.get("flow"), offset=f.get("offset"), event=f.get("event"),
                       host=f.get("host"), identifier=f["identifier"], form=f["form"], record=rec,
                       wire_offset=wire_off,
                       text=f"{f['identifier']} {f['verdict']} as {f['form']} ({f['layer']}, {f['direction']}{where}) "
                            f"to {f.get('host') or '?'}")

    def message_row(self, out: dict[str, Any], side: str) -> Locator:
        """Where a send's sender or receiver message row is (the handset's messages.json)."""
        ev = (out.get("evidence") or {}).get(side) or {}
        label = next((h.label for h in self.handsets if h.serial and h.serial == out.get("serial")), None)
        if side == "receiver":
            label = next((h.label for h in self.handsets if out.get("to") in h.numbers), label)
        return Locator(file=f"handsets/{label}/messages.json" if label else None, row=ev.get("id"),
                       text=f"{side} row {ev.get('id')}: type {ev.get('type')} mx_status {ev.get('mx_status')} "
                            f"route {out.get('route')}" if ev else f"{side}: no row")
