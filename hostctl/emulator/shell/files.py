"""File access for the emulated shell: DeviceFS paths, the shell user's permissions, and
Android-style error reasons ("No such file or directory", "Read-only file system")."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..fs import DevicePathError
from ..handset import VirtualHandset

__all__ = ["FsError", "ShellFiles"]

# Where uid 2000 (shell) may write; everything else is read-only or denied, as on a user build.
_WRITABLE = ("/sdcard", "/storage", "/mnt/sdcard", "/data/local/tmp", "/bugreports")  # /bugreports: shell-owned (11)
_READ_ONLY = ("/system", "/vendor", "/proc", "/sys", "/sbin", "/etc", "/init", "/default.prop")
_NO_READ = ("/data", "/cache", "/root")
_READABLE_UNDER_NO_READ = ("/data/local/tmp", "/data/local")

_REASONS = {
    errno.ENOENT: "No such file or directory",
    errno.EISDIR: "Is a directory",
    errno.ENOTDIR: "Not a directory",
    errno.EACCES: "Permission denied",
    errno.EPERM: "Operation not permitted",
    errno.EEXIST: "File exists",
    errno.ENOTEMPTY: "Directory not empty",
    errno.EROFS: "Read-only file system",
    errno.ENAMETOOLONG: "File name too long",
    errno.ELOOP: "Too many symbolic links encountered",
    errno.EINVAL: "Invalid argument",
}


class FsError(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def reason_of(exc: OSError) -> str:
    if isinstance(exc, DevicePathError):
        return "Permission denied"
    return _REASONS.get(exc.errno or 0, exc.strerror or "I/O error")


class ShellFiles:
    """Device-path file operations with the shell user's view of permissions."""

    def __init__(self, handset: VirtualHandset) -> None:
        self.handset = handset
        self.fs = handset.fs

    def norm(self, path: str, cwd: str) -> str:
        return self.fs.normalize(path, cwd)

    def host(self, dev: str) -> Path:
        try:
            return self.fs.host_path(dev)
        except (DevicePathError, ValueError, OSError):
            raise FsError(dev, "Permission denied") from None

    def check_write(self, dev: str) -> None:
        if _under(dev, _WRITABLE):
            return
        if dev == "/" or _under(dev, _READ_ONLY):
            raise FsError(dev, "Read-only file system")
        raise FsError(dev, "Permission denied")

    def check_read(self, dev: str) -> None:
        if _under(dev, _NO_READ) and not _under(dev, _READABLE_UNDER_NO_READ):
            raise FsError(dev, "Permission denied")

    def _virtual(self, dev: str) -> bytes | None:
        h = self.handset
        if dev == "/dev/null":
            return b""
        if dev == "/proc/version":
            return (
                b"Linux version 3.4.0-perf-g0a1b2c3 (builder@miui) (gcc version 4.7 "
                b"(GCC) ) #1 SMP PREEMPT Fri Jul 4 02:10:11 CST 2014\n"
            )
        if dev == "/proc/uptime":  # seconds since boot, idle seconds (summed over 4 cores)
            up = h.uptime()
            return f"{up:.2f} {up * 3.5:.2f}\n".encode()
        if dev == "/proc/cpuinfo":  # per ABI and SoC (hostctl/emulator/android/procfs.py)
            from ..android import procfs

            return procfs.cpuinfo(h.getprop("ro.product.cpu.abi"), h.getprop("ro.board.platform")).encode()
        if dev == "/proc/stat":
            from ..android import procfs

            return procfs.stat(h.uptime()).encode()
        parts = dev.split("/")
        if len(parts) == 4 and parts[1] == "proc" and parts[2].isdigit():
            pid = int(parts[2])
            proc = next((p for p in h.processes() if p.pid == pid), None)
            if proc is not None and parts[3] == "cmdline":
                return proc.name.encode() + b"\x00"
            if proc is not None and parts[3] == "status":
                return (
                    f"Name:\t{proc.name.rsplit('/', 1)[-1][:15]}\nState:\tS (sleeping)\n"
                    f"Pid:\t{proc.pid}\nPPid:\t{proc.ppid}\nUid:\t{proc.uid}\t{proc.uid}\t"
                    f"{proc.uid}\t{proc.uid}\n"
                ).encode()
        return None

    def read(self, dev: str) -> bytes:
        virtual = self._virtual(dev)
        if virtual is not None:
            return virtual
        self.check_read(dev)
        host = self.host(dev)
        try:
            if host.is_dir():
                raise FsError(dev, "Is a directory")
            return host.read_bytes()
        except OSError as exc:
            raise FsError(dev, reason_of(exc)) from None

    def open_write(self, dev: str, append: bool):
        """A binary file object for writing (the caller closes it); /dev/null -> None."""
        if dev in ("/dev/null", "/dev/zero"):
            return None
        self.check_write(dev)
        host = self.host(dev)
        try:
            if host.is_dir():
                raise FsError(dev, "Is a directory")
            if not host.parent.is_dir():
                raise FsError(dev, "No such file or directory")
            return open(host, "ab" if append else "wb")  # caller closes
        except OSError as exc:
            raise FsError(dev, reason_of(exc)) from None

    def write(self, dev: str, data: bytes, append: bool = False) -> None:
        f = self.open_write(dev, append)
        if f is not None:
            with f:
                f.write(data)

    def stat(self, dev: str) -> os.stat_result:
        if dev in ("/dev/null", "/dev/zero"):
            return os.stat(os.devnull)
        self.check_read(os.path.dirname(dev) or "/") if dev != "/data" else None
        host = self.host(dev)
        try:
            return host.lstat() if host.is_symlink() else host.stat()
        except OSError as exc:
            raise FsError(dev, reason_of(exc)) from None

    def exists(self, dev: str) -> bool:
        try:
            self.stat(dev)
            return True
        except FsError:
            return dev in ("/dev/null", "/dev/zero")

    def is_dir(self, dev: str) -> bool:
        try:
            return stat.S_ISDIR(self.stat(dev).st_mode)
        except FsError:
            return False

    def listdir(self, dev: str) -> list[str]:
        self.check_read(dev)
        if dev == "/dev":
            return ["null", "zero"]
        host = self.host(dev)
        try:
            return sorted(p.name for p in host.iterdir())
        except OSError as exc:
            raise FsError(dev, reason_of(exc)) from None

    def mkdir(self, dev: str, parents: bool) -> None:
        self.check_write(dev)
        host = self.host(dev)
        try:
            host.mkdir(parents=parents, exist_ok=parents)
        except OSError as exc:
            raise FsError(dev, reason_of(exc)) from None

    def remove(self, dev: str, recursive: bool) -> None:
        self.check_write(dev)
        if dev in _WRITABLE:
            raise FsError(dev, "Permission denied")
        host = self.host(dev)
        try:
            if host.is_dir() and not host.is_symlink():
                if not recursive:
                    raise FsError(dev, "Is a directory")
                for child in sorted(host.iterdir()):
                    self.remove(dev.rstrip("/") + "/" + child.name, True)
                host.rmdir()
            else:
                host.unlink()
        except OSError as exc:
            raise FsError(dev, reason_of(exc)) from None

    def touch(self, dev: str) -> None:
        self.check_write(dev)
        host = self.host(dev)
        try:
            if not host.parent.is_dir():
                raise FsError(dev, "No such file or directory")
            host.touch()
        except OSError as exc:
            raise FsError(dev, reason_of(exc)) from None
