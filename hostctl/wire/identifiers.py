"""Identifiers (IMEI, IMSI, ICCID, phone numbers, message text) and every byte pattern they can
take on the wire, so the scanner can look for all of them in one pass.

The audit must show a phone number is not merely *encoded* or *hashed* when a firmware claims it
is encrypted. So an identifier is expanded into the literal bytes of each form an app could
plausibly send, and each form keeps a recipe (``Pattern.steps``) from which the search for a
hashed value (:mod:`hostctl.wire.recover`) recomputes candidates.

Number variants (kinds ``msisdn`` and ``number``; the form name gets the variant as a prefix,
e.g. ``national:sha1-hex``):

    e164        +8613800138000        the value as stored on the SIM / in contacts
    cc-no-plus  8613800138000         E.164 without the plus (also the 23.040 address digits)
    intl00      008613800138000       dialled with the international prefix 00
    national    13800138000           the national significant number
    trunk       07700900123           national with the country's trunk prefix, only where the
                                      country uses one for that number (not China's mobiles,
                                      whose NSN starts with 1; 8 in Russia; 1 in NANP)

Grouped variants (the same number as people type it and apps print it), named
``BASE/GROUPING/SEP`` (``e164/3-4-4/sp`` is ``+86 139 1234 5678``, ``national/3-3-4/paren`` is
``(202) 555-0123``):

    BASE        national, trunk (trunk prefix glued to the first group: ``07700 900123``) and
                e164 (``+CC`` then the separator; ``e164/G/cc-sp`` is ``+86 13912345678``,
                ``e164/G/paren-cc`` is ``(+86) 139 1234 5678``)
    GROUPING    the national number's digit groups: ITU-T E.123 section 2.4 groups with spaces
                and allows hyphens or dots; the groups per plan come from the common national
                formats (China's mobiles 3-4-4; NANP 3-3-4 with the area code in parentheses,
                E.123 7.1; UK mobiles 4-6 and 4-3-3); other plans by length (11: 3-4-4,
                10: 3-3-4, 9: 3-3-3, 8: 4-4), a guess kept as data in ``_GROUPINGS``
    SEP         sp, dash, dot; paren = ``(G1) G2-G3``

A grouped variant is looked for in its text forms (ascii, UTF-16, URL, form encoding) and its
hex digests; the Base64 and TBCD forms of typed text are not what apps send. IMEIs get
``imei14`` (the 14 digits without the check digit, 3GPP TS 23.003 6.2.1, as some APIs report
them); an IMEISV (14 digits + a 2-digit software version, 6.2.2) holds those 14 digits as its
prefix, so its text forms are found by ``imei14`` (a digest of an IMEISV is not looked for:
it depends on the SVN, which the testbed does not know).

A number given with ``+`` or ``00`` is split with the ITU-T E.164 calling-code table (codes are
prefix-free: 1 and 7 are the one-digit codes, the two-digit ones are listed in ``hostctl.model.identity.CC2``, every
other code has three digits). A number given without either gets the country from
``country_codes`` (its trunk prefix removed); without those, only the ``national`` variant is
known. Trunk prefixes come from a small table (``_TRUNK``, default ``0``): the ``phonenumbers``
package would know every country's plan but not the lab's test network (+999), and the audit
needs only the calling code and the trunk rule.

Forms (``Pattern.form``; the bytes start from the value's UTF-8 text, or the variant's):

    ascii                       the text itself (UTF-8 for message text)
    utf16le, utf16be            UTF-16 without BOM
    hex, HEX                    the text's bytes as lower / upper hex digits
    base64/K, base64url/K       K = 0, 1, 2: the Base64 text of the value when preceded by K
                                bytes, trimmed to the characters that depend only on the
                                value's bytes (so it matches inside any larger Base64 blob)
    base64-utf16le/K, base64-utf16be/K   the same over the UTF-16 text
    url                         percent-encoding, RFC 3986 unreserved kept ('+' -> %2B)
    url-lower                   the same with lower-case escapes (%2b)
    url-all, url-all-lower      every byte percent-encoded (%31%33%38...)
    url-form                    application/x-www-form-urlencoded (space -> '+'; text only)
    json                        a JSON string body with \\uXXXX escapes (non-ASCII text only)
    tbcd                        swapped semi-octets, F-padded when odd (3GPP TS 24.008/23.040)
    tbcd-mi                     24.008 Mobile Identity (IMEI, IMSI): first digit with the
                                odd/even flag and type nibble, then the rest as TBCD
    tbcd-addr/91, /81, /a1      a 23.040 address field: digit count, type of address (91
                                international, 81 unknown, a1 national), TBCD digits
    md5-hex, md5-HEX, md5-base64, md5-base64url, md5-raw   (and sha1-*, sha256-*): the digest
                                of the text as lower / upper hex, Base64 (alignment 0) or raw
    S1>S2                       two protection steps of hostctl.model.protections applied in
                                order, as a firmware profile writes ``protection: [S1, S2]``
                                (e.g. ``sha1>base64`` is the Base64 of the hex digest's text,
                                ``base64>url``, ``utf16le>md5``); all combinations of the
                                unkeyed steps, kept where they give bytes no other form gives

Rules:

* Minimum length: a pattern shorter than ``MIN_PATTERN_LEN`` (8) bytes is not generated, so random
  data cannot match by chance (a specific 8-byte string turns up in 2**64 random positions about
  once; in digit-only text, where each byte has 10 values, 8 digits are 1 in 10**8 per position,
  so an identifier is never looked for by fewer than ``MIN_DIGITS`` (8) of its digits: the
  14-digit IMEI and the grouped numbers keep at least 8). This drops, e.g., bare TBCD of an 11-digit national number (6 bytes): the 23.040
  address forms of it (8 bytes with their header) remain.
* Long message text: the forms without a digest look for the first ``TEXT_PREFIX_CHARS`` (160,
  one SMS) characters of a text, so a pattern stays under a few KiB (hyperscan's limit on one
  expression, and the tail a stream keeps); the digest forms hash the whole text, as an app would.
* Equal bytes: forms of one identifier that give the same bytes (``url`` of digits is ``ascii``;
  ``hex`` and ``HEX`` of digits agree) are one Pattern: ``form`` is the first in the order above,
  ``forms`` lists them all. Two identifiers with equal forms keep a Pattern each.
* A final Base64 step of a protection chain is trimmed like ``base64/0`` (no padding), which is
  a prefix of the padded text the profile sends; an inner one is the full padded text.
* Overlaps are resolved by the scanner (:mod:`hostctl.wire.scan`): overlapping matches of one
  identifier are one occurrence, reported once as the longest (most specific) form; ties go to
  the lower pattern id: variants in the order above (e164 first), then forms in the order above.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

from hostctl.errors import HostctlError
from hostctl.model.identity import CC1, CC2
from hostctl.model.protections import PROTECTIONS, ProtectionError, protect

__all__ = [
    "BEHAVIOUR_STEPS",
    "identifiers_of",
    "DIGEST_SIZES",
    "KINDS",
    "MIN_PATTERN_LEN",
    "NUMBER_KINDS",
    "NUMBER_VARIANTS",
    "TEXT_PREFIX_CHARS",
    "Identifier",
    "IdentifierError",
    "NumberParts",
    "Pattern",
    "apply_steps",
    "format_grouped",
    "number_variants",
    "parse_number",
    "patterns_by_form",
    "patterns_for",
]

MIN_PATTERN_LEN = 8
MIN_DIGITS = 8
TEXT_PREFIX_CHARS = 160
NUMBER_KINDS = frozenset({"msisdn", "number"})
KINDS = ("imei", "imsi", "iccid", "msisdn", "number", "text")
NUMBER_VARIANTS = ("e164", "cc-no-plus", "intl00", "national", "trunk")
DIGEST_SIZES = {"md5": 16, "sha1": 20, "sha256": 32}

_DIGITS = {"imei": (14, 16), "imsi": (6, 15), "iccid": (18, 22)}
_SEPARATORS = re.compile(r"[\s\-().]")

# ITU-T E.164 country calling codes with two digits; 1 and 7 are the one-digit codes and every
# other assigned code has three digits (the set is prefix-free, so this splits any number).
# Trunk prefixes dialled before a national number; "" = the country has none. Default "0".
_TRUNK = {
    "1": "1",
    "7": "8",
    "375": "8",
    "36": "06",
    **{
        cc: ""
        for cc in (
            "852",
            "853",
            "65",
            "45",
            "47",
            "39",
            "34",
            "30",
            "351",
            "352",
            "420",
            "421",
            "372",
            "371",
            "354",
            "298",
            "299",
            "376",
            "378",
            "377",
            "356",
            "357",
            "52",
            "974",
            "973",
            "968",
            "965",
            "507",
            "506",
            "502",
            "503",
            "504",
            "505",
            "999",
        )
    },
}

# Protection steps of hostctl.model.protections that need no key (the keyed ones are
# encryption, which the checks judge from repeated ciphertexts, not from patterns).
BEHAVIOUR_STEPS = tuple(p for p in PROTECTIONS if p != "plain" and not p.startswith("aes-"))
_B64_FINAL = frozenset({"base64", *(f"{d}-base64" for d in DIGEST_SIZES)})


class IdentifierError(HostctlError, ValueError):
    """An identifier that cannot be one (wrong kind, not digits, wrong length)."""


@dataclass(frozen=True, slots=True)
class Identifier:
    """What to look for: ``kind`` is one of KINDS, ``label`` says whose it is (e.g. "hs1 sim0
    msisdn") so a finding can name it."""

    kind: str
    value: str
    label: str = ""

    def __post_init__(self) -> None:
        name = self.label or f"{self.kind} {self.value!r}"
        if self.kind not in KINDS:
            raise IdentifierError(f"{name}: unknown identifier kind {self.kind!r} (known: {', '.join(KINDS)})")
        if not self.value:
            raise IdentifierError(f"{name}: empty value")
        if self.kind in _DIGITS:
            lo, hi = _DIGITS[self.kind]
            if not (self.value.isascii() and self.value.isdigit() and lo <= len(self.value) <= hi):
                raise IdentifierError(f"{name}: an {self.kind.upper()} is {lo}-{hi} digits, got {self.value!r}")
        elif self.kind in NUMBER_KINDS:
            digits = _SEPARATORS.sub("", self.value).removeprefix("+")
            if not (digits.isascii() and digits.isdigit() and 5 <= len(digits) <= 17):
                raise IdentifierError(f"{name}: not a phone number: {self.value!r}")

    def __str__(self) -> str:
        return self.label or f"{self.kind} {self.value}"


@dataclass(frozen=True, slots=True)
class Pattern:
    """One literal byte string to find. ``form`` is the canonical form name, ``forms`` every
    form that gives these bytes (canonical first), ``variant`` the number variant ("" for
    identifiers that are not numbers), ``text`` the text the ``steps`` start from (the value or
    its variant) and ``steps`` the canonical form's recipe (see :func:`apply_steps`)."""

    id: int
    ident: Identifier
    form: str
    data: bytes
    forms: tuple[str, ...] = ()
    variant: str = ""
    text: str = ""
    steps: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Pattern({self.id}, {self.ident}, {self.form!r}, {len(self.data)} bytes)"


# --- phone numbers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NumberParts:
    """A phone number split into calling code ("" when unknown), national significant number
    and the trunk prefix its country dials before it ("" when none)."""

    cc: str
    nsn: str
    trunk: str


def _split_cc(digits: str) -> tuple[str, str]:
    for n, table in ((1, CC1), (2, CC2)):
        if digits[:n] in table:
            return digits[:n], digits[n:]
    return digits[:3], digits[3:]


def _trunk(cc: str, nsn: str) -> str:
    if cc == "86" and nsn.startswith("1"):  # Chinese mobiles are dialled without the 0
        return ""
    return _TRUNK.get(cc, "0")


def parse_number(value: str, country_codes: Sequence[str] | None = None) -> list[NumberParts]:
    """The readings of ``value``: one for ``+CC...``/``00CC...``; one per country code given for
    a number without (its trunk prefix dropped); else one without a calling code."""
    digits = _SEPARATORS.sub("", value)
    if digits.startswith("+") or digits.startswith("00"):
        cc, nsn = _split_cc(digits[1:] if digits.startswith("+") else digits[2:])
        return [NumberParts(cc, nsn, _trunk(cc, nsn))]
    out = []
    for cc in country_codes or ():
        trunk = _TRUNK.get(cc, "0")
        nsn = digits[len(trunk) :] if trunk and digits.startswith(trunk) else digits
        out.append(NumberParts(cc, nsn, _trunk(cc, nsn)))
    return out or [NumberParts("", digits, "")]


# (calling code, national number length) -> digit groupings; by length when the plan is not listed
_GROUPINGS: dict[tuple[str, int], tuple[tuple[int, ...], ...]] = {
    ("86", 11): ((3, 4, 4),),
    ("1", 10): ((3, 3, 4),),
    ("44", 10): ((4, 6), (4, 3, 3)),
}
_GROUPINGS_BY_LENGTH: dict[int, tuple[tuple[int, ...], ...]] = {
    11: ((3, 4, 4),),
    10: ((3, 3, 4),),
    9: ((3, 3, 3),),
    8: ((4, 4),),
}
_SEPS = {"sp": " ", "dash": "-", "dot": "."}


def groupings(cc: str, length: int) -> tuple[tuple[int, ...], ...]:
    return _GROUPINGS.get((cc, length)) or _GROUPINGS_BY_LENGTH.get(length, ())


def format_grouped(variant: str, cc: str, units: Sequence[str], trunk: str) -> str | None:
    """The text of grouped variant ``variant`` (``BASE/G1-G2-G3/SEP``) for a national number
    given as ``units`` (its digits, or a recovery template's tokens); None if it does not apply."""
    try:
        base, grouping, sep = variant.split("/")
        sizes = [int(g) for g in grouping.split("-")]
    except ValueError:
        return None
    if sum(sizes) != len(units) or (base == "e164" and not cc) or (base == "trunk" and not trunk):
        return None
    groups, i = [], 0
    for n in sizes:
        groups.append("".join(units[i : i + n]))
        i += n
    if base == "trunk":
        groups[0] = trunk + groups[0]
    if sep == "paren":
        body = f"({groups[0]}) " + "-".join(groups[1:])
        return f"+{cc} {body}" if base == "e164" else body
    if sep == "cc-sp":
        return f"+{cc} " + "".join(groups) if base == "e164" else None
    if sep == "paren-cc":
        return f"(+{cc}) " + " ".join(groups) if base == "e164" else None
    if sep not in _SEPS:
        return None
    text = _SEPS[sep].join(groups)
    return f"+{cc}{_SEPS[sep]}{text}" if base == "e164" else text


def _grouped_names(cc: str, nsn: str, trunk: str) -> list[str]:
    names = []
    for sizes in groupings(cc, len(nsn)):
        g = "-".join(str(n) for n in sizes)
        for base in ("national", "trunk", "e164"):
            for sep in (*_SEPS, "paren"):
                names.append(f"{base}/{g}/{sep}")
        names += [f"e164/{g}/cc-sp", f"e164/{g}/paren-cc"]
    return names


def number_variants(value: str, country_codes: Sequence[str] | None = None, *, grouped: bool = True) -> dict[str, str]:
    """Variant name -> text, for every reading of the number (first reading wins a name); with
    ``grouped`` also the grouped variants (distinct texts only)."""
    out: dict[str, str] = {}
    readings = parse_number(value, country_codes)
    for p in readings:
        texts = {"national": p.nsn}
        if p.cc:
            texts = {
                "e164": f"+{p.cc}{p.nsn}",
                "cc-no-plus": f"{p.cc}{p.nsn}",
                "intl00": f"00{p.cc}{p.nsn}",
                "national": p.nsn,
            }
            if p.trunk:
                texts["trunk"] = p.trunk + p.nsn
        for name in NUMBER_VARIANTS:
            if name in texts:
                out.setdefault(name, texts[name])
    if grouped:
        seen = set(out.values())
        for p in readings:
            for name in _grouped_names(p.cc, p.nsn, p.trunk):
                text = format_grouped(name, p.cc, list(p.nsn), p.trunk)
                if text is not None and text not in seen and name not in out:
                    seen.add(text)
                    out[name] = text
    return out


# --- steps --------------------------------------------------------------------------------------


def _b64_trim(data: bytes, align: int, urlsafe: bool = False) -> bytes:
    enc = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    text = enc(bytes(align) + data)
    return text[-(-8 * align // 6) : (8 * (align + len(data))) // 6]


def _tbcd(digits: bytes) -> bytes:
    nib = [c - 0x30 for c in digits]
    if len(nib) % 2:
        nib.append(0xF)
    return bytes(nib[i] | nib[i + 1] << 4 for i in range(0, len(nib), 2))


def _tbcd_mi(digits: bytes, kind: str) -> bytes:
    # 24.008 10.5.1.4: octet 3 = digit 1 | odd/even | type of identity (1 IMSI, 2 IMEI)
    first = (digits[0] - 0x30) << 4 | (len(digits) % 2) << 3 | (1 if kind == "imsi" else 2)
    return bytes([first]) + _tbcd(digits[1:])


def _pct_lower(data: bytes) -> bytes:
    return re.sub(rb"%[0-9A-F]{2}", lambda m: m.group(0).lower(), data)


def _extra_step(step: str, data: bytes, final: bool) -> bytes:
    if step == "HEX":
        return data.hex().upper().encode()
    if step.startswith(("base64/", "base64url/")):
        name, align = step.split("/")
        return _b64_trim(data, int(align), name == "base64url")
    if step == "url-lower":
        return _pct_lower(quote(data, safe="").encode())
    if step == "url-all":
        return "".join(f"%{b:02X}" for b in data).encode()
    if step == "url-all-lower":
        return "".join(f"%{b:02x}" for b in data).encode()
    if step == "url-form":
        return quote_plus(data, safe="").encode()
    if step == "json":
        return json.dumps(data.decode("utf-8"))[1:-1].encode()
    if step in ("tbcd", "tbcd-mi/imei", "tbcd-mi/imsi") or step.startswith("tbcd-addr/"):
        if not data.isdigit():
            raise ProtectionError(f"{step}: not a digit string")
        if step == "tbcd":
            return _tbcd(data)
        if step.startswith("tbcd-mi/"):
            return _tbcd_mi(data, step[len("tbcd-mi/") :])
        return bytes([len(data), int(step[len("tbcd-addr/") :], 16)]) + _tbcd(data)
    algo, _, rep = step.partition("-")
    if algo in DIGEST_SIZES and rep in ("HEX", "raw", "base64url"):
        digest = hashlib.new(algo, data).digest()
        if rep == "HEX":
            return digest.hex().upper().encode()
        if rep == "raw":
            return digest
        return _b64_trim(digest, 0, urlsafe=True) if final else base64.urlsafe_b64encode(digest)
    raise ProtectionError(f"unknown step {step!r}")


def _step(step: str, data: bytes, final: bool) -> bytes:
    if step in BEHAVIOUR_STEPS:
        out = protect(data.decode("utf-8", "surrogateescape"), step).encode("utf-8", "surrogateescape")
        if final and step in _B64_FINAL:  # the padded text's prefix that needs no context
            n = len(data) if step == "base64" else DIGEST_SIZES[step.split("-")[0]]
            out = out[: 8 * n // 6]
        return out
    return _extra_step(step, data, final)


def apply_steps(text: str | bytes, steps: Sequence[str], *, trim: bool = True) -> bytes | None:
    """The bytes ``steps`` make of ``text`` (None when a step does not apply, e.g. UTF-16 of
    bytes that are not UTF-8, or TBCD of a non-digit). Steps are hostctl.emulator.behaviour's
    unkeyed protections (hostctl.model.protections) plus the extra ones named in the module docstring; with ``trim`` a
    final Base64 step is trimmed to the characters that need no following bytes (without, it
    is the padded text, as when another step follows)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        for i, step in enumerate(steps):
            data = _step(step, data, trim and i == len(steps) - 1)
    except (ProtectionError, UnicodeDecodeError):
        return None
    return data


# --- forms --------------------------------------------------------------------------------------


def _named_forms(kind: str, variant: str) -> Iterable[tuple[str, tuple[str, ...]]]:
    yield "ascii", ()
    yield "utf16le", ("utf16le",)
    yield "utf16be", ("utf16be",)
    yield "hex", ("hex",)
    yield "HEX", ("HEX",)
    for k in range(3):
        yield f"base64/{k}", ("base64",) if k == 0 else (f"base64/{k}",)
    for k in range(3):
        yield f"base64url/{k}", (f"base64url/{k}",)
    for enc in ("utf16le", "utf16be"):
        for k in range(3):
            yield f"base64-{enc}/{k}", (enc, "base64") if k == 0 else (enc, f"base64/{k}")
    for name in ("url", "url-lower", "url-all", "url-all-lower"):
        yield name, (name,)
    if kind == "text":
        yield "url-form", ("url-form",)
        yield "json", ("json",)
    if kind != "text" and variant != "e164":
        yield "tbcd", ("tbcd",)
        if kind in ("imei", "imsi"):
            yield "tbcd-mi", (f"tbcd-mi/{kind}",)
        if variant == "cc-no-plus":
            yield "tbcd-addr/91", ("tbcd-addr/91",)
        elif variant == "national":
            yield "tbcd-addr/81", ("tbcd-addr/81",)
            yield "tbcd-addr/a1", ("tbcd-addr/a1",)
        elif variant == "trunk":
            yield "tbcd-addr/81", ("tbcd-addr/81",)
    for algo in DIGEST_SIZES:
        yield f"{algo}-hex", (algo,)
        yield f"{algo}-HEX", (f"{algo}-HEX",)
        yield f"{algo}-base64", (f"{algo}-base64",)
        yield f"{algo}-base64url", (f"{algo}-base64url",)
        yield f"{algo}-raw", (f"{algo}-raw",)
    for s1 in BEHAVIOUR_STEPS:
        for s2 in BEHAVIOUR_STEPS:
            yield f"{s1}>{s2}", (s1, s2)


def _texts(ident: Identifier, country_codes: Sequence[str] | None) -> dict[str, str]:
    if ident.kind in NUMBER_KINDS:
        return number_variants(ident.value, country_codes)
    if ident.kind == "imei" and len(ident.value) == 15:
        return {"": ident.value, "imei14": ident.value[:14]}
    return {"": ident.value}


_GROUPED_FORMS = frozenset(
    {
        "ascii",
        "utf16le",
        "utf16be",
        "url",
        "url-lower",
        "url-form",
        "md5-hex",
        "sha1-hex",
        "sha256-hex",
        "md5-HEX",
        "sha1-HEX",
        "sha256-HEX",
    }
)


def identifiers_of(testbed: Any, extra: Iterable[tuple[str, str, str]] = ()) -> list[Identifier]:
    """Every identifier a testbed names, labelled for reports: each SIM's number, IMEI, IMSI and
    ICCID as ``<handset label> number<slot>`` (``imei<slot>``...), then ``extra`` (kind, value,
    label: what a run read from the handsets), then the peer modem's (``modem number``...). A
    value seen once is listed once, under its first label."""
    out: list[Identifier] = []
    seen: set[tuple[str, str]] = set()

    def add(kind: str, value: Any, label: str) -> None:
        if value and (kind, str(value)) not in seen:
            seen.add((kind, str(value)))
            out.append(Identifier(kind, str(value), label))

    for h in testbed.handsets:
        for sim in h.sims:
            add("msisdn", sim.number, f"{h.label} number{sim.slot}")
            add("imei", sim.imei, f"{h.label} imei{sim.slot}")
            add("imsi", sim.imsi, f"{h.label} imsi{sim.slot}")
            add("iccid", sim.iccid, f"{h.label} iccid{sim.slot}")
    for kind, value, label in extra:
        add(kind, value, label)
    modem = getattr(testbed, "modem", None)
    if modem is not None:
        for kind, attr in (("msisdn", "number"), ("imsi", "imsi"), ("iccid", "iccid"), ("imei", "imei")):
            add(kind, getattr(modem, attr, None), f"modem {attr}")
    return out


def patterns_for(idents: Sequence[Identifier], *, country_codes: Sequence[str] | None = None) -> list[Pattern]:
    """Every distinct pattern of every identifier, ids numbered from 0 in a stable order
    (identifier, then variant, then the form order of the module docstring).
    ``country_codes`` are the calling codes to assume for numbers given without one."""
    out: list[Pattern] = []
    for ident in idents:
        if not isinstance(ident, Identifier):
            raise IdentifierError(f"expected an Identifier, got {ident!r}")
        by_bytes: dict[bytes, list] = {}
        for variant, full in _texts(ident, country_codes).items():
            grouped = "/" in variant
            for name, steps in _named_forms("text" if grouped else ident.kind, variant):
                if grouped and name not in _GROUPED_FORMS:
                    continue
                hashed = any(s.split("-")[0] in DIGEST_SIZES for s in steps)
                text = full if hashed else full[:TEXT_PREFIX_CHARS]
                data = apply_steps(text, steps)
                if data is None or len(data) < MIN_PATTERN_LEN:
                    continue
                form = f"{variant}:{name}" if variant else name
                if data in by_bytes:
                    by_bytes[data][1].append(form)
                else:
                    by_bytes[data] = [(variant, text, steps), [form]]
        for data, ((variant, text, steps), forms) in by_bytes.items():
            out.append(Pattern(len(out), ident, forms[0], data, tuple(forms), variant, text, steps))
    return out


def patterns_by_form(patterns: Iterable[Pattern]) -> Mapping[tuple[Identifier, str], Pattern]:
    """(identifier, form) -> the pattern giving that form's bytes (aliases included)."""
    return {(p.ident, f): p for p in patterns for f in p.forms}
