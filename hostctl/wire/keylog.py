"""TLS secrets in the NSS key log format: parsing, merging, and writing back.

The format is the one ``SSLKEYLOGFILE`` writers (NSS, OpenSSL's ``SSL_CTX_set_keylog_callback``,
BoringSSL, Python's ``ssl`` ``keylog_filename``, curl, Firefox) and readers (Wireshark's
``tls.keylog_file``, pcapng Decryption Secrets Blocks of type ``TLSK``) share, as NSS documents it
(firefox-source-docs "NSS Key Log Format") and Wireshark's ``epan/dissectors/packet-tls-utils.c``
(``tls_keylog_process_lines``) reads it: one ``LABEL <client random hex> <secret hex>`` per line,
``#`` comments, blank lines ignored. Labels kept here:

``CLIENT_RANDOM``
    TLS 1.2 and older: the 48-byte master secret of the session this ClientHello random began.
``CLIENT_HANDSHAKE_TRAFFIC_SECRET`` / ``SERVER_HANDSHAKE_TRAFFIC_SECRET``
``CLIENT_TRAFFIC_SECRET_0`` / ``SERVER_TRAFFIC_SECRET_0``
``EXPORTER_SECRET`` / ``CLIENT_EARLY_TRAFFIC_SECRET`` / ``EARLY_EXPORTER_SECRET``
    TLS 1.3 (RFC 8446 section 7.1), one per label and client random.

Other labels (``RSA`` pre-master secrets keyed by encrypted pre-master, which need the
ClientKeyExchange; Wireshark also reads those) are counted as ``unsupported`` rather than lost
silently. A bad line is counted and its first few kept with their line numbers; it never stops the
rest of the file being read.
"""

from __future__ import annotations

import binascii
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HostctlError

__all__ = ["LABELS", "TLS13_LABELS", "KeyLog", "KeyLogError", "format_line"]

TLS13_LABELS = (
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0",
    "SERVER_TRAFFIC_SECRET_0",
    "EXPORTER_SECRET",
    "CLIENT_EARLY_TRAFFIC_SECRET",
    "EARLY_EXPORTER_SECRET",
)
LABELS = ("CLIENT_RANDOM", *TLS13_LABELS)
_SECRET_LENGTHS = {"CLIENT_RANDOM": (48,)}  # TLS 1.3 secrets are a hash long: 32 or 48
_MAX_BAD_KEPT = 20


class KeyLogError(HostctlError):
    """A key log file could not be read at all."""


def format_line(label: str, client_random: bytes, secret: bytes) -> str:
    """One NSS key log line (no newline)."""
    return f"{label} {client_random.hex()} {secret.hex()}"


@dataclass
class KeyLog:
    """Secrets by client random: ``secrets[client_random][label] = secret``.

    The first secret given for a (client random, label) is kept; a different one later is counted
    in ``conflicts`` (two sources that disagree: the decryption tells which, if any, is right)."""

    secrets: dict[bytes, dict[str, bytes]] = field(default_factory=dict)
    lines: int = 0
    bad: int = 0
    bad_examples: list[str] = field(default_factory=list)
    unsupported: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0
    sources: list[str] = field(default_factory=list)
    count: int = 0  # secrets held (len() of a large key log costs nothing per flow)

    # -- reading ------------------------------------------------------------------------------
    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike[str]]) -> KeyLog:
        kl = cls()
        for p in paths:
            kl.add_file(p)
        return kl

    def add_file(self, path: str | os.PathLike[str]) -> int:
        """Adds the secrets of a key log file; the number of secrets it added."""
        try:
            text = Path(path).read_bytes()
        except OSError as exc:
            raise KeyLogError(f"{path}: cannot read key log: {exc.strerror or exc}") from exc
        self.sources.append(os.fspath(path))
        return self.add_text(text, source=os.fspath(path))

    def add_text(self, text: bytes | str, *, source: str = "<keylog>") -> int:
        """Adds the secrets of key log text (a file's content, a DSB's payload, an event's line)."""
        if isinstance(text, str):
            text = text.encode("utf-8", "replace")
        added = 0
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith(b"#"):
                continue
            self.lines += 1
            why = self._add_line(line)
            if why is None:
                added += 1
            elif why != "":
                self.bad += 1
                if len(self.bad_examples) < _MAX_BAD_KEPT:
                    self.bad_examples.append(f"{source}:{n}: {why}")
        return added

    def _add_line(self, line: bytes) -> str | None:
        """None when a secret was added; "" when the line was valid but not kept; else why bad."""
        parts = line.split()
        if len(parts) != 3:
            return f"expected 3 fields, got {len(parts)}"
        label = parts[0].decode("ascii", "replace")
        if label not in LABELS:
            self.unsupported[label] = self.unsupported.get(label, 0) + 1
            return ""
        try:
            cr, secret = binascii.unhexlify(parts[1]), binascii.unhexlify(parts[2])
        except (binascii.Error, ValueError):
            return f"{label}: not hex"
        if len(cr) != 32:
            return f"{label}: client random of {len(cr)} bytes, not 32"
        if len(secret) not in _SECRET_LENGTHS.get(label, (32, 48)):
            return f"{label}: secret of {len(secret)} bytes"
        return None if self.add(label, cr, secret) else ""

    def add(self, label: str, client_random: bytes, secret: bytes) -> bool:
        """Adds one secret; False when it was there already (or conflicts with one there)."""
        entry = self.secrets.setdefault(client_random, {})
        old = entry.get(label)
        if old is not None:
            if old != secret:
                self.conflicts += 1
            return False
        entry[label] = secret
        self.count += 1
        return True

    def merge(self, other: KeyLog) -> None:
        for cr, entry in other.secrets.items():
            for label, secret in entry.items():
                self.add(label, cr, secret)

    # -- use ----------------------------------------------------------------------------------
    def get(self, client_random: bytes) -> dict[str, bytes]:
        return self.secrets.get(client_random, {})

    def __len__(self) -> int:
        return self.count

    def text(self, client_randoms: Iterable[bytes] | None = None) -> str:
        """The key log (only the sessions of ``client_randoms`` when given), one line per secret."""
        wanted = self.secrets.keys() if client_randoms is None else [c for c in client_randoms if c in self.secrets]
        out = []
        for cr in wanted:
            for label in LABELS:
                s = self.secrets[cr].get(label)
                if s is not None:
                    out.append(format_line(label, cr, s) + "\n")
        return "".join(out)

    def summary(self) -> dict:
        return {
            "sources": list(self.sources),
            "sessions": len(self.secrets),
            "secrets": len(self),
            "lines": self.lines,
            "bad_lines": self.bad,
            "bad_examples": list(self.bad_examples),
            "unsupported": dict(self.unsupported),
            "conflicts": self.conflicts,
        }
