"""The protections a firmware profile applies to a field and the wire analyser reverses or
recomputes: one table, each entry a step from bytes to bytes with both its directions side by
side (``forward``, ``backward``), and whether it is one-way, keyed or random.

    plain                 unchanged
    hex                   lowercase hex
    base64                standard Base64 with padding
    url                   percent-encoding, RFC 3986 unreserved characters kept
    utf16le / utf16be     the text as UTF-16, no BOM
    md5 / sha1 / sha256   lowercase hex digest
    md5-base64 / sha1-base64 / sha256-base64   Base64 of the raw digest
    aes-cbc-fixed-iv      Base64(AES/CBC/PKCS5Padding(key, the key's fixed iv, value)), as the
                          decompiled MIUI code protects the activation pid: deterministic for a
                          given key, so the same number always gives the same text
    aes-gcm-random-nonce  Base64(nonce || ciphertext || tag): a fresh 12-byte nonce from the
                          random source each time, no associated data

A value starts as its UTF-8 text; a list of steps applies them in order. No I/O here, and no
import of ``hostctl.wire``, ``hostctl.emulator`` or ``hostctl.audit``: both the emulated firmware
(`hostctl.emulator.behaviour`) and the analyser (`hostctl.wire.identifiers`) import this.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KEYED",
    "ONE_WAY",
    "PROTECTIONS",
    "RANDOM",
    "STEPS",
    "KeyMaterial",
    "Protection",
    "ProtectionError",
    "cipher_recipe",
    "derive_key",
    "matches",
    "protect",
    "unprotect",
]

NONCE_SIZE = 12
BLOCK = 16


class ProtectionError(ValueError):
    """A value that cannot be protected or unprotected as asked (bad input, wrong key, one-way)."""


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """An AES key and, for aes-cbc-fixed-iv, the fixed IV."""

    key: bytes
    iv: bytes | None = None

    def __post_init__(self) -> None:
        if len(self.key) not in (16, 24, 32):
            raise ProtectionError(f"AES keys are 16, 24 or 32 bytes, got {len(self.key)}")
        if self.iv is not None and len(self.iv) != BLOCK:
            raise ProtectionError(f"the CBC IV is {BLOCK} bytes, got {len(self.iv)}")


def derive_key(secret: str, imsi: str | None, size: int = 16) -> bytes:
    """The documented key derivation: SHA-256 of ``secret:imsi`` (or of ``secret`` alone)."""
    text = secret if imsi is None else f"{secret}:{imsi}"
    return hashlib.sha256(text.encode("utf-8")).digest()[:size]


Forward = Callable[[bytes, "KeyMaterial | None", Callable[[int], bytes]], bytes]
Backward = Callable[[bytes, "KeyMaterial | None"], bytes]


@dataclass(frozen=True, slots=True)
class Protection:
    """One step. ``backward`` is None for one-way steps (digests: compare with `matches`)."""

    name: str
    forward: Forward
    backward: Backward | None
    keyed: bool = False
    random: bool = False

    @property
    def one_way(self) -> bool:
        return self.backward is None


def _b64(data: bytes, step: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtectionError(f"{step}: not Base64") from exc


def _unhex(data: bytes, _km: KeyMaterial | None) -> bytes:
    try:
        return bytes.fromhex(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtectionError("hex: not hex digits") from exc


def _utf16(codec: str, step: str) -> tuple[Forward, Backward]:
    def forward(data: bytes, _km: KeyMaterial | None, _r: Callable[[int], bytes]) -> bytes:
        try:
            return data.decode("utf-8").encode(codec)
        except UnicodeDecodeError as exc:
            raise ProtectionError(f"{step}: the value is not UTF-8 text") from exc

    def backward(data: bytes, _km: KeyMaterial | None) -> bytes:
        try:
            return data.decode(codec).encode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtectionError(f"{step}: not UTF-16") from exc

    return forward, backward


def _need_key(step: str, material: KeyMaterial | None, iv: bool = False) -> KeyMaterial:
    if material is None:
        raise ProtectionError(f"{step} needs key material")
    if iv and material.iv is None:
        raise ProtectionError(f"{step} needs a fixed IV in the key material")
    return material


def _key_and_iv(step: str, material: KeyMaterial | None) -> tuple[bytes, bytes]:
    km = _need_key(step, material, iv=True)
    if km.iv is None:  # _need_key has said so already
        raise ProtectionError(f"{step} needs a fixed IV in the key material")
    return km.key, km.iv


def _cbc_forward(data: bytes, km: KeyMaterial | None, _r: Callable[[int], bytes]) -> bytes:
    key, iv = _key_and_iv("aes-cbc-fixed-iv", km)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(enc.update(padded) + enc.finalize())


def _cbc_backward(data: bytes, km: KeyMaterial | None) -> bytes:
    step = "aes-cbc-fixed-iv"
    key, iv = _key_and_iv(step, km)
    raw = _b64(data, step)
    if not raw or len(raw) % BLOCK:
        raise ProtectionError(f"{step}: ciphertext is not a whole number of blocks")
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = dec.update(raw) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise ProtectionError(f"{step}: bad padding (wrong key or IV?)") from exc


def _gcm_forward(data: bytes, km: KeyMaterial | None, random: Callable[[int], bytes]) -> bytes:
    km = _need_key("aes-gcm-random-nonce", km)
    nonce = random(NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise ProtectionError(f"the random source gave {len(nonce)} bytes, not {NONCE_SIZE}")
    return base64.b64encode(nonce + AESGCM(km.key).encrypt(nonce, data, None))


def _gcm_backward(data: bytes, km: KeyMaterial | None) -> bytes:
    step = "aes-gcm-random-nonce"
    km = _need_key(step, km)
    raw = _b64(data, step)
    if len(raw) < NONCE_SIZE + 16:
        raise ProtectionError(f"{step}: too short for a nonce and a tag")
    try:
        return AESGCM(km.key).decrypt(raw[:NONCE_SIZE], raw[NONCE_SIZE:], None)
    except InvalidTag as exc:
        raise ProtectionError(f"{step}: authentication failed (wrong key, or altered)") from exc


_DIGESTS = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256}


def _hex_digest(fn: Callable[[bytes], Any]) -> Forward:
    return lambda d, _k, _r: fn(d).hexdigest().encode("ascii")


def _base64_digest(fn: Callable[[bytes], Any]) -> Forward:
    return lambda d, _k, _r: base64.b64encode(fn(d).digest())


def _table() -> dict[str, Protection]:
    t = [
        Protection("plain", lambda d, _k, _r: d, lambda d, _k: d),
        Protection("hex", lambda d, _k, _r: d.hex().encode("ascii"), _unhex),
        Protection("base64", lambda d, _k, _r: base64.b64encode(d), lambda d, _k: _b64(d, "base64")),
        Protection("url", lambda d, _k, _r: quote(d, safe="").encode("ascii"), lambda d, _k: unquote_to_bytes(d)),
        Protection("utf16le", *_utf16("utf-16-le", "utf16le")),
        Protection("utf16be", *_utf16("utf-16-be", "utf16be")),
    ]
    for name, fn in _DIGESTS.items():
        t.append(Protection(name, _hex_digest(fn), None))
    for name, fn in _DIGESTS.items():
        t.append(Protection(f"{name}-base64", _base64_digest(fn), None))
    t.append(Protection("aes-cbc-fixed-iv", _cbc_forward, _cbc_backward, keyed=True))
    t.append(Protection("aes-gcm-random-nonce", _gcm_forward, _gcm_backward, keyed=True, random=True))
    return {p.name: p for p in t}


STEPS: dict[str, Protection] = _table()
PROTECTIONS = tuple(STEPS)
KEYED = tuple(n for n, p in STEPS.items() if p.keyed)
ONE_WAY = frozenset(n for n, p in STEPS.items() if p.one_way)
RANDOM = frozenset(n for n, p in STEPS.items() if p.random)


def _steps(protection: str | Sequence[str]) -> tuple[Protection, ...]:
    names = (protection,) if isinstance(protection, str) else tuple(protection)
    for step in names:
        if step not in STEPS:
            raise ProtectionError(f"unknown protection {step!r} (known: {', '.join(PROTECTIONS)})")
    return tuple(STEPS[s] for s in names)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def protect(
    value: str,
    protection: str | Sequence[str],
    key_material: KeyMaterial | None = None,
    *,
    random: Callable[[int], bytes] = os.urandom,
) -> str:
    """``value`` with ``protection`` (one step or a list of steps) applied, as text."""
    data = value.encode("utf-8", "surrogateescape")
    for step in _steps(protection):
        data = step.forward(data, key_material, random)
    return _text(data)


def _undo(step: Protection, data: bytes, key_material: KeyMaterial | None) -> bytes:
    if step.backward is None:
        raise ProtectionError(f"{step.name} is one-way: compare with matches() instead")
    return step.backward(data, key_material)


def unprotect(value: str, protection: str | Sequence[str], key_material: KeyMaterial | None = None) -> str:
    """The inverse of :func:`protect` for reversible protections (ProtectionError for digests)."""
    data = value.encode("utf-8", "surrogateescape")
    for step in reversed(_steps(protection)):
        data = _undo(step, data, key_material)
    return _text(data)


def cipher_recipe(
    plaintext: str, protection: str | Sequence[str], key_material: KeyMaterial | None, protected: str
) -> dict[str, str] | None:
    """How an app computes ``protected`` from ``plaintext`` with its platform's cipher, when the
    protection is one AES step (the keyed protections are what a build does in code, with
    javax.crypto or OpenSSL's EVP, where Frida's cipher hooks see key, IV, plaintext and
    ciphertext): the OpenSSL cipher name, key, IV (for GCM the nonce ``protected`` used), the
    plaintext and the expected Base64 text. None for every other protection."""
    steps = _steps(protection)
    if len(steps) != 1 or not steps[0].keyed or key_material is None:
        return None
    bits = 8 * len(key_material.key)
    if steps[0].name == "aes-cbc-fixed-iv":
        cipher, iv = f"aes-{bits}-cbc", key_material.iv or b""
    else:
        cipher, iv = f"aes-{bits}-gcm", base64.b64decode(protected)[:NONCE_SIZE]
    return {
        "cipher": cipher,
        "key": key_material.key.hex(),
        "iv": iv.hex(),
        "plaintext": plaintext,
        "expect": protected,
    }


def matches(
    plaintext: str, protected: str, protection: str | Sequence[str], key_material: KeyMaterial | None = None
) -> bool:
    """Whether ``protected`` is ``plaintext`` under ``protection``: steps after the last random
    one are undone, the rest recomputed, so digests and random nonces both check."""
    steps = _steps(protection)
    data = protected.encode("utf-8", "surrogateescape")
    try:
        while any(s.random for s in steps):
            data = _undo(steps[-1], data, key_material)
            steps = steps[:-1]
    except ProtectionError:
        return False
    return protect(plaintext, [s.name for s in steps], key_material).encode("utf-8", "surrogateescape") == data
