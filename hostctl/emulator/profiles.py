"""Firmware profiles: data files that describe one MIUI build as the emulated handset shows it.

A profile is a YAML mapping. Shipped profiles live in ``hostctl/emulator/profiles/<name>.yaml``;
``load_profile`` also accepts any path. Unknown keys are errors, and every error names the file
and the key path (``profile x.yaml: iphonesubinfo.getDeviceId: expected integer, got 'a'``).

Schema (``*`` = required)::

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
    iphonesubinfo: {method: int}    # transaction codes of IPhoneSubInfo, in the build's AIDL order
    iphonesubinfo_needs_package: bool   # calls take a calling-package (s16) argument first
    packages: {package: apk path}   # what `pm list packages -f` / `pm path` show
    service_permissions: {"pkg/cls": permission}   # services the shell may not start
    default_settings: {system: {k: v}, secure: {k: v}, global: {k: v}}
    sim_count: int                  # 1 or 2 (default 1)
    input_injection_blocked: bool   # MIUI "USB debugging (Security settings)" off
    carrier: {operator_name: str, mcc_mnc: str}   # default SIM operator
    behaviour: {...}                # free-form, kept as a dict for the Cloud Messaging model
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = ["FirmwareProfile", "ProfileError", "ProductInfo", "list_profiles", "load_profile"]

_PROFILE_PACKAGE = "hostctl.emulator"
_PROFILE_DIR = "profiles"
_BANNER_FORBIDDEN = re.compile(r"[:;=]")
_NAMESPACES = ("system", "secure", "global")


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
    packages: dict[str, str] = field(default_factory=dict)
    service_permissions: dict[str, str] = field(default_factory=dict)
    default_settings: dict[str, dict[str, str]] = field(default_factory=dict)
    sim_count: int = 1
    input_injection_blocked: bool = False
    operator_name: str = "CHINA MOBILE"
    mcc_mnc: str = "46000"
    behaviour: dict[str, Any] = field(default_factory=dict)
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

    def iphonesubinfo_method(self, code: int) -> str | None:
        """The IPhoneSubInfo method name a transaction code calls on this build, if any."""
        for method, value in self.iphonesubinfo.items():
            if value == code:
                return method
        return None


# --- validation helpers -----------------------------------------------------------------------


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> ProfileError:
        return ProfileError(f"profile {self.source}: {path}: {message}")

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

    def known_keys(self, data: dict, allowed: set[str], required: set[str], prefix: str) -> None:
        for key in data:
            if key not in allowed:
                raise self.fail(f"{prefix}{key}", "unknown key")
        for key in sorted(required):
            if key not in data:
                raise self.fail(f"{prefix}{key}", "missing required key")

    def str_map(self, value: Any, path: str) -> dict[str, str]:
        data = self.mapping(value, path)
        return {k: self.string(v, f"{path}.{k}") for k, v in data.items()}


_TOP_REQUIRED = {"name", "android_release", "sdk", "miui_version_name", "miui_version_code",
                 "product", "build_fingerprint"}
_TOP_ALLOWED = _TOP_REQUIRED | {
    "description", "build_id", "build_incremental", "props", "iphonesubinfo",
    "iphonesubinfo_needs_package", "packages", "service_permissions", "default_settings",
    "sim_count", "input_injection_blocked", "carrier", "behaviour"}
_PRODUCT_REQUIRED = {"name", "model", "device"}
_PRODUCT_ALLOWED = _PRODUCT_REQUIRED | {"brand", "manufacturer", "marketname", "mod_device"}


def _parse(data: Any, source: str) -> FirmwareProfile:
    c = _Checker(source)
    top = c.mapping(data, "(top level)")
    c.known_keys(top, _TOP_ALLOWED, _TOP_REQUIRED, "")

    prod = c.mapping(top["product"], "product")
    c.known_keys(prod, _PRODUCT_ALLOWED, _PRODUCT_REQUIRED, "product.")
    product_fields = {k: c.string(v, f"product.{k}") for k, v in prod.items()}
    for key in ("name", "model", "device"):
        if not product_fields[key] or "\n" in product_fields[key]:
            raise c.fail(f"product.{key}", "must be a non-empty single line")
    product = ProductInfo(**product_fields)

    codes = {k: c.integer(v, f"iphonesubinfo.{k}")
             for k, v in c.mapping(top.get("iphonesubinfo", {}), "iphonesubinfo").items()}
    for method, code in codes.items():
        if code < 1:
            raise c.fail(f"iphonesubinfo.{method}", f"transaction codes start at 1, got {code}")

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

    behaviour = top.get("behaviour", {})
    behaviour = dict(c.mapping(behaviour, "behaviour")) if behaviour is not None else {}

    return FirmwareProfile(
        name=c.string(top["name"], "name"),
        description=c.string(top.get("description", ""), "description"),
        android_release=c.string(top["android_release"], "android_release"),
        sdk=c.integer(top["sdk"], "sdk"),
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
        packages=c.str_map(top.get("packages", {}), "packages"),
        service_permissions=c.str_map(top.get("service_permissions", {}), "service_permissions"),
        default_settings=settings,
        sim_count=sim_count,
        input_injection_blocked=c.boolean(
            top.get("input_injection_blocked", False), "input_injection_blocked"),
        operator_name=operator_name,
        mcc_mnc=mcc_mnc,
        behaviour=behaviour,
        source=source,
    )


def banner_safe(value: str) -> str:
    """A value with the characters the ADB banner cannot carry removed."""
    return _BANNER_FORBIDDEN.sub("", value)


def _shipped_dir():
    return resources.files(_PROFILE_PACKAGE).joinpath(_PROFILE_DIR)


def list_profiles() -> list[str]:
    """Names of the profiles shipped with hostctl, sorted."""
    return sorted(p.name[: -len(".yaml")] for p in _shipped_dir().iterdir()
                  if p.name.endswith(".yaml"))


def load_profile(name_or_path: str | Path) -> FirmwareProfile:
    """Load a shipped profile by name, or any profile file by path."""
    text: str
    as_str = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in as_str or as_str.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        source = path.name
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProfileError(f"profile {path}: cannot read: {exc.strerror or exc}") from exc
    else:
        resource = _shipped_dir().joinpath(f"{as_str}.yaml")
        source = f"{as_str}.yaml"
        if not resource.is_file():
            raise ProfileError(f"profile {as_str}: no such profile (known: "
                               f"{', '.join(list_profiles())})")
        text = resource.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"profile {source}: invalid YAML: {exc}") from exc
    return _parse(data, source)
