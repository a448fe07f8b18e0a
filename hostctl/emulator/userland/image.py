"""The shared, read-only system image every handset's sandbox mounts: Android's shell (mksh as
``/system/bin/sh``), its userland (toybox and one symlink per applet, as Android's /system/bin
holds them), the framework tool client, and the host libraries those programs need to load.

Built once per machine into a cache directory named by a hash of everything it is made from, so
a lab starts without compiling or copying. The two C programs are compiled here from the sources
in ``native/`` with the machine's C compiler (never a downloaded binary).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

NATIVE = Path(__file__).with_name("native")
FRAMEWORK_BIN = "hostctl-framework"  # the multi-call client's file name in /system/bin
# Debian packages (Makefile: debian-clients): mksh, toybox, original-awk; coreutils/diffutils
# stand in for the four applets Debian's toybox build leaves out (Android's toybox has them).
MKSH = "/usr/bin/mksh"
TOYBOX = "/usr/bin/toybox"
AWK = "/usr/bin/original-awk"
STAND_INS = {"tr": "/usr/bin/tr", "expr": "/usr/bin/expr", "dd": "/usr/bin/dd", "diff": "/usr/bin/diff"}
# toybox applets Android's /system/bin does not carry, or that would act on the host's view
# (su: the profile's own; login/passwd: no accounts on Android)
NOT_ON_ANDROID = ("su", "login", "passwd")


class ImageError(RuntimeError):
    """The system image could not be built (a Debian package or the C compiler is missing)."""


@dataclass(frozen=True)
class SystemImage:
    root: Path  # holds bin/, lib/, lib64/ and sbin/adbd

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def launcher(self) -> Path:
        return self.root / "sbin" / "adbd"

    @property
    def framework(self) -> Path:
        return self.root / "bin" / FRAMEWORK_BIN

    def lib_dirs(self) -> list[str]:
        """Top-level library directories to mount (``lib``, ``lib64``: as the loader wants)."""
        return sorted(p.name for p in self.root.iterdir() if p.name.startswith("lib"))


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    environ: Mapping[str, str] = os.environ if env is None else env
    base = environ.get("HOSTCTL_CACHE") or environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hostctl" / "userland"


def missing_tools() -> list[str]:
    return [p for p in (MKSH, TOYBOX, AWK, *STAND_INS.values()) if not os.access(p, os.X_OK)]


def _fingerprint(tools: tuple[str, ...], absent: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for src in sorted(NATIVE.glob("*.c")):
        h.update(src.name.encode() + b"\0" + src.read_bytes())
    for path in (MKSH, TOYBOX, AWK, *STAND_INS.values()):
        st = os.stat(path)
        h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update("\0".join(tools).encode() + b"\1" + "\0".join(absent).encode())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def _libraries(binary: str) -> list[str]:
    """Shared objects a binary loads, as ldd resolves them (the loader included)."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=10).stdout
    return sorted({m for m in re.findall(r"(/\S+)", out) if not m.startswith("/proc")})


def _compile(src: Path, out: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise ImageError("no C compiler (cc): install Debian's gcc to build the handset's launcher")
    res = subprocess.run([cc, "-O2", "-Wall", "-o", str(out), str(src)], capture_output=True, text=True, timeout=120)
    if res.returncode:
        raise ImageError(f"compiling {src.name} failed:\n{res.stderr}")


def build(tools: tuple[str, ...], *, absent: tuple[str, ...] = (), env: dict[str, str] | None = None) -> SystemImage:
    """The image for these framework tool names, without the applets in ``absent`` (a release
    that lacks them); cached, built on first use."""
    missing = missing_tools()
    if missing:
        raise ImageError(
            "the emulated handset's shell needs Debian's mksh, toybox and original-awk "
            f"(missing: {', '.join(missing)}): run `make debian-clients` or "
            "`apt-get install mksh toybox original-awk`"
        )
    final = cache_dir(env) / _fingerprint(tools, absent)
    if (final / ".complete").exists():
        return SystemImage(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        _populate(tmp, tools, absent)
        (tmp / ".complete").write_text("")
        try:
            tmp.rename(final)
        except OSError:  # another process built the same image first
            if not (final / ".complete").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return SystemImage(final)


def _populate(root: Path, tools: tuple[str, ...], absent: tuple[str, ...]) -> None:
    bin_dir, sbin = root / "bin", root / "sbin"
    bin_dir.mkdir()
    sbin.mkdir()
    _compile(NATIVE / "zygote.c", sbin / "adbd")
    _compile(NATIVE / "framework.c", bin_dir / FRAMEWORK_BIN)
    shutil.copy2(MKSH, bin_dir / "sh")
    shutil.copy2(TOYBOX, bin_dir / "toybox")
    shutil.copy2(AWK, bin_dir / "awk")
    applets = subprocess.run([TOYBOX], capture_output=True, text=True, timeout=10).stdout.split()
    for name in applets:
        if name not in NOT_ON_ANDROID + absent and name not in tools and not (bin_dir / name).exists():
            (bin_dir / name).symlink_to("toybox")
    for name, path in STAND_INS.items():
        if (bin_dir / name).is_symlink():
            (bin_dir / name).unlink()
        shutil.copy2(path, bin_dir / name)
    (bin_dir / "mksh").symlink_to("sh")
    for name in tools:
        if not (bin_dir / name).exists():
            (bin_dir / name).symlink_to(FRAMEWORK_BIN)
    for binary in [str(p) for p in (*bin_dir.iterdir(), sbin / "adbd") if not p.is_symlink()]:
        for lib in _libraries(binary):
            # /usr/lib/<arch> and /lib/<arch> are one directory on merged-/usr Debian
            rel = lib.removeprefix("/usr").lstrip("/")
            dest = root / rel
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(os.path.realpath(lib), dest)
    for p in root.rglob("*"):
        if not p.is_symlink():
            p.chmod(0o755)
    root.chmod(0o755)
