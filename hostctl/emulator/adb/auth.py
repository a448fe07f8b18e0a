"""ADB authentication (optional; off by default in the emulated handset).

The device sends a 20-byte TOKEN; the host answers with SIGNATURE(s) — RSA PKCS#1 v1.5 over the
token treated as a SHA-1 digest — and, when none verifies, with its RSAPUBLICKEY (Android's
``RSAPublicKey`` struct, base64, then " user@host"). A key the device does not know is either
accepted (a person tapping "Allow") or left pending, which the host shows as "unauthorized".
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass, field

AUTH_TOKEN = 1
AUTH_SIGNATURE = 2
AUTH_RSAPUBLICKEY = 3
TOKEN_SIZE = 20

# DER DigestInfo prefix for SHA-1 (RFC 8017, section 9.2, note 1).
_SHA1_DIGEST_INFO = bytes.fromhex("3021300906052b0e03021a05000414")


@dataclass(frozen=True, slots=True)
class RsaPublicKey:
    modulus: int
    exponent: int
    size_bytes: int
    comment: str = ""


def parse_public_key(blob: bytes) -> RsaPublicKey:
    """Parse adb's key text (``base64(RSAPublicKey) user@host``). Raises ValueError."""
    text = blob.rstrip(b"\0").decode("ascii", "replace").strip()
    b64, _, comment = text.partition(" ")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"public key is not base64: {exc}") from None
    if len(raw) < 8:
        raise ValueError("public key too short")
    words = struct.unpack_from("<I", raw)[0]
    nbytes = words * 4
    if words == 0 or len(raw) != 8 + 2 * nbytes + 4:
        raise ValueError(f"public key struct of {len(raw)} bytes does not match {words} words")
    modulus = int.from_bytes(raw[8 : 8 + nbytes], "little")
    exponent = struct.unpack_from("<I", raw, 8 + 2 * nbytes)[0]
    return RsaPublicKey(modulus, exponent, nbytes, comment)


def encode_public_key(modulus: int, exponent: int, comment: str = "hostctl@lab") -> bytes:
    """Android's RSAPublicKey struct for a key (used by tests that play the host)."""
    nbytes = (modulus.bit_length() + 31) // 32 * 4
    words = nbytes // 4
    n0inv = (-pow(modulus, -1, 1 << 32)) % (1 << 32)
    rr = pow(2, 2 * nbytes * 8, modulus)
    raw = (
        struct.pack("<II", words, n0inv)
        + modulus.to_bytes(nbytes, "little")
        + rr.to_bytes(nbytes, "little")
        + struct.pack("<I", exponent)
    )
    return base64.b64encode(raw) + b" " + comment.encode() + b"\0"


def verify_signature(key: RsaPublicKey, token: bytes, signature: bytes) -> bool:
    if len(signature) != key.size_bytes:
        return False
    m = pow(int.from_bytes(signature, "big"), key.exponent, key.modulus)
    em = m.to_bytes(key.size_bytes, "big")
    suffix = b"\x00" + _SHA1_DIGEST_INFO + token
    pad = key.size_bytes - 2 - len(suffix)
    return pad >= 8 and em == b"\x00\x01" + b"\xff" * pad + suffix


@dataclass
class KeyStore:
    """The handset's authorised keys. ``accept_new`` plays the person answering the prompt."""

    accept_new: bool = False
    keys: list[RsaPublicKey] = field(default_factory=list)

    def verify(self, token: bytes, signature: bytes) -> bool:
        return any(verify_signature(k, token, signature) for k in self.keys)

    def offer(self, blob: bytes) -> bool:
        try:
            key = parse_public_key(blob)
        except ValueError:
            return False
        if self.accept_new:
            self.keys.append(key)
            return True
        return False
