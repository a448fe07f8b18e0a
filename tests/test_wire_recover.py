"""Hashed is not encrypted: digests of identifiers are recovered by search, the search is honest
about its space and its cost, and every candidate is tried once."""

from __future__ import annotations

import hashlib
import itertools

import pytest

from hostctl.emulator.identity import luhn_digit, luhn_ok
from hostctl.wire.identifiers import Identifier, Pattern, patterns_by_form, patterns_for
from hostctl.wire.recover import (
    HashTarget,
    RecoveryError,
    Template,
    _Space,
    demonstrate,
    hash_target,
    recover,
    recover_pattern,
    template_for,
)

CN = Identifier("msisdn", "+8613800138000", "hs1 sim0 msisdn")
IMEI = Identifier("imei", "86480402012345" + luhn_digit("86480402012345"), "hs1 imei0")
PATS = patterns_by_form(
    patterns_for([CN, IMEI, Identifier("text", "hello there", "msg"), Identifier("number", "+447700900123", "contact")])
)


def pat(ident: Identifier, form: str) -> Pattern:
    return PATS[(ident, form)]


@pytest.mark.parametrize(
    "form, text",
    [
        ("e164:sha1-hex", "+8613800138000"),
        ("national:md5-base64", "13800138000"),
        ("cc-no-plus:sha256-raw", "8613800138000"),
        ("national:sha1>base64", "13800138000"),  # Base64 of the hex digest's text
        ("e164:utf16le>md5", "+8613800138000"),  # hash of the UTF-16 text
        ("national:base64>sha256", "13800138000"),  # hash of the Base64 text
        ("national:md5>sha1", "13800138000"),  # hash of a hash: whole-recipe path
        ("e164:sha256-base64>url", "+8613800138000"),
    ],
)
def test_a_hashed_chinese_mobile_number_is_recovered_in_its_neighbourhood(form: str, text: str) -> None:
    r = recover_pattern(pat(CN, form), budget_s=30)
    assert r is not None and r.recovered == text
    assert r.space_size == 7 * 10**9  # 1[3-9] and nine free digits
    assert r.template.endswith("1[3-9]xxxxxxxxx")
    assert r.seeded and not r.exhausted
    assert 0 < r.searched <= 10**4  # the first round: the last 4 digits
    assert r.rate_per_s > 0
    assert r.estimated_full_space_seconds == pytest.approx(r.space_size / r.rate_per_s)
    assert "+86" in r.assumed
    assert r.to_dict()["recovered"] == text


def test_an_imei_is_its_tac_six_digits_and_a_luhn_digit() -> None:
    p = pat(IMEI, "sha1-base64url")
    t = template_for(p)
    assert t is not None and t.text == IMEI.value[:8] + "xxxxxxL" and t.size == 10**6
    r = recover_pattern(p, budget_s=30)
    assert r is not None and r.recovered == IMEI.value and luhn_ok(r.recovered)
    assert "TAC" in r.assumed


def test_without_the_known_value_the_space_is_searched_in_order() -> None:
    digest = hashlib.md5(b"138001380427").digest()
    target = HashTarget("md5", (), digest, ("md5-raw",), digest, "national:md5-raw")
    r = recover(target, Template("13800138xxxx"), budget_s=30)
    assert r.recovered == "138001380427" and not r.seeded
    assert r.searched == 428  # 0000 .. 0427 in order
    miss = HashTarget("md5", (), b"\x00" * 16, ("md5-raw",), b"\x00" * 16, "md5-raw")
    r = recover(miss, Template("1380013[5-6]xxxxx"), budget_s=30)
    assert r.recovered is None and r.exhausted and r.searched == r.space_size == 2 * 10**5


def test_the_budget_bounds_the_search_and_says_so() -> None:
    p = pat(CN, "e164:sha1-hex")
    r = recover(hash_target(p), template_for(p), budget_s=0.0)  # unseeded, no time
    assert r.recovered is None and not r.exhausted
    assert r.searched == 10**4  # one batch, then the clock is read
    assert r.estimated_full_space_seconds and r.estimated_full_space_seconds > 0


def test_the_neighbourhood_order_tries_every_candidate_exactly_once() -> None:
    for text, known in (
        ("9[2-4]xxxxx", "9312345"),
        ("x+xxxxL", None),
        ("4xx0xxx", "4120345"),
        ("5xxxxL", "51234" + luhn_digit("51234")),
    ):
        space = _Space(Template(text))
        cands = [c for head, hsum in space.heads(known) for c in space.batch(head, hsum)]
        assert len(cands) == len(set(cands)) == Template(text).size
        if known is not None:
            assert known.encode() in cands[: 10**4]
        if text.endswith("L"):
            assert all(luhn_ok(c.decode().replace("+", "")) for c in cands)
    all_digits = {"".join(p).encode() for p in itertools.product("0123456789", repeat=2)}
    space = _Space(Template("7xx"))
    assert {c[1:] for h, s in space.heads(None) for c in space.batch(h, s)} == all_digits


def test_templates_for_each_kind() -> None:
    uk = Identifier("number", "+447700900123", "contact")
    assert template_for(PATS[(uk, "trunk:md5-hex")]).text == "07xxxxxxxxx"
    assert template_for(PATS[(uk, "e164:md5-hex")]).size == 10**9
    us = patterns_by_form(patterns_for([Identifier("number", "+12025550100")]))
    assert template_for(next(iter(us.values()))).text == "+1[2-9]xx[2-9]xxxxxx"
    imsi = Identifier("imsi", "460001234567890")
    p = patterns_by_form(patterns_for([imsi]))[(imsi, "md5-hex")]
    assert template_for(p).text == "46000" + "x" * 10
    # a number given without its calling code: the variants carry it
    nat = Identifier("number", "13800138000", "contact cn")
    npats = patterns_by_form(patterns_for([nat], country_codes=["86"]))
    assert template_for(npats[(nat, "e164:sha1-hex")]).text == "+861[3-9]xxxxxxxxx"
    assert template_for(npats[(nat, "national:sha1-hex")], country_codes=["86"]).size == 7 * 10**9
    r = recover_pattern(npats[(nat, "e164:md5-hex")], budget_s=30)
    assert r.recovered == "+8613800138000"
    assert Template("x[3-9]L").size == 70
    assert Template("+861[3-9]xxxxxxxxx").fits("+8613800138000")
    assert not Template("+861[3-9]xxxxxxxxx").fits("+8612800138000")
    assert not Template("xxxL").fits("1234")


def test_text_has_no_space_and_forms_without_a_hash_have_no_target() -> None:
    msg = Identifier("text", "hello there", "msg")
    r = recover_pattern(PATS[(msg, "sha1-hex")])
    assert r is not None and r.recovered is None and "free text" in r.note and r.searched == 0
    assert hash_target(pat(CN, "e164:url")) is None
    assert recover_pattern(pat(CN, "e164:base64/1")) is None
    t = hash_target(pat(CN, "national:md5>sha1"))
    assert t is not None and t.prefix is None and t.pre == ()
    t = hash_target(pat(CN, "e164:sha1-base64"))
    # 26 Base64 characters of 20 bytes: the first 24 decode to 18 whole bytes
    assert t.prefix == hashlib.sha1(b"+8613800138000").digest()[:18]


@pytest.mark.parametrize(
    "text, words", [("12[9-3]", "empty range"), ("1L2", "must come last"), ("12[a-b]", "cannot read")]
)
def test_bad_templates_are_refused(text: str, words: str) -> None:
    with pytest.raises(RecoveryError, match=words):
        Template(text).tokens()


def test_a_known_value_outside_the_template_is_refused() -> None:
    p = pat(CN, "e164:sha1-hex")
    with pytest.raises(RecoveryError, match="does not fit"):
        recover(hash_target(p), template_for(p), around="+8612345678901")


def test_demonstrate_gives_the_report_a_json_ready_recovery() -> None:
    d = demonstrate(CN, "sha256", budget=30)
    assert d["recovered"] == "+8613800138000" and d["form"] == "e164:sha256-hex"
    assert d["space_size"] == 7 * 10**9 and d["seeded"]
    d = demonstrate(CN, "md5", budget=30, form="national:md5-base64")
    assert d["recovered"] == "13800138000"
    d = demonstrate(IMEI, "sha1", budget=30, pattern=pat(IMEI, "utf16le>sha1"))
    assert d["recovered"] == IMEI.value
    with pytest.raises(RecoveryError, match="unknown digest 'crc32'"):
        demonstrate(CN, "crc32")
    with pytest.raises(RecoveryError, match="involves no digest"):
        demonstrate(CN, "md5", form="e164:url")
