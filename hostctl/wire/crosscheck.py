"""Does the decrypted wire say what the app handed to TLS? A pure comparison, per TLS flow, of the
agent's ``ssl`` events (the plaintext the hooked library got from ``SSL_write`` or gave back from
``SSL_read``) with the flow's decrypted application data.

Bytes seen on one side only are the finding: on the wire but never through the hooks (a second TLS
stack in the app, a pinned library the agent did not hook, a hook that missed calls), or through
the hooks but not on the wire (a connection the capture missed, or plaintext that left by
another path). A flow that could not be decrypted cannot be checked, and says so (fail closed:
it is never counted as agreeing).

Matching events to flows: the TLS secrets the agent extracted name the client random of each
session and the SSL object (``tls-secret`` events with ``pid`` and ``ssl``); the ``ssl`` events
of that SSL object from that secret on (until the object shows a new client random) belong to
the flow whose ClientHello carried that random. Without secrets events, an event is matched by
its socket's local port to the flow's client port (which a capture rewritten by a tap or NAT does
not keep). The app is taken as the TLS client (``out`` = client to server), as handset apps are.

Entry points: `cross_check(flows, events)` (pure: decrypted flows from
`hostctl.wire.decrypt.decrypt_capture`, events from `hostctl.events.read_jsonl`) and
`decrypt_trace_capture` in `hostctl.wire.decrypt` to get the flows with a trace's secrets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..events import Event, SslData, TlsSecret

__all__ = ["CROSS_STATUSES", "CrossCheck", "DirectionCheck", "FlowCrossCheck", "cross_check"]

# per flow, worst first
CROSS_STATUSES = ("differ", "wire-only", "agent-only", "not-decrypted", "agree")
_RANK = {s: i for i, s in enumerate(CROSS_STATUSES)}
_SAMPLE = 64


@dataclass(frozen=True)
class DirectionCheck:
    """One direction of one flow: bytes on the decrypted wire, bytes the hooks reported, how many
    of them agree, and where they stop agreeing (``first_difference``: offset in the decrypted
    stream, with the record and wire offset that carried it)."""

    direction: str
    wire_bytes: int
    agent_bytes: int
    matched: int
    wire_only: int
    agent_only: int
    events: int
    uncaptured: int = 0  # event bytes the agent did not capture (its size limit)
    first_difference: dict | None = None

    @property
    def agrees(self) -> bool:
        return self.first_difference is None and not self.wire_only and not self.agent_only

    def to_json(self) -> dict:
        return {
            "direction": self.direction,
            "wire_bytes": self.wire_bytes,
            "agent_bytes": self.agent_bytes,
            "matched": self.matched,
            "wire_only": self.wire_only,
            "agent_only": self.agent_only,
            "events": self.events,
            "uncaptured": self.uncaptured,
            "first_difference": self.first_difference,
        }


@dataclass(frozen=True)
class FlowCrossCheck:
    flow: int
    client: str
    server: str
    status: str  # one of CROSS_STATUSES
    why: str
    tls_status: str
    client_random: str | None
    matched_by: str | None  # "client-random" | "local-port" | None (no events)
    directions: tuple[DirectionCheck, ...] = ()
    evidence: tuple[dict, ...] = ()  # where the one-sided or differing bytes are

    def to_json(self) -> dict:
        return {
            "flow": self.flow,
            "client": self.client,
            "server": self.server,
            "status": self.status,
            "why": self.why,
            "tls_status": self.tls_status,
            "client_random": self.client_random,
            "matched_by": self.matched_by,
            "directions": [d.to_json() for d in self.directions],
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True)
class CrossCheck:
    """The outcome: ``passed`` only when every TLS flow was decrypted and agrees, byte for byte,
    with the hooks. ``agent_only_sessions``: client randoms whose plaintext the agent saw but that
    no flow of the capture carried."""

    flows: tuple[FlowCrossCheck, ...]
    agent_only_sessions: tuple[dict, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.flows) and all(f.status == "agree" for f in self.flows) and not self.agent_only_sessions

    def failing(self) -> list[FlowCrossCheck]:
        return [f for f in self.flows if f.status != "agree"]

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "counts": dict(self.counts),
            "flows": [f.to_json() for f in self.flows],
            "agent_only_sessions": list(self.agent_only_sessions),
        }


def _sessions(events: Iterable[Event]) -> tuple[dict[str, list[SslData]], dict[int, list[SslData]], dict[str, str]]:
    """SslData events by client random (through tls-secret events of the same pid and SSL
    object), the rest by local port; and client random -> SNI/peer text of its secrets."""
    current: dict[tuple, str] = {}
    by_cr: dict[str, list[SslData]] = {}
    by_port: dict[int, list[SslData]] = {}
    where: dict[str, str] = {}
    for ev in events:
        if isinstance(ev, TlsSecret):
            if ev.ssl is not None:
                current[(ev.app, ev.pid, ev.ssl)] = ev.client_random
            where.setdefault(ev.client_random, ev.sni or (str(ev.peer) if ev.peer else ""))
        elif isinstance(ev, SslData):
            cr = current.get((ev.app, ev.pid, ev.ssl)) if ev.ssl is not None else None
            if cr is not None:
                by_cr.setdefault(cr, []).append(ev)
            elif ev.local is not None and ev.local.port is not None:
                by_port.setdefault(ev.local.port, []).append(ev)
    return by_cr, by_port, where


def _compare(direction: str, wire: bytes, events: Sequence[SslData], flow: Any) -> tuple[DirectionCheck, list[dict]]:
    """Walks the hooked calls in order along the decrypted stream."""
    off = 0
    agent = 0
    uncaptured = 0
    first: dict | None = None
    evidence: list[dict] = []
    for ev in events:
        data, length = ev.data.data, ev.data.length
        agent += length
        if first is None:
            got = wire[off : off + len(data)]
            if got != data:
                k = next((i for i, (a, b) in enumerate(zip(got, data)) if a != b), min(len(got), len(data)))
                if off + k < len(wire):
                    first = {
                        "offset": off + k,
                        "event_seq": ev.seq,
                        "agent": data[k : k + _SAMPLE].hex(),
                        "wire": wire[off + k : off + k + _SAMPLE].hex(),
                        **_locate(flow, direction, off + k),
                    }
        uncaptured += length - len(data)
        off += length
    matched = min(off, len(wire))
    wire_only = max(0, len(wire) - off)
    agent_only = max(0, off - len(wire))
    if first is not None and first["offset"] < matched:
        matched = first["offset"]
    if wire_only:
        evidence.append(
            {
                "flow": flow.id,
                "direction": direction,
                "kind": "wire-only",
                "offset": off,
                "length": wire_only,
                "sample": wire[off : off + _SAMPLE].hex(),
                **_locate(flow, direction, off),
            }
        )
    if first is not None:
        evidence.append({"flow": flow.id, "direction": direction, "kind": "differ", **first})
    if agent_only:
        evidence.append(
            {"flow": flow.id, "direction": direction, "kind": "agent-only", "offset": len(wire), "length": agent_only}
        )
    return DirectionCheck(
        direction, len(wire), agent, matched, wire_only, agent_only, len(events), uncaptured, first
    ), evidence


def _locate(flow: Any, direction: str, offset: int) -> dict:
    locate = getattr(flow, "locate", None)
    return locate(direction, offset) if locate is not None and offset < len(flow.data[direction]) else {}


def _ep(x: Any) -> str:
    return f"{x[0]}:{x[1]}" if isinstance(x, tuple) else str(x)


def cross_check(
    flows: Sequence[Any], events: Iterable[Event], *, window: tuple[float, float] | None = None
) -> CrossCheck:
    """Compares each TLS flow's decrypted plaintext (``flows``: `hostctl.wire.decrypt.DecryptedFlow`)
    with the agent's ``ssl`` events. ``window`` (start, end): flows that began outside it (before
    the hooks were in place, after the trace) are left out unless a hooked session names them;
    flows without a time are kept. Pure: reads its arguments only."""
    by_cr, by_port, where = _sessions(events)
    used: set[str] = set()
    out: list[FlowCrossCheck] = []
    for flow in flows:
        summary = flow.summary or {}
        tls = summary.get("status", "unknown")
        cr = summary.get("client_random")
        first = getattr(flow, "first_ts", None)
        if window is not None and first is not None and not window[0] <= first <= window[1] and cr not in by_cr:
            continue  # outside the trace and no hooked session of its: not this trace's flow
        client, server = _ep(flow.key.client), _ep(flow.key.server)
        if cr is not None and cr in by_cr:
            evs, matched_by = by_cr[cr], "client-random"
            used.add(cr)
        elif flow.key.client[1] in by_port:
            evs, matched_by = by_port[flow.key.client[1]], "local-port"
        else:
            evs, matched_by = [], None
        if tls != "decrypted":
            out.append(
                FlowCrossCheck(
                    flow.id,
                    client,
                    server,
                    "not-decrypted",
                    f"the flow could not be decrypted ({tls}"
                    + (f": {summary['detail']}" if summary.get("detail") else "")
                    + "), so the "
                    "hooked plaintext cannot be checked against it",
                    tls,
                    cr,
                    matched_by,
                )
            )
            continue
        dirs, evidence = [], []
        for direction, agent_dir in (("c2s", "out"), ("s2c", "in")):
            d, ev = _compare(direction, bytes(flow.data[direction]), [e for e in evs if e.direction == agent_dir], flow)
            dirs.append(d)
            evidence += ev
        if any(d.first_difference for d in dirs):
            status = "differ"
            why = "the hooked plaintext and the decrypted wire differ"
        elif any(d.wire_only for d in dirs):
            status = "wire-only"
            why = (
                "decrypted bytes on the wire that no hooked SSL call handled (another TLS stack, or a "
                "library the hooks missed)"
                if evs
                else "no hooked SSL call for this flow at all: its "
                "plaintext went through a TLS stack the agent did not hook"
            )
        elif any(d.agent_only for d in dirs):
            status = "agent-only"
            why = "the hooks reported plaintext this flow did not carry (the capture missed part of it?)"
        else:
            status, why = "agree", "every decrypted byte was handed to, or returned by, the hooked library"
        out.append(
            FlowCrossCheck(flow.id, client, server, status, why, tls, cr, matched_by, tuple(dirs), tuple(evidence))
        )
    agent_only = tuple(
        {"client_random": cr, "where": where.get(cr, ""), "events": len(evs), "bytes": sum(e.data.length for e in evs)}
        for cr, evs in by_cr.items()
        if cr not in used
    )
    counts: dict[str, int] = {}
    for f in out:
        counts[f.status] = counts.get(f.status, 0) + 1
    return CrossCheck(tuple(out), agent_only, counts)
