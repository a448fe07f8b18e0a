"""PCAPdroid on an emulated handset: its documented app API, its consent screens and its dumps.

PCAPdroid (package ``com.emanuelef.remote_capture``, minSdk 21) is a user app the lab installs on
handsets whose build can run it (Android 5.0+); it is not part of any firmware. Its app API is an
activity, ``.activities.CaptureCtrl``, driven by intent extras (docs/app_api.md upstream)::

    am start -e action start -e pcap_dump_mode pcap_file -e pcap_name NAME \\
        [-e pcapng_format true] [-e dump_extensions true] [-e app_filter PKG[,PKG]] \\
        [-e root_capture true] [-e snaplen N] [-e max_dump_size N] \\
        -n com.emanuelef.remote_capture/.activities.CaptureCtrl
    am start -e action stop -n ...           am start -e action get_status -n ...

What the emulation does as the app does (CaptureCtrl.java, pcap_dump.c upstream):

- A caller without a package (``adb shell am start``) gets the consent window every time, for
  every action: ``allow_btn`` / ``deny_btn``, Allow enabled 1.5 s after the window shows. A host
  tool taps Allow with ``input tap`` (MIUI may refuse injection; see device.INJECTION_HINT).
- The first VPN-mode start asks Android's VPN consent (``com.android.vpndialogs/.ConfirmDialog``,
  ``android:id/button1`` OK); the answer is kept in the app's data (gone after a factory reset).
  ``root_capture`` needs root (a build with ``su``) and asks nothing.
- ``pcap_file`` mode writes ``/sdcard/Download/PCAPdroid/<pcap_name>`` (default
  ``PCAPdroid_<dd_Mon_HH_MM_SS>.pcap[ng]``), overwriting a file of that name: classic pcap with
  LINKTYPE_RAW (101), or with ``pcapng_format`` (a paid feature; the lab's copy has it) pcapng
  with PCAPdroid's section options, a RAW interface, and with ``dump_extensions`` its custom UID
  mapping blocks (type 0xBAD, PEN 62652) and ``u-<uid>`` packet comments.
- In VPN mode the handset's address in the dump is PCAPdroid's VPN address 10.215.173.1; in root
  mode the handset's own (10.64.0.N). Server addresses and ports are the tap's (wiretap.py).
- Other dump modes (http_server, udp_exporter, tcp_exporter) and the legacy ``pcapdroid_trailer``
  are not emulated: the capture runs and the log says so. DNS is not captured: the lab resolves
  the Xiaomi hosts without DNS.

Log lines go to the handset's logcat under the app's tags (CaptureCtrl, CaptureService).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from ..wire.pcapwrite import LINKTYPE_RAW, PcapWriter
from .handset import SCREEN_W, Intent, View
from .wiretap import Connection, TapSink, handset_address

if TYPE_CHECKING:
    from .lab import LabHandset

__all__ = [
    "APK_PATH",
    "CAPTURE_CTRL",
    "MIN_SDK",
    "PACKAGE",
    "PcapdroidApp",
    "PcapdroidPcapngWriter",
    "VPN_ADDRESS",
    "VPN_DIALOG",
]

PACKAGE = "com.emanuelef.remote_capture"
APK_PATH = f"/data/app/{PACKAGE}-1/base.apk"
MIN_SDK = 21
CAPTURE_CTRL = f"{PACKAGE}/{PACKAGE}.activities.CaptureCtrl"
VPN_DIALOG = "com.android.vpndialogs/com.android.vpndialogs.ConfirmDialog"
VPN_ADDRESS = "10.215.173.1"
VERSION_NAME, VERSION_CODE = "1.7.2", 75
DOWNLOAD_DIR = "/sdcard/Download/PCAPdroid"
ALLOW_DELAY = 1.5  # CaptureCtrl enables Allow after this many seconds
DEFAULT_SNAPLEN = 65535
PEN = 62652  # PCAPdroid's private enterprise number (custom blocks)
CUSTOM_BLOCK = 0x00000BAD
BLOCK_UID_MAP = 1
PREFS = f"/data/data/{PACKAGE}/shared_prefs/hostctl_emulation.json"


def _bool(value: Any) -> bool:
    """CaptureSettings.getBool: a boolean extra, or a string parsed like Boolean.parseBoolean."""
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() == "true"


def _int(value: Any, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"not an integer: {value!r}") from None


class PcapdroidPcapngWriter:
    """pcapng as PCAPdroid writes it: SHB (shb_hardware, shb_os, shb_userappl), one IDB with
    LINKTYPE_RAW and no options, then EPBs with microsecond timestamps; with extensions, a custom
    UID-mapping block before an app's first packet and a ``u-<uid>`` comment on every packet."""

    def __init__(self, f: BinaryIO, *, snaplen: int, device: str, os_name: str, extensions: bool) -> None:
        self.f = f
        self.snaplen = snaplen
        self.extensions = extensions
        self.packets = 0
        self._mapped: set[int] = set()
        self.uid = -1  # the uid of the packet being written (set by the sink)
        self.app_names: dict[int, tuple[str, str]] = {}
        shb = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _opts(
            [(2, device.encode()), (3, os_name.encode()), (4, f"PCAPdroid v{VERSION_NAME}".encode())]
        )
        idb = struct.pack("<HHI", LINKTYPE_RAW, 0, snaplen)
        f.write(_block(0x0A0D0D0A, shb) + _block(0x00000001, idb))

    def _uid_map(self, uid: int) -> bytes:
        package, app = self.app_names.get(uid, ("unknown", "Unknown app"))
        pkg_b, app_b = package.encode()[:63], app.encode()[:63]
        body = (
            struct.pack("<IHBx", PEN, 1, BLOCK_UID_MAP)
            + struct.pack("<iBB", uid, len(pkg_b), len(app_b))
            + pkg_b
            + app_b
        )
        return _block(CUSTOM_BLOCK, body + b"\0" * (-len(body) % 4))

    def packet(self, ts: float, data: bytes, *, comment: str | None = None) -> None:
        out = b""
        opts: list[tuple[int, bytes]] = []
        if self.extensions:
            if self.uid not in self._mapped:
                self._mapped.add(self.uid)
                out += self._uid_map(self.uid)
            opts.append((1, f"u-{self.uid}".encode()))
        usec = round(ts * 1_000_000)
        cap = data[: self.snaplen]
        body = (
            struct.pack("<IIIII", 0, usec >> 32, usec & 0xFFFFFFFF, len(cap), len(data))
            + cap
            + b"\0" * (-len(cap) % 4)
            + _opts(opts)
        )
        self.f.write(out + _block(0x00000006, body))
        self.packets += 1

    def flush(self) -> None:
        self.f.flush()


def _opts(opts: list[tuple[int, bytes]]) -> bytes:
    if not opts:
        return b""
    out = b"".join(struct.pack("<HH", c, len(v)) + v + b"\0" * (-len(v) % 4) for c, v in opts)
    return out + struct.pack("<HH", 0, 0)


def _block(kind: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", kind, total) + body + struct.pack("<I", total)


class _UidSink(TapSink):
    """A sink that tells PCAPdroid's pcapng writer whose packet it is writing."""

    def _write(self, ts: float, frame: bytes) -> None:
        writer = self.writer
        if isinstance(writer, PcapdroidPcapngWriter):
            writer.uid = self._current_uid
        super()._write(ts, frame)

    _current_uid = -1

    def _with(self, conn: Connection, fn: Any, *args: Any) -> None:
        self._current_uid = conn.owner[2] if conn.owner else -1
        fn(conn, *args)

    def opened(self, conn: Connection, ts: float) -> None:
        self._with(conn, super().opened, ts)

    def join(self, conn: Connection, ts: float) -> None:
        self._with(conn, super().join, ts)

    def data(self, conn: Connection, ts: float, direction: str, data: bytes) -> None:
        self._with(conn, super().data, ts, direction, data)

    def fin(self, conn: Connection, ts: float, direction: str) -> None:
        self._with(conn, super().fin, ts, direction)

    def reset(self, conn: Connection, ts: float, direction: str) -> None:
        self._with(conn, super().reset, ts, direction)

    def refused(self, conn: Connection, ts: float) -> None:
        self._with(conn, super().refused, ts)


@dataclass
class _Running:
    sink: TapSink | None
    device_path: str | None
    settings: dict[str, Any]
    started_at: float


class PcapdroidApp:
    """The app on one lab handset: CaptureCtrl's intents, its consent screens, the capture."""

    def __init__(self, lh: LabHandset) -> None:
        self.lh = lh
        self.h = lh.handset
        self.pending: tuple[str, dict[str, Any]] | None = None  # the request awaiting consent
        self.vpn_pending: dict[str, Any] | None = None  # a start awaiting VPN consent
        self.shown_at = 0.0
        self.running: _Running | None = None
        self.last_stats: dict[str, int] = {}
        self.h.register_screen(CAPTURE_CTRL, self._consent_screen)
        self.h.register_screen(VPN_DIALOG, self._vpn_screen)
        self.h.add_intent_listener(self._on_intent)

    # -- state kept in the app's data (wiped by a factory reset) --------------------------------
    def _prefs(self) -> dict[str, Any]:
        try:
            return json.loads(self.h.fs.host_path(PREFS).read_text())
        except (OSError, ValueError):
            return {}

    def _save_prefs(self, prefs: dict[str, Any]) -> None:
        path = self.h.fs.host_path(PREFS)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(prefs))

    def _log(self, prio: str, tag: str, msg: str) -> None:
        self.h.log(prio, tag, msg)

    # -- intents ---------------------------------------------------------------------------------
    def _on_intent(self, intent: Intent) -> None:
        if intent.kind == "force-stop" and intent.package == PACKAGE:
            self._stop_capture("force-stopped")
            return
        if intent.kind != "activity" or intent.component != CAPTURE_CTRL:
            return
        action = intent.extras.get("action")
        if action is None:
            self._log("E", "CaptureCtrl", "no action provided")
            self._finish(toast="Capture control denied")
            return
        # getCallingPackage() is null for `am start`: no saved grant applies, ask every time
        self.pending = (str(action), dict(intent.extras))
        self.shown_at = time.monotonic()
        self._later(ALLOW_DELAY, self._refresh_if_showing)

    def _later(self, delay: float, fn: Any) -> None:
        try:
            asyncio.get_running_loop().call_later(delay, fn)
        except RuntimeError:  # no loop (a handset driven from a plain thread): do it now
            fn()

    def _refresh_if_showing(self) -> None:
        if self.h.current_screen.component in (CAPTURE_CTRL, VPN_DIALOG):
            self.h.refresh_screen()

    def _finish(self, *, toast: str | None = None) -> None:
        """The activity finishes: back to what was on screen before it."""
        if toast:
            self._log("I", "Toast", toast)

        def back() -> None:
            for _ in range(3):  # the VPN dialog may sit on top of the consent window
                if self.h.current_screen.component not in (CAPTURE_CTRL, VPN_DIALOG):
                    break
                self.h.go_back()

        self._later(0, back)

    # -- screens ---------------------------------------------------------------------------------
    def _consent_screen(self, h: Any) -> View:
        pkg = PACKAGE
        ready = time.monotonic() - self.shown_at >= ALLOW_DELAY
        action = self.pending[0] if self.pending else ""
        return View(
            package=pkg,
            children=[
                View(
                    cls="android.widget.TextView",
                    package=pkg,
                    resource_id=f"{pkg}:id/ctrl_consent_title",
                    text="PCAPdroid",
                    bounds=(40, 400, SCREEN_W - 40, 480),
                ),
                View(
                    cls="android.widget.TextView",
                    package=pkg,
                    resource_id=f"{pkg}:id/ctrl_consent_msg",
                    text=f"An app wants to control PCAPdroid ({action})",
                    bounds=(40, 480, SCREEN_W - 40, 600),
                ),
                View(
                    cls="android.widget.RadioButton",
                    package=pkg,
                    resource_id=f"{pkg}:id/choice_once",
                    text="Only this time",
                    checkable=True,
                    checked=True,
                    clickable=True,
                    bounds=(40, 600, SCREEN_W - 40, 680),
                ),
                View(
                    cls="android.widget.RadioButton",
                    package=pkg,
                    resource_id=f"{pkg}:id/choice_forever",
                    text="Always",
                    checkable=True,
                    clickable=True,
                    bounds=(40, 680, SCREEN_W - 40, 760),
                ),
                View(
                    cls="android.widget.Button",
                    package=pkg,
                    resource_id=f"{pkg}:id/deny_btn",
                    text="Deny",
                    clickable=True,
                    focusable=True,
                    bounds=(40, 780, 340, 880),
                    on_click=self._deny,
                ),
                View(
                    cls="android.widget.Button",
                    package=pkg,
                    resource_id=f"{pkg}:id/allow_btn",
                    text="Allow",
                    clickable=True,
                    focusable=True,
                    enabled=ready,
                    bounds=(380, 780, SCREEN_W - 40, 880),
                    on_click=self._allow,
                ),
            ],
        )

    def _vpn_screen(self, h: Any) -> View:
        pkg = "com.android.vpndialogs"
        return View(
            package=pkg,
            children=[
                View(
                    cls="android.widget.TextView",
                    package=pkg,
                    resource_id="android:id/alertTitle",
                    text="Connection request",
                    bounds=(40, 400, SCREEN_W - 40, 480),
                ),
                View(
                    cls="android.widget.TextView",
                    package=pkg,
                    resource_id="com.android.vpndialogs:id/warning",
                    text="PCAPdroid wants to set up a VPN connection that allows it to monitor network "
                    "traffic. Only accept if you trust the source.",
                    bounds=(40, 480, SCREEN_W - 40, 700),
                ),
                View(
                    cls="android.widget.Button",
                    package=pkg,
                    resource_id="android:id/button2",
                    text="Cancel",
                    clickable=True,
                    focusable=True,
                    bounds=(40, 740, 340, 840),
                    on_click=self._vpn_cancel,
                ),
                View(
                    cls="android.widget.Button",
                    package=pkg,
                    resource_id="android:id/button1",
                    text="OK",
                    clickable=True,
                    focusable=True,
                    bounds=(380, 740, SCREEN_W - 40, 840),
                    on_click=self._vpn_ok,
                ),
            ],
        )

    # -- consent answers ---------------------------------------------------------------------------
    def _deny(self, h: Any, v: View) -> None:
        self.pending = None
        self._finish(toast="Capture control denied")

    def _allow(self, h: Any, v: View) -> None:
        if self.pending is None:
            return
        action, extras = self.pending
        self.pending = None
        self._log("I", "Toast", "Capture control allowed")
        if action == "start":
            self._request_start(extras)
            return
        if action == "stop":
            self._log("D", "CaptureCtrl", "Stopping capture")
            self._stop_capture("stopped")
        elif action == "get_status":
            self._log("D", "CaptureCtrl", "Returning status")
            self._log(
                "I",
                "CaptureCtrl",
                f"status: running={self.running is not None} "
                f"version_name={VERSION_NAME} version_code={VERSION_CODE} "
                + " ".join(f"{k}={v}" for k, v in self._stats().items()),
            )
        else:
            self._log("E", "CaptureCtrl", f"unknown action: {action}")
            self._finish(toast="Capture control denied")
            return
        self._finish()

    def _request_start(self, extras: dict[str, Any]) -> None:
        self._log("D", "CaptureCtrl", "Starting capture, caller=null")
        root = _bool(extras.get("root_capture"))
        if root and not self.h.profile.su:
            root = False  # Prefs.isRootCaptureEnabled: needs root; VPN mode instead
        if not root and not self._prefs().get("vpn_prepared"):
            self.vpn_pending = dict(extras, root_capture=False)
            self.h.show_screen(VPN_DIALOG)  # VpnService.prepare(): Android asks the user
            return
        self._start_capture(dict(extras, root_capture=root))
        self._finish()

    def _vpn_ok(self, h: Any, v: View) -> None:
        extras, self.vpn_pending = self.vpn_pending, None
        prefs = self._prefs()
        prefs["vpn_prepared"] = True
        self._save_prefs(prefs)
        if extras is not None:
            self._start_capture(extras)
        self._finish()

    def _vpn_cancel(self, h: Any, v: View) -> None:
        self.vpn_pending = None
        self._log("W", "CaptureHelper", "VPN permission denied")
        self._finish(toast="VPN permission denied")

    # -- the capture ---------------------------------------------------------------------------------
    def _start_capture(self, extras: dict[str, Any]) -> None:
        if self.running is not None:
            self._log("W", "CaptureService", "a capture is already running")
            return
        try:
            snaplen = _int(extras.get("snaplen"), 0) or DEFAULT_SNAPLEN
            max_dump = _int(extras.get("max_dump_size"), 0)
        except ValueError as exc:
            self._log("E", "CaptureCtrl", f"bad extra: {exc}")
            return
        mode = str(extras.get("pcap_dump_mode") or "none")
        pcapng = _bool(extras.get("pcapng_format"))
        extensions = _bool(extras.get("dump_extensions"))
        apps = {a for a in str(extras.get("app_filter") or "").split(",") if a}
        root = bool(extras.get("root_capture"))
        settings = {
            "pcap_dump_mode": mode,
            "pcapng_format": pcapng,
            "dump_extensions": extensions,
            "app_filter": sorted(apps),
            "root_capture": root,
            "snaplen": snaplen,
        }
        sink, device_path = None, None
        if mode == "pcap_file":
            name = str(extras.get("pcap_name") or "") or time.strftime("PCAPdroid_%d_%b_%H_%M_%S") + (
                ".pcapng" if pcapng else ".pcap"
            )
            if "/" in name:
                self._log("E", "CaptureCtrl", f"invalid pcap_name {name!r}")
                return
            device_path = f"{DOWNLOAD_DIR}/{name}"
            sink = self._open_dump(
                device_path,
                snaplen=snaplen,
                pcapng=pcapng,
                extensions=extensions,
                apps=apps,
                root=root,
                max_dump=max_dump or None,
            )
        elif mode != "none":
            self._log("W", "CaptureService", f"dump mode {mode} is not emulated: capturing without a dump")
        self.running = _Running(sink, device_path, settings, time.time())
        self._log(
            "I",
            "CaptureService",
            f"Capture started ({'root' if root else 'VPN'} mode)"
            + (f", dumping to {device_path}" if device_path else ""),
        )

    def _open_dump(
        self,
        device_path: str,
        *,
        snaplen: int,
        pcapng: bool,
        extensions: bool,
        apps: set[str],
        root: bool,
        max_dump: int | None,
    ) -> TapSink:
        host = self.h.fs.host_path(device_path)
        host.parent.mkdir(parents=True, exist_ok=True)
        f = open(host, "wb")  # noqa: SIM115 - the sink closes it
        writer: Any
        if pcapng:
            writer = PcapdroidPcapngWriter(
                f,
                snaplen=snaplen,
                extensions=extensions,
                device=f"{self.h.getprop('ro.product.manufacturer')} {self.h.getprop('ro.product.model')}",
                os_name=f"Android {self.h.getprop('ro.build.version.release')}",
            )
            writer.app_names = self._app_names()
        else:
            writer = PcapWriter(f, linktype=LINKTYPE_RAW, snaplen=snaplen)
        f.flush()
        accept = (lambda c: c.package in apps) if apps else None
        client = handset_address(self.lh.index) if root else VPN_ADDRESS
        sink = _UidSink(
            writer,
            linktype=LINKTYPE_RAW,
            file=f,
            client_address=client,
            accept=accept,
            max_bytes=max_dump,
            syn_comments=False,
            name=f"{self.lh.label} PCAPdroid",
        )
        if self.lh.tap is not None:
            self.lh.tap.subscribe(sink)
        return sink

    def _app_names(self) -> dict[int, tuple[str, str]]:
        names = {}
        for p in self.h.processes():
            if p.uid >= 10000 and "/" not in p.name:
                names[p.uid] = (p.name, p.name.rsplit(".", 1)[-1].capitalize())
        return names

    def _stats(self) -> dict[str, int]:
        if self.running is None or self.running.sink is None:
            return dict(self.last_stats)
        sink = self.running.sink
        size = 0
        with contextlib.suppress(OSError, ValueError):
            size = sink.file.tell() if sink.file is not None else 0
        return {"pkts_dumped": sink.packets, "bytes_dumped": size}

    def _stop_capture(self, why: str) -> None:
        running, self.running = self.running, None
        if running is None:
            return
        self.last_stats = {}
        if running.sink is not None:
            self.last_stats = self._stats_of(running.sink)
            if self.lh.tap is not None:
                self.lh.tap.unsubscribe(running.sink)
            running.sink.close()
        self._log("I", "CaptureService", f"Capture {why}: " + " ".join(f"{k}={v}" for k, v in self.last_stats.items()))

    @staticmethod
    def _stats_of(sink: TapSink) -> dict[str, int]:
        size = 0
        with contextlib.suppress(OSError, ValueError):
            size = sink.file.tell() if sink.file is not None else 0
        return {"pkts_dumped": sink.packets, "bytes_dumped": size}

    def power_off(self) -> None:
        """The handset loses power: the capture ends with the app (the file keeps what it has)."""
        self.pending = self.vpn_pending = None
        self._stop_capture("ended (power off)")
