"""``wire-check``: what crossed the wire, and in which form each identifier travelled.

Two independent kinds of evidence are read and must agree: captures (pcap / pcapng, any source)
and, optionally, the Frida agent's events (``hostctl trace``: TLS plaintext as the app handed it
to OpenSSL, cipher calls). Every TCP stream (reassembled, both directions), every UDP datagram and
every plaintext event is scanned for every identifier in all its forms
(:mod:`hostctl.wire.identifiers`); each occurrence is one finding naming the identifier, its form,
the flow, the direction and the byte offset.

Every TCP stream and every agent TLS session also goes through the decoder stack
(:mod:`hostctl.wire.decoders`, entry point :class:`hostctl.wire.analysis.Connection`, or
:meth:`WireCheck.layer_connection` for a stream whose findings belong in this report, such as TLS
records decrypted with a key log): HTTP bodies, HTTP/2, WebSocket, compressed streams and
protobuf; a finding there names its ``chain`` of layers, its ``offset`` in the decoded message and
the ``wire_offset`` of the message or frame that carried it.

Verdicts, worst first. An identifier's ``verdict`` is the worst of the findings in what the
device sent (client to server on the wire, ``out`` in the agent's plaintext): that is what the
claims are about. What came back from servers gets its own ``verdict_received``.

``in-clear``
    readable as text: on the wire outside TLS, or inside TLS in the agent's plaintext (``layer``
    says which).
``encoded``
    a reversible encoding of it (hex, Base64, URL, UTF-16, TBCD, ...): as good as clear.
``hashed``
    a digest of it: **not encryption**. The space of numbers is small; :mod:`.recover` searches
    it within a time budget to show the value comes back, and reports the size of the space.
``encrypted-deterministic``
    only as ciphertext, but the same ciphertext for the same value every time (seen in two
    sessions, or the cipher calls reuse one key and IV): linkable.
``encrypted``
    only as ciphertext that changes each time.
``absent``
    not seen.

TLS flows are decrypted when secrets are known (``--keylog`` files, or the capture's own pcapng
Decryption Secrets Blocks; :mod:`.decrypt`, :mod:`.tlsdecrypt`): each direction's application
data is scanned as a stream of its own (layer ``tls-decrypted``), and a finding there names the
record that carried it, the offset in that record and the stream offset of the ciphertext byte on
the wire. Every TLS flow's record says whether it was decrypted (``tls_decryption``), and the
report counts the outcomes (``tls``).

Ciphertext is attributed to an identifier only through the agent's cipher events (plaintext and
ciphertext of one call). Without them, opaque values that repeat across sessions are still
reported under ``deterministic`` (with the field that carried them), unattributed.

The analyser streams: memory is bounded by the flows in flight (and by the caps on how many flow
records and findings the report keeps, which are counted when reached), not by capture size.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import gc
import os
import re
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HostctlError
from .analysis import Connection
from .decoders import Notes
from .identifiers import Identifier, Pattern, patterns_for
from .scan import Scanner
from .span import LineLocator, Origin, Span

__all__ = ["VERDICTS", "WireCheck", "WireCheckError", "form_class", "jsonable", "weak_cipher", "wire_check"]

SCHEMA = "hostctl.wire-check/1"

VERDICTS = ("in-clear", "encoded", "hashed", "encrypted-deterministic", "encrypted", "absent")
_RANK = {v: i for i, v in enumerate(VERDICTS)}

VENDOR_DOMAINS = ("xiaomi.com", "xiaomi.net", "mi.com", "miui.com", "xiaomi.cn", "mi-img.com")
_DIGEST_NAMES = ("md5", "sha1", "sha256")

# Opaque values in readable data (clear flows, TLS plaintext): Base64 / Base64url / hex runs
# long enough to hold one AES block.
_TOKEN = re.compile(rb"[A-Za-z0-9+/_-]{22,}={0,2}|[0-9a-fA-F]{32,}")
_FIELD_BEFORE = re.compile(rb"""["']?([A-Za-z_][A-Za-z0-9_.-]{0,40})["']?\s*[:=]\s*["']?$""")
_TOKEN_WINDOW = 256 * 1024  # readable bytes per flow direction searched for opaque values
_MAX_FLOW_RECORDS = 5000
_MAX_FINDINGS_PER_KEY = 200
CACHE_FROM = 50


class WireCheckError(HostctlError):
    """The analysis could not run (no identifiers, unreadable events file, ...)."""


def form_class(form: str) -> str:
    """The verdict a finding of this form earns: ``in-clear``, ``encoded`` or ``hashed``."""
    low = form.lower()
    if any(d in low for d in _DIGEST_NAMES):
        return "hashed"
    base = form.rsplit(":", 1)[-1]
    return "in-clear" if base == "ascii" else "encoded"


# Cipher suites no handset should agree to (RFC 7465 RC4, RFC 8996-era guidance, NIST SP 800-52r2
# 3.3.1): export-grade, RC4, single and triple DES, no encryption (NULL), no authentication (anon)
_WEAK_CIPHER = (
    ("EXPORT", "an export-grade suite"),
    ("_RC4_", "RC4"),
    ("3DES", "triple DES"),
    ("_DES_", "single DES"),
    ("DES40", "export DES"),
    ("_NULL_", "no encryption (NULL)"),
    ("WITH_NULL", "no encryption (NULL)"),
    ("_anon_", "no server authentication (anon)"),
)


def weak_cipher(name: str) -> str | None:
    """Why the negotiated cipher suite ``name`` (IANA name) is weak, or None."""
    for token, why in _WEAK_CIPHER:
        if token in name or token in name.replace("DES_EDE", "3DES"):
            return f"cipher suite {name}: {why}"
    return None


def is_vendor_host(host: str | None) -> bool:
    host = (host or "").lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in VENDOR_DOMAINS)


@dataclass
class _Where:
    source: str  # "wire" | "agent"
    flow: int | None  # flow id (wire; agent events correlated to a flow when possible)
    direction: str  # "c2s" | "s2c" | "out" | "in" (agent: the app's point of view)
    host: str | None
    layer: str  # "wire" (bytes on the network) | "tls-plaintext" (agent)
    event: int | None = None  # agent event line number (1-based)
    hook: str | None = None
    capture: str | None = None
    ts: float | None = None  # capture time of the bytes (wire) or the event's host time (agent)


_DIRECTIONS = ("c2s", "s2c")
_READABLE = ("http", "http2", "text")  # protocols whose bytes are searched for opaque values
_BATCH = 64 * 1024  # bytes of one direction scanned in one call
_BATCH_SECONDS = 0.05  # ... or the capture time one batch may span (findings keep their time)


class _Pending:
    """One direction's bytes waiting to be scanned: a batch of up to ``_BATCH`` bytes or
    ``_BATCH_SECONDS`` of capture time (many small segments cost one scan call, not one each).
    The scan stream is opened when the first batch is scanned (``start``: the stream offset of the
    direction's first byte delivered, where that stream begins), so a direction that fits in one
    batch costs one stream, fed once and closed, at the flow's end."""

    __slots__ = ("buf", "start", "stream", "ts")

    def __init__(self, start: int) -> None:
        self.buf = bytearray()
        self.ts = 0.0
        self.stream: Any = None
        self.start = start

    def open(self, scanner: Scanner) -> Any:
        s = self.stream = scanner.stream()
        if self.start:  # joined mid-stream: keep the stream's own offsets
            s.gap(self.start)
        return s


_LAZY: Any = object()  # a TCP flow's decoder stack, not made until its first bytes


class _FlowState:
    """What the consumer keeps per flow; the parts a flow may never need are made on first use."""

    __slots__ = ("capture", "conn", "dec", "dirs", "findings", "flow", "gaps", "readable", "tls", "tls_conn")

    def __init__(self, flow: Any, capture: str) -> None:
        self.flow = flow
        self.capture = capture
        self.dirs: dict[str, _Pending] = {}  # direction -> its pending bytes, from its first event
        self.readable: dict[str, bytearray] = {}
        self.findings: list[dict] = []
        self.gaps = 0
        self.conn: Any = None  # the decoder stack over this flow (None: opaque / done; _LAZY: not yet made)
        self.tls: Any = None  # the flow's TlsDecryptor; False: not TLS or nothing to decrypt with
        self.dec: dict[str, _Decrypted] = {}
        self.tls_conn: Any = None  # the decoder stack over the decrypted application data


class _Decrypted:
    """One direction's decrypted application data waiting to be scanned, and where each record's
    plaintext begins: (offset in the decrypted stream, record number, wire stream offset)."""

    __slots__ = ("buf", "offset", "records", "stream", "ts")

    def __init__(self, stream: Any) -> None:
        self.buf = bytearray()
        self.ts = 0.0
        self.stream = stream
        self.offset = 0  # decrypted bytes handed to the stream or the buffer
        self.records: list[tuple[int, int, int]] = []

    def locate(self, offset: int) -> dict:
        recs = self.records
        i = bisect.bisect_right(recs, (offset, 1 << 62, 0)) - 1
        if i < 0:
            return {}
        start, number, wire = recs[i]
        return {"record": number, "record_offset": offset - start, "wire_offset": wire + offset - start}


class WireCheck:
    """Accumulates captures and agent events; :meth:`report` gives the JSON-ready document.

    ``identifiers``: what to look for. ``engine``: the scanner (``auto``, ``hyperscan``,
    ``python``). ``hash_budget``: seconds the hashed-number recovery may spend in all.
    """

    def __init__(
        self,
        identifiers: Sequence[Identifier],
        *,
        engine: str = "auto",
        hash_budget: float = 5.0,
        progress: Any = None,
        keylogs: Sequence[str | Path] = (),
        cache: bool | None = None,
    ) -> None:
        if not identifiers:
            raise WireCheckError("no identifiers to look for: give --testbed or --imei/--imsi/--iccid/--number/--text")
        self.identifiers = list(identifiers)
        # the on-disk cache (hostctl.wire.cache) pays off where compiling costs seconds: from
        # CACHE_FROM identifiers on, unless HOSTCTL_CACHE=off or cache=False says otherwise
        if cache is None:
            cache = len(self.identifiers) >= CACHE_FROM and os.environ.get("HOSTCTL_CACHE") != "off"
        self.startup = "compiled"
        if cache:
            from .cache import cached_scanner

            self.patterns, self.scanner, self.startup = cached_scanner(self.identifiers, engine=engine)
        else:
            self.patterns = patterns_for(self.identifiers)
            self.scanner = Scanner(self.patterns, engine=engine)
        self._pattern_bytes = {p.data for p in self.patterns}
        self._by_form = {(p.ident.label or p.ident.kind, p.ident.value, p.form): p for p in self.patterns}
        self.hash_budget = hash_budget
        self.progress = progress
        self.captures: list[dict] = []
        self.flows: list[dict] = []
        self.flows_omitted = 0
        self.findings: list[dict] = []
        self.findings_dropped = 0
        self._finding_counts: dict[tuple, int] = defaultdict(int)
        self._tokens: dict[bytes, dict] = {}  # opaque value -> {sessions, fields, where}
        self._cipher: list[dict] = []  # agent cipher events
        self._clear_http: list[dict] = []
        self._weak_tls: list[dict] = []
        self._ports: dict[int, dict] = {}  # client port -> flow record (agent correlation)
        self.agent_files: list[dict] = []
        self._flow_base = 0
        from .keylog import KeyLog, KeyLogError

        self.keylog = KeyLog()
        self.tls_counts: dict[str, int] = defaultdict(int)
        self.client_randoms: list[bytes] = []  # of the TLS sessions seen (for --write-decrypted)
        for kl in keylogs:
            try:
                self.keylog.add_file(kl)
            except KeyLogError as exc:
                raise WireCheckError(str(exc)) from exc
        self.layer_notes = Notes()

    # -- the decoder stack ------------------------------------------------------------------
    def layer_connection(
        self,
        origin: Origin,
        *,
        chain: tuple[str, ...] = (),
        port: int | None = None,
        alpn: str | None = None,
        host: str | Callable[[], str | None] | None = None,
        layer: str | None = None,
        scan_bottom: bool = True,
        on_finding: Any = None,
        on_authority: Any = None,
    ) -> Connection:
        """A decoder stack over one two-way byte stream whose findings land in this report:
        the wire's TCP flows, the agent's TLS sessions and (``tlsdecrypt``) decrypted records
        (``origin.source == "tls-decrypted"``, ``chain=("tls",)``). Feed it per direction with
        ``feed(direction, offset, data)``, then ``close()``; with ``scan_bottom`` the stream
        itself is scanned too (chain ``chain`` or ``stream``)."""
        return Connection(
            _LayerSink(self, origin, host, layer or origin.source, on_finding, on_authority),
            origin,
            chain=chain,
            port=port,
            alpn=alpn,
            scan_bottom=scan_bottom,
        )

    # -- captures ---------------------------------------------------------------------------
    def add_capture(self, path: str | Path) -> dict:
        from .flows import FlowTable
        from .pcapread import open_capture

        path = Path(path)
        t0 = time.monotonic()
        from .decrypt import TlsLayer

        consumer = _Consumer(self, str(path))
        reader = open_capture(path)
        consumer.tls = TlsLayer(self.keylog, reader)
        table = FlowTable(consumer)
        progress = None
        if self.progress is not None:

            def progress(n: int, *_: Any) -> None:
                self.progress(f"{path.name}: {n} packets")

        # Nothing per packet or flow makes reference cycles (a flow's state is dropped at its end),
        # so the cyclic collector would only walk the live objects over and over: off meanwhile.
        collecting = gc.isenabled()
        gc.disable()
        try:
            table.run(reader, progress=progress)
        finally:
            if collecting:
                gc.enable()
        n = reader.stats.get("packets", 0)
        info = {
            "path": str(path),
            "packets": n,
            "seconds": round(time.monotonic() - t0, 3),
            "reader": jsonable(getattr(reader, "stats", {})),
            "flows": jsonable(getattr(table, "stats", {})),
        }
        for status, n in consumer.tls.counts.items():
            self.tls_counts[status] += n
        self.client_randoms.extend(consumer.tls.client_randoms)
        if consumer.tls.counts:
            info["tls"] = dict(consumer.tls.counts)
        self.captures.append(info)
        self._flow_base += consumer.max_flow_id
        return info

    # -- agent events -----------------------------------------------------------------------
    def add_agent_events(self, path: str | Path) -> dict:
        """Scan the TLS plaintext in a ``hostctl trace`` events file (``ssl`` events: what the app
        handed to, or got from, its TLS library), and keep its cipher operations (Java Cipher or
        native EVP) to attribute ciphertext to identifiers."""
        from ..events import SslData, cipher_operations, read_events

        path = Path(path)
        counts: dict[str, int] = defaultdict(int)
        errors: list[str] = []
        lines: dict[int, int] = {}
        sessions: dict[str, list] = {}
        try:
            events = list(read_events(path, errors=errors))
        except OSError as exc:
            raise WireCheckError(f"{path}: cannot read agent events: {exc.strerror or exc}") from exc
        for lineno, ev in events:
            counts[ev.kind] += 1
            lines[id(ev)] = lineno
            if not isinstance(ev, SslData) or not ev.data:
                continue
            payload = bytes(ev.data)
            local_port = ev.local.port if ev.local is not None else None
            flow = self._ports.get(local_port) if local_port else None
            host = ev.sni or (flow or {}).get("host")
            where = _Where(
                "agent",
                flow["id"] if flow else None,
                ev.direction,
                host,
                "tls-plaintext",
                event=lineno,
                hook=ev.fn,
                ts=ev.agent_ts or ev.host_ts,
            )
            for m in self.scanner.scan(payload):
                self._finding(m, where)
            session = f"agent:{ev.pid}:{local_port if local_port is not None else ev.ssl}"
            self._collect_tokens(payload, session, where)
            direction = "c2s" if ev.direction == "out" else "s2c"
            sess = sessions.get(session)
            if sess is None:
                locator = LineLocator()
                origin = Origin("agent", flow=flow["id"] if flow else None, host=host, locate=locator)
                conn = self.layer_connection(
                    origin,
                    host=host,
                    layer="tls-plaintext",
                    scan_bottom=False,
                    port=ev.peer.port if ev.peer is not None else None,
                )
                sess = sessions[session] = [conn, locator, {"c2s": 0, "s2c": 0}]
            conn, locator, offsets = sess
            conn.sink.ts = where.ts
            locator.add(direction, offsets[direction], lineno)
            conn.feed(direction, offsets[direction], payload)
            offsets[direction] += len(payload)
        for conn, _locator, _offsets in sessions.values():
            conn.close()
        for op in cipher_operations(ev for _, ev in events):
            self._cipher.append({"file": str(path), "op": op})
        info = {"path": str(path), "events": dict(counts), "errors": errors[:20], "error_count": len(errors)}
        self.agent_files.append(info)
        return info

    def add_agent_secrets(self, path: str | Path) -> int:
        """Adds the TLS secrets of a ``hostctl trace`` events file (``tls-secret`` events) to the
        key log; call before `add_capture`. Returns how many were new."""
        from ..events import TlsSecret, read_events

        n = 0
        try:
            for _, ev in read_events(path, errors=[]):
                if isinstance(ev, TlsSecret):
                    n += self.keylog.add(ev.label, bytes.fromhex(ev.client_random), bytes.fromhex(ev.secret))
        except OSError as exc:
            raise WireCheckError(f"{path}: cannot read agent events: {exc.strerror or exc}") from exc
        return n

    # -- findings and tokens ----------------------------------------------------------------
    def _finding(
        self, m: Any, where: _Where, offset_base: int = 0, chain: str | None = None, at: dict | None = None
    ) -> dict | None:
        p: Pattern = m.pattern
        key = (p.ident.label or p.ident.value, p.form, where.source, where.flow, where.direction)
        self._finding_counts[key] += 1
        if self._finding_counts[key] > _MAX_FINDINGS_PER_KEY:
            self.findings_dropped += 1
            return None
        f = {
            "identifier": p.ident.label or p.ident.kind,
            "kind": p.ident.kind,
            "value": p.ident.value,
            "form": p.form,
            "verdict": form_class(p.form),
            "source": where.source,
            "layer": where.layer,
            "flow": where.flow,
            "direction": where.direction,
            "offset": offset_base + m.start,
            "length": m.end - m.start,
            "host": where.host,
            "chain": chain or ("tcp" if where.source == "wire" else where.layer),
        }
        if at:
            f.update(at)
        if where.event is not None:
            f["event"] = where.event
            f["hook"] = where.hook
        if where.capture is not None:
            f["capture"] = where.capture
        f["ts"] = where.ts
        self.findings.append(f)
        return f

    def _collect_tokens(self, data: bytes, session: str, where: _Where) -> None:
        for m in _TOKEN.finditer(data):
            tok = m.group(0)
            if tok in self._pattern_bytes:
                continue
            raw = _decode_opaque(tok)
            if raw is None:
                continue
            fm = _FIELD_BEFORE.search(data[max(0, m.start() - 48) : m.start()])
            rec = self._tokens.setdefault(tok, {"sessions": [], "fields": set(), "where": [], "raw": raw})
            if session not in rec["sessions"]:
                rec["sessions"].append(session)
            if fm:
                rec["fields"].add(fm.group(1).decode("ascii", "replace"))
            if len(rec["where"]) < 10:
                rec["where"].append(
                    {
                        "source": where.source,
                        "flow": where.flow,
                        "direction": where.direction,
                        "offset": m.start(),
                        "host": where.host,
                        **({"event": where.event} if where.event is not None else {}),
                    }
                )

    # -- the report ---------------------------------------------------------------------------
    def report(self) -> dict:
        attributed = self._attribute_ciphertext()
        deterministic = []
        for tok, rec in self._tokens.items():
            attr = attributed.get(tok) or attributed.get(rec["raw"])
            fixed_iv = attr is not None and attr.get("fixed_iv")
            if len(rec["sessions"]) >= 2 or fixed_iv:
                deterministic.append(
                    {
                        "value": tok.decode("ascii"),
                        "bytes": len(rec["raw"]),
                        "sessions": len(rec["sessions"]),
                        "fields": sorted(rec["fields"]),
                        "identifier": attr["identifier"] if attr else None,
                        "why": (
                            "the same ciphertext in %d sessions" % len(rec["sessions"])
                            if len(rec["sessions"]) >= 2
                            else "one key and IV reused across calls"
                        ),
                        "seen": rec["where"],
                    }
                )
        det_idents = {d["identifier"] for d in deterministic if d["identifier"]}
        enc_idents = {
            a["identifier"]
            for tok, a in attributed.items()
            if tok in self._tokens or any(r["raw"] == tok for r in self._tokens.values())
        }
        identifiers = []
        hashed = []
        budget_left = self.hash_budget
        for ident in self.identifiers:
            name = ident.label or ident.kind
            every = [f for f in self.findings if f["identifier"] == name and f["value"] == ident.value]
            mine = [f for f in every if f["direction"] in _SENT]
            verdict = _worst(mine)
            received = _worst([f for f in every if f["direction"] not in _SENT])
            if verdict == "absent" and name in det_idents:
                verdict = "encrypted-deterministic"
            elif verdict == "absent" and name in enc_idents:
                verdict = "encrypted"
            forms = sorted({f["form"] for f in mine})
            entry = {
                "identifier": name,
                "kind": ident.kind,
                "value": ident.value,
                "verdict": verdict,
                "findings": len(mine),
                "verdict_received": received,
                "findings_received": len(every) - len(mine),
                "forms": forms,
                "layers": sorted({f["layer"] for f in mine}),
                "flows": sorted({f["flow"] for f in mine if f["flow"] is not None}),
            }
            hashed_forms = sorted({f["form"] for f in mine if f["verdict"] == "hashed"})
            if hashed_forms and budget_left > 0:
                share = budget_left / len(hashed_forms)
                for form in hashed_forms:
                    t0 = time.monotonic()
                    rec = _recover(ident, self._by_form.get((name, ident.value, form)), form, share)
                    budget_left -= time.monotonic() - t0
                    hashed.append({"identifier": name, "form": form, "algorithm": _digest_of(form), **rec})
            identifiers.append(entry)
        flows_with = sorted({f["flow"] for f in self.findings if f["flow"] is not None})
        summary = {
            "identifiers": {v: sum(1 for i in identifiers if i["verdict"] == v) for v in VERDICTS},
            "findings": len(self.findings) + self.findings_dropped,
            "flows": len(self.flows) + self.flows_omitted,
            "flows_with_findings": len(flows_with),
            "clear_http_with_identifiers": sum(1 for c in self._clear_http if c["findings"]),
            "weak_tls": len(self._weak_tls),
            "deterministic": len(deterministic),
            "tls_flows": dict(self.tls_counts),
        }
        return {
            "schema": SCHEMA,
            "captures": self.captures,
            "agent_events": self.agent_files,
            "identifiers": identifiers,
            "flows": self.flows,
            "flows_omitted": self.flows_omitted,
            "findings": self.findings,
            "findings_dropped": self.findings_dropped,
            "hashed": hashed,
            "deterministic": deterministic,
            "clear_http": self._clear_http,
            "layer_notes": self.layer_notes.to_json(),
            "weak_tls": self._weak_tls,
            "cipher_calls": self._cipher_summary(),
            "tls": {"flows": dict(self.tls_counts), "keylog": self.keylog.summary()},
            "summary": summary,
        }

    def write_decrypted(self, captures: Sequence[str | Path], out: str | Path) -> dict:
        """Writes ``captures`` to ``out`` (pcapng, mode 0600: it holds secrets) with a DSB of the
        secrets known for the TLS sessions seen in them (only those: other sessions' keys in a key
        log do not travel with the capture)."""
        import os

        from .pcapwrite import copy_with_secrets

        text = self.keylog.text(dict.fromkeys(self.client_randoms))
        out = Path(out)
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                packets = copy_with_secrets([str(c) for c in captures], f, text)
        except OSError as exc:
            raise WireCheckError(f"{out}: cannot write: {exc.strerror or exc}") from exc
        return {"path": str(out), "packets": packets, "secrets": text.count("\n")}

    def _attribute_ciphertext(self) -> dict[bytes, dict]:
        """ciphertext (raw and its text forms) -> {identifier, fixed_iv} from the cipher
        operations whose plaintext holds an identifier. An IV is fixed when one key and IV
        encrypted two operations."""
        uses: dict[tuple, int] = defaultdict(int)
        for c in self._cipher:
            op = c["op"]
            if op.mode == "encrypt" and op.iv:
                uses[(op.key, op.iv)] += 1
        out: dict[bytes, dict] = {}
        for c in self._cipher:
            op = c["op"]
            if op.mode != "encrypt" or not op.input or not op.output:
                continue
            found = self.scanner.scan(op.input)
            if not found:
                continue
            p = found[0].pattern
            info = {"identifier": p.ident.label or p.ident.kind, "fixed_iv": bool(op.iv) and uses[(op.key, op.iv)] >= 2}
            for form in _text_forms(op.output) | _text_forms(bytes(op.iv or b"") + op.output):
                out[form] = info
        return out

    def _cipher_summary(self) -> list[dict]:
        groups: dict[tuple, dict] = {}
        for c in self._cipher:
            op = c["op"]
            key = (op.algorithm, op.key, op.iv)
            g = groups.setdefault(
                key,
                {
                    "source": op.source,
                    "app": op.app,
                    "algorithm": op.algorithm,
                    "key": (op.key or b"").hex(),
                    "iv": (op.iv or b"").hex(),
                    "operations": 0,
                    "identifiers": set(),
                },
            )
            g["operations"] += 1
            for m in self.scanner.scan(op.input) if op.input else ():
                g["identifiers"].add(m.pattern.ident.label or m.pattern.ident.kind)
        out = []
        for g in groups.values():
            g["identifiers"] = sorted(g["identifiers"])
            g["iv_reused"] = bool(g["iv"]) and g["operations"] >= 2
            out.append(g)
        return out


_SENT = ("c2s", "out")  # the device's (client's) side: what the claims are about


class _LayerSink:
    """What the decoder stack of one stream reports to: findings become the report's, with
    their layer chain, offset in the decoded message and the carrier's place in the capture."""

    __slots__ = ("check", "host", "layer", "on_authority", "on_finding", "origin", "scanner", "ts")

    def __init__(
        self,
        check: WireCheck,
        origin: Origin,
        host: str | Callable[[], str | None] | None,
        layer: str,
        on_finding: Any,
        on_authority: Any = None,
    ) -> None:
        self.check, self.scanner, self.origin = check, check.scanner, origin
        self.host, self.layer, self.on_finding = host, layer, on_finding
        self.on_authority = on_authority
        self.ts: float | None = None  # time of the bytes being fed (set by the feeder)

    def authority(self, value: str) -> None:
        """A decoder read the host a request names (HTTP/2 ``:authority``): the flow's host where
        neither SNI nor a Host header named one (h2c has neither)."""
        if self.on_authority is not None:
            self.on_authority(value)

    def layer_finding(self, match: Any, span: Span, offset: int) -> None:
        o = span.origin
        direction = span.direction
        if o.source == "agent":
            direction = "out" if direction == "c2s" else "in"
        host = self.host() if callable(self.host) else self.host
        where = _Where(o.source, o.flow, direction, host, f"{self.layer}>{span.layer}", capture=o.capture, ts=self.ts)
        f = self.check._finding(
            match, where, chain=span.layer, at={"offset": offset, **span.where(), "chain": span.layer}
        )
        if f is not None and self.on_finding is not None:
            self.on_finding(f)

    def layer_note(self, span: Span, kind: str, detail: str) -> None:
        self.check.layer_notes.add(
            kind,
            detail,
            {"source": span.origin.source, "flow": span.origin.flow, "direction": span.direction, **span.where()},
        )


def _worst(findings: Sequence[dict]) -> str:
    verdict = "absent"
    for f in findings:
        if _RANK[f["verdict"]] < _RANK[verdict]:
            verdict = f["verdict"]
    return verdict


def _text_forms(raw: bytes) -> set[bytes]:
    b64 = base64.b64encode(raw)
    return {
        raw,
        b64,
        b64.rstrip(b"="),
        base64.urlsafe_b64encode(raw),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        raw.hex().encode(),
        raw.hex().upper().encode(),
    }


def _decode_opaque(tok: bytes) -> bytes | None:
    """The bytes behind an opaque text value, when it looks like ciphertext (at least one AES
    block, not text); None otherwise."""
    raw = None
    if len(tok) >= 32 and all(c in b"0123456789abcdefABCDEF" for c in tok):
        try:
            raw = binascii.unhexlify(tok) if len(tok) % 2 == 0 else None
        except binascii.Error:
            raw = None
    if raw is None:
        t = tok.replace(b"-", b"+").replace(b"_", b"/")
        t += b"=" * (-len(t) % 4)
        try:
            raw = base64.b64decode(t, validate=True)
        except (binascii.Error, ValueError):
            return None
    if len(raw) < 16:
        return None
    printable = sum(1 for b in raw if 32 <= b < 127)
    if printable > 0.85 * len(raw):
        return None
    if len(set(raw)) < min(12, len(raw) // 2):
        return None
    return raw


def _digest_of(form: str) -> str | None:
    low = form.lower()
    for d in ("sha256", "sha1", "md5"):
        if d in low:
            return d
    return None


def _recover(ident: Identifier, pattern: Pattern | None, form: str, budget: float) -> dict:
    from . import recover

    try:
        return recover.demonstrate(ident, _digest_of(form) or "sha1", budget=budget, pattern=pattern, form=form)
    except Exception as exc:  # noqa: BLE001 - the demonstration is evidence, not the verdict: never lose the report
        return {"recovered": None, "error": f"{type(exc).__name__}: {exc}"}


def jsonable(x: Any) -> Any:
    """``x`` as JSON data: objects by their ``to_json()`` or as dataclasses, mappings with text
    keys, sequences and sets as lists, anything else as its text."""
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if hasattr(x, "to_json"):
        return x.to_json()
    if hasattr(x, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(x)
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        return [jsonable(v) for v in x]
    return str(x)


class _Consumer:
    """The FlowTable consumer: one scan stream per flow direction, opaque values from readable
    flows, and one small record per flow."""

    def __init__(self, check: WireCheck, capture: str) -> None:
        self.c = check
        self.capture = capture
        self.max_flow_id = 0
        self.tls: Any = None  # a hostctl.wire.decrypt.TlsLayer (set by add_capture)

    def _id(self, flow: Any) -> int:
        return self.c._flow_base + flow.id

    def flow_start(self, flow: Any) -> None:
        if flow.id > self.max_flow_id:
            self.max_flow_id = flow.id
        st = flow.user = _FlowState(flow, self.capture)
        if flow.key.proto == "tcp":
            st.conn = _LAZY  # made with the first bytes (a flow without any needs none)

    def _connection(self, st: _FlowState) -> Connection:
        flow = st.flow
        return self.c.layer_connection(
            Origin("wire", flow=self._id(flow), capture=self.capture),
            port=flow.key.server[1],
            host=lambda: self._host(flow),
            layer="wire",
            scan_bottom=False,
            on_finding=st.findings.append,
            on_authority=lambda a: self._authority(flow, a),
        )

    def _state(self, flow: Any) -> _FlowState:
        st = flow.user
        if st is None:
            self.flow_start(flow)
            st = flow.user
        return st

    def _host(self, flow: Any) -> str | None:
        proto = getattr(flow, "protocol", None) or {}
        return proto.get("sni") or proto.get("host")

    @staticmethod
    def _authority(flow: Any, authority: str) -> None:
        proto = getattr(flow, "protocol", None)
        if isinstance(proto, dict) and not (proto.get("sni") or proto.get("host")):
            proto["host"] = authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority

    def data(self, flow: Any, direction: str, offset: int, data: bytes, ts: float) -> None:
        st = flow.user
        if st is None:
            st = self._state(flow)
        dec = st.tls
        if dec is None:
            dec = st.tls = (self.tls is not None and self.tls.active() and self.tls.start(data, offset)) or False
        if dec is not False:
            for plain in dec.feed(direction, offset, data):
                self.plaintext(st, plain, ts)
        p = st.dirs.get(direction)
        if p is None:
            p = st.dirs[direction] = _Pending(offset)
        buf = p.buf
        if not buf and len(data) >= 4096:  # a big piece: scanned as it is, no copy
            matches = (p.stream or p.open(self.c.scanner)).feed(data)
            if matches:
                self._record(st, matches, direction, ts)
        elif buf:
            if ts - p.ts > _BATCH_SECONDS or len(buf) + len(data) > _BATCH:
                self._scan(st, direction, p)
                p.ts = ts
            buf += data
            if len(buf) >= _BATCH:
                self._scan(st, direction, p)
        else:
            p.ts = ts
            buf += data
        conn = st.conn
        if conn is _LAZY:
            # made when a decoder claims the stream: most streams no decoder claims (opaque,
            # no TLS record, nothing known on that port) need none
            if Connection.claims(direction, data, port=flow.key.server[1]):
                conn = st.conn = self._connection(st)
            else:
                conn = st.conn = None
        if conn is not None:
            conn.sink.ts = ts
            conn.feed(direction, offset, data)
            if conn.opaque:
                conn.close()
                st.conn = None
        proto = flow.protocol
        if proto and proto.get("name") in _READABLE:
            rb = st.readable.get(direction)
            if rb is None:
                rb = st.readable[direction] = bytearray()
            if len(rb) < _TOKEN_WINDOW:
                rb += data[: _TOKEN_WINDOW - len(rb)]

    def _scan(self, st: _FlowState, direction: str, p: _Pending) -> None:
        if p.buf:
            matches = (p.stream or p.open(self.c.scanner)).feed(bytes(p.buf))
            p.buf.clear()
            if matches:
                self._record(st, matches, direction, p.ts)

    # -- decrypted TLS --------------------------------------------------------------------------
    # Where decrypted application data becomes a stream: every record's plaintext of a flow
    # direction comes here in order (``plain``: a hostctl.wire.tlsdecrypt.Plaintext with its
    # record number and wire offset). The plaintext itself is scanned like a clear TCP stream
    # (findings layer ``tls-decrypted``), and it feeds a decoder stack of its own (HTTP/1 bodies,
    # HTTP/2, WebSocket, compression: layers ``tls-decrypted>tls>...``) whose findings cite the
    # record and wire offset through ``_Decrypted.locate``.
    def plaintext(self, st: _FlowState, plain: Any, ts: float) -> None:
        d = st.dec.get(plain.direction)
        if d is None:
            d = st.dec[plain.direction] = _Decrypted(self.c.scanner.stream())
            d.ts = ts
        d.records.append((d.offset, plain.record, plain.wire_offset))
        conn = st.tls_conn
        if conn is None:
            conn = st.tls_conn = self._decrypted_connection(st)
        if conn is not False:
            conn.sink.ts = ts
            conn.feed(plain.direction, d.offset, plain.data)
            if conn.opaque:
                conn.close()
                st.tls_conn = False
        d.offset += len(plain.data)
        if d.buf and (ts - d.ts > _BATCH_SECONDS or len(d.buf) + len(plain.data) > _BATCH):
            self._scan_decrypted(st, plain.direction, d)
        if not d.buf:
            d.ts = ts
        d.buf += plain.data
        rb = st.readable.setdefault(plain.direction, bytearray())
        if len(rb) < _TOKEN_WINDOW:
            rb += plain.data[: _TOKEN_WINDOW - len(rb)]

    def _decrypted_connection(self, st: _FlowState) -> Any:
        flow = st.flow
        proto = getattr(flow, "protocol", None) or {}
        alpn = proto.get("alpn_selected")

        def locate(direction: str, offset: int) -> dict:
            d = st.dec.get(direction)
            return (d.locate(offset) if d is not None else {}) or {"wire_offset": offset}

        # scan_bottom=False: the plaintext itself is scanned by _scan_decrypted, so a layer above
        # reports only what it decoded (one finding per occurrence)
        return self.c.layer_connection(
            Origin("wire", flow=self._id(flow), capture=self.capture, locate=locate),
            chain=("tls",),
            port=flow.key.server[1],
            alpn=alpn if isinstance(alpn, str) else None,
            host=lambda: self._host(flow),
            layer="tls-decrypted",
            scan_bottom=False,
            on_finding=st.findings.append,
        )

    def _scan_decrypted(self, st: _FlowState, direction: str, d: _Decrypted, *, final: bool = False) -> None:
        matches = list(d.stream.feed(bytes(d.buf))) if d.buf else []
        d.buf.clear()
        if final:
            matches.extend(d.stream.close() or ())
        if matches:
            where = _Where(
                "wire",
                self._id(st.flow),
                direction,
                self._host(st.flow),
                "tls-decrypted",
                capture=self.capture,
                ts=d.ts,
            )
            for m in matches:
                f = self.c._finding(m, where)
                if f is not None:
                    f.update(d.locate(m.start))
                    st.findings.append(f)
        if len(d.records) > 4096:  # matches never reach this far back
            keep = bisect.bisect_right(d.records, (d.offset - len(d.buf) - (1 << 20), 1 << 62, 0))
            if keep > 1:
                del d.records[: keep - 1]

    def _end_tls(self, flow: Any, st: _FlowState) -> dict | None:
        dec = st.tls
        if not dec:
            return None
        rest, summary = self.tls.end(dec)
        for plain in rest:
            self.plaintext(st, plain, getattr(flow, "last_ts", 0.0) or 0.0)
        for direction, d in st.dec.items():
            self._scan_decrypted(st, direction, d, final=True)
        return summary

    def gap(self, flow: Any, direction: str, offset: int, length: int) -> None:
        st = self._state(flow)
        st.gaps += 1
        if st.tls:
            st.tls.gap(direction, offset, length)
        if st.conn is not None and st.conn is not _LAZY:  # (a stack not made yet has nothing to lose)
            st.conn.gap(direction, offset, length)
        p = st.dirs.get(direction)
        if p is None:
            p = st.dirs[direction] = _Pending(offset)
        self._scan(st, direction, p)
        m = (p.stream or p.open(self.c.scanner)).gap(length)  # offsets stay the stream's; no match spans the gap
        if m:
            self._record(st, m, direction, getattr(flow, "last_ts", None))

    def datagram(self, flow: Any, direction: str, data: bytes, ts: float, index: int) -> None:
        st = self._state(flow)
        matches = self.c.scanner.scan(data)
        if matches:
            where = _Where("wire", self._id(flow), direction, self._host(flow), "wire", capture=self.capture, ts=ts)
            for m in matches:
                f = self.c._finding(m, where)
                if f is not None:
                    f["packet"] = index
                    st.findings.append(f)

    def _record(self, st: _FlowState, matches: Sequence[Any], direction: str, ts: float | None) -> None:
        where = _Where("wire", self._id(st.flow), direction, self._host(st.flow), "wire", capture=self.capture, ts=ts)
        for m in matches:
            f = self.c._finding(m, where)
            if f is not None:
                st.findings.append(f)

    def flow_end(self, flow: Any) -> None:
        st = flow.user
        if st is None:
            return
        flow.user = None
        if st.conn is not None:
            if st.conn is not _LAZY:
                st.conn.close()
            st.conn = None
        tls_summary = self._end_tls(flow, st)
        if st.tls_conn is not None:
            st.tls_conn.close()
            st.tls_conn = None
        dirs = st.dirs
        # the directions never scanned before (read whole here) are tested for any pattern at
        # once: a stream over bytes without any would find nothing
        fresh = [p.buf for p in dirs.values() if p.stream is None and p.buf]
        quiet = not fresh or not self.c.scanner.finds_any(*fresh)
        for direction in _DIRECTIONS:  # (in this order, whichever spoke first)
            p = dirs.get(direction)
            if p is None or (p.stream is None and (quiet or not p.buf)):
                continue
            self._scan(st, direction, p)
            if p.stream is None:  # nothing was ever scanned: an empty stream finds nothing
                continue
            m = p.stream.close()
            if m:
                self._record(st, m, direction, getattr(flow, "last_ts", None))
        c = self.c
        proto = getattr(flow, "protocol", None) or {}
        host = proto.get("sni") or proto.get("host")  # (what _host says)
        fid = c._flow_base + flow.id
        if st.readable:
            for direction, buf in st.readable.items():
                c._collect_tokens(
                    bytes(buf),
                    f"{self.capture}#{fid}",
                    _Where("wire", fid, direction, host, "wire", capture=self.capture),
                )
        key = flow.key
        findings = st.findings
        name = proto.get("name")
        if name == "tls":
            if is_vendor_host(host):
                version = proto.get("version")
                cipher = proto.get("cipher") or ""
                weak = weak_cipher(cipher)
                if version and version in ("SSL 3.0", "TLS 1.0", "TLS 1.1"):
                    c._weak_tls.append(
                        {
                            "flow": fid,
                            "host": host,
                            "version": version,
                            "cipher": cipher,
                            "why": f"protocol version {version}",
                        }
                    )
                elif weak:
                    c._weak_tls.append(
                        {
                            "flow": fid,
                            "host": host,
                            "version": f"{version} with {cipher}",
                            "cipher": cipher,
                            "why": weak,
                        }
                    )
        elif (name == "http" or name == "http2") and (findings or is_vendor_host(host)):
            c._clear_http.append(
                {
                    "flow": fid,
                    "host": host,
                    "requests": proto.get("requests", [])[:20],
                    "findings": len(findings),
                    "identifiers": sorted({f["identifier"] for f in findings}),
                }
            )
        if findings or len(c.flows) < _MAX_FLOW_RECORDS:
            rec = {
                "id": fid,
                "capture": self.capture,
                "proto": key.proto,
                "client": f"{key.client[0]}:{key.client[1]}",
                "server": f"{key.server[0]}:{key.server[1]}",
                "host": host,
                "vendor": is_vendor_host(host),
                "protocol": jsonable(proto),
                "first_ts": getattr(flow, "first_ts", None),
                "last_ts": getattr(flow, "last_ts", None),
                "packets": getattr(flow, "packets", None),
                "bytes": {"c2s": getattr(flow, "bytes_c2s", 0), "s2c": getattr(flow, "bytes_s2c", 0)},
                "gaps": st.gaps,
                "ended": getattr(flow, "ended", None),
                "findings": len(findings),
            }
            if tls_summary is not None:
                rec["tls_decryption"] = tls_summary
            worst = "absent"
            for f in findings:
                if _RANK[f["verdict"]] < _RANK[worst]:
                    worst = f["verdict"]
            rec["verdict"] = worst
            c.flows.append(rec)
        else:
            # a flow without findings past the cap: counted, and only what the agent events'
            # correlation reads of its record (add_agent_events) is made
            c.flows_omitted += 1
            rec = {"id": fid, "host": host}
        if key.proto == "tcp":
            c._ports[key.client[1]] = rec

    def close(self) -> None:
        pass


def wire_check(
    captures: Sequence[str | Path],
    identifiers: Sequence[Identifier],
    *,
    agent_events: Sequence[str | Path] = (),
    engine: str = "auto",
    hash_budget: float = 5.0,
    progress: Any = None,
    keylogs: Sequence[str | Path] = (),
    write_decrypted: str | Path | None = None,
) -> dict:
    """Analyse captures (and agent events) for identifiers; the report as a JSON-ready dict.

    ``keylogs``: NSS key log files to decrypt TLS with (captures' own DSBs, and the ``tls-secret``
    events of ``agent_events``, are used too).
    ``write_decrypted``: also write the captures' packets as one pcapng with a DSB holding the
    secrets of the TLS sessions seen in them, which Wireshark opens decrypted."""
    check = WireCheck(identifiers, engine=engine, hash_budget=hash_budget, progress=progress, keylogs=keylogs)
    for ev in agent_events:  # the trace's TLS secrets (tls-secret events) decrypt its captures too
        check.add_agent_secrets(ev)
    for cap in captures:
        check.add_capture(cap)
    for ev in agent_events:  # after the captures: plaintext events are matched to their flows
        check.add_agent_events(ev)
    report = check.report()
    if write_decrypted is not None:
        report["written"] = check.write_decrypted(captures, write_decrypted)
    return report
