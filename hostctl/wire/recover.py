"""Hashed is not encrypted: recover an identifier from its digest by searching its space.

A phone number, an IMEI or an IMSI has a small, structured space (a Chinese mobile number is
``1[3-9]`` and nine free digits: 7 * 10**9 values; an IMEI of a known model is its 8-digit TAC,
six serial digits and a Luhn digit: 10**6), so a digit hashed with MD5/SHA-1/SHA-256 and no
secret is recovered by trying every candidate. This module does that within a time budget and
says honestly what it did: the size of the whole space, how many candidates it tried, the rate,
and how long the whole space would take at that rate on one core.

The demonstration: when the audit knows the value (it planted or read it), the search starts in
the value's neighbourhood: the candidates that agree with it on all but the last 4 free digits,
then all but the last 6, 8, ... and finally the whole space, each candidate once. A recovery
inside the budget then shows the digest gives the value away; ``seeded`` says the known value
chose the order (it never enters the comparison: every candidate is hashed and compared with
the observed bytes). Without a known value the space is searched in plain order.

Templates (:class:`Template`): a string of literal characters, ``x`` (any digit), ``[a-b]`` (a
digit range) and a final ``L`` (the Luhn check digit of the digits before it). The structure is
the real one where the module knows it (see :func:`template_for`): China mobiles
``1[3-9]xxxxxxxxx``, NANP ``[2-9]xx[2-9]xxxxxx``, UK mobiles ``7xxxxxxxxx``; other numbers get
every digit free. IMEIs keep their TAC, IMSIs their MCC+MNC and ICCIDs their first 6 digits
(issuer): public facts about a model or an operator, stated in ``Recovery.assumed``.

What is matched: the observed bytes are a :class:`~hostctl.wire.identifiers.Pattern`'s bytes
(the scanner matched them literally), whose ``steps`` say how a text became them. The steps
before the hash are applied to each candidate; the steps after it are undone on the observed
bytes to get (a prefix of) the digest, compared with each candidate's digest. When the steps
after the hash cannot be undone (a hash of a hash's hex text), each candidate goes through the
whole recipe instead (slower, same answer). One process: the rate is per core.

Entry points: :func:`recover_pattern` (a finding's pattern), :func:`demonstrate` (the same as
a JSON-ready dict for the report), :func:`recover` (any target and template).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from hostctl.errors import HostctlError
from hostctl.model.identity import luhn_ok
from hostctl.wire.identifiers import (
    DIGEST_SIZES,
    NUMBER_KINDS,
    Identifier,
    NumberParts,
    Pattern,
    apply_steps,
    format_grouped,
    parse_number,
    patterns_for,
)

__all__ = [
    "HashTarget",
    "Recovery",
    "RecoveryError",
    "Template",
    "demonstrate",
    "hash_target",
    "recover",
    "recover_pattern",
    "template_for",
]

_INNER = 4  # free digits enumerated by the innermost loop: 10**4 candidates a batch, and the
# neighbourhood searched first (all but the last 4 free digits known)


class RecoveryError(HostctlError, ValueError):
    """A template that does not parse, or a known value that does not fit it."""


# --- what to compare against ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HashTarget:
    """A digest seen on the wire. ``pre``: steps the app applied before hashing; ``prefix``: the
    digest's first bytes recovered from the observed bytes (None when the steps after the hash
    cannot be undone: then ``steps`` and ``observed`` are compared whole)."""

    algorithm: str
    pre: tuple[str, ...]
    prefix: bytes | None
    steps: tuple[str, ...]
    observed: bytes
    form: str


def _hash_step(step: str) -> tuple[str, str, tuple[str, ...]] | None:
    """(algorithm, what the step outputs, the steps after the raw digest it implies)."""
    algo, _, rep = step.partition("-")
    if algo not in DIGEST_SIZES:
        return None
    return {
        "": (algo, "hex", ()),
        "HEX": (algo, "hex", ()),
        "raw": (algo, "raw", ()),
        "base64": (algo, "raw", ("base64",)),
        "base64url": (algo, "raw", ("base64url/0",)),
    }.get(rep)


def _undo(step: str, data: bytes) -> bytes | None:
    """The inverse of one step on (a prefix of) its output, or None when not invertible."""
    try:
        if step in ("hex", "HEX"):
            return bytes.fromhex(data[: len(data) // 2 * 2].decode("ascii"))
        if step in ("base64", "base64/0"):
            return base64.b64decode(data[: len(data) // 4 * 4])
        if step == "base64url/0":
            return base64.urlsafe_b64decode(data[: len(data) // 4 * 4])
        if step in ("url", "url-lower", "url-all", "url-all-lower"):
            return unquote_to_bytes(data)
        if step in ("utf16le", "utf16be"):
            enc = "utf-16-le" if step == "utf16le" else "utf-16-be"
            return data[: len(data) // 2 * 2].decode(enc).encode("utf-8")
    except (ValueError, UnicodeError, binascii.Error):
        return None
    return None


def hash_target(pattern: Pattern) -> HashTarget | None:
    """The digest a pattern's bytes carry, or None when its form involves no hash."""
    steps = pattern.steps
    for i, step in enumerate(steps):
        hs = _hash_step(step)
        if hs is None:
            continue
        algo, rep, implied = hs
        data: bytes | None = pattern.data
        for post in reversed((*implied, *steps[i + 1 :])):
            data = _undo(post, data) if data is not None else None
        if data is not None and rep == "hex":
            data = _undo("hex", data)
        prefix = data if data and len(data) >= 8 and len(data) <= DIGEST_SIZES[algo] else None
        return HashTarget(algo, tuple(steps[:i]), prefix, steps, pattern.data, pattern.form)
    return None


# --- the candidate space ----------------------------------------------------------------------------


_TOKEN = re.compile(r"\[(\d)-(\d)\]|x|L|[^\[\]xL]")


@dataclass(frozen=True)
class Template:
    """A candidate space; see the module docstring for the syntax."""

    text: str
    assumed: str = ""

    def tokens(self) -> list[str | tuple[str, ...]]:
        """Literal characters as str, free positions as the tuple of their digits, "L"."""
        out: list[str | tuple[str, ...]] = []
        pos = 0
        while pos < len(self.text):
            m = _TOKEN.match(self.text, pos)
            if m is None:
                raise RecoveryError(f"template {self.text!r}: cannot read at character {pos}")
            if m.group(1) is not None:
                lo, hi = int(m.group(1)), int(m.group(2))
                if lo > hi:
                    raise RecoveryError(f"template {self.text!r}: empty range {m.group(0)}")
                out.append(tuple(str(d) for d in range(lo, hi + 1)))
            elif m.group(0) == "x":
                out.append(tuple("0123456789"))
            else:
                out.append(m.group(0))
            pos = m.end()
        if "L" in out[:-1]:
            raise RecoveryError(f"template {self.text!r}: L (Luhn digit) must come last")
        return out

    @property
    def size(self) -> int:
        n = 1
        for t in self.tokens():
            if isinstance(t, tuple):
                n *= len(t)
        return n

    def fits(self, value: str) -> bool:
        toks = self.tokens()
        if len(value) != len(toks):
            return False
        for t, ch in zip(toks, value):
            if t == "L":
                if not luhn_ok("".join(c for c in value if c.isdigit())):
                    return False
            elif (isinstance(t, tuple) and ch not in t) or (isinstance(t, str) and ch != t):
                return False
        return True


_NSN_PLANS = (  # (calling code, NSN length, first digits, template) - mobiles
    ("86", 11, "1", "1[3-9]xxxxxxxxx"),
    ("1", 10, "", "[2-9]xx[2-9]xxxxxx"),
    ("44", 10, "7", "7xxxxxxxxx"),
)


def _nsn_template(cc: str, nsn: str) -> str:
    for code, length, first, tmpl in _NSN_PLANS:
        if cc == code and len(nsn) == length and nsn.startswith(first):
            return tmpl
    return "x" * len(nsn)


def _number_parts(pattern: Pattern, country_codes: Sequence[str] | None) -> NumberParts:
    text, variant = pattern.text, pattern.variant
    if variant.startswith("e164/"):
        return parse_number(text)[0]
    if variant in ("e164", "intl00"):
        return parse_number(text)[0]
    if variant == "cc-no-plus":
        return parse_number("+" + text)[0]
    return parse_number(pattern.ident.value, country_codes)[0]


def template_for(pattern: Pattern, *, country_codes: Sequence[str] | None = None) -> Template | None:
    """The space of the text a pattern starts from (its identifier's value, or the number
    variant), or None for free text (no finite space). ``country_codes``: as given to
    patterns_for, for numbers written without a calling code."""
    ident, text = pattern.ident, pattern.text
    if ident.kind in NUMBER_KINDS:
        parts = _number_parts(pattern, country_codes)
        nsn_t = _nsn_template(parts.cc, parts.nsn)
        plan = "" if nsn_t == "x" * len(parts.nsn) else f"; the national number follows the plan {nsn_t}"
        if "/" in pattern.variant:  # grouped: the separators are literals of the template
            units = re.findall(r"\[[^\]]*\]|.", nsn_t)
            grouped = format_grouped(pattern.variant, parts.cc, units, parts.trunk)
            if grouped is not None:
                return Template(
                    grouped,
                    f"country calling code +{parts.cc} known{plan}; grouped as typed"
                    if parts.cc
                    else "a national number of this length; grouped as typed",
                )
        if not parts.cc:
            return Template(nsn_t, "a national number of this length")
        variants = {
            "e164": f"+{parts.cc}",
            "cc-no-plus": parts.cc,
            "intl00": f"00{parts.cc}",
            "national": "",
            "trunk": parts.trunk,
        }
        head = variants.get(pattern.variant, "")
        return Template(head + nsn_t, f"country calling code +{parts.cc} known{plan}")
    if ident.kind == "imei":
        rest = len(text) - 8
        if len(text) == 15 and luhn_ok(text):
            return Template(text[:8] + "x" * 6 + "L", "the 8-digit TAC (the model's type allocation code) known")
        return Template(text[:8] + "x" * rest, "the 8-digit TAC known")
    if ident.kind == "imsi":
        return Template(text[:5] + "x" * (len(text) - 5), "MCC+MNC (the SIM's operator) known")
    if ident.kind == "iccid":
        if luhn_ok(text):
            return Template(text[:6] + "x" * (len(text) - 7) + "L", "89 + country + issuer (the first 6 digits) known")
        return Template(text[:6] + "x" * (len(text) - 6), "the first 6 digits known")
    return None


# --- the search ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a search found and what it cost. ``recovered`` is the text that hashes to the
    observed bytes (in the pattern's variant, e.g. the national number), or None."""

    recovered: str | None
    algorithm: str
    form: str
    template: str
    assumed: str
    space_size: int
    searched: int
    seconds: float
    rate_per_s: float
    estimated_full_space_seconds: float | None
    exhausted: bool  # the whole space was searched
    seeded: bool  # the known value chose the search order
    budget_s: float
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _luhn_weights(n_digits: int) -> list[int]:
    """Per-digit weights for a check digit after ``n_digits`` digits (rightmost doubled)."""
    return [2 if (n_digits - 1 - i) % 2 == 0 else 1 for i in range(n_digits)]


def _luhn_value(d: int, w: int) -> int:
    v = d * w
    return v - 9 if v > 9 else v


_CHECK = [str((10 - t) % 10).encode("ascii") for t in range(10)]


class _Space:
    """The template unrolled for the search: the free positions split into outer ones (one
    batch per combination) and the last ``_INNER`` (every batch enumerates them), with the
    Luhn sums precomputed so a check digit costs one addition."""

    def __init__(self, template: Template) -> None:
        toks = template.tokens()
        self.luhn = bool(toks) and toks[-1] == "L"
        self.toks = toks[:-1] if self.luhn else toks
        free = [i for i, t in enumerate(self.toks) if isinstance(t, tuple)]
        digit_pos = [i for i, t in enumerate(self.toks) if isinstance(t, tuple) or (isinstance(t, str) and t.isdigit())]
        self.weight = dict(zip(digit_pos, _luhn_weights(len(digit_pos))))
        inner = min(_INNER, len(free))
        self.outer = free[: len(free) - inner]
        self.tail_start = free[len(free) - inner] if inner else len(self.toks)
        self.suffixes: list[tuple[bytes, int]] = []
        tail = [t if isinstance(t, tuple) else (t,) for t in self.toks[self.tail_start :]]
        for combo in itertools.product(*tail):
            self.suffixes.append(("".join(combo).encode("ascii"), self._luhn_sum(combo, self.tail_start)))

    def _luhn_sum(self, chars: Sequence[str], start: int) -> int:
        if not self.luhn:
            return 0
        return sum(_luhn_value(int(ch), self.weight[start + k]) for k, ch in enumerate(chars) if ch.isdigit())

    def head(self, choice: dict[int, str]) -> tuple[bytes, int]:
        text = "".join(choice[i] if isinstance(t, tuple) else t for i, t in enumerate(self.toks[: self.tail_start]))
        return text.encode("ascii"), self._luhn_sum(text, 0)

    def batch(self, head: bytes, hsum: int) -> Iterator[bytes]:
        if self.luhn:
            return (head + s + _CHECK[(hsum + ls) % 10] for s, ls in self.suffixes)
        return (head + s for s, _ in self.suffixes)

    def heads(self, known: str | None) -> Iterator[tuple[bytes, int]]:
        """Every batch head once: around ``known`` first (see the module docstring)."""
        q = len(self.outer)
        if known is None:
            for combo in itertools.product(*(self.toks[i] for i in self.outer)):
                yield self.head(dict(zip(self.outer, combo)))
            return
        prev = -1
        for w in sorted(set(range(0, q, 2)) | {q}):
            # the last w outer positions vary, the others keep the known digits; the combos
            # whose first (w - prev) varying digits are the known ones were an earlier round's
            varying = self.outer[q - w :]
            new = w - prev if prev >= 0 else 0
            known_new = tuple(known[i] for i in varying[:new])
            base = {i: known[i] for i in self.outer[: q - w]}
            for combo in itertools.product(*(self.toks[i] for i in varying)):
                if new and combo[:new] == known_new:
                    continue
                base.update(zip(varying, combo))
                yield self.head(base)
            prev = w


def _pre_function(pre: tuple[str, ...]) -> Callable[[bytes], bytes | None]:
    if not pre:
        return lambda b: b
    if pre == ("utf16le",):
        return lambda b: b.decode("ascii").encode("utf-16-le")
    if pre == ("utf16be",):
        return lambda b: b.decode("ascii").encode("utf-16-be")
    if pre == ("hex",):
        return lambda b: b.hex().encode("ascii")
    return lambda b: apply_steps(b, pre, trim=False)


def _matcher(target: HashTarget) -> Callable[[Iterator[bytes]], int]:
    """A function that returns the index of the first matching candidate of a batch, or minus
    the batch's length when none matches."""
    ctor = getattr(hashlib, target.algorithm)
    prefix = target.prefix
    if prefix is None:  # the steps after the hash cannot be undone: the whole recipe
        steps, observed = target.steps, target.observed

        def slow(cands: Iterator[bytes]) -> int:
            k = -1
            for k, c in enumerate(cands):
                if apply_steps(c, steps) == observed:
                    return k
            return -(k + 1)

        return slow
    n = len(prefix)
    full = n == DIGEST_SIZES[target.algorithm]
    if not target.pre:

        def plain(cands: Iterator[bytes]) -> int:
            k = -1
            if full:
                for k, c in enumerate(cands):
                    if ctor(c).digest() == prefix:
                        return k
            else:
                for k, c in enumerate(cands):
                    if ctor(c).digest()[:n] == prefix:
                        return k
            return -(k + 1)

        return plain
    pre = _pre_function(target.pre)

    def transformed(cands: Iterator[bytes]) -> int:
        k = -1
        for k, c in enumerate(cands):
            data = pre(c)
            if data is not None and ctor(data).digest()[:n] == prefix:
                return k
        return -(k + 1)

    return transformed


_CALIBRATE_S = 0.25


def recover(target: HashTarget, template: Template, *, budget_s: float = 5.0, around: str | None = None) -> Recovery:
    """Search ``template`` for a text whose recipe gives the observed bytes of ``target``,
    for at most ``budget_s`` seconds (checked between batches of 10**4 candidates); the
    neighbourhood of ``around`` (a known value that fits the template) first."""
    if around is not None and not template.fits(around):
        raise RecoveryError(f"the known value {around!r} does not fit the template {template.text!r}")
    space = _Space(template)
    test = _matcher(target)
    searched, found, out_of_time = 0, None, False
    t0 = time.perf_counter()
    for head, hsum in space.heads(around):
        k = test(space.batch(head, hsum))
        if k >= 0:
            searched += k + 1
            found = (head + space.suffixes[k][0]).decode("ascii")
            if space.luhn:
                found += _CHECK[(hsum + space.suffixes[k][1]) % 10].decode("ascii")
            break
        searched -= k
        if time.perf_counter() - t0 >= budget_s:
            out_of_time = True
            break
    seconds = time.perf_counter() - t0
    rate = _rate(space, test, searched, seconds, budget_s)
    return Recovery(
        recovered=found,
        algorithm=target.algorithm,
        form=target.form,
        template=template.text,
        assumed=template.assumed,
        space_size=template.size,
        searched=searched,
        seconds=seconds,
        rate_per_s=rate,
        estimated_full_space_seconds=template.size / rate if rate else None,
        exhausted=found is None and not out_of_time,
        seeded=around is not None,
        budget_s=budget_s,
    )


def _rate(
    space: _Space, test: Callable[[Iterator[bytes]], int], searched: int, seconds: float, budget_s: float
) -> float:
    """Candidates per second. A search that ended (found) too soon to time gives no usable
    rate: the same path is then timed on whole batches that cannot match (their candidates
    miss the template's last literal) for up to 0.25 s."""
    if seconds >= _CALIBRATE_S or seconds >= budget_s:
        return searched / seconds if seconds > 0 else 0.0
    head = b"\x00" * (space.tail_start + 1)  # never a candidate (not a digit)
    n, t0 = 0, time.perf_counter()
    while True:
        n += abs(test(space.batch(head, 0))) or 1
        dt = time.perf_counter() - t0
        if dt >= min(_CALIBRATE_S, budget_s):
            return n / dt


def recover_pattern(
    pattern: Pattern, *, budget_s: float = 5.0, seed_with_known: bool = True, country_codes: Sequence[str] | None = None
) -> Recovery | None:
    """Recover the text behind a hashed pattern (None when its form has no hash). With
    ``seed_with_known`` the search starts around the identifier's own value (the audit's
    demonstration); the observed bytes alone decide what is a match."""
    target = hash_target(pattern)
    if target is None:
        return None
    template = template_for(pattern, country_codes=country_codes)
    if template is None:
        return Recovery(
            recovered=None,
            algorithm=target.algorithm,
            form=pattern.form,
            template="",
            assumed="",
            space_size=0,
            searched=0,
            seconds=0.0,
            rate_per_s=0.0,
            estimated_full_space_seconds=None,
            exhausted=False,
            seeded=False,
            budget_s=budget_s,
            note="free text has no finite candidate space: not searched",
        )
    around = pattern.text if seed_with_known and template.fits(pattern.text) else None
    return recover(target, template, budget_s=budget_s, around=around)


def demonstrate(
    ident: Identifier,
    algorithm: str,
    *,
    budget: float = 5.0,
    form: str | None = None,
    pattern: Pattern | None = None,
    country_codes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The audit's demonstration as a JSON-ready dict (:meth:`Recovery.to_dict`): recover
    ``ident`` from its ``algorithm`` digest within ``budget`` seconds. The digest is the one of
    ``pattern`` (the finding's, best), else of the identifier's pattern named ``form``, else of
    its value as stored (the first variant's ``ALGORITHM-hex`` form, e.g. ``e164:sha1-hex``)."""
    if algorithm not in DIGEST_SIZES:
        raise RecoveryError(f"unknown digest {algorithm!r} (known: {', '.join(DIGEST_SIZES)})")
    if pattern is None:
        pats = patterns_for([ident], country_codes=country_codes)
        wanted = (
            (lambda p: form in p.forms)
            if form is not None
            else (lambda p: p.form.rsplit(":", 1)[-1] == f"{algorithm}-hex")
        )
        pattern = next((p for p in pats if wanted(p)), None)
        if pattern is None:
            raise RecoveryError(f"{ident}: no form {form or algorithm + '-hex'!r}")
    rec = recover_pattern(pattern, budget_s=budget, country_codes=country_codes)
    if rec is None:
        raise RecoveryError(f"{ident}: form {pattern.form!r} involves no digest")
    return rec.to_dict()
