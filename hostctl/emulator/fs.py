"""The emulated handset's own file system: device paths mapped into one host directory.

Every device path ("/sdcard/x", "/data/local/tmp/y") resolves to a path under the handset's root
directory. Nothing resolves outside it: ``..`` cannot climb above ``/`` and symlinks that point
outside the root are refused, so neither the shell nor the sync service can touch host files.
"""

from __future__ import annotations

import posixpath
from pathlib import Path


class DevicePathError(OSError):
    """A device path that cannot be mapped (escapes the root, or is not absolute after cwd)."""


class DeviceFS:
    """Maps absolute or cwd-relative device paths to host paths under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def normalize(self, path: str, cwd: str = "/") -> str:
        """Absolute, normalised device path ("/a/../b" -> "/b"; never above "/")."""
        if not path.startswith("/"):
            path = posixpath.join(cwd or "/", path)
        norm = posixpath.normpath(path)
        # normpath keeps a leading "//"; and ".." at the root stays at the root.
        return "/" + norm.lstrip("/") if norm != "/" else "/"

    def host_path(self, path: str, cwd: str = "/") -> Path:
        """Host path for a device path; raises DevicePathError if it would leave the root."""
        rel = self.normalize(path, cwd).lstrip("/")
        candidate = self.root / rel if rel else self.root
        resolved = candidate.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise DevicePathError(f"{path}: path escapes the device root")
        return candidate

    def device_path(self, host: Path) -> str:
        """Inverse of host_path for paths under the root."""
        rel = Path(host).resolve().relative_to(self.root)
        return "/" + rel.as_posix() if str(rel) != "." else "/"
