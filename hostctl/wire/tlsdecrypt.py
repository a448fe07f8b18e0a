"""TLS record decryption for one connection, without I/O: bytes of each direction in, plaintext
records out.

`TlsDecryptor` is fed each direction's reassembled TCP stream (``feed(direction, offset, data)``,
``gap(...)``, ``close()``) as `hostctl.wire.flows.FlowTable` hands it over, and returns the
application data it decrypted as `Plaintext` records: the direction, the record's number in that
direction (1-based, every record counted, clear ones too), the plaintext, and the stream offset of
its first byte on the wire (so a finding in the plaintext points at the ciphertext byte that carried
it: AEAD and CBC ciphertext is byte-aligned with the plaintext after the explicit nonce or IV).

What it follows, and where it comes from:

- The hellos in clear give the client random (the key log's key), the server random, the suite,
  the version (the ``supported_versions`` extension, RFC 8446 4.2.1) and encrypt-then-MAC (RFC 7366
  extension 22). A HelloRetryRequest (its random is SHA-256("HelloRetryRequest"), RFC 8446 4.1.3) is
  passed over and the real ServerHello awaited.
- TLS 1.2 (RFC 5246 5, 6.2.3, 6.3): key block = PRF(master secret, "key expansion", server random +
  client random) with the suite's PRF hash; records after a direction's ChangeCipherSpec are
  protected, the sequence number counts from 0 there. AES-GCM (RFC 5288: 4-byte salt + 8-byte
  explicit nonce, additional data = seq + type + version + plaintext length), ChaCha20-Poly1305
  (RFC 7905: 12-byte IV xor the sequence number, no explicit nonce), AES-CBC with HMAC-SHA1/256/384
  (explicit IV per record; MAC-then-encrypt, or encrypt-then-MAC when both hellos carry extension 22).
- TLS 1.3 (RFC 8446 5.2, 5.3, 7.1-7.3): keys and IVs by HKDF-Expand-Label from the key log's traffic
  secrets; nonce = IV xor sequence number; additional data = the record header; the inner content
  type is the last non-zero byte. The server switches to its handshake keys right after its
  ServerHello, each side to its application keys after its own Finished (found in the decrypted
  handshake), and to the next generation on a KeyUpdate (RFC 8446 7.2: "traffic upd"). Without
  the handshake secrets, a direction tries its application key on each protected record until
  one authenticates (Wireshark does the same when only the ``*_TRAFFIC_SECRET_0`` lines are known).
  ChangeCipherSpec records (middlebox compatibility, RFC 8446 D.4) are skipped. 0-RTT data (the
  ClientHello offered ``early_data``) is opened with ``CLIENT_EARLY_TRAFFIC_SECRET``: a client
  record the handshake key does not open before the first one it does is tried with it.
- Either side's records may come before the other side's hello is read (the flow table hands a
  direction's held bytes over in one piece): such records wait, up to ``MAX_PENDING`` bytes.

The outcome per direction and per connection is a `status` string, never an exception:
``decrypted``, ``no-secret`` (the key log has nothing for this client random), ``wrong-secret``
(a record failed authentication), ``unsupported-suite`` / ``unsupported-version``,
``no-handshake`` (the capture began after the hellos: the client random is unknown),
``renegotiated`` (a TLS 1.2 renegotiation: the records after it are not decrypted),
``truncated`` (a record was cut by missing bytes or the end of the capture), ``incomplete`` (the
hellos never completed) and ``no-application-data``.

The decryption uses the `cryptography` library (AESGCM, ChaCha20Poly1305, AESCCM, AES-CBC); the
key schedule uses the standard library's ``hmac``. Nothing from `cryptography` escapes.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

__all__ = ["STATUSES", "SUITES", "Plaintext", "Suite", "TlsDecryptor", "hkdf_expand_label", "tls12_prf"]

MAX_PENDING = 4 << 20  # protected bytes held per direction while the other hello is awaited
MAX_HANDSHAKE = 1 << 18  # decrypted handshake bytes held while a message is incomplete
_HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
_CCS, _ALERT, _HANDSHAKE, _APPDATA = 20, 21, 22, 23
_EXT_ETM, _EXT_EARLY_DATA, _EXT_VERSIONS = 22, 42, 43
_HS_CLIENT_HELLO, _HS_SERVER_HELLO, _HS_FINISHED, _HS_KEY_UPDATE = 1, 2, 20, 24

# worst first: the connection's status is the worst of its directions'
STATUSES = (
    "wrong-secret",
    "unsupported-version",
    "unsupported-suite",
    "no-secret",
    "no-handshake",
    "renegotiated",
    "truncated",
    "incomplete",
    "no-application-data",
    "decrypted",
)
_RANK = {s: i for i, s in enumerate(STATUSES)}


@dataclass(frozen=True, slots=True)
class Suite:
    """What decrypting a suite takes: ``cipher`` ``gcm`` / ``chacha`` / ``ccm`` / ``ccm8`` /
    ``cbc``; key length; ``mac`` the HMAC hash of CBC suites; ``prf`` the PRF (1.2) or HKDF (1.3)
    hash."""

    name: str
    cipher: str
    key_len: int
    prf: str
    mac: str | None = None
    tls13: bool = False


def _suites() -> dict[int, Suite]:
    # IANA TLS Cipher Suites registry; the hashes are those the suite names end in (RFC 5246
    # 5: TLS 1.2 suites named *_SHA use the SHA-256 PRF, the MAC hash is SHA-1)
    out: dict[int, Suite] = {
        0x1301: Suite("TLS_AES_128_GCM_SHA256", "gcm", 16, "sha256", tls13=True),
        0x1302: Suite("TLS_AES_256_GCM_SHA384", "gcm", 32, "sha384", tls13=True),
        0x1303: Suite("TLS_CHACHA20_POLY1305_SHA256", "chacha", 32, "sha256", tls13=True),
        0x1304: Suite("TLS_AES_128_CCM_SHA256", "ccm", 16, "sha256", tls13=True),
        0x1305: Suite("TLS_AES_128_CCM_8_SHA256", "ccm8", 16, "sha256", tls13=True),
    }
    gcm = {
        0x009C: ("RSA", 128),
        0x009D: ("RSA", 256),
        0x009E: ("DHE_RSA", 128),
        0x009F: ("DHE_RSA", 256),
        0xC02B: ("ECDHE_ECDSA", 128),
        0xC02C: ("ECDHE_ECDSA", 256),
        0xC02F: ("ECDHE_RSA", 128),
        0xC030: ("ECDHE_RSA", 256),
    }
    for sid, (kx, bits) in gcm.items():
        h = "sha256" if bits == 128 else "sha384"
        out[sid] = Suite(f"TLS_{kx}_WITH_AES_{bits}_GCM_{h.upper()}", "gcm", bits // 8, h)
    for sid, kx in {0xCCA8: "ECDHE_RSA", 0xCCA9: "ECDHE_ECDSA", 0xCCAA: "DHE_RSA"}.items():
        out[sid] = Suite(f"TLS_{kx}_WITH_CHACHA20_POLY1305_SHA256", "chacha", 32, "sha256")
    cbc = {
        0x002F: ("RSA", 128, "sha1"),
        0x0035: ("RSA", 256, "sha1"),
        0x003C: ("RSA", 128, "sha256"),
        0x003D: ("RSA", 256, "sha256"),
        0x0033: ("DHE_RSA", 128, "sha1"),
        0x0039: ("DHE_RSA", 256, "sha1"),
        0x0067: ("DHE_RSA", 128, "sha256"),
        0x006B: ("DHE_RSA", 256, "sha256"),
        0xC009: ("ECDHE_ECDSA", 128, "sha1"),
        0xC00A: ("ECDHE_ECDSA", 256, "sha1"),
        0xC013: ("ECDHE_RSA", 128, "sha1"),
        0xC014: ("ECDHE_RSA", 256, "sha1"),
        0xC023: ("ECDHE_ECDSA", 128, "sha256"),
        0xC024: ("ECDHE_ECDSA", 256, "sha384"),
        0xC027: ("ECDHE_RSA", 128, "sha256"),
        0xC028: ("ECDHE_RSA", 256, "sha384"),
    }
    for sid, (kx, bits, mac) in cbc.items():
        tail = "SHA" if mac == "sha1" else mac.upper()
        out[sid] = Suite(
            f"TLS_{kx}_WITH_AES_{bits}_CBC_{tail}", "cbc", bits // 8, "sha384" if mac == "sha384" else "sha256", mac=mac
        )
    return out


SUITES = _suites()
_HASH_LEN = {"sha1": 20, "sha256": 32, "sha384": 48}


# -- key schedules -------------------------------------------------------------------------------


def tls12_prf(secret: bytes, label: bytes, seed: bytes, length: int, hash_name: str = "sha256") -> bytes:
    """The TLS 1.2 PRF (RFC 5246 5): P_hash(secret, label + seed) cut to ``length``."""
    seed = label + seed
    out = bytearray()
    a = seed
    while len(out) < length:
        a = hmac.new(secret, a, hash_name).digest()
        out += hmac.new(secret, a + seed, hash_name).digest()
    return bytes(out[:length])


def hkdf_expand_label(secret: bytes, label: str, context: bytes, length: int, hash_name: str = "sha256") -> bytes:
    """HKDF-Expand-Label (RFC 8446 7.1) with HKDF-Expand (RFC 5869 2.3)."""
    full = b"tls13 " + label.encode("ascii")
    info = struct.pack("!HB", length, len(full)) + full + bytes([len(context)]) + context
    out = bytearray()
    block = b""
    i = 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([i]), hash_name).digest()
        out += block
        i += 1
    return bytes(out[:length])


class _Failed(Exception):
    """Inside this module: a record did not authenticate (or its padding/MAC was wrong)."""


class _Keys:
    """One direction's record protection at one key generation, with its sequence number."""

    __slots__ = ("aead", "etm", "explicit", "iv", "iv_int", "key", "mac_key", "seq", "suite", "tag", "tls13")

    def __init__(self, suite: Suite, key: bytes, iv: bytes, mac_key: bytes = b"", *, etm: bool = False) -> None:
        self.suite = suite
        self.key = key
        self.iv = iv
        self.iv_int = int.from_bytes(iv, "big") if len(iv) == 12 else 0
        self.mac_key = mac_key
        self.seq = 0
        self.etm = etm
        self.tls13 = suite.tls13
        self.tag = 8 if suite.cipher == "ccm8" else 16
        self.explicit = 8 if (not suite.tls13 and suite.cipher in ("gcm", "ccm", "ccm8")) else 0
        if suite.cipher == "gcm":
            self.aead: Any = AESGCM(key)
        elif suite.cipher == "chacha":
            self.aead = ChaCha20Poly1305(key)
        elif suite.cipher in ("ccm", "ccm8"):
            self.aead = AESCCM(key, tag_length=self.tag)
        else:
            self.aead = None

    def open(self, ctype: int, version: bytes, header: bytes, body: bytes) -> tuple[int, bytes, int]:
        """(content type, plaintext, offset of the plaintext in ``body``); raises `_Failed`."""
        seq = self.seq
        self.seq += 1
        if self.aead is None:
            return self._open_cbc(ctype, version, body, seq)
        if self.tls13:
            nonce = (self.iv_int ^ seq).to_bytes(12, "big")
            try:
                inner = self.aead.decrypt(nonce, body, header)
            except (InvalidTag, ValueError) as exc:
                raise _Failed("authentication failed") from exc
            end = len(inner)
            while end and not inner[end - 1]:  # strip padding zeros, the type is the last byte
                end -= 1
            if not end:
                raise _Failed("no content type in the inner plaintext")
            return inner[end - 1], inner[: end - 1], 0
        if self.explicit:
            if len(body) < self.explicit + self.tag:
                raise _Failed("record shorter than its nonce and tag")
            nonce = self.iv[:4] + body[:8]
        else:
            nonce = (self.iv_int ^ seq).to_bytes(12, "big")
        n = len(body) - self.explicit - self.tag
        aad = struct.pack("!QB2sH", seq, ctype, version, n)
        try:
            plain = self.aead.decrypt(nonce, body[self.explicit :] if self.explicit else body, aad)
        except (InvalidTag, ValueError) as exc:
            raise _Failed("authentication failed") from exc
        return ctype, plain, self.explicit

    def _open_cbc(self, ctype: int, version: bytes, body: bytes, seq: int) -> tuple[int, bytes, int]:
        mac_name = self.suite.mac or "sha1"
        mlen = _HASH_LEN[mac_name]
        if self.etm:  # RFC 7366 3: MAC over the IV and ciphertext
            if len(body) < 32 + mlen or (len(body) - mlen) % 16:
                raise _Failed("encrypt-then-MAC record of a bad length")
            ct, mac = body[:-mlen], body[-mlen:]
            want = hmac.new(self.mac_key, struct.pack("!QB2sH", seq, ctype, version, len(ct)) + ct, mac_name).digest()
            if not hmac.compare_digest(want, mac):
                raise _Failed("MAC check failed")
            plain = self._cbc(ct)
            pad = plain[-1]
            if pad + 1 > len(plain):
                raise _Failed("bad padding")
            return ctype, plain[: -(pad + 1)], 16
        if len(body) < 32 or len(body) % 16:
            raise _Failed("CBC record of a bad length")
        plain = self._cbc(body)
        pad = plain[-1]
        if pad + 1 + mlen > len(plain) or plain[-(pad + 1) :] != bytes([pad]) * (pad + 1):
            raise _Failed("bad padding")
        content, mac = plain[: -(pad + 1 + mlen)], plain[-(pad + 1 + mlen) : -(pad + 1)]
        want = hmac.new(
            self.mac_key, struct.pack("!QB2sH", seq, ctype, version, len(content)) + content, mac_name
        ).digest()
        if not hmac.compare_digest(want, mac):
            raise _Failed("MAC check failed")
        return ctype, content, 16

    def _cbc(self, ct: bytes) -> bytes:
        d = Cipher(algorithms.AES(self.key), modes.CBC(ct[:16])).decryptor()
        return d.update(ct[16:]) + d.finalize()


@dataclass(frozen=True, slots=True)
class Plaintext:
    """Decrypted application data of one record. ``wire_offset``: the stream offset (in that
    direction's TCP stream) of the ciphertext byte that carried ``data[0]``."""

    direction: str
    record: int
    data: bytes
    wire_offset: int


class _Side:
    """One direction: record framing, the hello, handshake messages, keys."""

    __slots__ = (
        "app_bytes",
        "app_secret",
        "buf",
        "buf_offset",
        "ccs",
        "decrypted",
        "detail",
        "failed_app_trials",
        "hello",
        "hs",
        "key_updates",
        "keys",
        "lost",
        "name",
        "next_keys",
        "pending",
        "pending_bytes",
        "records",
        "seen_data",
        "status",
        "undecrypted",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.buf = b""
        self.buf_offset = 0
        self.records = 0
        self.hello = False  # this side's hello has been read
        self.ccs = False  # TLS 1.2: ChangeCipherSpec seen (records after it are protected)
        self.keys: _Keys | None = None
        self.next_keys: _Keys | None = None  # TLS 1.3: the application keys, after Finished
        self.pending: list[tuple[int, int, bytes, int]] | None = None  # records waiting for keys
        self.pending_bytes = 0
        self.hs = b""  # handshake bytes not yet a whole message
        self.status: str | None = None  # set when this side stops (or ends) for a reason
        self.detail = ""
        self.decrypted = 0  # records decrypted
        self.app_bytes = 0
        self.lost = False  # framing lost (gap, garbage): nothing more is read
        self.seen_data = False
        self.failed_app_trials = 0
        self.app_secret: bytes | None = None
        self.undecrypted = 0  # protected records not decrypted (no key, or skipped)
        self.key_updates = 0


class TlsDecryptor:
    """Decrypts one TLS connection. ``secrets(client_random) -> {label: secret}`` looks the key log
    up (called when the hellos are read, so secrets added meanwhile count)."""

    def __init__(self, secrets: Callable[[bytes], dict[str, bytes]]) -> None:
        self._secrets = secrets
        self.c2s = _Side("c2s")
        self.s2c = _Side("s2c")
        self.client_random: bytes | None = None
        self.server_random: bytes | None = None
        self.suite_id: int | None = None
        self.suite: Suite | None = None
        self.version: int | None = None
        self.etm = {"c2s": False, "s2c": False}
        self.early_offered = False
        self.early_keys: _Keys | None = None
        self.c2s_opened = False  # the client's keys opened a record (0-RTT data is before)
        self.ready = False  # both hellos read, keys (or the reason there are none) set
        self.session_status: str | None = None  # a reason that stops both directions
        self.detail = ""
        self.secrets_used: set[str] = set()
        self._out: list[Plaintext] = []

    # -- input --------------------------------------------------------------------------------
    def feed(self, direction: str, offset: int, data: bytes) -> list[Plaintext]:
        side = self.c2s if direction == "c2s" else self.s2c
        out = self._out = []
        if side.lost or not data:
            return out
        if not side.seen_data:
            side.seen_data = True
            side.buf_offset = offset
            if offset != 0 or not (data[0] in (_HANDSHAKE, _ALERT) and len(data) >= 2 and data[1] == 3):
                self._stop(
                    side,
                    "no-handshake",
                    f"{direction} begins at stream offset {offset} without a hello (capture started mid-session)",
                )
                if self.client_random is None:
                    self._stop(self.c2s if side is self.s2c else self.s2c, "no-handshake", "")
                return out
        elif offset != side.buf_offset + len(side.buf):
            self._lose(side, offset)
            return out
        buf = side.buf + data if side.buf else data
        base = side.buf_offset
        p, n = 0, len(buf)
        while n - p >= 5 and not side.lost:
            ctype = buf[p]
            length = (buf[p + 3] << 8) | buf[p + 4]
            if buf[p + 1] != 3 or not 20 <= ctype <= 24 or length > 18432:
                self._stop(side, "truncated", f"not a TLS record at stream offset {base + p}")
                side.lost = True
                break
            if n - p - 5 < length:
                break
            side.records += 1
            self._record(side, side.records, ctype, buf[p : p + 5], buf[p + 5 : p + 5 + length], base + p)
            p += 5 + length
        side.buf = buf[p:] if p < n else b""
        side.buf_offset = base + p
        return out

    def gap(self, direction: str, offset: int, length: int) -> None:
        side = self.c2s if direction == "c2s" else self.s2c
        if not side.seen_data:
            side.seen_data = True
            self._stop(side, "no-handshake", f"{direction} begins with {length} missing bytes")
            return
        self._lose(side, offset)

    def close(self) -> list[Plaintext]:
        """The connection ended: what is left over is reported (a cut record is ``truncated``)."""
        out = self._out = []
        for side in (self.c2s, self.s2c):
            if side.buf and not side.lost:
                self._stop(
                    side,
                    "truncated",
                    f"{side.name}: the last record is cut ({len(side.buf)} bytes at stream offset {side.buf_offset})",
                )
            if side.pending and not self.ready:
                side.undecrypted += len(side.pending)
                side.pending = None
        if (
            not self.ready
            and self.session_status is None
            and (self.c2s.seen_data or self.s2c.seen_data)
            and self.client_random is not None
            and not (self.c2s.status or self.s2c.status)
        ):
            self.session_status = "incomplete"
            self.detail = "the ServerHello was never seen"
        return out

    # -- records ------------------------------------------------------------------------------
    def _lose(self, side: _Side, offset: int) -> None:
        if not side.lost:
            side.lost = True
            self._stop(
                side,
                "truncated",
                f"{side.name}: bytes missing at stream offset {offset} "
                f"(record framing and sequence numbers lost there)",
            )

    def _stop(self, side: _Side, status: str, detail: str) -> None:
        if side.status is None or _RANK[status] < _RANK[side.status]:
            side.status = status
            if detail:
                side.detail = detail

    def _record(self, side: _Side, n: int, ctype: int, header: bytes, body: bytes, offset: int) -> None:
        if not side.hello:
            if ctype == _HANDSHAKE and self._clear_handshake(side, body):
                return
            if ctype == _APPDATA:
                side.undecrypted += 1
            return
        if not self.ready:
            if self.session_status is not None:
                side.undecrypted += 1
                return
            if side.pending is None:
                side.pending = []
            side.pending_bytes += len(body)
            if side.pending_bytes > MAX_PENDING:
                self._stop(
                    side, "incomplete", f"{side.name}: more than {MAX_PENDING} bytes before the other side's hello"
                )
                side.lost = True
                return
            side.pending.append((n, ctype, header + body, offset))
            return
        self._protected(side, n, ctype, header, body, offset)

    def _clear_handshake(self, side: _Side, body: bytes) -> bool:
        """Reads this side's hello from clear handshake bytes; True when it was read."""
        side.hs += body
        while len(side.hs) >= 4:
            htype = side.hs[0]
            hlen = int.from_bytes(side.hs[1:4], "big")
            if len(side.hs) < 4 + hlen:
                if len(side.hs) > MAX_HANDSHAKE:
                    self._stop(side, "incomplete", f"{side.name}: no whole hello")
                    side.lost = True
                return False
            msg, side.hs = side.hs[4 : 4 + hlen], side.hs[4 + hlen :]
            want = _HS_CLIENT_HELLO if side is self.c2s else _HS_SERVER_HELLO
            if htype != want:
                continue
            try:
                if htype == _HS_CLIENT_HELLO:
                    self._client_hello(msg)
                else:
                    if msg[2:34] == _HRR_RANDOM:
                        continue
                    self._server_hello(msg)
            except (IndexError, ValueError, struct.error):
                self._stop(side, "incomplete", f"{side.name}: malformed hello")
                side.lost = True
                return True
            side.hello = True
            side.hs = b""  # the rest of the flight (Certificate, ...) is not needed
            if self.c2s.hello and self.s2c.hello:
                self._start()
            return True
        return False

    def _client_hello(self, msg: bytes) -> None:
        self.client_random = bytes(msg[2:34])
        exts = _extensions(msg, 34, client=True)
        self.etm["c2s"] = _EXT_ETM in exts
        self.early_offered = _EXT_EARLY_DATA in exts

    def _server_hello(self, msg: bytes) -> None:
        self.server_random = bytes(msg[2:34])
        version = int.from_bytes(msg[0:2], "big")
        exts = _extensions(msg, 34, client=False)
        sid_len = msg[34]
        self.suite_id = int.from_bytes(msg[35 + sid_len : 37 + sid_len], "big")
        if _EXT_VERSIONS in exts and len(exts[_EXT_VERSIONS]) >= 2:
            version = int.from_bytes(exts[_EXT_VERSIONS][:2], "big")
        self.version = version
        self.etm["s2c"] = _EXT_ETM in exts

    # -- keys ---------------------------------------------------------------------------------
    def _start(self) -> None:
        """Both hellos read: pick the keys, then decrypt what waited."""
        self.ready = True
        suite = SUITES.get(self.suite_id or 0)
        self.suite = suite
        from .protocols import cipher_name, version_name

        if self.version not in (0x0303, 0x0304):
            self.session_status = "unsupported-version"
            self.detail = f"{version_name(self.version or 0)} (TLS 1.2 and 1.3 are decrypted)"
        elif suite is None or suite.tls13 != (self.version == 0x0304):
            self.session_status = "unsupported-suite"
            self.detail = cipher_name(self.suite_id or 0)
        else:
            secrets = self._secrets(self.client_random or b"") or {}
            if self.version == 0x0303:
                self._keys12(suite, secrets)
            else:
                self._keys13(suite, secrets)
        for side in (self.c2s, self.s2c):
            waiting, side.pending, side.pending_bytes = side.pending or [], None, 0
            for n, ctype, rec, offset in waiting:
                if side.lost:
                    break
                self._protected(side, n, ctype, rec[:5], rec[5:], offset)

    def _keys12(self, suite: Suite, secrets: dict[str, bytes]) -> None:
        master = secrets.get("CLIENT_RANDOM")
        if master is None:
            self.session_status = "no-secret"
            self.detail = "no CLIENT_RANDOM line for this client random"
            return
        self.secrets_used.add("CLIENT_RANDOM")
        mac_len = _HASH_LEN[suite.mac] if suite.mac else 0
        iv_len = 16 if suite.cipher == "cbc" else 12 if suite.cipher == "chacha" else 4
        block = tls12_prf(
            master,
            b"key expansion",
            (self.server_random or b"") + (self.client_random or b""),
            2 * (mac_len + suite.key_len + iv_len),
            suite.prf,
        )
        p = 0
        parts = []
        for n in (mac_len, mac_len, suite.key_len, suite.key_len, iv_len, iv_len):
            parts.append(block[p : p + n])
            p += n
        cmac, smac, ckey, skey, civ, siv = parts
        etm = suite.cipher == "cbc" and self.etm["c2s"] and self.etm["s2c"]
        self.c2s.next_keys = _Keys(suite, ckey, civ, cmac, etm=etm)
        self.s2c.next_keys = _Keys(suite, skey, siv, smac, etm=etm)

    def _keys13(self, suite: Suite, secrets: dict[str, bytes]) -> None:
        h = suite.prf

        def keys(secret: bytes) -> _Keys:
            return _Keys(
                suite,
                hkdf_expand_label(secret, "key", b"", suite.key_len, h),
                hkdf_expand_label(secret, "iv", b"", 12, h),
            )

        found = False
        for side, hs_label, app_label in (
            (self.c2s, "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0"),
            (self.s2c, "SERVER_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0"),
        ):
            hs, app = secrets.get(hs_label), secrets.get(app_label)
            if hs is not None and len(hs) == _HASH_LEN[h]:
                side.keys = keys(hs)
                self.secrets_used.add(hs_label)
                found = True
            if app is not None and len(app) == _HASH_LEN[h]:
                side.next_keys = keys(app)
                side.app_secret = app
                self.secrets_used.add(app_label)
                found = True
            elif app is not None:
                self._stop(side, "wrong-secret", f"{app_label} of {len(app)} bytes for a {h} suite")
        early = secrets.get("CLIENT_EARLY_TRAFFIC_SECRET")
        if self.early_offered and early is not None and len(early) == _HASH_LEN[h]:
            self.early_keys = keys(early)
            self.secrets_used.add("CLIENT_EARLY_TRAFFIC_SECRET")
        if not found:
            self.session_status = "no-secret"
            self.detail = "no TLS 1.3 traffic secret for this client random"

    def _protected(self, side: _Side, n: int, ctype: int, header: bytes, body: bytes, offset: int) -> None:
        if self.session_status is not None or side.status == "wrong-secret":
            if ctype == _APPDATA or (self.version == 0x0303 and side.ccs):
                side.undecrypted += 1
            return
        if self.version == 0x0303:
            if ctype == _CCS:
                if side.ccs:
                    self._stop(
                        side,
                        "renegotiated",
                        f"{side.name}: a renegotiation at record {n} (stream offset "
                        f"{offset}); its keys are not followed",
                    )
                    side.keys = None
                    return
                side.ccs = True
                side.keys, side.next_keys = side.next_keys, None
                return
            if not side.ccs:
                return  # clear handshake (Certificate, ...) or alert
            self._open(side, n, ctype, header, body, offset)
            return
        # TLS 1.3: only application_data records are protected
        if ctype != _APPDATA:
            return
        if side.keys is None:
            self._trial(side, n, ctype, header, body, offset)
            return
        self._open(side, n, ctype, header, body, offset)

    def _trial(self, side: _Side, n: int, ctype: int, header: bytes, body: bytes, offset: int) -> None:
        """TLS 1.3 without the handshake secret: the application key is tried on each record until
        one authenticates (the handshake records before it stay undecrypted)."""
        if side.next_keys is None:
            side.undecrypted += 1
            if side.status is None:
                self._stop(side, "no-secret", f"{side.name}: no traffic secret for this direction")
            return
        trial = side.next_keys
        seq = trial.seq
        try:
            inner_type, plain, skip = trial.open(ctype, header[1:3], header, body)
        except _Failed:
            trial.seq = seq
            side.undecrypted += 1
            side.failed_app_trials += 1
            if side.failed_app_trials > 64:
                self._stop(side, "wrong-secret", f"{side.name}: the application secret opens no record")
            return
        side.keys, side.next_keys = trial, None
        self._deliver(side, n, inner_type, plain, offset + 5 + skip)

    def _open(self, side: _Side, n: int, ctype: int, header: bytes, body: bytes, offset: int) -> None:
        keys = side.keys
        if keys is None:
            side.undecrypted += 1
            return
        seq = keys.seq
        try:
            inner_type, plain, skip = keys.open(ctype, header[1:3], header, body)
        except _Failed as exc:
            if self.early_offered and side is self.c2s and not self.c2s_opened and self.version == 0x0304:
                keys.seq = seq  # 0-RTT data comes before the handshake flight
                self._early(side, n, ctype, header, body, offset)
                return
            side.undecrypted += 1
            self._stop(side, "wrong-secret", f"{side.name} record {n} at stream offset {offset}: {exc}")
            return
        if side is self.c2s:
            self.c2s_opened = True
        self._deliver(side, n, inner_type, plain, offset + 5 + skip)

    def _early(self, side: _Side, n: int, ctype: int, header: bytes, body: bytes, offset: int) -> None:
        if self.early_keys is not None:
            seq = self.early_keys.seq
            try:
                inner_type, plain, skip = self.early_keys.open(ctype, header[1:3], header, body)
            except _Failed:
                self.early_keys.seq = seq
            else:
                self._deliver(side, n, inner_type, plain, offset + 5 + skip)
                return
        side.undecrypted += 1
        self._stop(
            side, "no-secret", f"{side.name} record {n}: 0-RTT early data, and no CLIENT_EARLY_TRAFFIC_SECRET opens it"
        )

    def _deliver(self, side: _Side, n: int, inner_type: int, plain: bytes, wire_offset: int) -> None:
        side.decrypted += 1
        if inner_type == _APPDATA:
            if plain:
                side.app_bytes += len(plain)
                self._out.append(Plaintext(side.name, n, plain, wire_offset))
        elif inner_type == _HANDSHAKE and self.version == 0x0304:
            self._handshake13(side, plain)

    def _handshake13(self, side: _Side, plain: bytes) -> None:
        side.hs += plain
        while len(side.hs) >= 4:
            htype = side.hs[0]
            hlen = int.from_bytes(side.hs[1:4], "big")
            if len(side.hs) < 4 + hlen:
                if len(side.hs) > MAX_HANDSHAKE:
                    side.hs = b""
                return
            side.hs = side.hs[4 + hlen :]
            if htype == _HS_FINISHED and side.next_keys is not None:
                side.keys, side.next_keys = side.next_keys, None
            elif htype == _HS_FINISHED:
                side.keys = None  # application secret unknown: trials say so
            elif htype == _HS_KEY_UPDATE and side.app_secret is not None and self.suite is not None:
                h = self.suite.prf
                side.key_updates += 1
                side.app_secret = hkdf_expand_label(side.app_secret, "traffic upd", b"", _HASH_LEN[h], h)
                side.keys = _Keys(
                    self.suite,
                    hkdf_expand_label(side.app_secret, "key", b"", self.suite.key_len, h),
                    hkdf_expand_label(side.app_secret, "iv", b"", 12, h),
                )

    # -- outcome ------------------------------------------------------------------------------
    def side_status(self, direction: str) -> str:
        side = self.c2s if direction == "c2s" else self.s2c
        if self.session_status is not None and (side.status is None or _RANK[self.session_status] < _RANK[side.status]):
            return self.session_status
        if side.status is not None:
            return side.status
        if not self.ready:
            return "incomplete" if side.seen_data else "no-application-data"
        return "decrypted" if side.app_bytes else "no-application-data"

    @property
    def status(self) -> str:
        """The connection's status: the worst of its two directions' (``decrypted`` when both
        decrypted, or one did and the other carried no application data)."""
        a, b = self.side_status("c2s"), self.side_status("s2c")
        if {a, b} == {"decrypted", "no-application-data"}:
            return "decrypted"
        return a if _RANK[a] < _RANK[b] else b

    def summary(self) -> dict:
        from .protocols import cipher_name, version_name

        out: dict[str, Any] = {"status": self.status}
        if self.version is not None:
            out["version"] = version_name(self.version)
        if self.suite_id is not None:
            out["suite"] = cipher_name(self.suite_id)
        if self.client_random is not None:
            out["client_random"] = self.client_random.hex()
        if self.detail:
            out["detail"] = self.detail
        if self.secrets_used:
            out["secrets"] = sorted(self.secrets_used)
        for side in (self.c2s, self.s2c):
            d: dict[str, Any] = {
                "status": self.side_status(side.name),
                "records": side.records,
                "decrypted": side.decrypted,
                "app_bytes": side.app_bytes,
            }
            if side.undecrypted:
                d["undecrypted"] = side.undecrypted
            if side.key_updates:
                d["key_updates"] = side.key_updates
            if side.detail:
                d["detail"] = side.detail
            out[side.name] = d
        return out


def _extensions(msg: bytes, p: int, *, client: bool) -> dict[int, bytes]:
    """The extensions of a hello body whose session id starts at ``p``."""
    p += 1 + msg[p]  # session id
    if client:
        p += 2 + int.from_bytes(msg[p : p + 2], "big")  # cipher suites
        p += 1 + msg[p]  # compression methods
    else:
        p += 3  # suite, compression
    out: dict[int, bytes] = {}
    if p + 2 > len(msg):
        return out
    end = min(len(msg), p + 2 + int.from_bytes(msg[p : p + 2], "big"))
    p += 2
    while p + 4 <= end:
        etype, elen = struct.unpack_from("!HH", msg, p)
        out.setdefault(etype, bytes(msg[p + 4 : p + 4 + elen]))
        p += 4 + elen
    return out
