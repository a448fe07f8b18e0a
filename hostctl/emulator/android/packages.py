"""The handset's package registry: the build's packages (profile) plus those installed over adb.

Installed packages persist in ``state_dir/packages.json`` and their APKs under ``/data/app``:
``/data/app/<pkg>-1.apk`` on 4.4, ``/data/app/<pkg>-1/base.apk`` from 5.0 (PackageManagerService
``getNextCodePath``/``deriveCodePathName`` of each release). A build's own packages cannot be
uninstalled (``DELETE_FAILED_INTERNAL_ERROR`` for a system app without updates, as
PackageManagerService.deletePackageLI answers).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from ..fs import DeviceFS
from .apk import ApkError, ApkInfo, parse_apk
from .model import Package

FIRST_APP_UID = 10050  # the first uid we hand out to an installed app (a guess: system apps use lower ones)


class PackageRegistry:
    def __init__(self, state_dir: Path, fs: DeviceFS, builtin: dict[str, str], sdk: int) -> None:
        self._path = Path(state_dir) / "packages.json"
        self._fs = fs
        self._builtin = dict(builtin)
        self._sdk = sdk
        self._lock = threading.Lock()
        try:
            self._installed: dict[str, dict] = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self._installed = {}

    def _save(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._installed, indent=1), encoding="utf-8")
        tmp.replace(self._path)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(set(self._builtin) | set(self._installed))

    def installed(self, name: str) -> bool:
        with self._lock:
            return name in self._builtin or name in self._installed

    def get(self, name: str) -> Package | None:
        with self._lock:
            if name in self._installed:
                e = self._installed[name]
                return Package(
                    name,
                    e["path"],
                    e["version_code"],
                    e["version_name"],
                    e["uid"],
                    e["target_sdk"],
                    e["installed_at"],
                    False,
                    e["label"],
                )
            if name in self._builtin:
                path = self._builtin[name]
                return Package(name, path, 1, "1.0", 1000, self._sdk, system=path.startswith("/system/"))
        return None

    def all(self) -> list[Package]:
        return [p for n in self.names() if (p := self.get(n)) is not None]

    def install(self, data: bytes, *, replace: bool = True) -> ApkInfo:
        """Install an APK's bytes; raises ApkError with the INSTALL_FAILED_* code."""
        info = parse_apk(data)
        with self._lock:
            if info.package in self._builtin and info.package not in self._installed:
                raise ApkError(
                    "INSTALL_FAILED_UPDATE_INCOMPATIBLE",
                    f"Package {info.package} signatures do not match the previously installed version",
                )
            old = self._installed.get(info.package)
            if old is not None and not replace:
                raise ApkError(
                    "INSTALL_FAILED_ALREADY_EXISTS", f"Attempt to re-install {info.package} without first uninstalling."
                )
            path = f"/data/app/{info.package}-1.apk" if self._sdk < 21 else f"/data/app/{info.package}-1/base.apk"
            host = self._fs.host_path(path)
            host.parent.mkdir(parents=True, exist_ok=True)
            host.write_bytes(data)
            uid = old["uid"] if old else FIRST_APP_UID + len(self._installed)
            self._installed[info.package] = {
                "path": path,
                "version_code": info.version_code,
                "version_name": info.version_name,
                "uid": uid,
                "target_sdk": info.target_sdk,
                "label": info.label,
                "installed_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            (self._fs.root / "data/data" / info.package).mkdir(parents=True, exist_ok=True)
            self._save()
        return info

    def uninstall(self, name: str) -> bool:
        with self._lock:
            entry = self._installed.pop(name, None)
            if entry is None:
                return False
            import shutil

            host = self._fs.host_path(entry["path"])
            if host.name == "base.apk":
                shutil.rmtree(host.parent, ignore_errors=True)
            else:
                host.unlink(missing_ok=True)
            shutil.rmtree(self._fs.root / "data/data" / name, ignore_errors=True)
            self._save()
        return True

    def wipe(self) -> None:
        """A factory reset removes every app the user installed."""
        for name in list(self._installed):
            self.uninstall(name)
