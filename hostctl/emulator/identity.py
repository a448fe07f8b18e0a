"""The emulated handset's hardware and SIM identity: IMEIs, IMSIs, ICCIDs, phone numbers.

Everything is derived deterministically from a seed (the handset label, usually), so a lab run is
reproducible and two handsets with different labels never share an identifier.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from hostctl.model.identity import luhn_digit, luhn_ok

__all__ = ["HandsetIdentity", "SimIdentity", "generate_identity", "luhn_digit", "luhn_ok"]

# MCC -> (country calling code, ICCID country code, national-number template).
# In the template each "x" is a seeded digit.
_COUNTRIES: dict[str, tuple[str, str, str]] = {
    "460": ("86", "86", "13800xxxxxx"),
    "310": ("1", "01", "202555xxxx"),
    "311": ("1", "01", "202555xxxx"),
    "234": ("44", "44", "7700900xxx"),
    "262": ("49", "49", "15550xxxxxx"),
    "208": ("33", "33", "6xxxxxxxx"),
    "404": ("91", "91", "98xxxxxxxx"),
    "405": ("91", "91", "98xxxxxxxx"),
    "250": ("7", "70", "9xxxxxxxxx"),
    "454": ("852", "852", "5xxxxxxx"),
    "466": ("886", "886", "9xxxxxxxx"),
    "001": ("999", "99", "xxxxxxxxxx"),  # test network
}
_DEFAULT_COUNTRY = ("999", "99", "xxxxxxxxxx")
_IMEI_TAC = "86480402"  # an 8-digit type allocation code in the China-made range


@dataclass(frozen=True, slots=True)
class SimIdentity:
    slot: int
    imei: str
    imsi: str
    iccid: str
    msisdn: str
    operator_name: str
    mcc_mnc: str

    def __post_init__(self) -> None:
        if len(self.imei) != 15 or not luhn_ok(self.imei):
            raise ValueError(f"slot {self.slot}: IMEI {self.imei!r} is not 15 Luhn-valid digits")
        if not (self.imsi.isdigit() and self.imsi.startswith(self.mcc_mnc)):
            raise ValueError(f"slot {self.slot}: IMSI {self.imsi!r} does not start with {self.mcc_mnc}")
        if not (self.iccid.startswith("89") and luhn_ok(self.iccid)):
            raise ValueError(f"slot {self.slot}: ICCID {self.iccid!r} is not 89... with Luhn")

    @property
    def mcc(self) -> str:
        return self.mcc_mnc[:3]

    @property
    def mnc(self) -> str:
        return self.mcc_mnc[3:]


@dataclass(frozen=True, slots=True)
class HandsetIdentity:
    sims: tuple[SimIdentity, ...]

    @property
    def imeis(self) -> tuple[str, ...]:
        return tuple(s.imei for s in self.sims)

    def to_json(self) -> str:
        return json.dumps({"sims": [asdict(s) for s in self.sims]}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> HandsetIdentity:
        try:
            data = json.loads(text)
            sims = tuple(SimIdentity(**s) for s in data["sims"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"invalid identity JSON: {exc}") from exc
        return cls(sims=sims)


class _Digits:
    """A deterministic stream of decimal digits for one purpose of one seed."""

    def __init__(self, seed: str, purpose: str) -> None:
        self._seed = f"{seed}\x00{purpose}"
        self._counter = 0
        self._buf = ""

    def take(self, n: int) -> str:
        while len(self._buf) < n:
            block = hashlib.sha256(f"{self._seed}\x00{self._counter}".encode()).digest()
            self._counter += 1
            # 0..249 maps evenly onto 0..9; drop the rest to keep digits uniform.
            self._buf += "".join(str(b % 10) for b in block if b < 250)
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


def _fill(template: str, digits: _Digits) -> str:
    return "".join(digits.take(1) if ch == "x" else ch for ch in template)


def generate_identity(seed: str, *, sim_count: int, mcc_mnc: str, operator_name: str) -> HandsetIdentity:
    """A deterministic identity: one SIM (and one IMEI) per slot."""
    if sim_count < 1:
        raise ValueError(f"sim_count must be at least 1, got {sim_count}")
    if not (mcc_mnc.isdigit() and len(mcc_mnc) in (5, 6)):
        raise ValueError(f"mcc_mnc must be 5 or 6 digits, got {mcc_mnc!r}")
    calling_code, iccid_cc, national = _COUNTRIES.get(mcc_mnc[:3], _DEFAULT_COUNTRY)
    # Dual-SIM handsets carry consecutive IMEI serials, as factories allocate them.
    serial = int(_Digits(seed, "imei").take(6))
    sims = []
    for slot in range(sim_count):
        imei_body = _IMEI_TAC + f"{(serial + slot) % 1_000_000:06d}"
        d = _Digits(seed, f"sim{slot}")
        imsi = mcc_mnc + d.take(15 - len(mcc_mnc))
        iccid_body = "89" + iccid_cc + mcc_mnc[3:5]
        iccid_body += d.take(19 - len(iccid_body))
        sims.append(
            SimIdentity(
                slot=slot,
                imei=imei_body + luhn_digit(imei_body),
                imsi=imsi,
                iccid=iccid_body + luhn_digit(iccid_body),
                msisdn=f"+{calling_code}{_fill(national, d)}",
                operator_name=operator_name,
                mcc_mnc=mcc_mnc,
            )
        )
    return HandsetIdentity(sims=tuple(sims))
