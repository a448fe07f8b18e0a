"""Read what PackageManager needs from an APK: package name, version, label, min/target SDK.

The APK is a zip holding a binary AndroidManifest.xml (AXML, frameworks/base
libs/androidfw/ResourceTypes.cpp); pyaxmlparser decodes it. A file that is not such a zip is
refused with the error PackageManager gives (``INSTALL_PARSE_FAILED_NOT_APK`` /
``INSTALL_PARSE_FAILED_NO_CERTIFICATES`` are what real builds print; we use the first).
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass


class ApkError(ValueError):
    """Not an APK PackageManager could parse; ``code`` is the INSTALL_* failure name."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ApkInfo:
    package: str
    version_code: int
    version_name: str
    label: str
    target_sdk: int


def parse_apk(data: bytes) -> ApkInfo:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        manifest = zf.read("AndroidManifest.xml")
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ApkError("INSTALL_PARSE_FAILED_NOT_APK", f"not an APK: {exc}") from None
    # pyaxmlparser logs every oddity at ERROR; a malformed manifest is reported by us instead
    logging.getLogger("pyaxmlparser").setLevel(logging.CRITICAL)
    from pyaxmlparser.axmlprinter import AXMLPrinter  # type: ignore[import-untyped]  # ships no type information

    try:
        xml = AXMLPrinter(manifest).get_xml_obj()
    except Exception as exc:  # noqa: BLE001 - the parser raises many types on bad input
        raise ApkError("INSTALL_PARSE_FAILED_BAD_MANIFEST", f"bad AndroidManifest.xml: {exc}") from None
    if xml is None or xml.tag != "manifest":
        raise ApkError("INSTALL_PARSE_FAILED_BAD_MANIFEST", "no <manifest> element")
    ns = "{http://schemas.android.com/apk/res/android}"
    package = xml.get("package") or ""
    if not package or "." not in package:
        raise ApkError("INSTALL_PARSE_FAILED_BAD_PACKAGE_NAME", f"bad package name {package!r}")
    try:
        version_code = int(xml.get(ns + "versionCode") or 0)
    except ValueError:
        version_code = 0
    app = xml.find("application")
    label = (app.get(ns + "label") if app is not None else None) or package
    sdk = xml.find("uses-sdk")
    try:
        target = int(sdk.get(ns + "targetSdkVersion") or 0) if sdk is not None else 0
    except ValueError:
        target = 0
    return ApkInfo(package, version_code, xml.get(ns + "versionName") or "", label, target)
