"""Firmware profiles: data files that describe one MIUI build as the emulated handset shows it.

A profile is a YAML mapping. Shipped profiles live in ``hostctl/emulator/profiles/<name>.yaml``;
``load_profile`` also accepts any path. Unknown keys are errors, and every error names the file
and the key path (``profile x.yaml: iphonesubinfo.getDeviceId: expected integer, got 'a'``); a
value inherited through ``extends`` is reported against the file that set it.

Schema (``*`` = required)::

    extends: str                    # inherit from another profile (see "Inheritance" below)
    name*: str                      # profile id, e.g. miui-v5-2014-07
    description: str
    android_release*: str           # ro.build.version.release, "4.4.4"
    sdk*: int                       # ro.build.version.sdk, 19
    miui_version_name*: str         # ro.miui.ui.version.name, "V5"
    miui_version_code*: int         # ro.miui.ui.version.code
    product*:                       # ro.product.* (banner values must not contain ':;=')
      name*: str                    #   ro.product.name
      model*: str                   #   ro.product.model
      device*: str                  #   ro.product.device
      brand: str                    #   ro.product.brand (default Xiaomi)
      manufacturer: str             #   ro.product.manufacturer (default Xiaomi)
      marketname: str               #   ro.product.marketname
      mod_device: str               #   ro.product.mod_device
    build_fingerprint*: str         # ro.build.fingerprint
    build_id: str                   # ro.build.id
    build_incremental: str          # ro.build.version.incremental
    props: {str: str}               # extra system properties, verbatim
    iphonesubinfo: {method: int}    # transaction codes of IPhoneSubInfo, in the build's AIDL order;
                                    # codes are unique; {} = every `service call iphonesubinfo N`
                                    # fails as an unknown transaction
    iphonesubinfo_msim: {method: int}
                                    # Qualcomm/CAF dual-SIM KitKat builds also register
                                    # `iphonesubinfo_msim` (IPhoneSubInfoMSim): codes of its
                                    # methods, each taking the 0-based slot as its one int.
                                    # Absent or {} = no such service
    iphonesubinfo_args: {method: [kind, ...]}
                                    # the method's AIDL parameters, in order (default: none). kind:
                                    #   phone_id  int, 0-based SIM slot
                                    #   sub_id    int, subscription id (slot + 1 on the handset)
                                    #   sub_id64  long, subscription id (Android 5.0's AIDL)
                                    #   package   String callingPackage
                                    #   feature   String callingFeatureId (Android 11)
                                    #   i32 / i64 / s16  any other int / long / String argument
                                    # `service call` arguments are laid out in a Parcel and read
                                    # back with these types as libbinder would: an i64 where an
                                    # int is read gives its low word (the high word is read next),
                                    # missing data reads as 0 / null. An id that names no SIM falls
                                    # back to slot 0, as AOSP's PhoneSubInfoController does.
    iphonesubinfo_needs_package: bool
                                    # a method with a `package` parameter called without a string
                                    # there replies with a SecurityException; a method without an
                                    # iphonesubinfo_args entry then takes [package]
    iphonesubinfo_reply: normal | empty | null | denied
                                    # what every call that maps to a method returns (default
                                    # normal: the identifier): empty = a zero-length string with no
                                    # terminator (MediaTek-style `00000000 00000000`), null = a null
                                    # string, denied = a SecurityException parcel (EX_SECURITY, the
                                    # message, and from SDK 28 the empty remote-stack-trace header).
                                    # The package check comes first; void and Parcelable-returning
                                    # methods (set/reset/getCarrierInfoForImsiEncryption) reply
                                    # with no string
    identity_props: {prop: template}
                                    # props that expose identifiers: str.format templates over the
                                    # lists imei, imsi, iccid, msisdn indexed by slot, e.g.
                                    # "{imsi[0]},{imsi[1]}". Absent: ro.ril.miui.imei<slot>,
                                    # ro.ril.oem.imei<slot+1>, persist.radio.imei<slot+1> and
                                    # ro.ril.oem.imei (comma-joined). {} = none
    dumpsys_iphonesubinfo: bool     # `dumpsys iphonesubinfo` prints Device ID (default sdk <= 19)
    adbd_features: [str]            # features in adbd's CNXN banner (default: those the sdk's
                                    # adbd advertised, adb/connection.py FEATURE_SINCE_SDK). [] = a pre-7.0 adbd: a ';'-terminated banner with
                                    # no features key, so `adb shell` takes the v1 path: every
                                    # shell on a pty (CRLF line ends, stderr merged), no exit
                                    # status; "shell,v2:..." services are refused
    su: bool                        # /system/xbin/su: `su -c CMD` runs CMD as uid 0 in the
                                    # emulated shell (never on the host)
    packages: {package: apk path}   # what `pm list packages -f` / `pm path` show
    service_permissions: {"pkg/cls": permission}   # services the shell may not start
    default_settings: {system: {k: v}, secure: {k: v}, global: {k: v}}
    sim_count: int                  # 1 or 2 (default 1)
    sim_sub_ids: [int]              # each slot's subscription id, as MIUI's sms rows store it in
                                    # `sim_id` (real MIUI rows show 1, 2 and 7: ids grow as SIMs
                                    # are inserted); default slot + 1. One distinct id >= 1 per slot
                                    # (extra ids, e.g. inherited from a dual-SIM parent, are dropped)
    ui_paths: {path: verified | unverified}
                                    # how well each emulated route to the Cloud Messaging switch is
                                    # grounded: messaging_settings (Messaging > Settings, from the
                                    # decompiled MIUI Mms resources) and micloud (Settings > Mi
                                    # Cloud > Cloud Messaging, from Xiaomi's 2014 announcement
                                    # only: no published screen). Default: both as just said.
                                    # The screens' language follows the props: persist.sys.locale,
                                    # persist.sys.language/country, ro.product.locale,
                                    # ro.product.locale.language/region (set one in props to switch)
    input_injection_blocked: bool   # MIUI "USB debugging (Security settings)" off
    carrier: {operator_name: str, mcc_mnc: str}   # default SIM operator
    behaviour: {...}                # what the build's Messaging app sends, and when: parsed
                                    # and validated by hostctl/emulator/behaviour.py (schema in
                                    # its docstring); absent or {} = sends nothing
    audit_expectations: {check id: PASS | FAIL | NOT-TESTABLE}
                                    # the verdict `hostctl audit` must reach on a lab running this
                                    # build, per check id of hostctl.report.CHECK_IDS (an unknown
                                    # id is an error). hw_tests asserts each one, so a check that
                                    # can never fail shows up as a mismatch; a check left out is
                                    # not asserted (skipped). Absent = {}. Tied to `behaviour`
                                    # under `extends` (see "Inheritance")

Inheritance: ``extends`` names a shipped profile, or (when it contains "/" or ends in .yaml/.yml)
a file path relative to the extending file. The parent (itself possibly extending another) is
deep-merged under the child: mappings merge key by key with the child winning, a child's ``null``
removes the key, an empty mapping ``{}`` replaces the parent's mapping, and lists and scalars are
replaced. ``behaviour`` is the exception: a child that sets it replaces the parent's whole (a
build's traffic is described in one place, so an OTA never inherits an event it did not list);
a child that does not set it inherits the parent's. ``audit_expectations`` follows
``behaviour``, whose verdicts they are: a child that sets it replaces the parent's whole, and a
child that sets its own ``behaviour`` without it has none (an inherited verdict would be about
traffic the child no longer sends). The child must set its own ``name``. Cycles are errors.
"""

from __future__ import annotations

import difflib
import re
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..report import CHECK_IDS, STATUSES
from .adb.connection import DEFAULT_FEATURES, features_for_sdk
from .behaviour import Behaviour, parse_behaviour

__all__ = [
    "FirmwareProfile",
    "ProductInfo",
    "ProfileError",
    "default_identity_props",
    "list_profiles",
    "load_profile",
]

_PROFILE_PACKAGE = "hostctl.emulator"
_PROFILE_DIR = "profiles"
_BANNER_FORBIDDEN = re.compile(r"[:;=]")
_NAMESPACES = ("system", "secure", "global")
IPHONESUBINFO_REPLIES = ("normal", "empty", "null", "denied")
# AIDL parameter kinds of iphonesubinfo_args -> the Parcel type they are read as
ARG_KINDS = {"phone_id": "i32", "sub_id": "i32", "sub_id64": "i64", "package": "s16",
             "feature": "s16", "i32": "i32", "i64": "i64", "s16": "s16"}
IDENTITY_LISTS = ("imei", "imsi", "iccid", "msisdn")
# Routes to the Cloud Messaging switch: Messaging > Settings is taken from the decompiled MIUI Mms
# resources; the Mi Cloud route only from the 2014 announcement (no published screen or code).
DEFAULT_UI_PATHS = {"messaging_settings": "verified", "micloud": "unverified"}
_TEMPLATE_FIELD = re.compile(r"(imei|imsi|iccid|msisdn)\[(\d+)\]")
_FEATURE = re.compile(r"[A-Za-z0-9_.-]+")


class ProfileError(ValueError):
    """A profile file that cannot be loaded; the message names the file and the bad key path."""


@dataclass(frozen=True, slots=True)
class ProductInfo:
    name: str
    model: str
    device: str
    brand: str = "Xiaomi"
    manufacturer: str = "Xiaomi"
    marketname: str = ""
    mod_device: str = ""


def default_identity_props(sim_count: int) -> dict[str, str]:
    """The identity props of a profile without ``identity_props``: MIUI/Qualcomm IMEI props."""
    props = {"ro.ril.oem.imei": ",".join(f"{{imei[{i}]}}" for i in range(sim_count))}
    for i in range(sim_count):
        props[f"ro.ril.miui.imei{i}"] = f"{{imei[{i}]}}"
        props[f"ro.ril.oem.imei{i + 1}"] = f"{{imei[{i}]}}"
        props[f"persist.radio.imei{i + 1}"] = f"{{imei[{i}]}}"
    return props


@dataclass(frozen=True)
class FirmwareProfile:
    name: str
    android_release: str
    sdk: int
    miui_version_name: str
    miui_version_code: int
    product: ProductInfo
    build_fingerprint: str
    description: str = ""
    build_id: str = ""
    build_incremental: str = ""
    props: dict[str, str] = field(default_factory=dict)
    iphonesubinfo: dict[str, int] = field(default_factory=dict)
    iphonesubinfo_needs_package: bool = False
    iphonesubinfo_args: dict[str, tuple[str, ...]] = field(default_factory=dict)
    iphonesubinfo_reply: str = "normal"
    iphonesubinfo_msim: dict[str, int] = field(default_factory=dict)
    identity_props: dict[str, str] | None = None     # None: default_identity_props(...)
    dumpsys_iphonesubinfo: bool = False
    adbd_features: tuple[str, ...] = DEFAULT_FEATURES
    su: bool = False
    packages: dict[str, str] = field(default_factory=dict)
    service_permissions: dict[str, str] = field(default_factory=dict)
    default_settings: dict[str, dict[str, str]] = field(default_factory=dict)
    sim_count: int = 1
    sim_sub_ids: tuple[int, ...] = ()                 # () = slot + 1
    ui_paths: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_UI_PATHS))
    input_injection_blocked: bool = False
    operator_name: str = "CHINA MOBILE"
    mcc_mnc: str = "46000"
    behaviour: Behaviour = field(default_factory=Behaviour)
    audit_expectations: dict[str, str] = field(default_factory=dict)   # check id -> verdict
    source: str = ""

    # Convenience views the handset and tests use.
    @property
    def product_name(self) -> str:
        return self.product.name

    @property
    def product_model(self) -> str:
        return self.product.model

    @property
    def product_device(self) -> str:
        return self.product.device

    @property
    def cloud_messaging_default(self) -> bool:
        return self.default_settings.get("secure", {}).get("cloud_messaging_on", "0") == "1"

    def sub_id(self, slot: int) -> int:
        """The subscription id of a 0-based SIM slot (what MIUI's sms rows keep in ``sim_id``)."""
        return self.sim_sub_ids[slot] if slot < len(self.sim_sub_ids) else slot + 1

    def slot_of_sub_id(self, sub_id: int) -> int | None:
        return next((s for s in range(self.sim_count) if self.sub_id(s) == sub_id), None)

    def iphonesubinfo_method(self, code: int) -> str | None:
        """The IPhoneSubInfo method name a transaction code calls on this build, if any."""
        for method, value in self.iphonesubinfo.items():
            if value == code:
                return method
        return None

    def iphonesubinfo_arg_kinds(self, method: str) -> tuple[str, ...]:
        """The method's parameter kinds (see iphonesubinfo_args in the module docstring)."""
        if method in self.iphonesubinfo_args:
            return self.iphonesubinfo_args[method]
        return ("package",) if self.iphonesubinfo_needs_package else ()

    def identity_prop_templates(self, sim_count: int | None = None) -> dict[str, str]:
        """Identity prop templates in effect (the default set for ``sim_count`` slots)."""
        if self.identity_props is not None:
            return dict(self.identity_props)
        return default_identity_props(self.sim_count if sim_count is None else sim_count)


# --- validation helpers -----------------------------------------------------------------------


class _Checker:
    def __init__(self, source: str, origins: dict[str, str] | None = None) -> None:
        self.source = source
        self.origins = origins or {}

    def fail(self, path: str, message: str) -> ProfileError:
        # A value inherited through `extends` is blamed on the file that set it.
        source = self.origins.get(path) or self.origins.get(path.split("[", 1)[0]) or self.source
        return ProfileError(f"profile {source}: {path}: {message}")

    def mapping(self, value: Any, path: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected mapping, got {value!r}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(f"{path}.{key}" if path else str(key), "keys must be strings")
        return value

    def string(self, value: Any, path: str) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(path, f"expected string, got {value!r}")
        return str(value)

    def integer(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected integer, got {value!r}")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected boolean, got {value!r}")
        return value

    def str_list(self, value: Any, path: str) -> list[str]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected list, got {value!r}")
        return [self.string(v, f"{path}[{i}]") for i, v in enumerate(value)]

    def known_keys(self, data: dict, allowed: set[str], required: set[str], prefix: str) -> None:
        for key in data:
            if key not in allowed:
                raise self.fail(f"{prefix}{key}", "unknown key")
        for key in sorted(required):
            if key not in data:
                raise ProfileError(f"profile {self.source}: {prefix}{key}: missing required key")

    def str_map(self, value: Any, path: str) -> dict[str, str]:
        data = self.mapping(value, path)
        return {k: self.string(v, f"{path}.{k}") for k, v in data.items()}


_TOP_REQUIRED = {"name", "android_release", "sdk", "miui_version_name", "miui_version_code",
                 "product", "build_fingerprint"}
_TOP_ALLOWED = _TOP_REQUIRED | {
    "description", "build_id", "build_incremental", "props", "iphonesubinfo",
    "iphonesubinfo_needs_package", "iphonesubinfo_args", "iphonesubinfo_reply", "iphonesubinfo_msim",
    "identity_props",
    "dumpsys_iphonesubinfo", "adbd_features", "su", "packages", "service_permissions",
    "default_settings", "sim_count", "input_injection_blocked", "carrier", "behaviour",
    "audit_expectations", "sim_sub_ids", "ui_paths"}
_PRODUCT_REQUIRED = {"name", "model", "device"}
_PRODUCT_ALLOWED = _PRODUCT_REQUIRED | {"brand", "manufacturer", "marketname", "mod_device"}


def _parse_codes(c: _Checker, top: dict, key: str = "iphonesubinfo") -> dict[str, int]:
    raw = top.get(key)
    codes = {k: c.integer(v, f"{key}.{k}")
             for k, v in c.mapping({} if raw is None else raw, key).items()}
    seen: dict[int, str] = {}
    for method, code in codes.items():
        if code < 1:
            raise c.fail(f"{key}.{method}", f"transaction codes start at 1, got {code}")
        if code in seen:
            raise c.fail(f"{key}.{method}",
                         f"code {code} is already {seen[code]}'s (codes are unique)")
        seen[code] = method
    return codes


def _parse_args(c: _Checker, top: dict, codes: dict[str, int]) -> dict[str, tuple[str, ...]]:
    raw = top.get("iphonesubinfo_args")
    table = c.mapping({} if raw is None else raw, "iphonesubinfo_args")
    result: dict[str, tuple[str, ...]] = {}
    for method, kinds in table.items():
        path = f"iphonesubinfo_args.{method}"
        if method not in codes:
            raise c.fail(path, "not a method of the iphonesubinfo table")
        kinds = c.str_list(kinds, path)
        for i, kind in enumerate(kinds):
            if kind not in ARG_KINDS:
                raise c.fail(f"{path}[{i}]", f"expected one of {', '.join(ARG_KINDS)}, "
                                             f"got {kind!r}")
        if sum(k in ("phone_id", "sub_id", "sub_id64") for k in kinds) > 1:
            raise c.fail(path, "at most one of phone_id, sub_id, sub_id64")
        result[method] = tuple(kinds)
    return result


def _parse_identity_props(c: _Checker, top: dict, sim_count: int) -> dict[str, str] | None:
    raw = top.get("identity_props")
    if raw is None:
        return None
    props = c.str_map(raw, "identity_props")
    for prop, template in props.items():
        path = f"identity_props.{prop}"
        if not prop or any(ch.isspace() for ch in prop):
            raise c.fail(path, "not a property name")
        try:
            fields = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise c.fail(path, f"bad template {template!r}: {exc}") from exc
        for _literal, name, spec, conversion in fields:
            if name is None:
                continue
            m = _TEMPLATE_FIELD.fullmatch(name)
            if not m or spec or conversion:
                raise c.fail(path, f"bad template field {{{name}}}: expected one of "
                                   f"{', '.join(IDENTITY_LISTS)} indexed by slot, e.g. {{imei[0]}}")
            if int(m.group(2)) >= sim_count:
                raise c.fail(path, f"{{{name}}} names slot {m.group(2)} but the profile has "
                                   f"{sim_count} SIM slot{'s' if sim_count > 1 else ''}")
    return props


def _parse_features(c: _Checker, top: dict, sdk: int) -> tuple[str, ...]:
    if top.get("adbd_features") is None:
        return features_for_sdk(sdk)
    features = c.str_list(top["adbd_features"], "adbd_features")
    for i, feature in enumerate(features):
        if not _FEATURE.fullmatch(feature):
            raise c.fail(f"adbd_features[{i}]", f"not a feature name: {feature!r}")
    return tuple(features)


def _parse_expectations(c: _Checker, top: dict) -> dict[str, str]:
    """``audit_expectations``: check id -> the verdict the audit must reach on this build."""
    raw = top.get("audit_expectations")
    table = c.mapping({} if raw is None else raw, "audit_expectations")
    expectations: dict[str, str] = {}
    for check_id, verdict in table.items():
        path = f"audit_expectations.{check_id}"
        if check_id not in CHECK_IDS:
            close = difflib.get_close_matches(check_id, CHECK_IDS, n=1)
            raise c.fail(path, "not an audit check id" + (f"; did you mean {close[0]!r}?" if close else "")
                         + f" (known: {', '.join(CHECK_IDS)})")
        if verdict not in STATUSES:
            raise c.fail(path, f"expected one of {', '.join(STATUSES)}, got {verdict!r}")
        expectations[check_id] = verdict
    return expectations


def _parse(data: Any, source: str, origins: dict[str, str] | None = None) -> FirmwareProfile:
    c = _Checker(source, origins)
    top = c.mapping(data, "(top level)")
    c.known_keys(top, _TOP_ALLOWED, _TOP_REQUIRED, "")

    prod = c.mapping(top["product"], "product")
    c.known_keys(prod, _PRODUCT_ALLOWED, _PRODUCT_REQUIRED, "product.")
    product_fields = {k: c.string(v, f"product.{k}") for k, v in prod.items()}
    for key in ("name", "model", "device"):
        if not product_fields[key] or "\n" in product_fields[key]:
            raise c.fail(f"product.{key}", "must be a non-empty single line")
    product = ProductInfo(**product_fields)

    codes = _parse_codes(c, top)

    settings_raw = c.mapping(top.get("default_settings", {}), "default_settings")
    c.known_keys(settings_raw, set(_NAMESPACES), set(), "default_settings.")
    settings = {ns: c.str_map(settings_raw.get(ns, {}), f"default_settings.{ns}")
                for ns in _NAMESPACES}

    carrier = c.mapping(top.get("carrier", {}), "carrier")
    c.known_keys(carrier, {"operator_name", "mcc_mnc"}, set(), "carrier.")
    operator_name = c.string(carrier.get("operator_name", "CHINA MOBILE"), "carrier.operator_name")
    mcc_mnc = c.string(carrier.get("mcc_mnc", "46000"), "carrier.mcc_mnc")
    if not re.fullmatch(r"\d{5,6}", mcc_mnc):
        raise c.fail("carrier.mcc_mnc", f"expected 5 or 6 digits, got {mcc_mnc!r}")

    sim_count = c.integer(top.get("sim_count", 1), "sim_count")
    if sim_count not in (1, 2):
        raise c.fail("sim_count", f"expected 1 or 2, got {sim_count}")

    sub_ids = top.get("sim_sub_ids", [])
    if not isinstance(sub_ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 1
                                                for i in sub_ids):
        raise c.fail("sim_sub_ids", f"expected a list of integers >= 1, got {sub_ids!r}")
    if sub_ids and (len(sub_ids) < sim_count or len(set(sub_ids)) != len(sub_ids)):
        raise c.fail("sim_sub_ids", f"expected {sim_count} distinct ids (one per slot), got {sub_ids!r}")
    sub_ids = sub_ids[:sim_count]        # a single-SIM child of a dual-SIM parent keeps the first
    ui_paths = dict(DEFAULT_UI_PATHS, **c.str_map(top.get("ui_paths", {}), "ui_paths"))
    for key, value in ui_paths.items():
        if key not in DEFAULT_UI_PATHS or value not in ("verified", "unverified"):
            raise c.fail(f"ui_paths.{key}", f"expected one of {sorted(DEFAULT_UI_PATHS)} set to "
                                            f"verified or unverified, got {value!r}")

    sdk = c.integer(top["sdk"], "sdk")
    reply = c.string(top.get("iphonesubinfo_reply", "normal"), "iphonesubinfo_reply")
    if reply not in IPHONESUBINFO_REPLIES:
        raise c.fail("iphonesubinfo_reply", f"expected one of {', '.join(IPHONESUBINFO_REPLIES)},"
                                            f" got {reply!r}")

    cm_key = "default_settings.secure.cloud_messaging_on"
    behaviour = parse_behaviour(
        top.get("behaviour"), c.origins.get("behaviour", source),
        cloud_messaging_on=settings["secure"].get("cloud_messaging_on", "0") == "1",
        setting_source=c.origins.get(cm_key, source))

    return FirmwareProfile(
        name=c.string(top["name"], "name"),
        description=c.string(top.get("description", ""), "description"),
        android_release=c.string(top["android_release"], "android_release"),
        sdk=sdk,
        miui_version_name=c.string(top["miui_version_name"], "miui_version_name"),
        miui_version_code=c.integer(top["miui_version_code"], "miui_version_code"),
        product=product,
        build_fingerprint=c.string(top["build_fingerprint"], "build_fingerprint"),
        build_id=c.string(top.get("build_id", ""), "build_id"),
        build_incremental=c.string(top.get("build_incremental", ""), "build_incremental"),
        props=c.str_map(top.get("props", {}), "props"),
        iphonesubinfo=codes,
        iphonesubinfo_needs_package=c.boolean(
            top.get("iphonesubinfo_needs_package", False), "iphonesubinfo_needs_package"),
        iphonesubinfo_args=_parse_args(c, top, codes),
        iphonesubinfo_reply=reply,
        iphonesubinfo_msim=_parse_codes(c, top, "iphonesubinfo_msim"),
        identity_props=_parse_identity_props(c, top, sim_count),
        dumpsys_iphonesubinfo=c.boolean(top.get("dumpsys_iphonesubinfo", sdk <= 19),
                                        "dumpsys_iphonesubinfo"),
        adbd_features=_parse_features(c, top, sdk),
        su=c.boolean(top.get("su", False), "su"),
        packages=c.str_map(top.get("packages", {}), "packages"),
        service_permissions=c.str_map(top.get("service_permissions", {}), "service_permissions"),
        default_settings=settings,
        sim_count=sim_count,
        sim_sub_ids=tuple(sub_ids),
        ui_paths=ui_paths,
        input_injection_blocked=c.boolean(
            top.get("input_injection_blocked", False), "input_injection_blocked"),
        operator_name=operator_name,
        mcc_mnc=mcc_mnc,
        behaviour=behaviour,
        audit_expectations=_parse_expectations(c, top),
        source=source,
    )


def banner_safe(value: str) -> str:
    """A value with the characters the ADB banner cannot carry removed."""
    return _BANNER_FORBIDDEN.sub("", value)


# --- files and inheritance --------------------------------------------------------------------


def _shipped_dir() -> Path:
    return Path(str(resources.files(_PROFILE_PACKAGE).joinpath(_PROFILE_DIR)))


def list_profiles() -> list[str]:
    """Names of the profiles shipped with hostctl, sorted."""
    return sorted(p.name[: -len(".yaml")] for p in _shipped_dir().iterdir()
                  if p.name.endswith(".yaml"))


def _is_path(ref: str | Path) -> bool:
    return isinstance(ref, Path) or "/" in str(ref) or str(ref).endswith((".yaml", ".yml"))


def _locate(ref: str | Path, relative_to: Path | None = None) -> tuple[Path, str]:
    """(file, name used in messages) for a shipped profile name or a path; ProfileError if none.
    The message's prefix is left to the caller (who may be an extending file)."""
    if _is_path(ref):
        path = Path(ref)
        if relative_to is not None and not path.is_absolute():
            path = relative_to / path
        return path, path.name
    name = str(ref)
    path = _shipped_dir() / f"{name}.yaml"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or not path.is_file():
        raise ProfileError(f"no such profile (known: {', '.join(list_profiles())})")
    return path, f"{name}.yaml"


def _read(path: Path, source: str, shown: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"profile {shown}: cannot read: {exc.strerror or exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"profile {source}: invalid YAML: {exc}") from exc


def _mark(origins: dict[str, str], value: Any, source: str, path: str) -> None:
    origins[path] = source
    if isinstance(value, dict):
        for k, v in value.items():
            _mark(origins, v, source, f"{path}.{k}")


def _forget(origins: dict[str, str], path: str) -> None:
    for key in [k for k in origins if k == path or k.startswith(path + ".")]:
        del origins[key]


# Top-level keys a child replaces whole instead of merging into the parent's.
_REPLACED_WHOLE = frozenset({"behaviour", "audit_expectations"})


def _merge(base: dict, over: dict, origins: dict[str, str], source: str, prefix: str) -> dict:
    out = dict(base)
    for key, value in over.items():
        path = f"{prefix}{key}"
        if value is None:
            out.pop(key, None)
            _forget(origins, path)
        elif (isinstance(value, dict) and value and isinstance(out.get(key), dict)
              and path not in _REPLACED_WHOLE):
            out[key] = _merge(out[key], value, origins, source, path + ".")
        else:
            out[key] = value
            _forget(origins, path)
            _mark(origins, value, source, path)
    return out


def _load_tree(path: Path, source: str, chain: list[tuple[Path, str]]
               ) -> tuple[Any, dict[str, str]]:
    """The profile data with every ``extends`` resolved, and which file set each key path."""
    data = _read(path, source, str(path) if not chain else source)
    origins: dict[str, str] = {}
    if not isinstance(data, dict) or "extends" not in data:
        if isinstance(data, dict):
            for k, v in data.items():
                _mark(origins, v, source, str(k))
        return data, origins
    data = dict(data)
    ref = data.pop("extends")
    if not isinstance(ref, str) or not ref:
        raise ProfileError(f"profile {source}: extends: expected a profile name or path, "
                           f"got {ref!r}")
    if "name" not in data:
        raise ProfileError(f"profile {source}: name: missing required key (a profile that "
                           "extends another sets its own name)")
    try:
        parent_path, parent_source = _locate(ref, path.parent)
    except ProfileError as exc:
        raise ProfileError(f"profile {source}: extends: {ref}: {exc}") from None
    here = (path.resolve(), source)
    chain = [*chain, here]
    if any(p == parent_path.resolve() for p, _ in chain):
        names = " -> ".join([s for _, s in chain] + [parent_source])
        raise ProfileError(f"profile {source}: extends: cycle {names}")
    if not parent_path.is_file():
        raise ProfileError(f"profile {source}: extends: {ref}: no such file {parent_path}")
    parent, origins = _load_tree(parent_path, parent_source, chain)
    if not isinstance(parent, dict):
        raise ProfileError(f"profile {parent_source}: (top level): expected mapping, "
                           f"got {parent!r}")
    merged = _merge(parent, data, origins, source, "")
    if "behaviour" in data and "audit_expectations" not in data:
        merged.pop("audit_expectations", None)     # verdicts about the parent's traffic, not ours
        _forget(origins, "audit_expectations")
    return merged, origins


def load_profile(name_or_path: str | Path) -> FirmwareProfile:
    """Load a shipped profile by name, or any profile file by path (``extends`` resolved)."""
    try:
        path, source = _locate(name_or_path)
    except ProfileError as exc:
        raise ProfileError(f"profile {name_or_path}: {exc}") from None
    data, origins = _load_tree(path, source, [])
    return _parse(data, source, origins)
