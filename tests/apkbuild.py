"""Build a minimal real APK in a test: a zip with a binary AndroidManifest.xml (AXML).

The chunk layout follows frameworks/base/libs/androidfw/include/androidfw/ResourceTypes.h
(ResXMLTree_header, ResStringPool_header with UTF-16 strings, ResXMLTree_namespaceExt,
ResXMLTree_attrExt + ResXMLTree_attribute with Res_value). Unsigned: the emulated
PackageManager does not verify signatures (a real one would refuse it: see the README table).
"""

from __future__ import annotations

import io
import struct
import zipfile

ANDROID_NS = "http://schemas.android.com/apk/res/android"
TYPE_STRING, TYPE_INT_DEC = 0x03, 0x10


class _Pool:
    def __init__(self) -> None:
        self.strings: list[str] = []

    def idx(self, s: str) -> int:
        if s not in self.strings:
            self.strings.append(s)
        return self.strings.index(s)

    def chunk(self) -> bytes:
        data = bytearray()
        offsets = []
        for s in self.strings:
            offsets.append(len(data))
            enc = s.encode("utf-16-le")
            data += struct.pack("<H", len(s)) + enc + b"\0\0"
        while len(data) % 4:
            data += b"\0"
        header = 28
        start = header + 4 * len(offsets)
        body = b"".join(struct.pack("<I", o) for o in offsets) + bytes(data)
        return struct.pack("<HHIIIIII", 0x0001, header, header + len(body), len(self.strings), 0, 0, start, 0) + body


def manifest(package: str, version_code: int, version_name: str, label: str) -> bytes:
    pool = _Pool()
    ns, prefix = pool.idx(ANDROID_NS), pool.idx("android")
    elements: list[bytes] = []

    def start(name: str, attrs: list[tuple[str, object]]) -> bytes:
        body = b""
        for attr, value in attrs:
            a_ns = ns if attr != "package" else 0xFFFFFFFF
            if isinstance(value, int):
                body += struct.pack("<IIIHBBI", a_ns, pool.idx(attr), 0xFFFFFFFF, 8, 0, TYPE_INT_DEC, value)
            else:
                si = pool.idx(str(value))
                body += struct.pack("<IIIHBBI", a_ns, pool.idx(attr), si, 8, 0, TYPE_STRING, si)
        ext = struct.pack("<IIHHHHHH", 0xFFFFFFFF, pool.idx(name), 20, 20, len(attrs), 0, 0, 0)
        node = struct.pack("<II", 1, 0xFFFFFFFF)
        size = 8 + len(node) + len(ext) + len(body)
        return struct.pack("<HHI", 0x0102, 16, size) + node + ext + body

    def end(name: str) -> bytes:
        return struct.pack("<HHIIIII", 0x0103, 16, 24, 1, 0xFFFFFFFF, 0xFFFFFFFF, pool.idx(name))

    # attribute names first, so their indices are stable (aapt puts them at the pool's start)
    for a in ("versionCode", "versionName", "label", "package", "targetSdkVersion", "minSdkVersion"):
        pool.idx(a)
    elements.append(struct.pack("<HHIIIII", 0x0100, 16, 24, 1, 0xFFFFFFFF, prefix, ns))
    elements.append(
        start("manifest", [("versionCode", version_code), ("versionName", version_name), ("package", package)])
    )
    elements.append(start("uses-sdk", [("minSdkVersion", 19), ("targetSdkVersion", 30)]))
    elements.append(end("uses-sdk"))
    elements.append(start("application", [("label", label)]))
    elements.append(end("application"))
    elements.append(end("manifest"))
    elements.append(struct.pack("<HHIIIII", 0x0101, 16, 24, 1, 0xFFFFFFFF, prefix, ns))
    body = pool.chunk() + b"".join(elements)
    return struct.pack("<HHI", 0x0003, 8, 8 + len(body)) + body


def build_apk(
    package: str = "org.hostctl.probe", version_code: int = 7, version_name: str = "1.7", label: str = "Probe"
) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("AndroidManifest.xml", manifest(package, version_code, version_name, label))
        zf.writestr("classes.dex", b"dex\n035\0" + b"\0" * 104)
    return buf.getvalue()
