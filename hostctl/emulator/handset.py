"""The emulated handset's state: props, settings, SMS store, logcat, processes, intents and UI.

A VirtualHandset is a library object without I/O loops: the ADB shell emulation and the lab's app
processes call into it. Everything that Android keeps across reboots persists under ``state_dir``:

    state_dir/identity.json     hardware and SIM identity (survives factory reset)
    state_dir/settings.db       Settings.System/Secure/Global (SQLite, like 4.4's settings.db)
    state_dir/mmssms.db         the telephony provider's sms table, with MIUI's columns
    state_dir/contacts2.db      the contacts provider's raw_contacts and data tables
    state_dir/persist.json      persist.* properties
    state_dir/packages.json     packages installed over adb (android/packages.py)
    state_dir/root/             the device file system (DeviceFS)
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .carrier import Reassembler, SmsSegment
from .fs import DeviceFS
from .identity import HandsetIdentity, generate_identity
from .profiles import FirmwareProfile, banner_safe

__all__ = [
    "ContactsUri",
    "ContentError",
    "Intent",
    "LogEntry",
    "ProcessInfo",
    "ReadOnlyPropertyError",
    "Screen",
    "SmsUri",
    "View",
    "VirtualHandset",
    "parse_contacts_uri",
    "parse_sms_uri",
]

NAMESPACES = ("system", "secure", "global")
SHELL_UID = 2000
SCREEN_W, SCREEN_H = 720, 1280
LAUNCHER = "com.miui.home/.launcher.Launcher"

# --- SMS store -------------------------------------------------------------------------------

# MIUI's sms table (AOSP columns plus MIUI's), in the provider's column order.
SMS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_id", "INTEGER PRIMARY KEY AUTOINCREMENT"),
    ("thread_id", "INTEGER"),
    ("address", "TEXT"),
    ("person", "INTEGER"),
    ("date", "INTEGER"),
    ("date_sent", "INTEGER DEFAULT 0"),
    ("protocol", "INTEGER"),
    ("read", "INTEGER DEFAULT 0"),
    ("status", "INTEGER DEFAULT -1"),
    ("type", "INTEGER"),
    ("reply_path_present", "INTEGER"),
    ("subject", "TEXT"),
    ("body", "TEXT"),
    ("service_center", "TEXT"),
    ("locked", "INTEGER DEFAULT 0"),
    ("sub_id", "INTEGER DEFAULT -1"),
    ("error_code", "INTEGER DEFAULT 0"),
    ("seen", "INTEGER DEFAULT 0"),
    ("timed", "INTEGER DEFAULT 0"),
    ("deleted", "INTEGER DEFAULT 0"),
    ("sync_state", "INTEGER DEFAULT 0"),
    ("marker", "INTEGER DEFAULT 0"),
    ("source", "TEXT"),
    ("bind_id", "INTEGER DEFAULT 0"),
    ("mx_status", "INTEGER DEFAULT 0"),
    ("mx_id", "INTEGER"),
    ("mx_type", "INTEGER DEFAULT 0"),
    ("out_time", "INTEGER DEFAULT 0"),
    ("account", "TEXT"),
    ("sim_id", "INTEGER DEFAULT 0"),
    ("block_type", "INTEGER DEFAULT 0"),
    ("advanced_seen", "INTEGER DEFAULT 0"),
)
SMS_COLUMN_NAMES = tuple(name for name, _ in SMS_COLUMNS)
SMS_BOXES = {"inbox": 1, "sent": 2, "draft": 3, "outbox": 4, "failed": 5, "queued": 6}

# --- contacts store ----------------------------------------------------------------------------

# ContactsContract's raw_contacts and data as the provider exposes them (a subset of the columns;
# the real data table keys mimetypes through a mimetypes table, the view shows the name).
CONTACTS_AUTHORITY = "com.android.contacts"
RAW_CONTACTS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_id", "INTEGER PRIMARY KEY AUTOINCREMENT"),
    ("account_name", "TEXT"),
    ("account_type", "TEXT"),
    ("data_set", "TEXT"),
    ("contact_id", "INTEGER"),
    ("deleted", "INTEGER NOT NULL DEFAULT 0"),
    ("display_name", "TEXT"),
    ("starred", "INTEGER NOT NULL DEFAULT 0"),
    ("times_contacted", "INTEGER NOT NULL DEFAULT 0"),
    ("version", "INTEGER NOT NULL DEFAULT 1"),
    ("dirty", "INTEGER NOT NULL DEFAULT 0"),
    ("sourceid", "TEXT"),
    ("sync1", "TEXT"),
    ("sync2", "TEXT"),
    ("sync3", "TEXT"),
    ("sync4", "TEXT"),
)
DATA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_id", "INTEGER PRIMARY KEY AUTOINCREMENT"),
    ("raw_contact_id", "INTEGER NOT NULL"),
    ("mimetype", "TEXT NOT NULL"),
    ("is_primary", "INTEGER NOT NULL DEFAULT 0"),
    ("is_super_primary", "INTEGER NOT NULL DEFAULT 0"),
    ("data_version", "INTEGER NOT NULL DEFAULT 0"),
    *((f"data{i}", "TEXT") for i in range(1, 16)),
    ("data_sync1", "TEXT"),
    ("data_sync2", "TEXT"),
    ("data_sync3", "TEXT"),
    ("data_sync4", "TEXT"),
)
CONTACT_TABLES = {"raw_contacts": tuple(n for n, _ in RAW_CONTACTS_COLUMNS), "data": tuple(n for n, _ in DATA_COLUMNS)}
MIME_NAME = "vnd.android.cursor.item/name"
MIME_PHONE = "vnd.android.cursor.item/phone_v2"
# what the provider tells its observers when a phone number row is inserted (the lab's Contacts
# and Messaging apps react to it, as MIUI's do through a ContentObserver)
CONTACT_PHONE_INSERTED = "hostctl.emulator.CONTACT_PHONE_INSERTED"


@dataclass(frozen=True, slots=True)
class ContactsUri:
    table: str  # raw_contacts | data
    row_id: int | None = None
    mimetype: str | None = None  # data/phones


def parse_contacts_uri(uri: str) -> ContactsUri:
    """content://com.android.contacts/raw_contacts[/ID], .../data[/ID], .../data/phones; query
    parameters (``?caller_is_syncadapter=true``) are accepted and ignored."""
    prefix = f"content://{CONTACTS_AUTHORITY}/"
    path = uri.split("?", 1)[0]
    parts = [p for p in path[len(prefix) :].split("/") if p] if path.startswith(prefix) else []
    if parts and parts[0] in CONTACT_TABLES:
        if len(parts) == 1:
            return ContactsUri(parts[0])
        if len(parts) == 2 and parts[1].isdigit():
            return ContactsUri(parts[0], row_id=int(parts[1]))
        if parts == ["data", "phones"]:
            return ContactsUri("data", mimetype=MIME_PHONE)
    raise ContentError(f"java.lang.IllegalArgumentException: Unknown URL {uri}")


# sqlite3 authorizer action codes (sqlite3.h); only reads and plain functions pass by default.
_SQLITE_INSERT, _SQLITE_READ, _SQLITE_SELECT, _SQLITE_UPDATE = 18, 20, 21, 23
_SQLITE_DELETE, _SQLITE_FUNCTION = 9, 31
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
_MAX_SQL_STEPS = 2_000_000


class ContentError(Exception):
    """A content provider call that failed; ``str()`` is the Java exception line Android prints."""


@dataclass(frozen=True, slots=True)
class SmsUri:
    box: int | None = None  # sms type filter
    row_id: int | None = None


def parse_sms_uri(uri: str) -> SmsUri:
    """content://sms, content://sms/inbox, content://sms/5, content://sms/inbox/5."""
    prefix = "content://sms"
    if not uri.startswith(prefix) or (len(uri) > len(prefix) and uri[len(prefix)] != "/"):
        raise ContentError(f"java.lang.IllegalArgumentException: Unknown URL {uri}")
    parts = [p for p in uri[len(prefix) :].split("/") if p]
    box = row = None
    if parts and parts[0] in SMS_BOXES:
        box = SMS_BOXES[parts.pop(0)]
    if parts and parts[0].isdigit() and len(parts) == 1:
        row = int(parts.pop(0))
    if parts:
        raise ContentError(f"java.lang.IllegalArgumentException: Unknown URL {uri}")
    return SmsUri(box=box, row_id=row)


# --- processes, logs, intents, UI --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    name: str
    uid: int
    ppid: int = 1
    vsz: int = 0
    rss: int = 0
    wchan: str = "SyS_epoll_wait"
    state: str = "S"
    registered: bool = False  # a real OS process the lab registered

    @property
    def user(self) -> str:
        return uid_name(self.uid)


def uid_name(uid: int) -> str:
    fixed = {
        0: "root",
        1000: "system",
        1001: "radio",
        1002: "bluetooth",
        1010: "wifi",
        1013: "media",
        1017: "keystore",
        1019: "drm",
        1021: "gps",
        1027: "nfc",
        2000: "shell",
        9999: "nobody",
    }
    if uid in fixed:
        return fixed[uid]
    if uid >= 10000:
        return f"u{uid // 100000}_a{uid % 100000 - 10000}"
    return str(uid)


_PRIORITIES = {"V": 2, "D": 3, "I": 4, "W": 5, "E": 6, "F": 7, "S": 8}
_PRIORITY_LETTERS = {v: k for k, v in _PRIORITIES.items()}


@dataclass(frozen=True, slots=True)
class LogEntry:
    time: float
    pid: int
    tid: int
    priority: str  # one of V D I W E F
    tag: str
    message: str

    def format(self, fmt: str = "threadtime") -> str:
        """This entry as ``logcat -v FMT`` prints it (one formatter: android/logcat.py)."""
        from .android.logcat import format_entry

        return format_entry(self, fmt)


@dataclass(frozen=True)
class Intent:
    """An intent as `am` builds it. ``kind``: activity, service, broadcast, force-stop, clear."""

    kind: str
    action: str | None = None
    component: str | None = None  # "pkg/cls" with cls fully qualified
    data: str | None = None
    mime_type: str | None = None
    categories: tuple[str, ...] = ()
    extras: dict[str, Any] = field(default_factory=dict)
    flags: int = 0
    package: str | None = None

    @property
    def target_package(self) -> str | None:
        if self.component:
            return self.component.split("/", 1)[0]
        return self.package

    def short_component(self) -> str | None:
        if not self.component:
            return None
        pkg, cls = self.component.split("/", 1)
        return f"{pkg}/{cls[len(pkg) :]}" if cls.startswith(pkg + ".") else self.component

    def describe(self) -> str:
        """``Intent { act=... cmp=... }`` as Android's Intent.toString prints it."""
        parts = []
        if self.action:
            parts.append(f"act={self.action}")
        if self.categories:
            parts.append("cat=[" + ",".join(self.categories) + "]")
        if self.data:
            parts.append(f"dat={self.data}")
        if self.mime_type:
            parts.append(f"typ={self.mime_type}")
        if self.flags:
            parts.append(f"flg=0x{self.flags:x}")
        if self.package and not self.component:
            parts.append(f"pkg={self.package}")
        if self.component:
            parts.append(f"cmp={self.short_component()}")
        if self.extras:
            parts.append("(has extras)")
        return "Intent { " + " ".join(parts) + " }"


def normalize_component(comp: str) -> str:
    """'pkg/.Cls' -> 'pkg/pkg.Cls'; raises ValueError when there is no '/'."""
    if "/" not in comp:
        raise ValueError(f"Bad component name: {comp}")
    pkg, cls = comp.split("/", 1)
    if not pkg or not cls:
        raise ValueError(f"Bad component name: {comp}")
    if cls.startswith("."):
        cls = pkg + cls
    return f"{pkg}/{cls}"


@dataclass
class View:
    """One node of the UI tree uiautomator dumps."""

    cls: str = "android.widget.FrameLayout"
    bounds: tuple[int, int, int, int] = (0, 0, SCREEN_W, SCREEN_H)
    text: str = ""
    resource_id: str = ""
    package: str = ""
    content_desc: str = ""
    clickable: bool = False
    checkable: bool = False
    checked: bool = False
    enabled: bool = True
    focusable: bool = False
    focused: bool = False
    scrollable: bool = False
    long_clickable: bool = False
    password: bool = False
    selected: bool = False
    children: list[View] = field(default_factory=list)
    on_click: Callable[[VirtualHandset, View], None] | None = field(default=None, repr=False)

    def walk(self) -> Iterator[View]:
        yield self
        for child in self.children:
            yield from child.walk()

    def contains(self, x: int, y: int) -> bool:
        left, top, right, bottom = self.bounds
        return left <= x < right and top <= y < bottom

    def find(self, *, resource_id: str | None = None, text: str | None = None) -> View | None:
        for view in self.walk():
            if resource_id is not None and view.resource_id != resource_id:
                continue
            if text is not None and view.text != text:
                continue
            return view
        return None


@dataclass
class Screen:
    component: str
    root: View

    @property
    def package(self) -> str:
        return self.component.split("/", 1)[0]


ScreenBuilder = Callable[["VirtualHandset"], View]
IntentListener = Callable[[Intent], "int | None"]
TapListener = Callable[["VirtualHandset", "View | None", int, int], None]


def _xml_attr(value: str) -> str:
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
    )


def _dump_node(view: View, index: int, package: str, out: list[str]) -> None:
    b = view.bounds

    def flag(v: bool) -> str:
        return "true" if v else "false"

    out.append(
        f'<node index="{index}" text="{_xml_attr(view.text)}" '
        f'resource-id="{_xml_attr(view.resource_id)}" class="{_xml_attr(view.cls)}" '
        f'package="{_xml_attr(view.package or package)}" '
        f'content-desc="{_xml_attr(view.content_desc)}" checkable="{flag(view.checkable)}" '
        f'checked="{flag(view.checked)}" clickable="{flag(view.clickable)}" '
        f'enabled="{flag(view.enabled)}" focusable="{flag(view.focusable)}" '
        f'focused="{flag(view.focused)}" scrollable="{flag(view.scrollable)}" '
        f'long-clickable="{flag(view.long_clickable)}" password="{flag(view.password)}" '
        f'selected="{flag(view.selected)}" bounds="[{b[0]},{b[1]}][{b[2]},{b[3]}]"'
    )
    if not view.children:
        out.append(" />")
        return
    out.append(">")
    for i, child in enumerate(view.children):
        _dump_node(child, i, package, out)
    out.append("</node>")


def _launch(comp: str) -> Callable[[VirtualHandset, View], None]:
    """A launcher icon's click: start ``comp`` as the launcher does."""

    def click(h: VirtualHandset, v: View) -> None:
        h.start_activity(
            Intent(
                kind="activity",
                action="android.intent.action.MAIN",
                categories=("android.intent.category.LAUNCHER",),
                component=comp,
                flags=0x10200000,
            )
        )

    return click


def _launcher_screen(handset: VirtualHandset) -> View:
    pkg = "com.miui.home"
    icons = [
        ("Messaging", "com.android.mms/com.android.mms.ui.MmsTabActivity"),
        ("Settings", "com.android.settings/com.android.settings.MainSettings"),
        ("Phone", "com.android.contacts/com.android.contacts.activities.TwelveKeyDialer"),
        ("Contacts", "com.android.contacts/com.android.contacts.activities.PeopleActivity"),
    ]
    children = []
    for i, (label, comp) in enumerate(icons):
        left = 20 + i * 175
        children.append(
            View(
                cls="android.widget.TextView",
                text=label,
                content_desc=label,
                package=pkg,
                resource_id="com.miui.home:id/icon_title",
                clickable=True,
                focusable=True,
                long_clickable=True,
                bounds=(left, 1040, left + 150, 1220),
                on_click=_launch(comp),
            )
        )
    workspace = View(
        cls="android.view.View",
        package=pkg,
        resource_id="com.miui.home:id/workspace",
        scrollable=True,
        focusable=True,
        bounds=(0, 50, SCREEN_W, SCREEN_H),
        children=children,
    )
    return View(package=pkg, children=[workspace])


def _generic_screen(component: str) -> Callable[[VirtualHandset], View]:
    pkg = component.split("/", 1)[0]

    def build(_h: VirtualHandset) -> View:
        return View(
            package=pkg,
            children=[View(cls="android.widget.LinearLayout", package=pkg, bounds=(0, 50, SCREEN_W, SCREEN_H))],
        )

    return build


class ReadOnlyPropertyError(PermissionError):
    """setprop on a ro.* property that already has a value."""


# --- the handset ------------------------------------------------------------------------------

# Emulated system processes: (pid, name, uid, parent pid, wchan).
_SYSTEM_PROCESSES: tuple[tuple[int, str, int, int, str], ...] = (
    (1, "/init", 0, 0, "SyS_epoll_wait"),
    (2, "[kthreadd]", 0, 0, "kthreadd"),
    (142, "/sbin/ueventd", 0, 1, "poll_schedule_timeout"),
    (179, "/system/bin/logd", 1036, 1, "SyS_rt_sigsuspend"),
    (183, "/system/bin/servicemanager", 1000, 1, "binder_thread_read"),
    (184, "/system/bin/vold", 0, 1, "hrtimer_nanosleep"),
    (190, "/system/bin/surfaceflinger", 1000, 1, "SyS_epoll_wait"),
    (194, "/system/bin/rild", 1001, 1, "hrtimer_nanosleep"),
    (196, "/system/bin/netd", 0, 1, "binder_thread_read"),
    (199, "/system/bin/mediaserver", 1013, 1, "binder_thread_read"),
    (236, "/sbin/adbd", 2000, 1, "SyS_epoll_wait"),
    (311, "zygote", 0, 1, "poll_schedule_timeout"),
    (712, "system_server", 1000, 311, "SyS_epoll_wait"),
    (845, "com.android.systemui", 10015, 311, "SyS_epoll_wait"),
    (963, "com.android.phone", 1001, 311, "SyS_epoll_wait"),
    (981, "com.miui.home", 10021, 311, "SyS_epoll_wait"),
    (1024, "com.xiaomi.xmsf", 10030, 311, "SyS_epoll_wait"),
    (1102, "com.android.providers.telephony", 1001, 311, "SyS_epoll_wait"),
    (1187, "com.miui.cloudservice", 10040, 311, "SyS_epoll_wait"),
)


class VirtualHandset:
    """One emulated handset's state; see the module docstring for what persists where."""

    # set at run time by the Messaging screens (emulator/screens.py), which read them with getattr
    # and a default until then: the MMS activation dialog on show, and the compose screen's draft
    mms_dialog: dict[str, Any] | None
    compose_draft: dict[str, Any]

    def __init__(
        self, *, label: str, profile: FirmwareProfile, state_dir: Path, identity: HandsetIdentity | None = None
    ) -> None:
        self.label = label
        self.profile = profile
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.identity = self._load_identity(identity)
        self.fs = DeviceFS(self.state_dir / "root")
        self._ensure_filesystem()
        self._runtime_props: dict[str, str] = {}
        self._persist_path = self.state_dir / "persist.json"
        self._persist_props = self._load_persist()
        self._settings_db = self._open_db(self.state_dir / "settings.db")
        self._sms_db = self._open_db(self.state_dir / "mmssms.db")
        self._contacts_db = self._open_db(self.state_dir / "contacts2.db")
        self._init_settings()
        self._init_sms()
        self._init_contacts()
        from .android.packages import PackageRegistry

        self.pm = PackageRegistry(self.state_dir, self.fs, self.profile.packages, self.profile.sdk)
        self.booted_at = time.monotonic()  # /proc/uptime counts from here; a reboot resets it
        self.screen_on = True  # PowerManager wakefulness (the lab keeps it awake)
        self.call_state = 0  # TelephonyManager.CALL_STATE_*: 0 idle, 2 off-hook
        self.call_number = ""
        self._log: deque[LogEntry] = deque(maxlen=5000)
        self._log_waiters: list[Callable[[LogEntry], None]] = []
        self._processes: dict[int, ProcessInfo] = {}
        self._init_processes()
        self._intent_listeners: list[IntentListener] = []
        self._reassembler = Reassembler()  # concatenated SMS parts waiting for the rest
        # (action, data scheme) -> the activity that handles it, as packages declare them
        self.intent_filters: dict[tuple[str, str], str] = {}
        self._tap_listeners: list[TapListener] = []
        self._screen_builders: dict[str, ScreenBuilder] = {LAUNCHER: _launcher_screen}
        from . import screens  # the Cloud Messaging switch's screens (Settings and Messaging)

        screens.install(self)
        self._back_stack: list[Screen] = []
        self.current_screen = Screen(LAUNCHER, _launcher_screen(self))
        self._closed = False
        self.log("I", "ActivityManager", "System now ready", pid=self.system_server_pid)

    # --- identity & file system -----------------------------------------------------------

    def _load_identity(self, given: HandsetIdentity | None) -> HandsetIdentity:
        path = self.state_dir / "identity.json"
        if given is None and path.exists():
            return HandsetIdentity.from_json(path.read_text(encoding="utf-8"))
        identity = given or generate_identity(
            self.label,
            sim_count=self.profile.sim_count,
            mcc_mnc=self.profile.mcc_mnc,
            operator_name=self.profile.operator_name,
        )
        path.write_text(identity.to_json(), encoding="utf-8")
        return identity

    def _ensure_filesystem(self) -> None:
        for d in (
            "sdcard",
            "data/local/tmp",
            "system/bin",
            "system/app",
            "system/priv-app",
            "system/framework",
            "system/etc",
            "dev",
            "proc",
            "cache",
            "data/data",
        ):
            (self.fs.root / d).mkdir(parents=True, exist_ok=True)
        # /sdcard is /storage/emulated/0 for user 0 (system/core/rootdir/init.rc links
        # /sdcard -> /storage/self/primary -> /storage/emulated/0); tools write to either name
        emulated = self.fs.root / "storage/emulated"
        emulated.mkdir(parents=True, exist_ok=True)
        if not (emulated / "0").exists() and not (emulated / "0").is_symlink():
            (emulated / "0").symlink_to("../../sdcard")
        build_prop = self.fs.root / "system/build.prop"
        if not build_prop.exists():
            lines = [f"{k}={v}" for k, v in sorted(self._static_props().items()) if k.startswith("ro.")]
            build_prop.write_text("\n".join(lines) + "\n", encoding="utf-8")
        for apk in self.profile.packages.values():
            host = self.fs.host_path(apk)
            if not host.exists():
                host.parent.mkdir(parents=True, exist_ok=True)
                host.write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip, like a stub apk
        if self.profile.su:  # a rooted build ships the su binary (the shell's `su` runs it)
            su = self.fs.root / "system/xbin/su"
            if not su.exists():
                su.parent.mkdir(parents=True, exist_ok=True)
                su.write_bytes(b"\x7fELF")
                su.chmod(0o755)

    # --- properties -----------------------------------------------------------------------

    def _load_persist(self) -> dict[str, str]:
        try:
            data = json.loads(self._persist_path.read_text(encoding="utf-8"))
            return {str(k): str(v) for k, v in data.items()}
        except (OSError, ValueError):
            return {}

    def _save_persist(self) -> None:
        self._persist_path.write_text(json.dumps(self._persist_props, indent=1, sort_keys=True), encoding="utf-8")

    def _static_props(self) -> dict[str, str]:
        p = self.profile
        prod = p.product
        props = {
            "ro.build.version.release": p.android_release,
            "ro.build.version.sdk": str(p.sdk),
            "ro.build.version.incremental": p.build_incremental,
            "ro.build.id": p.build_id,
            "ro.build.display.id": f"{p.build_id} {p.build_incremental}".strip(),
            "ro.build.fingerprint": p.build_fingerprint,
            "ro.build.product": prod.device,
            "ro.product.name": prod.name,
            "ro.product.model": prod.model,
            "ro.product.device": prod.device,
            "ro.product.brand": prod.brand,
            "ro.product.manufacturer": prod.manufacturer,
            "ro.miui.ui.version.name": p.miui_version_name,
            "ro.miui.ui.version.code": str(p.miui_version_code),
            "ro.serialno": self.serial,
            "ro.boot.serialno": self.serial,
            # Honest about being emulated, for reports only: no hostctl code path branches on it.
            "ro.hostctl.emulated": "1",
        }
        if prod.marketname:
            props["ro.product.marketname"] = prod.marketname
        if prod.mod_device:
            props["ro.product.mod_device"] = prod.mod_device
        props.update(p.props)
        return props

    def _identity_props(self) -> dict[str, str]:
        sims = self.identity.sims
        joined = lambda attr: ",".join(getattr(s, attr) for s in sims)  # noqa: E731
        props = {
            "gsm.sim.operator.numeric": joined("mcc_mnc"),
            "gsm.sim.operator.alpha": joined("operator_name"),
            "gsm.sim.operator.iso-country": ",".join(_iso(s.mcc) for s in sims),
            "gsm.operator.numeric": joined("mcc_mnc"),
            "gsm.operator.alpha": joined("operator_name"),
            "gsm.operator.iso-country": ",".join(_iso(s.mcc) for s in sims),
            "gsm.operator.isroaming": ",".join("false" for _ in sims),
            "gsm.sim.state": ",".join("READY" for _ in sims),
            "persist.radio.multisim.config": "dsds" if len(sims) > 1 else "ssss",
        }
        props.update(self.identifier_props())
        return props

    def identifier_props(self) -> dict[str, str]:
        """The props that expose IMEI/IMSI/ICCID/MSISDN: the profile's identity_props templates
        (or the default MIUI IMEI set) filled from this handset's SIMs. A template naming a
        slot this handset's identity lacks is left out."""
        sims = self.identity.sims
        lists = {
            "imei": [s.imei for s in sims],
            "imsi": [s.imsi for s in sims],
            "iccid": [s.iccid for s in sims],
            "msisdn": [s.msisdn for s in sims],
        }
        props = {}
        for key, template in self.profile.identity_prop_templates(len(sims)).items():
            try:
                props[key] = template.format(**lists)
            except (IndexError, KeyError):
                continue
        return props

    @property
    def serial(self) -> str:
        return hashlib.sha256(f"serial:{self.label}".encode()).hexdigest()[:8]

    def props(self) -> dict[str, str]:
        """All system properties, as `getprop` lists them."""
        with self._lock:
            props = self._static_props()
            props.update(self._identity_props())
            props.update(self._persist_props)
            props.update(self._runtime_props)
            return props

    def getprop(self, key: str, default: str = "") -> str:
        return self.props().get(key, default)

    def setprop(self, key: str, value: str) -> None:
        """Set a property; ro.* that already have a value are read-only, persist.* persist."""
        if not key or any(c.isspace() for c in key) or len(value) > 91:
            raise ValueError(f"invalid property {key!r}")
        with self._lock:
            if key.startswith("ro.") and key in self.props():
                raise ReadOnlyPropertyError(f"{key} is read-only")
            if key.startswith("persist."):
                self._persist_props[key] = value
                self._save_persist()
            else:
                self._runtime_props[key] = value

    def banner_props(self) -> dict[str, str]:
        """ro.product.name/model/device for the ADB banner, without ':;='."""
        return {k: banner_safe(self.getprop(k)) for k in ("ro.product.name", "ro.product.model", "ro.product.device")}

    # --- settings -------------------------------------------------------------------------

    @staticmethod
    def _open_db(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=DELETE")
        return conn

    def _init_settings(self) -> None:
        with self._lock:
            for ns in NAMESPACES:
                self._settings_db.execute(
                    f"CREATE TABLE IF NOT EXISTS {ns} (_id INTEGER PRIMARY KEY AUTOINCREMENT, "
                    "name TEXT UNIQUE ON CONFLICT REPLACE, value TEXT)"
                )
            self._settings_db.execute("CREATE TABLE IF NOT EXISTS android_metadata (locale TEXT)")
            row = self._settings_db.execute("SELECT count(*) FROM android_metadata").fetchone()
            if row[0] == 0:
                self._settings_db.execute("INSERT INTO android_metadata VALUES ('zh_CN')")
                self._load_default_settings()

    def _load_default_settings(self) -> None:
        for ns in NAMESPACES:
            for key, value in self.profile.default_settings.get(ns, {}).items():
                self._settings_db.execute(f"INSERT INTO {ns} (name, value) VALUES (?, ?)", (key, value))

    @staticmethod
    def _ns(namespace: str) -> str:
        if namespace not in NAMESPACES:
            raise ValueError(f"Invalid namespace '{namespace}'")
        return namespace

    def settings_get(self, namespace: str, key: str) -> str | None:
        with self._lock:
            row = self._settings_db.execute(
                f"SELECT value FROM {self._ns(namespace)} WHERE name = ?", (key,)
            ).fetchone()
        return None if row is None else row[0]

    def settings_put(self, namespace: str, key: str, value: str | None) -> None:
        with self._lock:
            self._settings_db.execute(f"INSERT INTO {self._ns(namespace)} (name, value) VALUES (?, ?)", (key, value))

    def settings_delete(self, namespace: str, key: str) -> int:
        with self._lock:
            cur = self._settings_db.execute(f"DELETE FROM {self._ns(namespace)} WHERE name = ?", (key,))
        return cur.rowcount

    def settings_list(self, namespace: str) -> list[tuple[str, str | None]]:
        with self._lock:
            rows = self._settings_db.execute(f"SELECT name, value FROM {self._ns(namespace)} ORDER BY name").fetchall()
        return [(r[0], r[1]) for r in rows]

    # --- SMS provider ---------------------------------------------------------------------

    def _init_sms(self) -> None:
        cols = ", ".join(f"{n} {t}" for n, t in SMS_COLUMNS)
        with self._lock:
            self._sms_db.execute(f"CREATE TABLE IF NOT EXISTS sms ({cols})")
            self._sms_db.execute(
                "CREATE TABLE IF NOT EXISTS threads (_id INTEGER PRIMARY KEY AUTOINCREMENT, address TEXT UNIQUE)"
            )

    def _authorizer(self, writable: int | None, tables: tuple[str, ...] = ("sms",)):
        def authorize(action: int, arg1: str | None, arg2: str | None, _db, _trigger) -> int:
            if action in (_SQLITE_SELECT, _SQLITE_READ):
                return sqlite3.SQLITE_OK
            if action == _SQLITE_FUNCTION:
                return sqlite3.SQLITE_DENY if (arg2 or "").lower() in _DENIED_FUNCTIONS else sqlite3.SQLITE_OK
            if writable is not None and action == writable and arg1 in tables:
                return sqlite3.SQLITE_OK
            return sqlite3.SQLITE_DENY

        return authorize

    def _guarded(
        self,
        writable: int | None,
        fn: Callable[[sqlite3.Connection], Any],
        *,
        db: sqlite3.Connection | None = None,
        tables: tuple[str, ...] = ("sms",),
    ) -> Any:
        """Run fn with an authorizer that allows reads and at most one kind of write to
        ``tables`` (the sms table unless told)."""
        db = self._sms_db if db is None else db
        steps = [0]

        def progress() -> int:
            steps[0] += 1
            return 1 if steps[0] * 1000 > _MAX_SQL_STEPS else 0

        with self._lock:
            db.set_authorizer(self._authorizer(writable, tables))
            db.set_progress_handler(progress, 1000)
            try:
                return fn(db)
            except sqlite3.Error as exc:
                raise ContentError(f"android.database.sqlite.SQLiteException: {exc}") from exc
            except (OverflowError, ValueError) as exc:
                raise ContentError(f"java.lang.IllegalArgumentException: {exc}") from exc
            finally:
                db.set_authorizer(None)
                db.set_progress_handler(None, 0)

    @staticmethod
    def _where(uri: SmsUri, where: str | None) -> str:
        return _where_sql(
            ([f"type={uri.box}"] if uri.box is not None else [])
            + ([f"_id={uri.row_id}"] if uri.row_id is not None else []),
            where,
        )

    def sms_query(
        self,
        uri: str = "content://sms",
        projection: list[str] | None = None,
        where: str | None = None,
        sort: str | None = None,
    ) -> tuple[list[str], list[tuple]]:
        """Rows of the sms table as the provider returns them: (column names, rows)."""
        parsed = parse_sms_uri(uri)
        cols = ", ".join(projection) if projection else "*"
        sql = f"SELECT {cols} FROM sms{self._where(parsed, where)}"
        sql += f" ORDER BY {sort}" if sort else " ORDER BY date DESC"
        return self._guarded(None, _select(sql))

    def _thread_id(self, address: str | None) -> int:
        self._sms_db.execute("INSERT OR IGNORE INTO threads (address) VALUES (?)", (address or "",))
        return self._sms_db.execute("SELECT _id FROM threads WHERE address = ?", (address or "",)).fetchone()[0]

    def sms_insert(self, values: dict[str, Any], uri: str = "content://sms") -> int:
        """Insert one row; returns its _id. The URI's box sets ``type`` unless given."""
        parsed = parse_sms_uri(uri)
        row = dict(values)
        unknown = [k for k in row if k not in SMS_COLUMN_NAMES]
        if unknown:
            raise ContentError(f"android.database.sqlite.SQLiteException: table sms has no column named {unknown[0]}")
        if parsed.box is not None:
            row.setdefault("type", parsed.box)
        row.setdefault("type", 1)
        row.setdefault("date", int(time.time() * 1000))
        row.setdefault("read", 0)
        with self._lock:
            row.setdefault("thread_id", self._thread_id(row.get("address")))
        return self._guarded(_SQLITE_INSERT, _insert("sms", row))

    def sms_update(self, values: dict[str, Any], uri: str = "content://sms", where: str | None = None) -> int:
        parsed = parse_sms_uri(uri)
        unknown = [k for k in values if k not in SMS_COLUMN_NAMES]
        if unknown or not values:
            raise ContentError(
                f"android.database.sqlite.SQLiteException: no such column: {unknown[0] if unknown else '(none)'}"
            )
        names = list(values)
        sql = f"UPDATE sms SET {', '.join(f'{n} = ?' for n in names)}{self._where(parsed, where)}"
        return self._guarded(_SQLITE_UPDATE, lambda db: db.execute(sql, [values[n] for n in names]).rowcount)

    # --- the radio's SMS path (the carrier calls in; the Messaging app and tests send out) -----

    def receive_sms(self, segment: SmsSegment, slot: int = 0) -> int | None:
        """A segment from the network: once its message is complete, an inbox row (as the
        default SMS app writes it on 4.4+: mx_status 0, the SMSC and the send time kept) and the
        SMS_DELIVER / SMS_RECEIVED broadcasts. Returns the row id, or None while parts are
        missing."""
        with self._lock:
            parts = self._reassembler.add(segment)
        if parts is None:
            return None
        first = parts[0]
        row = self.sms_insert(
            {
                "address": first.sender,
                "body": "".join(p.text for p in parts),
                "date": int(time.time() * 1000),
                "date_sent": int(first.timestamp * 1000),
                "type": SMS_BOXES["inbox"],
                "read": 0,
                "seen": 0,
                "service_center": first.smsc,
                "sim_id": self.profile.sub_id(slot),  # MIUI keeps the subscription id, not the slot
                "mx_status": 0,
                "protocol": 0,
                "reply_path_present": 0,
            }
        )
        self.log("I", "SmsReceiver", f"received SMS from {first.sender} in {len(parts)} part(s)")
        for action in ("android.provider.Telephony.SMS_DELIVER", "android.provider.Telephony.SMS_RECEIVED"):
            self.broadcast(
                Intent(kind="broadcast", action=action, extras={"address": first.sender, "row": row, "slot": slot})
            )
        return row

    def siminfo_query(self) -> tuple[list[str], list[tuple]]:
        """content://telephony/siminfo as SubscriptionManager's table has it (AOSP 5.0+ columns
        _id = subscription id, icc_id, sim_id = slot index, display_name, number). On the KitKat
        builds the provider is a guess: MIUI V5's own mapping is not published."""
        names = ["_id", "icc_id", "sim_id", "display_name", "number"]
        rows = [
            (self.profile.sub_id(s.slot), s.iccid, s.slot, f"SIM{s.slot + 1}", s.msisdn) for s in self.identity.sims
        ]
        return names, rows

    def sms_delete(self, uri: str = "content://sms", where: str | None = None) -> int:
        parsed = parse_sms_uri(uri)
        sql = f"DELETE FROM sms{self._where(parsed, where)}"
        return self._guarded(_SQLITE_DELETE, lambda db: db.execute(sql).rowcount)

    # --- contacts provider (com.android.contacts: raw_contacts and data) --------------------

    def _init_contacts(self) -> None:
        with self._lock:
            for table, columns in (("raw_contacts", RAW_CONTACTS_COLUMNS), ("data", DATA_COLUMNS)):
                cols = ", ".join(f"{n} {t}" for n, t in columns)
                self._contacts_db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({cols})")

    def _contacts(self, writable: int | None, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return self._guarded(writable, fn, db=self._contacts_db, tables=tuple(CONTACT_TABLES))

    @staticmethod
    def _contacts_where(uri: ContactsUri, where: str | None) -> str:
        return _where_sql(
            ([f"_id={uri.row_id}"] if uri.row_id is not None else [])
            + ([f"mimetype='{uri.mimetype}'"] if uri.mimetype is not None else []),
            where,
        )

    def contacts_query(
        self, uri: str, projection: list[str] | None = None, where: str | None = None, sort: str | None = None
    ) -> tuple[list[str], list[tuple]]:
        """Rows of raw_contacts or data as the provider returns them: (column names, rows)."""
        parsed = parse_contacts_uri(uri)
        cols = ", ".join(projection) if projection else "*"
        sql = f"SELECT {cols} FROM {parsed.table}{self._contacts_where(parsed, where)}"
        sql += f" ORDER BY {sort}" if sort else ""
        return self._contacts(None, _select(sql))

    def contacts_insert(self, values: dict[str, Any], uri: str) -> int:
        """Insert a raw contact or a data row as ContactsProvider2 does for a plain caller; returns
        its _id. A phone row tells the provider's observers (CONTACT_PHONE_INSERTED)."""
        parsed = parse_contacts_uri(uri)
        if parsed.row_id is not None or parsed.mimetype is not None:
            raise ContentError(f"java.lang.UnsupportedOperationException: Unknown uri: {uri}")
        row = dict(values)
        unknown = [k for k in row if k not in CONTACT_TABLES[parsed.table]]
        if unknown:
            raise ContentError(
                f"android.database.sqlite.SQLiteException: table {parsed.table} has no column named {unknown[0]}"
            )
        if parsed.table == "raw_contacts":
            name, kind = row.get("account_name"), row.get("account_type")
            if bool(name) != bool(kind):
                raise ContentError(
                    "java.lang.IllegalArgumentException: Must specify both or neither of "
                    f"ACCOUNT_NAME and ACCOUNT_TYPE; URI: {uri}"
                )
            for key in ("account_name", "account_type", "data_set"):  # "" is the local account
                if key in row and not row[key]:
                    row[key] = None
            row_id = self._insert_row("raw_contacts", row)
            self._contacts(
                _SQLITE_UPDATE,
                lambda db: db.execute("UPDATE raw_contacts SET contact_id = _id WHERE _id = ?", (row_id,)),
            )
            return row_id
        for key in ("raw_contact_id", "mimetype"):
            if row.get(key) in (None, ""):
                raise ContentError(f"java.lang.IllegalArgumentException: {key} is required")
        raw_id = row["raw_contact_id"]
        _, found = self.contacts_query(
            f"content://{CONTACTS_AUTHORITY}/raw_contacts", ["_id", "display_name"], f"_id={int(raw_id)}"
        )
        if not found:
            raise ContentError(f"java.lang.IllegalArgumentException: raw_contact_id {raw_id} does not exist")
        row_id = self._insert_row("data", row)
        if row["mimetype"] == MIME_NAME and row.get("data1"):
            self._contacts(
                _SQLITE_UPDATE,
                lambda db: db.execute(
                    "UPDATE raw_contacts SET display_name = ? WHERE _id = ?", (str(row["data1"]), int(raw_id))
                ),
            )
        if row["mimetype"] == MIME_PHONE and row.get("data1"):
            _, names = self.contacts_query(
                f"content://{CONTACTS_AUTHORITY}/raw_contacts/{int(raw_id)}", ["display_name"]
            )
            name = names[0][0] if names and names[0][0] else ""
            self.log("I", "ContactsProvider", f"phone row {row_id} for raw contact {raw_id}")
            self._deliver(
                Intent(
                    kind="provider",
                    action=CONTACT_PHONE_INSERTED,
                    data=f"content://{CONTACTS_AUTHORITY}/data/{row_id}",
                    extras={
                        "number": str(row["data1"]),
                        "name": name,
                        "raw_contact_id": int(raw_id),
                        "data_id": row_id,
                    },
                )
            )
        return row_id

    def _insert_row(self, table: str, row: dict[str, Any]) -> int:
        return self._contacts(_SQLITE_INSERT, _insert(table, row))

    def contacts_delete(self, uri: str, where: str | None = None) -> int:
        """Delete raw contacts (with their data rows: a local contact goes at once) or data rows."""
        parsed = parse_contacts_uri(uri)
        if parsed.table == "data":
            sql = f"DELETE FROM data{self._contacts_where(parsed, where)}"
            return self._contacts(_SQLITE_DELETE, lambda db: db.execute(sql).rowcount)
        _, rows = self.contacts_query(uri, ["_id"], where)
        ids = [int(r[0]) for r in rows]
        if not ids:
            return 0
        marks = ",".join(str(i) for i in ids)
        self._contacts(_SQLITE_DELETE, lambda db: db.execute(f"DELETE FROM data WHERE raw_contact_id IN ({marks})"))
        return self._contacts(
            _SQLITE_DELETE, lambda db: db.execute(f"DELETE FROM raw_contacts WHERE _id IN ({marks})").rowcount
        )

    # --- telephony: one voice call at a time (the carrier/peer side is not emulated) --------

    def start_call(self, number: str) -> bool:
        """An outgoing call is placed: off-hook until :meth:`end_call`. Refused (False) with
        the radio off (airplane mode) or while another call is up."""
        if self.settings_get("global", "airplane_mode_on") == "1" or not self.identity.sims:
            self.log("W", "Telecom", f"call to {number} not placed: radio off (airplane mode)")
            return False
        if self.call_state != 0:
            return False
        self.call_state, self.call_number = 2, number
        self.log("I", "Telecom", f"placing call to {number}: OFFHOOK")
        self._deliver(Intent(kind="call", action="started", data=f"tel:{number}", extras={"number": number}))
        return True

    def end_call(self) -> bool:
        if self.call_state == 0:
            return False
        number, self.call_state, self.call_number = self.call_number, 0, ""
        self.log("I", "Telecom", f"call to {number} ended: IDLE")
        self._deliver(Intent(kind="call", action="ended", data=f"tel:{number}", extras={"number": number}))
        return True

    # --- power ---------------------------------------------------------------------------

    def request_reboot(self, reason: str = "", *, poweroff: bool = False) -> None:
        """What setting ``sys.powerctl`` does (the shell's ``reboot``): whoever holds the power
        (the lab) cycles the handset."""
        self.log("I", "ShutdownThread", f"{'Shutting down' if poweroff else 'Rebooting'}, reason: {reason or 'null'}")
        self._deliver(Intent(kind="reboot", extras={"reason": reason, "poweroff": poweroff}))

    def lose_runtime_state(self) -> None:
        """What a power cycle loses: runtime properties, a call in progress, the activity stack."""
        with self._lock:
            self._runtime_props.clear()
        self.call_state, self.call_number = 0, ""
        self.booted_at = time.monotonic()
        self.screen_on = True
        self.go_home()

    # --- logcat ---------------------------------------------------------------------------

    def log(
        self,
        priority: str | int,
        tag: str,
        message: str,
        *,
        pid: int | None = None,
        tid: int | None = None,
        when: float | None = None,
    ) -> LogEntry:
        if isinstance(priority, int):
            priority = _PRIORITY_LETTERS.get(priority, "I")
        priority = priority.upper()[:1] or "I"
        if priority not in "VDIWEF":
            priority = "I"
        pid = self.system_server_pid if pid is None else pid
        entry = LogEntry(
            time.time() if when is None else when, pid, pid if tid is None else tid, priority, tag, message
        )
        with self._lock:
            self._log.append(entry)
            waiters = list(self._log_waiters)
        for waiter in waiters:
            waiter(entry)
        return entry

    def log_entries(self) -> list[LogEntry]:
        with self._lock:
            return list(self._log)

    def log_clear(self) -> None:
        with self._lock:
            self._log.clear()

    def add_log_listener(self, callback: Callable[[LogEntry], None]) -> Callable[[], None]:
        """Call ``callback`` for each new entry; returns a function that removes it."""
        with self._lock:
            self._log_waiters.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._log_waiters:
                    self._log_waiters.remove(callback)

        return remove

    # --- processes ------------------------------------------------------------------------

    def _init_processes(self) -> None:
        for pid, name, uid, ppid, wchan in _SYSTEM_PROCESSES:
            kernel = name.startswith("[")
            app = ppid == 311 or name == "zygote"
            self._processes[pid] = ProcessInfo(
                pid=pid,
                name=name,
                uid=uid,
                ppid=ppid,
                wchan=wchan,
                vsz=0 if kernel else (1021344 if app else 9000 + pid * 7),
                rss=0 if kernel else (42000 + pid * 3 if app else 1200 + pid),
            )
        self.system_server_pid = 712
        self._real_app_names: set[str] = set()
        self.zygote_pid = 311

    def register_process(self, name: str, pid: int, uid: int) -> None:
        """A real app process of the lab: it replaces an emulated one of the same name."""
        with self._lock:
            self._real_app_names.add(name)
            for old in [p for p in self._processes.values() if p.name == name]:
                del self._processes[old.pid]
            self._processes[pid] = ProcessInfo(
                pid=pid, name=name, uid=uid, ppid=self.zygote_pid, vsz=1021344, rss=48000, registered=True
            )
        self.log(
            "I",
            "ActivityManager",
            f"Start proc {name} for service {name}: pid={pid} uid={uid} gids={{50{uid % 1000:03d}}}",
        )

    def unregister_process(self, pid: int) -> None:
        with self._lock:
            proc = self._processes.pop(pid, None)
        if proc is not None:
            self.log("I", "ActivityManager", f"Process {proc.name} (pid {pid}) has died")

    def processes(self) -> list[ProcessInfo]:
        with self._lock:
            return sorted(self._processes.values(), key=lambda p: p.pid)

    def pids_of(self, name: str) -> list[int]:
        return [p.pid for p in self.processes() if p.name == name or p.name.rsplit("/", 1)[-1] == name]

    # --- activity manager -----------------------------------------------------------------

    def add_intent_listener(self, callback: IntentListener) -> Callable[[], None]:
        """``callback(intent)`` sees every intent `am` sends; a broadcast may return a result
        code. Returns a function that removes the listener."""
        self._intent_listeners.append(callback)
        return lambda: self._intent_listeners.remove(callback) if callback in self._intent_listeners else None

    def _deliver(self, intent: Intent) -> int | None:
        result = None
        for listener in list(self._intent_listeners):
            value = listener(intent)
            if isinstance(value, int) and not isinstance(value, bool):
                result = value
        return result

    def package_installed(self, package: str) -> bool:
        return self.pm.installed(package)

    # --- boot and network --------------------------------------------------------------------

    def uptime(self) -> float:
        """Seconds since this boot (``/proc/uptime``, SystemClock.elapsedRealtime)."""
        return time.monotonic() - self.booted_at

    @property
    def wlan_address(self) -> str:
        """The handset's address on the lab's Wi-Fi (``wlan0``), stable per label. The lab
        network is not routed anywhere; the 192.168.50.0/24 plan is our choice, not a device's."""
        n = int(hashlib.sha256(f"wlan:{self.label}".encode()).hexdigest()[:4], 16)
        return f"192.168.50.{100 + n % 100}/24"

    @property
    def wlan_mac(self) -> str:
        d = hashlib.sha256(f"mac:{self.label}".encode()).digest()
        return "64:09:80:" + ":".join(f"{b:02x}" for b in d[:3])  # 64:09:80 is a Xiaomi OUI

    def start_activity(self, intent: Intent) -> str | None:
        """Start an activity; returns Android's error text, or None on success."""
        comp = intent.component
        if comp is None and intent.action and intent.data:  # intent filters (implicit intents)
            scheme = intent.data.split(":", 1)[0]
            comp = self.intent_filters.get((intent.action, scheme))
        if comp is None:
            if intent.package and self.package_installed(intent.package):
                comp = f"{intent.package}/{intent.package}.MainActivity"
            else:
                return f"Error: Activity not started, unable to resolve {intent.describe()}"
        pkg, _cls = comp.split("/", 1)
        if not self.package_installed(pkg) and comp not in self._screen_builders:
            return "Error type 3\nError: Activity class {" + comp + "} does not exist."
        self.log("I", "ActivityManager", f"START u0 {intent.describe()[7:]} from pid 0")
        self._deliver(replace(intent, component=comp))
        self._ensure_app_process(pkg, comp)
        self.show_screen(comp)
        return None

    def _ensure_app_process(self, package: str, component: str) -> None:
        """An activity runs in its app's process: ActivityManagerService starts one when none
        is running (``Start proc NAME for activity COMP: pid=N uid=U``, startProcessLocked), so
        ``dumpsys activity top`` names a pid (adbutils' app_current needs one) and ``ps`` lists it.
        Emulated only: no OS process exists for it."""
        if self.pids_of(package) or package in self._real_app_names:
            return  # running, or a real app of the lab: the lab (re)starts its process
        p = self.pm.get(package)
        uid = p.uid if p is not None else 10001
        with self._lock:
            pid = max([q.pid for q in self._processes.values() if not q.registered and q.pid < 5000] + [1200]) + 1
            self._processes[pid] = ProcessInfo(
                pid=pid, name=package, uid=uid, ppid=self.zygote_pid, vsz=1021344, rss=42000 + pid * 3
            )
        self.log(
            "I",
            "ActivityManager",
            f"Start proc {package} for activity {component}: pid={pid} uid={uid} gids={{50{uid % 1000:03d}}}",
        )

    def start_service(self, intent: Intent, *, caller_uid: int = SHELL_UID) -> str | None:
        """Start a service; returns Android's error text, or None on success."""
        comp = intent.component
        pkg = intent.target_package
        if pkg is None or not self.package_installed(pkg):
            return "Error: Not found; no service started."
        permission = self.profile.service_permissions.get(comp or "")
        if permission and caller_uid == SHELL_UID:
            self.log(
                "W",
                "ActivityManager",
                f"Permission Denial: Accessing service "
                f"{intent.short_component()} from pid=0, uid={caller_uid} requires "
                f"{permission}",
            )
            return f"Error: Requires permission {permission}"
        self._deliver(intent)
        return None

    def broadcast(self, intent: Intent) -> int:
        """Send a broadcast; returns the final result code (0 unless a listener sets one)."""
        result = self._deliver(intent)
        return 0 if result is None else result

    def force_stop(self, package: str) -> None:
        self.log("I", "ActivityManager", f"Force stopping {package} appid=0 user=0: from pid 0")
        self._deliver(Intent(kind="force-stop", package=package))
        if self.current_screen.package == package:
            self.go_home()

    def clear_package(self, package: str) -> bool:
        if not self.package_installed(package):
            return False
        self._deliver(Intent(kind="clear", package=package))
        return True

    # --- UI -------------------------------------------------------------------------------

    def register_screen(self, component: str, builder: ScreenBuilder) -> None:
        """Screens are keyed by activity component ("pkg/pkg.Cls" or "pkg/.Cls")."""
        self._screen_builders[normalize_component(component)] = builder

    def show_screen(self, component: str) -> Screen:
        comp = normalize_component(component)
        builder = self._screen_builders.get(comp) or _generic_screen(comp)
        if self.current_screen.component != comp:
            self._back_stack.append(self.current_screen)
        self.current_screen = Screen(comp, builder(self))
        return self.current_screen

    def refresh_screen(self) -> None:
        """Rebuild the current screen from its builder (after state changes)."""
        comp = self.current_screen.component
        builder = self._screen_builders.get(comp) or _generic_screen(comp)
        self.current_screen = Screen(comp, builder(self))

    def go_home(self) -> None:
        self._back_stack.clear()
        self.current_screen = Screen(LAUNCHER, _launcher_screen(self))

    def go_back(self) -> None:
        if self._back_stack:
            self.current_screen = self._back_stack.pop()
        else:
            self.go_home()

    def add_tap_listener(self, callback: TapListener) -> Callable[[], None]:
        self._tap_listeners.append(callback)
        return lambda: self._tap_listeners.remove(callback) if callback in self._tap_listeners else None

    def view_at(self, x: int, y: int) -> View | None:
        """The deepest clickable (or checkable) view under the point, else the deepest view."""
        best_clickable = best_any = None
        stack = [self.current_screen.root]
        while stack:
            view = stack.pop()
            if not view.contains(x, y):
                continue
            best_any = view
            if view.clickable or view.checkable:
                best_clickable = view
            stack.extend(reversed(view.children))
        return best_clickable or best_any

    def tap(self, x: int, y: int) -> View | None:
        view = self.view_at(x, y)
        if view is not None and view.enabled:
            if view.checkable:
                view.checked = not view.checked
            if view.on_click is not None:
                view.on_click(self, view)
        for listener in list(self._tap_listeners):
            listener(self, view, x, y)
        return view

    def type_text(self, text: str) -> None:
        for view in self.current_screen.root.walk():
            if view.focused and view.cls.endswith("EditText"):
                view.text += text
                return

    def ui_dump_xml(self) -> str:
        out = ["<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>", '<hierarchy rotation="0">']
        _dump_node(self.current_screen.root, 0, self.current_screen.package, out)
        out.append("</hierarchy>")
        return "".join(out)

    # --- lifecycle ------------------------------------------------------------------------

    def factory_reset(self) -> None:
        """Wipe user data; keep the identity (hardware and SIMs)."""
        import shutil

        with self._lock:
            for ns in NAMESPACES:
                self._settings_db.execute(f"DELETE FROM {ns}")
            self._load_default_settings()
            self._sms_db.execute("DELETE FROM sms")
            self._sms_db.execute("DELETE FROM threads")
            for table in CONTACT_TABLES:
                self._contacts_db.execute(f"DELETE FROM {table}")
            self.call_state, self.call_number = 0, ""
            for d in ("sdcard", "data/local/tmp", "data/data"):  # apps' data too (pref_mx, ...)
                host = self.fs.root / d
                shutil.rmtree(host, ignore_errors=True)
                host.mkdir(parents=True, exist_ok=True)
            self._persist_props.clear()
            self._persist_path.unlink(missing_ok=True)
            self._runtime_props.clear()
            self._log.clear()
        self.pm.wipe()
        self._deliver(Intent(kind="factory-reset"))
        self.go_home()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        from .userland.runtime import close_userland  # its sandbox and every process in it

        close_userland(self)
        # under the lock: closing a connection while another thread (an app's call being
        # answered) is inside execute() on it crashes the process in sqlite
        with self._lock:
            for db in (self._settings_db, self._sms_db, self._contacts_db):
                try:
                    db.close()
                except sqlite3.Error:
                    pass

    def __enter__(self) -> VirtualHandset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_ISO = {
    "460": "cn",
    "310": "us",
    "311": "us",
    "234": "gb",
    "262": "de",
    "208": "fr",
    "404": "in",
    "405": "in",
    "250": "ru",
    "454": "hk",
    "466": "tw",
}


def _where_sql(clauses: list[str], where: str | None) -> str:
    """A provider's WHERE: what its URI selects, AND the caller's ``--where`` (in parentheses)."""
    clauses = clauses + ([f"({where})"] if where else [])
    return " WHERE " + " AND ".join(clauses) if clauses else ""


def _select(sql: str) -> Callable[[sqlite3.Connection], tuple[list[str], list[tuple]]]:
    """A query as a provider answers it: (column names, rows)."""

    def run(db: sqlite3.Connection) -> tuple[list[str], list[tuple]]:
        cur = db.execute(sql)
        return [d[0] for d in cur.description], cur.fetchall()

    return run


def _insert(table: str, row: dict[str, Any]) -> Callable[[sqlite3.Connection], int]:
    """One row into ``table`` (an empty row gets its defaults); the new _id."""
    names = list(row)
    sql = f"INSERT INTO {table} ({', '.join(names) or '_id'}) VALUES ({', '.join('?' for _ in names) or 'NULL'})"

    def run(db: sqlite3.Connection) -> int:
        rowid = db.execute(sql, [row[n] for n in names]).lastrowid
        if rowid is None:  # sqlite3 sets it after every successful INSERT
            raise RuntimeError(f"INSERT INTO {table} gave no row id")
        return rowid

    return run


def _iso(mcc: str) -> str:
    return _ISO.get(mcc, "")
