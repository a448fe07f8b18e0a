"""hostctl.sms: GSM 7-bit, UCS-2, TPDUs and splitting, against published example PDUs.

Sources of the vectors (each test names its own):
- [dreamfabric] Lars Pettersson, "SMS and the PDU format" (dreamfabric.com/sms), the classic
  "hellohello" SMS-SUBMIT and SMS-DELIVER.
- [developershome] developershome.com SMS tutorial, "Reading SMS messages in PDU mode".
- [AOSP] Android Open Source Project, frameworks/opt/telephony
  tests/telephonytests/src/com/android/internal/telephony/GsmSmsTest.java
  (testAddressing, testUcs2, testMultipart, testExtendedCharacterTable, testCPHSVoiceMail).
- [diafaan] Diafaan SMS Server's PDU examples (SMS-SUBMIT with TP-SRR, and its status report),
  as quoted in python-gsmmodem's test_pdu.py.
- [TS 23.040] / [TS 23.038]: the field layouts the structural tests check.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostctl.sms import (
    Address,
    GsmEncodingError,
    PduError,
    SmsDeliver,
    SmsStatusReport,
    SmsSubmit,
    decode,
    encode,
    gsm7,
    split_message,
    ucs2_units,
    validity_from_seconds,
    validity_seconds,
)
from hostctl.sms.pdu import dcs_alphabet


def tz(hours: float) -> timezone:
    return timezone(timedelta(hours=hours))


# --- GSM 7-bit ---------------------------------------------------------------------------------


def test_hellohello_packs_as_in_ts_23038_and_dreamfabric():
    # [dreamfabric] "hellohello" -> E8 32 9B FD 46 97 D9 EC 37 (TS 23.038 6.1.2.1.1 packing)
    assert gsm7.pack(gsm7.encode("hellohello")).hex().upper() == "E8329BFD4697D9EC37"
    assert gsm7.decode(gsm7.unpack(bytes.fromhex("E8329BFD4697D9EC37"), 10)) == "hellohello"


def test_extension_table_costs_two_septets_and_round_trips():
    # [TS 23.038] 6.2.1.1: ^ { } \ [ ~ ] | € and form feed are ESC + code
    text = "^{}\\[~]|€\f"
    assert gsm7.septet_length(text) == 20
    assert gsm7.encode("€") == [0x1B, 0x65]
    assert gsm7.decode(gsm7.encode(text)) == text
    assert gsm7.decode([0x1B, 0x41]) == "A"  # unknown extension code: the basic character
    assert gsm7.decode([0x41, 0x1B]) == "A "  # a lone trailing escape


def test_non_gsm_character_is_named():
    with pytest.raises(GsmEncodingError) as e:
        gsm7.encode("ab\u4e16")
    assert e.value.position == 2 and "U+4E16" in str(e.value)


@given(st.lists(st.integers(0, 127), max_size=200), st.integers(0, 6))
def test_pack_unpack_round_trip(septets, fill):
    assert gsm7.unpack(gsm7.pack(septets, fill), len(septets), fill) == septets


# --- published PDUs ---------------------------------------------------------------------------


def test_dreamfabric_sms_submit_encodes_byte_for_byte():
    # [dreamfabric] AT+CMGS=23 / 0011000B916407281553F80000AA0AE8329BFD4697D9EC37
    pdu = encode(SmsSubmit("+46708251358", "hellohello", validity=0xAA))
    assert pdu.hex == "0011000B916407281553F80000AA0AE8329BFD4697D9EC37"
    assert pdu.tpdu_length == 23
    back = decode(pdu.hex)
    assert isinstance(back, SmsSubmit)
    assert (str(back.recipient), back.text, back.validity, back.smsc) == ("+46708251358", "hellohello", 0xAA, None)
    assert validity_seconds(0xAA) == 4 * 86400


def test_dreamfabric_sms_deliver_decodes():
    # [dreamfabric] SMSC +27381000015, sender 27838890001 (TON subscriber, national plan)
    m = decode("07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37")
    assert isinstance(m, SmsDeliver)
    assert str(m.smsc) == "+27381000015"
    assert (m.sender.number, m.sender.ton, m.sender.npi) == ("27838890001", 4, 8)
    assert m.timestamp == datetime(1999, 3, 29, 15, 16, 59, tzinfo=tz(2))
    assert m.text == "hellohello"
    assert encode(m).hex == "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37"


def test_developershome_deliver_with_positive_zone():
    # [developershome] "It is easy to read text messages via AT commands." (+8 h)
    m = decode(
        "07915892000000F0040B915892214365F700007040213252242331493A283D0795C3F33C88FE06C9CB"
        "6132885EC6D341EDF27C1E3E97E7207B3A0C0A5241E377BB1D7693E72E"
    )
    assert (str(m.smsc), str(m.sender)) == ("+85290000000", "+85291234567")
    assert m.timestamp == datetime(2007, 4, 12, 23, 25, 42, tzinfo=tz(8))
    assert m.text == "It is easy to read text messages via AT commands."


def test_aosp_addressing_negative_zone():
    # [AOSP] GsmSmsTest.testAddressing: SCTS 06-06-06 15:03:03, zone octet 8A = -7 h
    m = decode("07914151551512f2040B916105551511f100006060605130308A04D4F29C0E")
    assert (str(m.smsc), str(m.sender), m.text) == ("+14155551212", "+16505551111", "Test")
    assert m.timestamp == datetime(2006, 6, 6, 15, 3, 3, tzinfo=tz(-7))
    assert encode(m).hex == "07914151551512F2040B916105551511F100006060605130308A04D4F29C0E"


def test_aosp_ucs2():
    # [AOSP] GsmSmsTest.testUcs2
    m = decode("07912160130300F4040B914151245584F600087010807121352B10212200A900AE00680065006C006C006F")
    assert m.coding == "ucs2" and m.text == "\u2122\u00a9\u00aehello"


def test_aosp_multipart_with_fill_bit():
    # [AOSP] GsmSmsTest.testMultipart: UDH 050003 00 02 01 (8-bit ref 0), then a fill bit
    p1 = decode(
        "07916163838408F6440B816105224431F700007060217175830AA0050003"
        "00020162B1582C168BC562B1582C168BC562B1582C168BC562B1582C"
        "168BC562B1582C168BC562B1582C168BC562B1582C168BC562B1582C"
        "168BC562B1582C168BC562B1582C168BC562B1582C168BC562B1582C"
        "168BC562B1582C168BC562B1582C168BC562B1582C168BC562B1582C"
        "168BC562B1582C168BC562B1582C168BC562B1582C168BC562"
    )
    p2 = decode(
        "07916163838408F6440B816105224431F700007060217185000A23050003"
        "00020262B1582C168BC96432994C2693C96432994C2693C96432990C"
    )
    assert p1.concat == (0, 2, 1) and p2.concat == (0, 2, 2) and not p1.concat16
    assert p1.text == "1" * 153
    assert p2.text == "1111111222222222222222222222"
    # our encoder produces the same TPDU for part 2
    again = SmsDeliver(p2.sender, p2.text, p2.timestamp, concat=p2.concat, smsc=p2.smsc)
    assert encode(again).hex == (
        "07916163838408F6440B816105224431F700007060217185000A23050003"
        "00020262B1582C168BC96432994C2693C96432994C2693C96432990C"
    )


def test_aosp_extended_character_table():
    # [AOSP] GsmSmsTest.testExtendedCharacterTable
    m = decode(
        "07914151551512f2040B916105551511f100006080615131728A44D4F29C0E2"
        "AE3E96537B94C068DD16179784C2FCB41F4B0985D06B958ADD00FB0E94536AF9749"
        "74DA6D281BA00E95E26D509B946FC3DBF87A25D56A04"
    )
    assert m.text == "Test extended character table .,-!?@~_\\/&\"';^|:()<{}>[]=%*+#"


def test_aosp_alphanumeric_originator():
    # [AOSP] GsmSmsTest.testCPHSVoiceMail: TP-OA length in semi-octets for TON alphanumeric
    m = decode("07912160130310F20404D0110041006060627171118A0120")
    assert m.sender.ton == 5 and m.sender.number == "_@" and m.text == " "


def test_diafaan_submit_with_status_report_request_and_its_report():
    # [diafaan] SMS-SUBMIT: TP-SRR set, TP-MR 0x0D, TP-VP A9 (3 days), SMSC +31624000000
    m = decode("07911326040000F0310D0B911326880736F40000A90FF7FBDD454E87CDE1B0DB357EB701")
    assert isinstance(m, SmsSubmit) and m.status_report and m.message_ref == 13
    assert (str(m.smsc), str(m.recipient), m.text) == ("+31624000000", "+31628870634", "www.diafaan.com")
    assert validity_seconds(m.validity) == 3 * 86400
    assert encode(m).hex == "07911326040000F0310D0B911326880736F40000A90FF7FBDD454E87CDE1B0DB357EB701"
    # [diafaan] the status report for TP-MR 0xD6
    r = decode("0006D60B911326880736F4111011719551401110117195714000")
    assert isinstance(r, SmsStatusReport)
    assert (r.message_ref, str(r.recipient), r.status, r.delivered) == (214, "+31628870634", 0, True)
    assert r.timestamp == datetime(2011, 1, 11, 17, 59, 15, tzinfo=tz(1))
    assert r.discharge == datetime(2011, 1, 11, 17, 59, 17, tzinfo=tz(1))
    assert encode(r).hex == "0006D60B911326880736F4111011719551401110117195714000"


# --- structure (TS 23.040) ---------------------------------------------------------------------


def test_addresses_international_national_alphanumeric():
    assert encode(SmsSubmit("10086", "x", validity=None)).hex.startswith("00010005810180F6")
    a = Address.parse("MiCloud")
    assert a.ton == 5 and a.toa == 0xD0
    d = SmsDeliver(a, "hi", datetime(2014, 8, 10, 12, 0, tzinfo=tz(8)))
    back = decode(encode(d).hex)
    assert back.sender == a and back.text == "hi"
    assert Address.parse("+86 138-0013-8000").number == "+8613800138000"
    with pytest.raises(PduError):
        Address("12a4x")


def test_16_bit_reference_and_ucs2_round_trip_with_surrogates():
    text = "日本語😀"
    s = SmsSubmit(
        "+8613800138000",
        text,
        coding="ucs2",
        concat=(0x1234, 3, 2),
        message_ref=7,
        status_report=True,
        smsc="+8613800100500",
    )
    pdu = encode(s)
    assert "08041234" + "0302" in pdu.hex  # IEI 0x08, 16-bit reference, parts, sequence
    back = decode(pdu.hex)
    assert back == s


def test_timestamp_zone_encoding_both_signs():
    for hours in (8, -8, 5.75, 0, -3.5):
        d = SmsDeliver("+4915112345678", "z", datetime(2024, 2, 29, 23, 59, 58, tzinfo=tz(hours)))
        assert decode(encode(d).hex).timestamp == d.timestamp
    naive = SmsDeliver("+4915112345678", "z", datetime(2024, 1, 1))
    with pytest.raises(PduError):
        encode(naive)


def test_validity_period_relative_format():
    # [TS 23.040] 9.2.3.12.1
    assert [validity_seconds(v) for v in (0, 143, 144, 167, 168, 196, 197, 255)] == [
        300,
        12 * 3600,
        12 * 3600 + 1800,
        24 * 3600,
        2 * 86400,
        30 * 86400,
        5 * 7 * 86400,
        63 * 7 * 86400,
    ]
    assert validity_from_seconds(24 * 3600) == 167 and validity_from_seconds(3 * 86400) == 169


def test_dcs_groups():
    # [TS 23.038] clause 4
    assert [dcs_alphabet(x) for x in (0x00, 0x04, 0x08, 0x10, 0x18, 0xF0, 0xF4, 0xC0, 0xE0)] == [
        "gsm7",
        "8bit",
        "ucs2",
        "gsm7",
        "ucs2",
        "gsm7",
        "8bit",
        "gsm7",
        "ucs2",
    ]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "0",
        "zz",
        "0011000B916407281553F80000AA0AE8329BFD46",  # truncated user data
        "07917283010010F5040BC872",  # truncated address
        "0003",  # reserved TP-MTI
        "0F9122",  # SMSC field too long
        "0006D60B911326880736F411101171955140111011719571",  # report without TP-ST
    ],
)
def test_garbage_and_truncated_pdus_are_pdu_errors(bad):
    with pytest.raises(PduError):
        decode(bad)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_pdu_error(data):
    try:
        decode(data)
    except PduError:
        pass


# --- splitting ----------------------------------------------------------------------------------


def test_160_septets_is_one_part_161_is_two_of_153_and_8():
    # the same limits as [AOSP] GsmSmsTest.testFragmentText
    assert len(split_message("1" * 160, reference=1)) == 1
    parts = split_message("1" * 161, reference=9)
    assert [len(p.text) for p in parts] == [153, 8]
    assert [p.concat for p in parts] == [(9, 2, 1), (9, 2, 2)]


def test_escape_pair_is_never_split():
    text = "a" * 152 + "€" + "b" * 10  # 164 septets; the escape pair would end at 154
    parts = split_message(text, reference=3)
    assert parts[0].text == "a" * 152 and parts[1].text == "€" + "b" * 10
    assert all(p.units <= 153 for p in parts)


def test_ucs2_70_and_67_units_and_surrogate_pairs_stay_whole():
    assert len(split_message("я" * 70, reference=0)) == 1
    parts = split_message("я" * 71, reference=0)
    assert [p.units for p in parts] == [67, 4] and parts[0].coding == "ucs2"
    text = "я" * 66 + "😀" + "я" * 3  # 71 units; the pair would end at unit 68
    parts = split_message(text, reference=0)
    assert parts[0].text == "я" * 66 and parts[1].text.startswith("😀")
    assert ucs2_units("😀") == 2


@given(
    st.text(
        alphabet=st.sampled_from(list(gsm7.BASIC.replace("\x1b", "")) + list("€[]{}^~|\\") + list("яж日😀")),
        max_size=700,
    ),
    st.integers(0, 255),
)
def test_split_parts_join_back_fit_and_encode(text, ref):
    parts = split_message(text, reference=ref)
    assert "".join(p.text for p in parts) == text
    limit = {"gsm7": 153, "ucs2": 67} if len(parts) > 1 else {"gsm7": 160, "ucs2": 70}
    assert all(p.units <= limit[p.coding] for p in parts)
    for p in parts:  # every part is a valid SMS-SUBMIT
        back = decode(encode(SmsSubmit("+8613800138000", p.text, p.coding, p.concat)).hex)
        assert back.text == p.text and back.concat == p.concat
