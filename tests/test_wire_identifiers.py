"""Identifier forms: exact bytes of the documented forms, the number variants, the rules
(minimum length, one pattern per distinct bytes) and agreement with the firmware behaviour's
own protection code."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostctl.model.identity import luhn_digit
from hostctl.model.protections import PROTECTIONS, protect
from hostctl.wire.identifiers import (
    BEHAVIOUR_STEPS,
    MIN_PATTERN_LEN,
    Identifier,
    IdentifierError,
    apply_steps,
    number_variants,
    parse_number,
    patterns_by_form,
    patterns_for,
)

IMEI = "49015420323751" + luhn_digit("49015420323751")
CN = Identifier("msisdn", "+8613800138000", "hs1 sim0 msisdn")
UK = Identifier("number", "+447700900123", "contact")


def form(ident: Identifier, name: str, **kw) -> bytes:
    return patterns_by_form(patterns_for([ident], **kw))[(ident, name)].data


def test_documented_forms_have_the_documented_bytes() -> None:
    assert form(CN, "e164:ascii") == b"+8613800138000"
    assert form(CN, "e164:url") == b"%2B8613800138000"
    assert form(CN, "e164:url-lower") == b"%2b8613800138000"
    assert form(CN, "e164:url-all") == b"%2B%38%36%31%33%38%30%30%31%33%38%30%30%30"
    assert form(CN, "national:url-all") == b"%31%33%38%30%30%31%33%38%30%30%30"
    assert form(CN, "e164:utf16le") == "+8613800138000".encode("utf-16-le")
    assert form(CN, "e164:utf16be") == "+8613800138000".encode("utf-16-be")
    assert form(CN, "e164:HEX") == b"2B38363133383030313338303030"
    assert form(CN, "national:sha1-hex") == hashlib.sha1(b"13800138000").hexdigest().encode()
    assert form(CN, "e164:md5-raw") == hashlib.md5(b"+8613800138000").digest()
    assert form(CN, "e164:sha256-HEX") == hashlib.sha256(b"+8613800138000").hexdigest().upper().encode()
    # base64 of a 16-byte digest: 21 characters depend on the digest alone (no padding)
    assert form(CN, "e164:md5-base64") == base64.b64encode(hashlib.md5(b"+8613800138000").digest())[:21]
    # 23.040 address field: 13 digits, international, swapped semi-octets with F filler
    assert form(CN, "cc-no-plus:tbcd-addr/91") == bytes.fromhex("0d91683108108300f0")
    assert form(CN, "intl00:tbcd") == bytes.fromhex("00683108108300f0")
    ident = Identifier("imei", IMEI)
    last = int(IMEI[-1])
    assert form(ident, "tbcd") == bytes.fromhex("94104502237315") + bytes([0xF0 | last])
    # 24.008 mobile identity: digit 1 | odd | type 2 (IMEI), then digits 2.. as TBCD
    assert form(ident, "tbcd-mi") == bytes.fromhex("4a095124303257") + bytes([last << 4 | 1])
    imsi = Identifier("imsi", "460001234567890")
    assert form(imsi, "tbcd-mi") == bytes.fromhex("4906002143658709")


def test_base64_alignment_k_is_inside_any_base64_blob_holding_the_value() -> None:
    value = b"+8613800138000"
    for k in range(3):
        pat = form(CN, f"e164:base64/{k}")
        url = form(CN, f"e164:base64url/{k}")
        for pre in range(k, 12, 3):
            blob = bytes(range(50, 50 + pre)) + value + b"\xff\xfe\xfd"
            assert pat in base64.b64encode(blob)
            assert url in base64.urlsafe_b64encode(blob)
        # and it depends on nothing else: another prefix and suffix give the same characters
        assert pat in base64.b64encode(b"\x00" * k + value + b"\x00")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=40), st.binary(max_size=40), st.sampled_from(["utf16le", "utf16be"]))
def test_base64_forms_survive_any_context(pre: bytes, post: bytes, enc: str) -> None:
    pats = patterns_by_form(patterns_for([UK]))
    value = b"+447700900123"
    k = len(pre) % 3
    assert pats[(UK, f"e164:base64/{k}")].data in base64.b64encode(pre + value + post)
    text = value.decode().encode("utf-16-le" if enc == "utf16le" else "utf-16-be")
    assert pats[(UK, f"e164:base64-{enc}/{k}")].data in base64.b64encode(pre + text + post)


def test_every_unkeyed_behaviour_protection_is_a_step() -> None:
    expected = {p for p in PROTECTIONS if p != "plain" and not p.startswith("aes-")}
    assert set(BEHAVIOUR_STEPS) == expected


def test_behaviour_combinations_are_what_the_firmware_code_sends() -> None:
    """Every S1>S2 form is (a prefix of, for a final Base64) hostctl.emulator.behaviour's own
    protect(text, [S1, S2]), for every number variant; and every combination the firmware
    can write is there under some name."""
    pats = patterns_for([CN, Identifier("text", "hi 你好, ok?")])
    index = patterns_by_form(pats)
    seen = 0
    for p in pats:
        for name in p.forms:
            tail = name.split(":")[-1]
            if ">" not in tail:
                continue
            steps = tail.split(">")
            sent = protect(p.text, steps).encode("utf-8", "surrogateescape")
            assert sent.startswith(p.data), name
            if not steps[-1].endswith("base64"):
                assert sent == p.data, name
            seen += 1
    for ident, variant, text in ((CN, "national:", "13800138000"), (CN, "e164:", "+8613800138000")):
        for s1 in BEHAVIOUR_STEPS:
            for s2 in BEHAVIOUR_STEPS:
                p = index[(ident, f"{variant}{s1}>{s2}")]
                assert protect(text, [s1, s2]).encode("utf-8", "surrogateescape").startswith(p.data)
    assert seen > 200


def test_number_variants() -> None:
    assert number_variants("+86 138-0013-8000", grouped=False) == {
        "e164": "+8613800138000",
        "cc-no-plus": "8613800138000",
        "intl00": "008613800138000",
        "national": "13800138000",
    }  # no trunk 0 for mobiles
    assert number_variants("+862012345678")["trunk"] == "02012345678"  # Guangzhou landline
    assert number_variants("+447700900123")["trunk"] == "07700900123"
    assert number_variants("+79161234567")["trunk"] == "89161234567"
    assert number_variants("+85251234567", grouped=False).keys() == {"e164", "cc-no-plus", "intl00", "national"}
    assert number_variants("0044 7700 900123") == number_variants("+447700900123")
    assert number_variants("07700900123", ["44"]) == number_variants("+447700900123")
    assert number_variants("13800138000", ["86"]) == number_variants("+8613800138000")
    assert number_variants("13800138000", grouped=False) == {"national": "13800138000"}
    assert number_variants("13800138000")["national/3-4-4/sp"] == "138 0013 8000"
    assert [p.cc for p in parse_number("+12025550100")] == ["1"]
    assert [p.cc for p in parse_number("+8869123456789")] == ["886"]


def test_nanp_trunk_equals_the_country_code_form_and_is_one_pattern() -> None:
    us = Identifier("number", "+12025550100")
    p = patterns_by_form(patterns_for([us]))[(us, "trunk:ascii")]
    assert p.form == "cc-no-plus:ascii" and "trunk:ascii" in p.forms


def test_rules_minimum_length_and_one_pattern_per_distinct_bytes() -> None:
    idents = [
        CN,
        UK,
        Identifier("imei", IMEI),
        Identifier("imsi", "460001234567890"),
        Identifier("iccid", "8986001234567890123" + luhn_digit("8986001234567890123")),
        Identifier("text", "ok"),
        Identifier("number", "+85251234567"),
    ]
    pats = patterns_for(idents)
    assert [p.id for p in pats] == list(range(len(pats)))
    assert all(len(p.data) >= MIN_PATTERN_LEN for p in pats)
    for ident in idents:
        mine = [p.data for p in pats if p.ident == ident]
        assert len(mine) == len(set(mine)), ident
    index = patterns_by_form(pats)
    # url of digits is the ASCII digits: one pattern, both names
    assert index[(CN, "national:url")] is index[(CN, "national:ascii")]
    assert index[(CN, "national:url")].form == "national:ascii"
    # 6-byte bare TBCD of an 11-digit number is under the minimum; its address field is not
    assert (CN, "national:tbcd") not in index
    assert (CN, "national:tbcd-addr/81") in index
    # a 2-letter text keeps only forms long enough: UTF-16 (4 bytes) no, digests yes
    short = {p.form for p in pats if p.ident.value == "ok"}
    assert "ascii" not in short and "utf16le" not in short and "sha1-hex" in short
    # the text-only forms
    hello = Identifier("text", "hi 你好 there")
    tindex = patterns_by_form(patterns_for([hello]))
    assert tindex[(hello, "json")].data == b"hi \\u4f60\\u597d there"
    assert tindex[(hello, "url-form")].data == b"hi+%E4%BD%A0%E5%A5%BD+there"
    assert all(d.ident == hello for d in tindex.values())


def test_ten_identifiers_give_well_over_128_patterns_in_a_stable_order() -> None:
    idents = [Identifier("msisdn", f"+86138001380{i:02d}", f"hs{i}") for i in range(4)] + [
        Identifier("imei", IMEI),
        Identifier("imsi", "460001234567890"),
        Identifier("iccid", "89860012345678901234"),
        UK,
        Identifier("number", "+12025550100"),
        Identifier("text", "see you at 8"),
    ]
    a, b = patterns_for(idents), patterns_for(idents)
    assert len(a) >= 128 * 10
    assert [(p.id, p.form, p.data) for p in a] == [(p.id, p.form, p.data) for p in b]


def test_apply_steps_recomputes_each_pattern_and_refuses_what_does_not_apply() -> None:
    for p in patterns_for([CN, Identifier("text", "hi 你好 there")]):
        assert apply_steps(p.text, p.steps) == p.data, p.form
    assert apply_steps("12ab", ["tbcd"]) is None
    assert apply_steps(b"\xff\xfe", ["utf16le"]) is None


@pytest.mark.parametrize(
    "kind, value, words",
    [
        ("imei", "12345", "IMEI is 14-16 digits"),
        ("imsi", "46000abc", "IMSI is 6-15 digits"),
        ("number", "+86 call me", "not a phone number"),
        ("passport", "X123", "unknown identifier kind 'passport'"),
        ("text", "", "empty value"),
    ],
)
def test_bad_identifiers_are_refused_by_name(kind: str, value: str, words: str) -> None:
    with pytest.raises(IdentifierError, match=words) as info:
        Identifier(kind, value, "hs9 sim1")
    assert str(info.value).startswith("hs9 sim1:")
    with pytest.raises(IdentifierError):
        patterns_for(["+8613800138000"])  # type: ignore[list-item]


def test_long_text_is_looked_for_by_its_first_160_characters_and_hashed_whole() -> None:
    text = "你好, meet me at the station at 8. " * 40  # 1,320 characters
    msg = Identifier("text", text, "long message")
    pats = patterns_for([msg])
    index = patterns_by_form(pats)
    assert index[(msg, "ascii")].data == text[:160].encode()
    assert index[(msg, "sha1-hex")].data == hashlib.sha1(text.encode()).hexdigest().encode()
    assert index[(msg, "base64>md5")].data == hashlib.md5(base64.b64encode(text.encode())).hexdigest().encode()
    assert max(len(p.data) for p in pats) < 4000  # hyperscan's limit, escaped


# --- issue 15: the variants people type and apps print ---------------------------------------------


def test_grouped_numbers_and_imei14_are_found_once_each():
    from hostctl.wire.scan import Scanner

    cn = Identifier("msisdn", "+8613912345678", "cn")
    us = Identifier("msisdn", "+12025550123", "us")
    uk = Identifier("msisdn", "+447700900123", "uk")
    imei = Identifier("imei", "490154203237518", "imei")
    text = (
        b"to=+86 139 1234 5678; alt=139-1234-5678; dot=139.1234.5678; us=(202) 555-0123; "
        b"us2=+1 (202) 555-0123; uk=07700 900123; cc=(+86) 139 1234 5678; "
        b"dev=49015420323751; sv=4901542032375103; no=139 1234 5679"
    )
    got = [(m.ident.label, m.form) for m in Scanner(patterns_for([cn, us, uk, imei]), engine="python").scan(text)]
    assert got == [
        ("cn", "e164/3-4-4/sp:ascii"),
        ("cn", "national/3-4-4/dash:ascii"),
        ("cn", "national/3-4-4/dot:ascii"),
        ("us", "national/3-3-4/paren:ascii"),
        ("us", "e164/3-3-4/paren:ascii"),
        ("uk", "trunk/4-6/sp:ascii"),
        ("cn", "e164/3-4-4/paren-cc:ascii"),
        ("imei", "imei14:ascii"),
        ("imei", "imei14:ascii"),
    ]


def test_grouped_variants_keep_the_chance_guard():
    for p in patterns_for([Identifier("msisdn", "+8613912345678"), Identifier("imei", "490154203237518")]):
        digits = sum(c in b"0123456789" for c in p.data)
        assert len(p.data) >= MIN_PATTERN_LEN
        if p.form.endswith(":ascii"):
            assert digits >= 8, p


def test_grouped_digest_comes_back_through_its_recipe():
    from hostctl.wire import recover

    ident = Identifier("msisdn", "+8613912345678")
    p = next(p for p in patterns_for([ident]) if p.form == "e164/3-4-4/dash:sha1-hex")
    assert p.data == hashlib.sha1(b"+86-139-1234-5678").hexdigest().encode()
    assert recover.template_for(p).text == "+86-1[3-9]x-xxxx-xxxx"
    assert recover.demonstrate(ident, "sha1", budget=5, pattern=p, form=p.form)["recovered"] == "+86-139-1234-5678"
