"""Decrypting the TLS flows of a capture: the driver around `hostctl.wire.tlsdecrypt`.

`TlsLayer` is what a `hostctl.wire.flows.FlowTable` consumer calls to decrypt as it goes (the wire
check uses it), `decrypt_capture` a whole-file convenience that keeps each flow's plaintext (for
the audit's cross-check and the tests), and `capture_keylog` the key log a capture carries in its
pcapng Decryption Secrets Blocks.

Secrets come from key log files and from the capture's own DSBs (``TLSK`` type, pcapng spec
draft-ietf-opsawg-pcapng section 4.7), both merged into one `KeyLog`; DSBs are read as the capture
is, so a DSB written before the packets it opens (as PCAPdroid, ``editcap --inject-secrets`` and
our ``--write-decrypted`` do) counts for them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .keylog import KeyLog
from .tlsdecrypt import STATUSES, Plaintext, TlsDecryptor

__all__ = ["DecryptedFlow", "TlsLayer", "capture_keylog", "decrypt_capture", "decrypt_trace_capture", "trace_keylog"]

DSB_TLS_KEYLOG = 0x544C534B  # "TLSK": secrets type of a TLS key log in a Decryption Secrets Block


def looks_like_tls(data: bytes) -> bool:
    """A TLS record header: content type 20-24, major version 3, minor <= 4."""
    return len(data) >= 3 and 20 <= data[0] <= 24 and data[1] == 3 and data[2] <= 4


class TlsLayer:
    """Decryption for the flows of one capture read. ``keylog`` is consulted when a connection's
    hellos are read; ``reader`` (a `CaptureReader`), when given, adds its DSB secrets as they are
    read. Counts every TLS flow's outcome in ``counts``."""

    def __init__(self, keylog: KeyLog, reader: Any = None) -> None:
        self.keylog = keylog
        self.reader = reader
        self._dsb_seen = 0
        self.counts: dict[str, int] = {}
        self.client_randoms: list[bytes] = []

    def _secrets(self, client_random: bytes) -> dict[str, bytes]:
        self.pull_dsbs()
        self.client_randoms.append(client_random)
        return self.keylog.get(client_random)

    def pull_dsbs(self) -> None:
        secrets = getattr(self.reader, "secrets", None)
        if secrets and len(secrets) > self._dsb_seen:
            for stype, data in secrets[self._dsb_seen :]:
                if stype == DSB_TLS_KEYLOG:
                    self.keylog.add_text(data, source=f"{getattr(self.reader, 'name', 'capture')}:DSB")
            self._dsb_seen = len(secrets)

    def active(self) -> bool:
        """Worth decrypting at all: some secret is known (or DSBs may bring them)."""
        self.pull_dsbs()
        return len(self.keylog) > 0

    def start(self, data: bytes, offset: int) -> TlsDecryptor | None:
        """A decryptor for a flow whose first delivered bytes are ``data``, or None if not TLS."""
        if not looks_like_tls(data):
            return None
        return TlsDecryptor(self._secrets)

    def end(self, dec: TlsDecryptor) -> tuple[list[Plaintext], dict]:
        rest = dec.close()
        summary = dec.summary()
        self.counts[summary["status"]] = self.counts.get(summary["status"], 0) + 1
        return rest, summary

    def report(self) -> dict:
        return {"flows": {s: self.counts[s] for s in STATUSES if s in self.counts}, "keylog": self.keylog.summary()}


@dataclass
class DecryptedFlow:
    """One TLS flow of a capture: ``key`` (a `FlowKey`), its decryption ``summary`` and each
    direction's application data in order, with the records that carried it."""

    id: int
    key: Any
    summary: dict
    first_ts: float | None = None
    last_ts: float | None = None
    data: dict[str, bytearray] = field(default_factory=lambda: {"c2s": bytearray(), "s2c": bytearray()})
    records: dict[str, list[tuple[int, int, int]]] = field(default_factory=lambda: {"c2s": [], "s2c": []})

    def locate(self, direction: str, offset: int) -> dict:
        """Where byte ``offset`` of a direction's plaintext came from: record number, offset in
        the record, stream offset on the wire."""
        recs = self.records[direction]
        lo, hi = 0, len(recs) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if recs[mid][0] <= offset:
                lo = mid
            else:
                hi = mid - 1
        if not recs or recs[lo][0] > offset:
            return {}
        start, number, wire = recs[lo]
        return {"record": number, "record_offset": offset - start, "wire_offset": wire + offset - start}


class _Collect:
    def __init__(self, layer: TlsLayer, keep: bool) -> None:
        self.layer = layer
        self.keep = keep
        self.flows: list[DecryptedFlow] = []
        self._dec: dict[int, TlsDecryptor | None] = {}

    def flow_start(self, flow: Any) -> None:
        pass

    def data(self, flow: Any, direction: str, offset: int, data: bytes, ts: float) -> None:
        if flow.id not in self._dec:
            self._dec[flow.id] = self.layer.start(data, offset)
        dec = self._dec[flow.id]
        if dec is not None:
            self._take(flow, dec.feed(direction, offset, data))

    def gap(self, flow: Any, direction: str, offset: int, length: int) -> None:
        dec = self._dec.get(flow.id)
        if dec is not None:
            dec.gap(direction, offset, length)

    def datagram(self, flow: Any, direction: str, data: bytes, ts: float, index: int) -> None:
        pass

    def _take(self, flow: Any, plains: list[Plaintext]) -> None:
        if not plains or not self.keep:
            return
        rec = self._rec(flow)
        for p in plains:
            buf = rec.data[p.direction]
            rec.records[p.direction].append((len(buf), p.record, p.wire_offset))
            buf += p.data

    def _rec(self, flow: Any) -> DecryptedFlow:
        if not self.flows or self.flows[-1].id != flow.id:
            for f in self.flows:
                if f.id == flow.id:
                    return f
            self.flows.append(DecryptedFlow(flow.id, flow.key, {}, getattr(flow, "first_ts", None)))
        return self.flows[-1]

    def flow_end(self, flow: Any) -> None:
        dec = self._dec.pop(flow.id, None)
        if dec is None:
            return
        rest, summary = self.layer.end(dec)
        self._take(flow, rest)
        rec = self._rec(flow)
        rec.summary = summary
        rec.last_ts = getattr(flow, "last_ts", None)


def decrypt_capture(
    path: str | os.PathLike[str],
    keylogs: Iterable[str | os.PathLike[str]] = (),
    *,
    keylog: KeyLog | None = None,
    keep: bool = True,
) -> tuple[list[DecryptedFlow], dict]:
    """Decrypts every TLS flow of a capture with the given key logs (and its own DSBs).

    Returns the TLS flows (with their plaintext when ``keep``) in order of first packet, and the
    layer's report (counts per status, key log summary). Raises `CaptureError` for an unreadable
    capture and `KeyLogError` for an unreadable key log; nothing else."""
    from .flows import FlowTable
    from .pcapread import open_capture

    kl = keylog if keylog is not None else KeyLog()
    for p in keylogs:
        kl.add_file(p)
    reader = open_capture(path)
    try:
        layer = TlsLayer(kl, reader)
        consumer = _Collect(layer, keep)
        FlowTable(consumer, identify=False).run(reader)
    finally:
        reader.close()
    flows = sorted(consumer.flows, key=lambda f: f.id)
    return flows, layer.report()


def capture_keylog(path: str | os.PathLike[str]) -> KeyLog:
    """The TLS key log carried in a capture's Decryption Secrets Blocks."""
    from .pcapread import open_capture

    kl = KeyLog()
    reader = open_capture(path)
    try:
        for _ in reader.records():
            pass
        for stype, data in getattr(reader, "secrets", []):
            if stype == DSB_TLS_KEYLOG:
                kl.add_text(data, source=f"{path}:DSB")
    finally:
        reader.close()
    return kl


def trace_keylog(
    trace_dir: str | os.PathLike[str] | None = None,
    *,
    keylog_files: Iterable[str | os.PathLike[str]] = (),
    events: Iterable[Any] = (),
) -> KeyLog:
    """The TLS secrets a ``hostctl trace`` collected: its ``sslkeylog.txt`` and the ``tls-secret``
    events of its ``events.jsonl`` (either may be missing: the other counts), plus any key log
    files and events given."""
    from pathlib import Path

    from ..events import TlsSecret, read_events

    kl = KeyLog()
    files = list(keylog_files)
    evs = list(events)
    if trace_dir is not None:
        d = Path(trace_dir)
        if (d / "sslkeylog.txt").exists():
            files.append(d / "sslkeylog.txt")
        if (d / "events.jsonl").exists():
            evs.extend(ev for _, ev in read_events(d / "events.jsonl", errors=[]))
    for f in files:
        kl.add_file(f)
    for ev in evs:
        if isinstance(ev, TlsSecret):
            kl.add(ev.label, bytes.fromhex(ev.client_random), bytes.fromhex(ev.secret))
    return kl


def decrypt_trace_capture(
    capture: str | os.PathLike[str],
    trace_dir: str | os.PathLike[str] | None = None,
    *,
    keylog_files: Iterable[str | os.PathLike[str]] = (),
    events: Iterable[Any] = (),
    keep: bool = True,
) -> tuple[list[DecryptedFlow], dict]:
    """Decrypts a handset's capture with the secrets its trace collected (`trace_keylog`) and the
    capture's own DSBs: the TLS flows with their plaintext and per-flow status, and the report
    (counts per status, key log summary). Raises `CaptureError` / `KeyLogError` only."""
    return decrypt_capture(capture, keylog=trace_keylog(trace_dir, keylog_files=keylog_files, events=events), keep=keep)
