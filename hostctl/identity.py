"""Per-SIM identity of a handset: IMEI, IMSI, ICCID, MSISDN, operators — each with its source.

Strategies, in order; a later one fills only what an earlier one left missing or invalid:

1. ``service_call`` — ``service call iphonesubinfo CODE ...`` with the transaction codes of the
   device's release (``hostctl/data/iphonesubinfo.yaml``, chosen by SDK level, vendor tables
   first when their props match) and the calling-package argument newer releases want.
2. ``prop`` — MIUI / vendor system properties (``hostctl/data/identity_props.yaml``).
3. ``dumpsys`` — ``dumpsys iphonesubinfo``, which prints ``Device ID`` up to Android 4.4.
4. ``frida`` — the agent reads TelephonyManager / SubscriptionManager inside
   ``com.android.phone`` when a frida-server (or the emulated lab's portal) is reachable.

Operator names and MCC/MNC always come from ``gsm.sim.operator.*`` / ``gsm.operator.*`` props.
Every value is tagged with where it came from (``"<strategy>:<detail>"``) and whether it
validated; every attempt, failed or not, is kept in :attr:`IdentityReport.attempts`.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from typing import Any, overload

import yaml

from .device import SHELL_PACKAGE, DeviceError, Handset
from .parcel import ParcelError, ParcelExceptionError, ParcelTransactionError, decode_parcel

__all__ = [
    "Attempt",
    "DEFAULT_STRATEGIES",
    "IDENTIFIERS",
    "IdentityError",
    "IdentityReport",
    "SlotIdentity",
    "STRATEGIES",
    "read_identity",
    "redact_text",
    "redact_value",
    "validate",
]

IDENTIFIERS = ("imei", "imsi", "iccid", "msisdn")
STRATEGIES = ("service_call", "prop", "dumpsys", "frida")
# Frida attaches to com.android.phone: intrusive on a real handset, so only when asked for.
DEFAULT_STRATEGIES = ("service_call", "prop", "dumpsys")

# IPhoneSubInfo method stems per identifier, and the variants tried for a slot, best first.
_STEMS = {
    "imei": ("getDeviceId", "getImei"),
    "imsi": ("getSubscriberId",),
    "iccid": ("getIccSerialNumber",),
    "msisdn": ("getLine1Number", "getMsisdn"),
}
_ARG_KINDS = {"phone_id", "sub_id", "sub_id64", "package", "feature"}
_SLOT_ARGS = {"phone_id", "sub_id", "sub_id64"}
_SIM_IDS = {"imsi", "iccid", "msisdn"}  # what a slot without a SIM cannot have


class IdentityError(DeviceError):
    """No strategy produced any identifier; ``report`` holds every attempt."""

    def __init__(self, report: IdentityReport) -> None:
        super().__init__(self.describe_report(report), serial=report.serial)
        self.report = report

    @staticmethod
    def describe_report(report: IdentityReport, redact: bool = False) -> str:
        return f"{report.serial}: no identifier found; tried {report.summary_of_failures(redact)}"

    def describe(self, redact: bool = False) -> str:
        return self.describe_report(self.report, redact)


# --- validation -------------------------------------------------------------------------------


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def validate(kind: str, value: str, mcc_mnc: str | None = None) -> bool | None:
    """Whether an identifier is well formed; None when it cannot be checked.

    IMEI: 15 digits passing Luhn. IMSI: 6-15 digits starting with the SIM's MCC/MNC (None when
    the MCC/MNC is unknown). ICCID: starts with 89, 18-22 digits (a trailing F allowed), and
    passes Luhn when it has a check digit (19 or 20 digits). MSISDN: an optional + and 3-15 digits.
    """
    if kind == "imei":
        return len(value) == 15 and value.isdigit() and _luhn_ok(value)
    if kind == "imsi":
        if not (value.isdigit() and 6 <= len(value) <= 15):
            return False
        return value.startswith(mcc_mnc) if mcc_mnc else None
    if kind == "iccid":
        digits = value[:-1] if value[-1:] in "fF" and len(value) > 1 else value
        if not (digits.isdigit() and digits.startswith("89") and 18 <= len(digits) <= 22):
            return False
        return _luhn_ok(digits) if len(digits) in (19, 20) else True
    if kind == "msisdn":
        return bool(re.fullmatch(r"\+?\d{3,15}", value))
    raise ValueError(f"unknown identifier kind {kind!r}")


_DIGIT_RUN = re.compile(r"\d(?:[.\s-]?\d){4,}")


@overload
def redact_text(text: str) -> str: ...
@overload
def redact_text(text: None) -> None: ...
@overload
def redact_text(text: str | None) -> str | None: ...
def redact_text(text: str | None) -> str | None:
    """Mask every run of 5+ digits (also with the dots of a Parcel dump's ASCII column between)."""
    if text is None:
        return None
    return _DIGIT_RUN.sub(lambda m: re.sub(r"\d", "*", m.group()), text)


def redact_value(value: str | None) -> str | None:
    """Mask all but the last 4 characters: ``***********1234``."""
    if value is None or len(value) <= 4:
        return value
    return "*" * (len(value) - 4) + value[-4:]


# --- results ----------------------------------------------------------------------------------


@dataclass
class Attempt:
    """One try of one strategy: what was asked, and why it did or did not yield a value."""

    strategy: str
    detail: str
    ok: bool
    slot: int | None = None
    field: str | None = None
    error: str | None = None


@dataclass
class SlotIdentity:
    slot: int
    imei: str | None = None
    imsi: str | None = None
    iccid: str | None = None
    msisdn: str | None = None
    sim_operator: str | None = None
    mcc_mnc: str | None = None
    network_operator: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    valid: dict[str, bool | None] = field(default_factory=dict)

    def to_json(self, redact: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if redact:
            for key in IDENTIFIERS:
                data[key] = redact_value(data[key])
        return data


@dataclass
class IdentityReport:
    serial: str
    server: str
    sdk: int | None
    table: str | None
    slots: list[SlotIdentity]
    attempts: list[Attempt]

    @property
    def found(self) -> bool:
        return any(getattr(s, k) for s in self.slots for k in IDENTIFIERS)

    def failures(self) -> list[Attempt]:
        return [a for a in self.attempts if not a.ok]

    def to_json(self, redact: bool = False) -> dict[str, Any]:
        attempts = [asdict(a) for a in self.attempts]
        if redact:  # replies quoted in errors (a damaged dump's ASCII column) may hold digits
            for a in attempts:
                a["detail"], a["error"] = redact_text(a["detail"]), redact_text(a["error"])
        return {
            "serial": self.serial,
            "server": self.server,
            "sdk": self.sdk,
            "table": self.table,
            "slots": [s.to_json(redact) for s in self.slots],
            "attempts": attempts,
        }

    def summary_of_failures(self, redact: bool = False) -> str:
        tried: dict[str, list[str]] = {}
        for a in self.failures():
            tried.setdefault(a.strategy, []).append(
                (f"slot {a.slot} {a.field}: " if a.field else "") + f"{a.detail}: {a.error}"
            )
        text = "; ".join(f"{k} ({len(v)} tried, e.g. {v[0]})" for k, v in tried.items())
        return redact_text(text) if redact else text


# --- data tables ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    name: str
    code: int
    args: tuple[str, ...]


@dataclass(frozen=True)
class SubInfoTable:
    name: str
    release: str
    sdk: tuple[int, int]
    service: str
    methods: dict[str, Method]
    when_props: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def applies(self, sdk: int, props: Mapping[str, str]) -> bool:
        if not self.sdk[0] <= sdk <= self.sdk[1]:
            return False
        return all(props.get(k, "") in v for k, v in self.when_props.items())


def _data_text(name: str) -> str:
    return resources.files("hostctl").joinpath("data", name).read_text(encoding="utf-8")


def _table(entry: Mapping[str, Any]) -> SubInfoTable:
    methods = {name: Method(name, int(m["code"]), tuple(m.get("args", ()))) for name, m in entry["methods"].items()}
    lo, hi = entry["sdk"]
    when = {
        k: tuple(str(x) for x in (v if isinstance(v, list) else [v]))
        for k, v in (entry.get("when_props") or {}).items()
    }
    return SubInfoTable(
        entry["name"],
        str(entry.get("release", "")),
        (int(lo), int(hi)),
        entry.get("service", "iphonesubinfo"),
        methods,
        when,
    )


_LOAD_LOCK = threading.Lock()  # many handsets' threads must not each parse the data files


def _load_yaml(name: str) -> Any:
    return yaml.load(_data_text(name), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@cache
def _subinfo_tables() -> tuple[tuple[SubInfoTable, ...], tuple[SubInfoTable, ...]]:
    data = _load_yaml("iphonesubinfo.yaml")
    return (
        tuple(_table(t) for t in data.get("tables", [])),
        tuple(_table(t) for t in data.get("vendor_tables", []) or []),
    )


def subinfo_tables() -> tuple[tuple[SubInfoTable, ...], tuple[SubInfoTable, ...]]:
    """(AOSP tables, vendor tables) from hostctl/data/iphonesubinfo.yaml."""
    with _LOAD_LOCK:
        return _subinfo_tables()


def tables_for(sdk: int, props: Mapping[str, str]) -> list[SubInfoTable]:
    """The tables to try for a device: matching vendor tables first, then the AOSP one."""
    aosp, vendor = subinfo_tables()
    return [t for t in vendor if t.applies(sdk, props)] + [t for t in aosp if t.applies(sdk, props)]


def identity_props() -> dict[str, dict[str, tuple[str, ...]]]:
    """Per identifier, the props that may carry it (hostctl/data/identity_props.yaml)."""
    with _LOAD_LOCK:
        return _identity_props()


@cache
def _identity_props() -> dict[str, dict[str, tuple[str, ...]]]:
    data = _load_yaml("identity_props.yaml")
    return {
        kind: {"per_slot": tuple(spec.get("per_slot", ()) or ()), "joined": tuple(spec.get("joined", ()) or ())}
        for kind, spec in data.items()
    }


# --- the reader -------------------------------------------------------------------------------


def _slot_count(props: Mapping[str, str]) -> int:
    config = props.get("persist.radio.multisim.config", "").lower()
    count = {"dsds": 2, "dsda": 2, "tsts": 3}.get(config, 1)
    for key in ("ro.telephony.sim.count", "ro.multisim.simslotcount"):
        if props.get(key, "").isdigit():
            count = max(count, int(props[key]))
    state = props.get("gsm.sim.state", "")
    if state:
        count = max(count, len(state.split(",")))
    return count


def _split(value: str, slot: int) -> str | None:
    parts = value.split(",")
    if slot < len(parts) and parts[slot].strip():
        return parts[slot].strip()
    return None


class _Reader:
    def __init__(
        self, handset: Handset, strategies: Sequence[str], frida_device: Any = None, timeout: float | None = None
    ) -> None:
        self.h = handset
        self.strategies = strategies
        self.frida_device = frida_device
        self.timeout = timeout
        self.attempts: list[Attempt] = []
        self.slots: list[SlotIdentity] = []
        self.table: str | None = None
        self.absent: set[int] = set()

    def note(
        self,
        strategy: str,
        detail: str,
        ok: bool,
        slot: int | None = None,
        field: str | None = None,
        error: str | None = None,
    ) -> None:
        self.attempts.append(Attempt(strategy, detail, ok, slot, field, error))

    def offer(self, slot: SlotIdentity, kind: str, value: str | None, source: str) -> str | None:
        """Keep ``value`` unless the slot already has a valid one; None if it was accepted as
        valid, else why not. A value another slot already holds is refused: it is what a
        default-subscription method answers for the wrong slot."""
        if not value:
            return "no value"
        other = next((o.slot for o in self.slots if o is not slot and getattr(o, kind) == value), None)
        if other is not None:
            return f"the same {kind} as slot {other} (an answer for another subscription)"
        ok = validate(kind, value, slot.mcc_mnc)
        current = getattr(slot, kind)
        if current is None or (slot.valid.get(kind) is False and ok is not False):
            setattr(slot, kind, value)
            slot.sources[kind] = source
            slot.valid[kind] = ok
        return None if ok is not False else f"value did not validate as {kind}"

    def missing(self) -> list[tuple[SlotIdentity, str]]:
        return [
            (s, k)
            for s in self.slots
            for k in IDENTIFIERS
            if (getattr(s, k) is None or s.valid.get(k) is False) and not (k in _SIM_IDS and s.slot in self.absent)
        ]

    def run(self) -> IdentityReport:
        props = self.h.getprops(timeout=self.timeout)
        self.note("prop", "getprop", True)
        sdk_text = props.get("ro.build.version.sdk", "")
        sdk = int(sdk_text) if sdk_text.isdigit() else None
        self.slots = [SlotIdentity(slot=i) for i in range(_slot_count(props))]
        self.absent = {
            i for i in range(len(self.slots)) if (_split(props.get("gsm.sim.state", ""), i) or "").upper() == "ABSENT"
        }
        for i in sorted(self.absent):
            self.note("prop", "gsm.sim.state", False, i, None, "no SIM in this slot (ABSENT): only its IMEI is read")
        self.operators(props)
        steps: dict[str, Callable[[], None]] = {
            "service_call": lambda: self.service_call(sdk, props),
            "prop": lambda: self.from_props(props),
            "dumpsys": lambda: self.dumpsys(sdk),
            "frida": self.frida,
        }
        for name in self.strategies:
            if not self.missing():
                break
            steps[name]()
        return IdentityReport(self.h.serial, str(self.h.server), sdk, self.table, self.slots, self.attempts)

    def operators(self, props: Mapping[str, str]) -> None:
        for slot in self.slots:
            for attr, key in (
                ("sim_operator", "gsm.sim.operator.alpha"),
                ("mcc_mnc", "gsm.sim.operator.numeric"),
                ("network_operator", "gsm.operator.alpha"),
            ):
                value = _split(props.get(key, ""), slot.slot)
                if value:
                    setattr(slot, attr, value)
                    slot.sources[attr] = f"prop:{key}"
            if slot.mcc_mnc is not None:
                slot.valid["mcc_mnc"] = bool(re.fullmatch(r"\d{5,6}", slot.mcc_mnc))

    # -- 1. service call --------------------------------------------------------------------------

    def candidates(self, table: SubInfoTable, slot: int, kind: str) -> list[tuple[Method, str]]:
        """(method, argument string) pairs to try for one identifier of one slot, best first.

        Methods that take a phone id or subscription id serve every slot; the others answer for
        the default subscription only, so they serve slot 0, first on single-SIM handsets and
        last on multi-SIM ones (where the default may be another slot).
        """
        addressed, default = [], []
        for stem in _STEMS[kind]:
            for variant in ("ForPhone", "ForSubscriber", "", "WithFeature"):
                method = table.methods.get(stem + variant)
                if method is None or not set(method.args) <= _ARG_KINDS:
                    continue
                if set(method.args) & _SLOT_ARGS:
                    addressed.append((method, _call_args(method.args, slot)))
                elif slot == 0:
                    default.append((method, _call_args(method.args, slot)))
        return addressed + default if len(self.slots) > 1 else default + addressed

    def service_call(self, sdk: int | None, props: Mapping[str, str]) -> None:
        if sdk is None:
            self.note("service_call", "iphonesubinfo", False, error="ro.build.version.sdk unreadable")
            return
        tables = tables_for(sdk, props)
        if not tables:
            self.note("service_call", "iphonesubinfo", False, error=f"no IPhoneSubInfo transaction table for SDK {sdk}")
            return
        for table in tables:
            queues = {(s.slot, k): self.candidates(table, s.slot, k) for s, k in self.missing()}
            for (slot, kind), queue in queues.items():
                if not queue:
                    self.note(
                        "service_call",
                        f"{table.service} ({table.name})",
                        False,
                        slot,
                        kind,
                        f"table {table.name} has no method that reaches slot {slot} for {kind}",
                    )
            while True:
                batch = [(key, queue.pop(0)) for key, queue in queues.items() if queue and self._still_missing(*key)]
                if not batch:
                    break
                commands = [f"service call {table.service} {m.code}{args}" for _, (m, args) in batch]
                results = self.h.batch(commands, timeout=self.timeout)
                if all(_NO_SERVICE.search(r.output) for r in results):
                    self.note(
                        "service_call",
                        f"service call {table.service} ({table.name})",
                        False,
                        error=f"no service {table.service!r} on this device{_first_line(results[0].output)}",
                    )
                    break
                for ((slot_no, kind), (method, _args)), cmd, res in zip(batch, commands, results):
                    self.one_call(table, slot_no, kind, method, cmd, res.output)
            if self.table is None and any(a.ok and a.strategy == "service_call" for a in self.attempts):
                self.table = table.name

    def _still_missing(self, slot_no: int, kind: str) -> bool:
        slot = self.slots[slot_no]
        return getattr(slot, kind) is None or slot.valid.get(kind) is False

    def one_call(self, table: SubInfoTable, slot_no: int, kind: str, method: Method, cmd: str, output: str) -> None:
        detail = f"`{cmd.removeprefix('service call ')}` ({method.name}, {table.name})"
        slot = self.slots[slot_no]
        try:
            value = decode_parcel(output)
        except ParcelExceptionError as exc:
            self.note("service_call", detail, False, slot_no, kind, f"{exc.name}: {exc.message}")
            return
        except ParcelTransactionError as exc:
            self.note(
                "service_call",
                detail,
                False,
                slot_no,
                kind,
                f"transaction failed ({exc.message}); this build's codes differ from {table.name}?",
            )
            return
        except ParcelError as exc:
            self.note("service_call", detail, False, slot_no, kind, f"unreadable reply: {exc}{_first_line(output)}")
            return
        if not value:
            self.note("service_call", detail, False, slot_no, kind, "null string" if value is None else "empty string")
            return
        why = self.offer(slot, kind, value, f"service_call:{table.service}:{method.code}:{method.name}")
        self.note("service_call", detail, why is None, slot_no, kind, why)

    # -- 2. props ---------------------------------------------------------------------------------

    def from_props(self, props: Mapping[str, str]) -> None:
        spec = identity_props()
        for slot, kind in self.missing():
            rules = spec.get(kind, {"per_slot": (), "joined": ()})
            names = [(p.format(slot=slot.slot, slot1=slot.slot + 1), False) for p in rules["per_slot"]]
            names += [(p, True) for p in rules["joined"]]
            tried = []
            for name, joined in names:
                raw = props.get(name)
                if raw is None:
                    continue
                value = _split(raw, slot.slot) if joined else (raw.strip() or None)
                tried.append(name)
                why = self.offer(slot, kind, value, f"prop:{name}") if value else "no value for this slot"
                self.note("prop", name, why is None, slot.slot, kind, why)
                if why is None:
                    break
            if not tried:
                self.note(
                    "prop",
                    "getprop",
                    False,
                    slot.slot,
                    kind,
                    f"none of the {len(names)} known props for {kind} is set"
                    if names
                    else f"no known prop carries {kind} (hostctl/data/identity_props.yaml)",
                )

    # -- 3. dumpsys -------------------------------------------------------------------------------

    def dumpsys(self, sdk: int | None) -> None:
        wanted = [(s, k) for s, k in self.missing() if k == "imei"]
        if not wanted:
            return
        try:
            out = self.h.shell("dumpsys iphonesubinfo", timeout=self.timeout).output
        except DeviceError as exc:
            self.note("dumpsys", "dumpsys iphonesubinfo", False, error=str(exc))
            return
        ids = re.findall(r"^\s*Device ID\s*=\s*(\S+)\s*$", out, re.M)
        if not ids:
            missing = "no `Device ID` line" + (
                f" (Android SDK {sdk} prints none after 4.4)" if sdk and sdk > 19 else ""
            )
            self.note("dumpsys", "dumpsys iphonesubinfo", False, error=missing + _first_line(out))
            return
        for slot, _kind in wanted:
            value = ids[slot.slot] if slot.slot < len(ids) else None
            if value is None:
                self.note(
                    "dumpsys", "dumpsys iphonesubinfo", False, slot.slot, "imei", f"only {len(ids)} Device ID line(s)"
                )
                continue
            why = self.offer(slot, "imei", value, "dumpsys:iphonesubinfo")
            self.note("dumpsys", "dumpsys iphonesubinfo", why is None, slot.slot, "imei", why)

    # -- 4. frida ---------------------------------------------------------------------------------

    def frida(self) -> None:
        from . import frida_identity

        try:
            rows = frida_identity.read_telephony(self.h, device=self.frida_device, timeout=self.timeout or 20.0)
        except frida_identity.FridaIdentityError as exc:
            self.note("frida", "com.android.phone TelephonyManager", False, error=str(exc))
            return
        for slot in self.slots:
            row = rows.get(slot.slot, {})
            for kind in IDENTIFIERS:
                value = row.get(kind)
                if value and self._still_missing(slot.slot, kind):
                    why = self.offer(slot, kind, value, f"frida:{row.get(kind + '_via', 'TelephonyManager')}")
                    self.note("frida", "com.android.phone TelephonyManager", why is None, slot.slot, kind, why)
            for attr, key in (("sim_operator", "sim_operator"), ("mcc_mnc", "mcc_mnc")):
                if getattr(slot, attr) is None and row.get(key):
                    setattr(slot, attr, row[key])
                    slot.sources[attr] = "frida:SubscriptionInfo"
            for err in row.get("errors", []):
                self.note("frida", "com.android.phone TelephonyManager", False, slot.slot, None, err)


_NO_SERVICE = re.compile(r"Service \S+ does not exist|Can't find service")


def _call_args(kinds: Iterable[str], slot: int) -> str:
    kinds = list(kinds)
    while kinds and kinds[-1] == "feature":
        kinds.pop()  # a string read past the end of a Parcel is null, as wanted
    parts = []
    for kind in kinds:
        parts.append(
            {
                "phone_id": f"i32 {slot}",
                "sub_id": f"i32 {slot + 1}",
                "sub_id64": f"i64 {slot + 1}",
                "package": f"s16 {SHELL_PACKAGE}",
                "feature": "i32 -1",
            }[kind]
        )  # i32 -1 is how a Parcel writes a null string
    return "".join(" " + p for p in parts)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return f"; it printed: {line[:120]}" if line else "; it printed nothing"


def read_identity(
    handset: Handset,
    *,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    frida_device: Any = None,
    timeout: float | None = None,
    require: bool = True,
) -> IdentityReport:
    """Read every SIM slot's identity; raise IdentityError (with the report) if nothing was found."""
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; known: {', '.join(STRATEGIES)}")
    report = _Reader(handset, strategies, frida_device, timeout).run()
    if require and not report.found:
        raise IdentityError(report)
    return report


def identifier_hash(value: str) -> str:
    """A stable reference for a redacted identifier (first 12 hex of its SHA-256)."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]
