"""Typed views of the handset state the framework tools print (no I/O, no handset import)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass


def object_id(*parts: object) -> str:
    """A stable stand-in for ``Integer.toHexString(System.identityHashCode(obj))`` (7-8 hex
    digits), so two dumps of the same state print the same record ids."""
    return f"{zlib.crc32('/'.join(map(str, parts)).encode()) | 0x1000000:x}"


def short_component(component: str) -> str:
    """``ComponentName.flattenToShortString``: ``pkg/.Cls`` when the class is in the package."""
    pkg, _, cls = component.partition("/")
    if cls.startswith(pkg + "."):
        return f"{pkg}/{cls[len(pkg):]}"
    return component


def full_component(component: str) -> str:
    """``ComponentName.flattenToString``: ``pkg/pkg.Cls``."""
    pkg, _, cls = component.partition("/")
    return f"{pkg}/{pkg}{cls}" if cls.startswith(".") else component


@dataclass(frozen=True, slots=True)
class TopActivity:
    """The resumed activity: its component, the pid of its process (0: none), its task."""

    component: str
    pid: int
    task_id: int = 2
    user: int = 0
    uid: int = 10001     # the app's uid (a stand-in when its process is not running)

    @property
    def package(self) -> str:
        return self.component.split("/", 1)[0]

    @property
    def uid_text(self) -> str:
        """How WindowManager's Session constructor names the uid: ``u<user>a<appId>`` (the whole
        appId, e.g. ``u0a10144`` for uid 10144, as a real Android 12 window dump shows in
        tests/fixtures/real/dumpsys_window_systemui_appium.txt), the plain number below 10000."""
        if self.uid % 100000 < 10000:
            return str(self.uid)
        return f"u{self.uid // 100000}a{self.uid % 100000}"

    @property
    def record(self) -> str:
        """``ActivityRecord.toString``: ``ActivityRecord{hash u0 pkg/.Cls t2}``."""
        return (f"ActivityRecord{{{object_id('ar', self.component)} u{self.user} "
                f"{short_component(self.component)} t{self.task_id}}}")

    @property
    def window(self) -> str:
        """``WindowState.toString``: ``Window{hash u0 <title>}``, the title being the
        activity's full component name."""
        return f"Window{{{object_id('win', self.component)} u{self.user} {full_component(self.component)}}}"


@dataclass(frozen=True, slots=True)
class Process:
    pid: int
    name: str
    user: str
    uid: int


@dataclass(frozen=True, slots=True)
class Package:
    """An installed package as PackageManager knows it."""

    name: str
    code_path: str            # the APK ("/system/app/Mms.apk", "/data/app/pkg-1/base.apk")
    version_code: int = 0
    version_name: str = ""
    uid: int = 1000
    target_sdk: int = 0
    first_install: str = "2014-08-10 00:00:00"
    system: bool = False
    label: str = ""


@dataclass(frozen=True, slots=True)
class Battery:
    """BatteryService's state; a lab handset sits on USB power, charged (a guess kept as data)."""

    ac: bool = False
    usb: bool = True
    wireless: bool = False
    status: int = 5          # BatteryManager.BATTERY_STATUS_FULL
    health: int = 2          # BATTERY_HEALTH_GOOD
    present: bool = True
    level: int = 100
    scale: int = 100
    voltage: int = 4321      # mV
    temperature: int = 275   # tenths of a degree C
    technology: str = "Li-ion"


@dataclass(frozen=True, slots=True)
class Display:
    width: int
    height: int
    density: int
    rotation: int = 0
    screen_on: bool = True
