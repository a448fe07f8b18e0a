"""Handset identity: valid identifiers, deterministic from the seed."""

import pytest

from hostctl.emulator.identity import HandsetIdentity, SimIdentity, generate_identity, luhn_digit, luhn_ok


def test_luhn_known_values() -> None:
    assert luhn_digit("7992739871") == "3"
    assert luhn_ok("79927398713")
    assert not luhn_ok("79927398710")
    assert luhn_ok("490154203237518")  # a published example IMEI
    assert not luhn_ok("49015420323751a")


@pytest.mark.parametrize("seed", ["bench-a", "bench-b", "", "x" * 50])
def test_generated_identity_is_valid(seed: str) -> None:
    ident = generate_identity(seed, sim_count=2, mcc_mnc="46000", operator_name="CHINA MOBILE")
    assert [s.slot for s in ident.sims] == [0, 1]
    for sim in ident.sims:
        assert len(sim.imei) == 15 and sim.imei.isdigit() and luhn_ok(sim.imei)
        assert len(sim.imsi) == 15 and sim.imsi.startswith("46000")
        assert sim.iccid.startswith("8986") and len(sim.iccid) == 20 and luhn_ok(sim.iccid)
        assert sim.msisdn.startswith("+8613800") and len(sim.msisdn) == 14
        assert sim.operator_name == "CHINA MOBILE"
    assert ident.sims[0].imei != ident.sims[1].imei
    assert ident.sims[0].imsi != ident.sims[1].imsi


def test_deterministic_and_distinct() -> None:
    a1 = generate_identity("a", sim_count=1, mcc_mnc="46000", operator_name="CM")
    a2 = generate_identity("a", sim_count=1, mcc_mnc="46000", operator_name="CM")
    b = generate_identity("b", sim_count=1, mcc_mnc="46000", operator_name="CM")
    assert a1 == a2
    assert a1.sims[0].imei != b.sims[0].imei and a1.sims[0].msisdn != b.sims[0].msisdn


def test_other_country_and_json_round_trip() -> None:
    ident = generate_identity("us", sim_count=1, mcc_mnc="310260", operator_name="T-Mobile")
    sim = ident.sims[0]
    assert sim.imsi.startswith("310260") and sim.msisdn.startswith("+1")
    assert HandsetIdentity.from_json(ident.to_json()) == ident


def test_invalid_identity_rejected() -> None:
    with pytest.raises(ValueError, match="IMEI"):
        SimIdentity(0, "123456789012345", "46000123", "8986001", "+86", "x", "46000")
    with pytest.raises(ValueError):
        HandsetIdentity.from_json("{}")
    with pytest.raises(ValueError):
        generate_identity("a", sim_count=0, mcc_mnc="46000", operator_name="x")
