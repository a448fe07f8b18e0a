"""Capture sources: record a handset's traffic into a pcap or pcapng file on this host.

One interface for four ways of getting the bytes, so the wire analyser never cares which was used:

``lab``
    The emulated lab's wire tap (hostctl.emulator.wiretap), through the lab's control channel
    (``capture-start`` / ``capture-stop``): the lab writes pcapng straight into the output file.
    The lab is the one serving the handset's adb server port; a serial that is not one of its
    handsets is an error that names the sources that work on real handsets.
``pcapdroid``
    PCAPdroid (``com.emanuelef.remote_capture``, Android 5.0+, no root) driven through its
    documented app API: ``am start -e action start -e pcap_dump_mode pcap_file -e pcap_name NAME
    [-e pcapng_format true -e dump_extensions true] [-e app_filter PKG] -n
    com.emanuelef.remote_capture/.activities.CaptureCtrl``, then ``-e action stop``. Started from
    the shell it asks for consent at every start and stop (and, the first time, Android's VPN
    consent): this source taps Allow/OK through ``uiautomator dump`` and ``input tap``, which MIUI
    refuses unless "USB debugging (Security settings)" is on. The dump,
    ``/sdcard/Download/PCAPdroid/NAME`` (raw-IP pcap, or pcapng with PCAPdroid's custom blocks),
    is pulled with the adb sync protocol.
``tcpdump``
    tcpdump on a rooted handset (adbd as root, or ``su -c``): ``[timeout S] tcpdump -i any -s 0 -U
    -w /data/local/tmp/hostctl-TOKEN.pcap``; stopped early with ``kill -2`` to the tcpdump pid that
    appeared when it started (never by name); then pulled and deleted from the handset.
``host:IFACE``
    dumpcap (pcapng) or tcpdump (pcap) on one of this host's interfaces, e.g. the Wi-Fi access
    point the handsets use; stopped with SIGINT to the pid this process started.

Usage::

    with source_for("lab") as src:          # or run_capture(src, handset, out, duration=30)
        src.start(handset, "boot.pcapng")
        ...
        result = src.stop()                 # CaptureResult(path, packets, bytes, source, notes, ...)

Errors are `CaptureError`; one raised after the capture began carries ``result``: what was saved
so far (a file left on this host, or on the handset, is named there and kept).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .device import INJECTION_HINT, Handset, RootStatus, ShellResult
from .errors import DeviceError, HostctlError

__all__ = [
    "CaptureError",
    "CaptureResult",
    "CaptureSource",
    "HostSource",
    "LabSource",
    "PcapdroidSource",
    "SOURCES",
    "TcpdumpSource",
    "inspect_capture",
    "pull_file",
    "run_capture",
    "source_for",
]

SOURCES = ("lab", "pcapdroid", "tcpdump", "host:IFACE")
PCAPDROID = "com.emanuelef.remote_capture"
PCAPDROID_CTRL = f"{PCAPDROID}/.activities.CaptureCtrl"
PCAPDROID_DIR = "/sdcard/Download/PCAPdroid"
PCAPDROID_MIN_SDK = 21
VPN_DIALOGS = "com.android.vpndialogs"
UI_DUMP = "/data/local/tmp/hostctl-capture-ui.xml"
MAX_DEVICE_SECONDS = 6 * 3600  # the device-side cap of an open-ended tcpdump (`timeout`)
BLOCK_TIMEOUT = 1.1  # libpcap's TPACKET_V3 block timeout (1 s): packets may wait that long
DUMPCAP_SETTLE = 0.25
IMMEDIATE_GRACE = 0.3


class CaptureError(HostctlError):
    """A capture could not start, or did not end well. ``result`` (when the capture had begun)
    is what was kept; ``kind`` is "not-runnable" (no such source here: no lab, no root, no app),
    "timeout", or "error"."""

    def __init__(
        self,
        message: str,
        *,
        source: str,
        serial: str | None = None,
        result: CaptureResult | None = None,
        kind: str = "error",
    ) -> None:
        self.source = source
        self.serial = serial
        self.result = result
        self.kind = kind
        if result is not None and result.path.exists():
            message += f" (kept: {result.path}, {result.packets if result.packets is not None else '?'} packets)"
        super().__init__(message)


@dataclass
class CaptureResult:
    """A finished capture: the file on this host and what is in it."""

    path: Path
    source: str
    serial: str | None
    packets: int | None
    bytes: int
    format: str | None  # "pcap" | "pcapng" | None (unreadable or empty)
    linktypes: list[int]
    started_at: float
    stopped_at: float
    notes: list[str] = field(default_factory=list)
    device_path: str | None = None  # where the handset kept it (pcapdroid, tcpdump)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return max(0.0, self.stopped_at - self.started_at)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["duration"] = round(self.duration, 3)
        return data


def _argv0(proc: subprocess.Popen[Any]) -> str:
    """The program a Popen ran (this module starts every tool from an argument list)."""
    args = proc.args
    if isinstance(args, (list, tuple)):
        return str(args[0])
    return str(args)


def inspect_capture(path: Path) -> dict[str, Any]:
    """Format, link types, packet count and reader notes of a capture file (streamed, never
    loaded); ``{"format": None, ...}`` with the reason when it is empty or not a capture."""
    from .wire.pcapread import CaptureError as ReadError
    from .wire.pcapread import CaptureReader

    info: dict[str, Any] = {"format": None, "linktypes": [], "packets": None, "errors": [], "skipped_blocks": {}}
    try:
        size = path.stat().st_size
    except OSError as exc:
        info["errors"].append(f"{path}: {exc.strerror or exc}")
        return info
    if size == 0:
        info["errors"].append(f"{path}: empty file")
        return info
    try:
        with CaptureReader(path) as reader:
            packets = sum(1 for _ in reader.records())
            stats = reader.stats
    except ReadError as exc:
        info["errors"].append(str(exc))
        return info
    info.update(
        format=stats["format"],
        packets=packets,
        errors=list(stats["errors"]),
        skipped_blocks={str(k): v for k, v in stats["skipped_blocks"].items()},
        linktypes=sorted({i["linktype"] for i in stats["interfaces"]}),
    )
    return info


def pull_file(handset: Handset, device_path: str, local_path: Path) -> int:
    """Copy a file from the handset with the adb sync protocol (RECV), through a temporary file
    next to ``local_path``. Every socket read has the adb connection's timeout. Returns its size."""
    from adbutils.errors import AdbError

    from .device import _client

    tmp = local_path.with_name(local_path.name + ".part")
    try:
        device = _client(handset.server).device(serial=handset.serial)
        size = device.sync.pull_file(device_path, tmp)
    except (AdbError, OSError, EOFError) as exc:
        raise DeviceError(
            f"{handset.serial}: pulling {device_path} failed: {exc}",
            serial=handset.serial,
            command=f"sync RECV {device_path}",
        ) from None
    os.replace(tmp, local_path)
    return size


# --- the interface --------------------------------------------------------------------------------


class CaptureSource:
    """Start, then stop: ``start(handset, out_path)`` and ``stop() -> CaptureResult``.

    A context manager: leaving the block stops a capture still running (its result is then in
    ``self.result``; an error while stopping after another error is noted, not raised over it)."""

    name = ""

    def __init__(self, *, timeout: float = 20.0) -> None:
        self.timeout = timeout
        self.handset: Handset | None = None
        self.out: Path | None = None
        self.started_at = 0.0
        self.running = False
        self.result: CaptureResult | None = None
        self.notes: list[str] = []
        self.duration: float | None = None

    @property
    def serial(self) -> str | None:
        return self.handset.serial if self.handset is not None else None

    def start(
        self, handset: Handset | None, out_path: str | os.PathLike[str], *, duration: float | None = None
    ) -> None:
        """Begin capturing into ``out_path`` (created or overwritten; its directory must exist).
        ``duration`` is a hint for device-side limits; `run_capture` enforces it."""
        if self.running:
            raise CaptureError("this capture is already running", source=self.name, serial=self.serial)
        out = Path(out_path).expanduser().absolute()
        if not out.parent.is_dir():
            raise CaptureError(
                f"--out {out}: no directory {out.parent}",
                source=self.name,
                serial=handset.serial if handset else None,
                kind="usage",
            )
        self.handset, self.out, self.duration = handset, out, duration
        self.notes = []
        self.started_at = time.time()
        self._start()
        self.running = True

    def stop(self) -> CaptureResult:
        if not self.running:
            if self.result is not None:
                return self.result
            raise CaptureError("no capture running", source=self.name, serial=self.serial)
        self.running = False
        self.result = self._stop()
        return self.result

    def check(self) -> None:
        """Raise CaptureError if the capture has died while running (polled by run_capture)."""

    def progress(self) -> dict[str, Any]:
        """What can be said cheaply while it runs: elapsed seconds, bytes so far if known."""
        size = None
        if self.out is not None and self.out.exists():
            size = self.out.stat().st_size
        return {"elapsed": time.time() - self.started_at, "bytes": size}

    def __enter__(self) -> CaptureSource:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self.running:
            return
        try:
            self.stop()
        except CaptureError as stop_error:
            if exc is None:
                raise
            self.result = stop_error.result
            if isinstance(exc, CaptureError) and exc.result is None:
                exc.result = stop_error.result

    # subclasses
    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> CaptureResult:
        raise NotImplementedError

    def _result(self, *, device_path: str | None = None, **details: Any) -> CaptureResult:
        assert self.out is not None
        info: dict[str, Any] = (
            inspect_capture(self.out)
            if self.out.exists()
            else {"format": None, "linktypes": [], "packets": None, "errors": [f"{self.out}: no file"]}
        )
        notes = list(self.notes) + [f"reader: {e}" for e in info["errors"][:5]]
        if info.get("skipped_blocks"):
            details["skipped_blocks"] = info["skipped_blocks"]
        return CaptureResult(
            path=self.out,
            source=self.name,
            serial=self.serial,
            packets=info["packets"],
            bytes=self.out.stat().st_size if self.out.exists() else 0,
            format=info["format"],
            linktypes=info["linktypes"],
            started_at=self.started_at,
            stopped_at=time.time(),
            notes=notes,
            device_path=device_path,
            details=details,
        )

    def _error(self, message: str, *, kind: str = "error", evidence: bool = False, **kw: Any) -> CaptureError:
        result = self._result(**kw) if evidence and self.out is not None else None
        return CaptureError(message, source=self.name, serial=self.serial, result=result, kind=kind)


def run_capture(
    source: CaptureSource,
    handset: Handset | None,
    out_path: str | os.PathLike[str],
    *,
    duration: float | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    interval: float = 1.0,
) -> CaptureResult:
    """Capture for ``duration`` seconds (None: until Ctrl-C), reporting ``progress`` every
    ``interval``; Ctrl-C ends the capture normally (the result notes it)."""
    source.start(handset, out_path, duration=duration)
    deadline = None if duration is None else time.monotonic() + duration
    interrupted = False
    try:
        while deadline is None or time.monotonic() < deadline:
            wait = interval if deadline is None else min(interval, max(0.0, deadline - time.monotonic()))
            time.sleep(wait)
            source.check()
            if progress is not None:
                progress(source.progress())
    except KeyboardInterrupt:
        interrupted = True
    except CaptureError:
        if source.running:
            try:
                source.stop()
            except CaptureError as exc:
                raise exc from None
        raise
    result = source.stop()
    if interrupted:
        result.notes.append("stopped by Ctrl-C")
    return result


def source_for(spec: str, **options: Any) -> CaptureSource:
    """The source named ``spec`` (lab, pcapdroid, tcpdump, host:IFACE); options go to its
    constructor (unknown ones are an error)."""
    if spec == "lab":
        return LabSource(**options)
    if spec == "pcapdroid":
        return PcapdroidSource(**options)
    if spec == "tcpdump":
        return TcpdumpSource(**options)
    if spec.startswith("host:"):
        iface = spec[5:]
        if not iface or not re.fullmatch(r"[\w.:@-]+", iface):
            raise CaptureError(
                f"--source {spec!r}: name an interface of this host, e.g. host:wlan0", source="host", kind="usage"
            )
        return HostSource(iface, **options)
    raise CaptureError(f"unknown capture source {spec!r} (known: {', '.join(SOURCES)})", source=spec, kind="usage")


# --- lab -----------------------------------------------------------------------------------------


class LabSource(CaptureSource):
    """The emulated lab's wire tap, asked through the control channel of the lab that serves the
    handset's adb server port."""

    name = "lab"

    def __init__(self, *, home: Path | None = None, linktype: str = "ethernet", timeout: float = 20.0) -> None:
        super().__init__(timeout=timeout)
        self.home = home
        self.linktype = linktype
        self.capture_id: str | None = None
        self.lab_info: dict[str, Any] | None = None

    def _lab(self) -> dict[str, Any] | None:
        from .emulator.lab import default_home, running_lab

        assert self.handset is not None
        return running_lab(self.home or default_home(), self.handset.server.port)

    def _start(self) -> None:
        from .emulator.lab import LabError, control_request

        if self.handset is None:
            raise self._error("the lab source captures a handset: give its serial", kind="usage")
        server = self.handset.server
        if server.host not in ("127.0.0.1", "localhost", "::1"):
            raise self._error(
                f"the lab source needs the lab on this host; adb server {server} is remote "
                "(run hostctl on the lab's host)",
                kind="not-runnable",
            )
        info = self._lab()
        if info is None:
            raise self._error(
                f"no emulated lab serves adb port {server.port}, so {self.handset.serial} is "
                "not an emulated handset: use --source pcapdroid, tcpdump (rooted) or host:IFACE",
                kind="not-runnable",
            )
        serials = [h.get("serial") for h in info.get("handsets", [])]
        if self.handset.serial not in serials:
            raise self._error(
                f"{self.handset.serial} is not an emulated handset of the lab on adb port "
                f"{server.port} (its handsets: {', '.join(map(str, serials)) or 'none'}): use "
                "--source pcapdroid, tcpdump (rooted) or host:IFACE",
                kind="not-runnable",
            )
        req: dict[str, Any] = {
            "cmd": "capture-start",
            "serial": self.handset.serial,
            "path": str(self.out),
            "linktype": self.linktype,
        }
        if self.duration is not None:  # the lab ends it by itself should we die
            req["max_seconds"] = self.duration + 120
        try:
            reply = control_request(info, req, timeout=self.timeout)
        except LabError as exc:
            raise self._error(f"the lab refused the capture: {exc}", kind="not-runnable") from None
        self.lab_info = info
        self.capture_id = reply["id"]
        self.notes.append(
            f"lab capture {reply['id']} of {reply['label']} (synthetic address "
            f"{reply.get('address')}); hosts: "
            + ", ".join(f"{name}={addr}" for addr, name in sorted(reply.get("names", {}).items()))
        )

    def check(self) -> None:
        if self._lab() is None:
            raise self._lab_gone()

    def _lab_gone(self) -> CaptureError:
        self.running = False
        self.notes.append("the lab stopped while capturing: the file holds what it had written")
        self.result = self._result(capture_id=self.capture_id)
        return CaptureError(
            f"the emulated lab on adb port {self.handset.server.port if self.handset else '?'} "
            "went away during the capture",
            source=self.name,
            serial=self.serial,
            result=self.result,
        )

    def _stop(self) -> CaptureResult:
        from .emulator.lab import LabError, control_request

        info = self._lab()
        if info is None or (self.lab_info is not None and info.get("pid") != self.lab_info.get("pid")):
            raise self._lab_gone()
        try:
            reply = control_request(info, {"cmd": "capture-stop", "id": self.capture_id}, timeout=self.timeout)
        except LabError as exc:
            if self._lab() is None:
                raise self._lab_gone() from None
            self.notes.append(f"capture-stop failed: {exc}")
            raise self._error(f"the lab did not stop capture {self.capture_id}: {exc}", evidence=True) from None
        if reply.get("ended") == "expired":
            self.notes.append("the lab had ended the capture at its time limit")
        if reply.get("full"):
            self.notes.append("the lab stopped recording at the size limit")
        return self._result(
            capture_id=self.capture_id, connections=reply.get("connections"), payload_bytes=reply.get("payload_bytes")
        )


# --- on the handset: shared by pcapdroid and tcpdump -----------------------------------------------


class _DeviceSource(CaptureSource):
    device_path: str | None = None

    def _shell(self, command: str, *, timeout: float | None = None) -> ShellResult:
        assert self.handset is not None
        return self.handset.shell(command, timeout=timeout or self.timeout)

    def _pull(self) -> None:
        """Copy the handset's file to ``out`` (kept on the handset if this fails)."""
        assert self.handset is not None and self.out is not None and self.device_path is not None
        try:
            size = pull_file(self.handset, self.device_path, self.out)
        except DeviceError as exc:
            self.notes.append(f"the capture stays on the handset at {self.device_path}: {exc}")
            raise self._error(
                f"could not copy {self.device_path} from {self.handset.serial}: {exc}",
                evidence=True,
                device_path=self.device_path,
            ) from None
        self.notes.append(f"pulled {self.device_path} ({size} bytes) with adb sync")

    def progress(self) -> dict[str, Any]:
        out: dict[str, Any] = {"elapsed": time.time() - self.started_at, "bytes": None}
        if self.device_path:
            try:
                res = self._shell(f"ls -l {shlex.quote(self.device_path)}", timeout=5)
                m = re.search(r"\s(\d+)\s+\d{4}-\d\d-\d\d", res.stdout)
                out["bytes"] = int(m.group(1)) if m else None
            except HostctlError:
                pass
        return out


# --- PCAPdroid -----------------------------------------------------------------------------------


class PcapdroidSource(_DeviceSource):
    """PCAPdroid's app API, with its consent screens answered through the UI."""

    name = "pcapdroid"

    def __init__(
        self,
        *,
        pcapng: bool = False,
        extensions: bool | None = None,
        app_filter: str | None = None,
        consent_timeout: float = 30.0,
        timeout: float = 20.0,
    ) -> None:
        super().__init__(timeout=timeout)
        self.pcapng = pcapng
        self.extensions = pcapng if extensions is None else extensions
        self.app_filter = app_filter
        self.consent_timeout = consent_timeout

    def _am(self, action: str, extras: list[str]) -> None:
        cmd = "am start -e action " + action + "".join(" " + e for e in extras) + f" -n {PCAPDROID_CTRL}"
        res = self._shell(cmd)
        if "Error" in res.output:
            raise self._error(
                f"{self.serial}: `{cmd}` failed: {res.output.strip()[:300]}",
                evidence=action == "stop",
                device_path=self.device_path,
            )

    def _start(self) -> None:
        if self.handset is None:
            raise self._error("the pcapdroid source captures a handset: give its serial", kind="usage")
        if not self._shell(f"pm path {PCAPDROID}").ok:
            sdk = self._shell("getprop ro.build.version.sdk").stdout.strip()
            why = (
                f"; it needs Android 5.0 (API {PCAPDROID_MIN_SDK}) and this handset runs API {sdk}"
                if sdk.isdigit() and int(sdk) < PCAPDROID_MIN_SDK
                else " (install it from F-Droid or Google Play)"
            )
            raise self._error(
                f"PCAPdroid ({PCAPDROID}) is not installed on {self.handset.serial}{why}; "
                "other sources: tcpdump (rooted), host:IFACE, lab (emulated)",
                kind="not-runnable",
            )
        ext = ".pcapng" if self.pcapng else ".pcap"
        name = f"hostctl-{secrets.token_hex(4)}{ext}"
        self.device_path = f"{PCAPDROID_DIR}/{name}"
        self._shell(f"rm -f {self.device_path}")  # PCAPdroid overwrites; be sure what we pull is new
        extras = ["-e pcap_dump_mode pcap_file", f"-e pcap_name {name}"]
        if self.pcapng:
            extras.append("-e pcapng_format true")
        if self.extensions:
            extras.append("-e dump_extensions true")
        if self.app_filter:
            extras.append(f"-e app_filter {shlex.quote(self.app_filter)}")
        self._am("start", extras)
        self._consent(until=self._dump_exists, what="start")
        self.notes.append(
            f"PCAPdroid capture started into {self.device_path}"
            + (" (pcapng, PCAPdroid extensions)" if self.pcapng else " (pcap, raw IP)")
        )

    def _dump_exists(self) -> bool:
        return self._shell(f"ls {self.device_path}", timeout=5).ok

    def _consent(self, *, until: Callable[[], bool], what: str) -> None:
        """Tap PCAPdroid's Allow (once enabled) and Android's VPN OK until ``until()``, or until
        the consent window is gone after Allow was tapped."""
        deadline = time.monotonic() + self.consent_timeout
        tapped = False
        last = ""
        while time.monotonic() < deadline:
            nodes = self._ui()
            allow = _node(nodes, f"{PCAPDROID}:id/allow_btn")
            vpn_ok = _node(nodes, "android:id/button1", package=VPN_DIALOGS)
            if vpn_ok is not None:
                self._tap(vpn_ok)
                self.notes.append("accepted Android's VPN consent for PCAPdroid (first use)")
                tapped = True
                continue
            if allow is not None:
                last = "PCAPdroid's consent window is showing"
                if allow.get("enabled") == "true":
                    self._tap(allow)
                    tapped = True
                else:
                    time.sleep(0.3)  # Allow is enabled 1.5 s after the window shows
                continue
            if until():
                return
            if tapped and what == "stop":
                return
            last = "no consent window and no capture yet"
            time.sleep(0.3)
        logs = self._shell("logcat -d -s CaptureCtrl:* CaptureService:* CaptureHelper:*", timeout=10).stdout
        raise self._error(
            f"PCAPdroid did not {what} the capture within {self.consent_timeout:.0f} s ({last}); "
            f"its log: {logs.strip()[-500:] or 'empty'}",
            kind="timeout",
            evidence=what == "stop",
            device_path=self.device_path,
        )

    def _ui(self) -> list[dict[str, str]]:
        res = self._shell(f"uiautomator dump {UI_DUMP} >/dev/null && cat {UI_DUMP}")
        text = res.stdout
        start = text.find("<?xml")
        if start < 0 or "<hierarchy" not in text:
            raise self._error(f"{self.serial}: uiautomator dump failed: {res.output.strip()[:200]}")
        try:
            root = ET.fromstring(text[start:])
        except ET.ParseError as exc:
            raise self._error(f"{self.serial}: unreadable uiautomator dump: {exc}") from None
        return [dict(n.attrib) for n in root.iter("node")]

    def _tap(self, node: dict[str, str]) -> None:
        m = re.fullmatch(r"\[(-?\d+),(-?\d+)\]\[(-?\d+),(-?\d+)\]", node.get("bounds", ""))
        if not m:
            raise self._error(f"{self.serial}: a node without bounds: {node}")
        x1, y1, x2, y2 = map(int, m.groups())
        res = self._shell(f"input tap {(x1 + x2) // 2} {(y1 + y2) // 2}")
        if "INJECT_EVENTS" in res.output:
            raise self._error(
                f"{self.serial}: PCAPdroid asks for consent on screen and {INJECTION_HINT}",
                kind="not-runnable",
                evidence=self.running,
                device_path=self.device_path,
            )

    def _stop(self) -> CaptureResult:
        stop_error: HostctlError | None = None
        try:
            self._am("stop", [])
            self._consent(until=lambda: False, what="stop")
        except HostctlError as exc:  # pull what PCAPdroid has written anyway
            stop_error = exc
            self.notes.append(f"stopping PCAPdroid failed ({exc}): it may still be capturing")
        self.notes.append(f"the dump stays on the handset at {self.device_path}")
        self._pull()
        if stop_error is not None:
            kind = stop_error.kind if isinstance(stop_error, CaptureError) else "error"
            raise self._error(
                f"PCAPdroid did not confirm the stop: {stop_error}",
                kind=kind,
                evidence=True,
                device_path=self.device_path,
            )
        return self._result(device_path=self.device_path)


def _node(nodes: list[dict[str, str]], resource_id: str, *, package: str | None = None) -> dict[str, str] | None:
    for n in nodes:
        if n.get("resource-id") == resource_id and (package is None or n.get("package") == package):
            return n
    return None


# --- tcpdump on a rooted handset -------------------------------------------------------------------


class TcpdumpSource(_DeviceSource):
    """tcpdump as root on the handset, ended by SIGINT to its pid, pulled with adb sync."""

    name = "tcpdump"

    def __init__(self, *, interface: str = "any", bpf: str | None = None, timeout: float = 20.0) -> None:
        super().__init__(timeout=timeout)
        self.interface = interface
        self.bpf = bpf
        self.prefix = ""
        self.pid: int | None = None
        self._thread: threading.Thread | None = None
        self._outcome: ShellResult | BaseException | None = None

    def _root(self, command: str, *, timeout: float | None = None) -> ShellResult:
        cmd = command if not self.prefix else f"{self.prefix} -c {shlex.quote(command)}"
        return self._shell(cmd, timeout=timeout)

    def _pids(self) -> set[int]:
        return {int(p) for p in self._root("pidof tcpdump", timeout=10).stdout.split() if p.isdigit()}

    def _start(self) -> None:
        if self.handset is None:
            raise self._error("the tcpdump source captures a handset: give its serial", kind="usage")
        status, su_path = self.handset.root_status(probe_su=True)
        if status is RootStatus.ADBD:
            self.prefix = ""
        elif status is RootStatus.SU and su_path:
            self.prefix = su_path
        else:
            raise self._error(
                f"{self.handset.serial} is not rooted (root: {status.value}): tcpdump needs root; "
                "use --source pcapdroid (no root), host:IFACE, or lab (emulated)",
                kind="not-runnable",
            )
        version = self._root("tcpdump --version")
        if version.exit_code == 127 or "not found" in version.output:
            raise self._error(
                f"tcpdump is not installed on {self.handset.serial} (put a static build in "
                "/system/xbin or /data/local/tmp)",
                kind="not-runnable",
            )
        self.notes.append(version.output.strip().splitlines()[0] if version.output.strip() else "tcpdump")
        cap = int(self.duration + 60) if self.duration else MAX_DEVICE_SECONDS
        with_timeout = self._root("timeout 1 true").ok
        before = self._pids()
        self.device_path = f"/data/local/tmp/hostctl-{secrets.token_hex(4)}.pcap"
        cmd = (
            (f"timeout {cap} " if with_timeout else "")
            + f"tcpdump -i {shlex.quote(self.interface)} -s 0 -U -w {self.device_path}"
            + (f" {shlex.quote(self.bpf)}" if self.bpf else "")
        )
        if not with_timeout:
            self.notes.append("no `timeout` on the handset: tcpdump runs until hostctl stops it")
        self._thread = threading.Thread(target=self._run, args=(cmd, cap + 30), name="hostctl-tcpdump", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                raise self._error(f"tcpdump ended at once on {self.handset.serial}: {self._describe()}", evidence=False)
            new = self._pids() - before
            if len(new) == 1:
                self.pid = new.pop()
                self.notes.append(f"tcpdump pid {self.pid}: {cmd}")
                return
            time.sleep(0.2)
        raise self._error(
            f"tcpdump did not appear in the process list of {self.handset.serial} within {self.timeout:.0f} s",
            kind="timeout",
        )

    def _run(self, cmd: str, timeout: float) -> None:
        try:
            self._outcome = self._root(cmd, timeout=timeout)
        except BaseException as exc:  # noqa: BLE001 - kept for stop() to report
            self._outcome = exc

    def _describe(self) -> str:
        out = self._outcome
        if isinstance(out, ShellResult):
            return f"exit {out.exit_code}: {out.output.strip()[-400:]}"
        return str(out)

    def check(self) -> None:
        if self._thread is not None and not self._thread.is_alive() and self.running:
            self.notes.append(f"tcpdump ended by itself ({self._describe()})")

    def _stop(self) -> CaptureResult:
        assert self.handset is not None
        if self._thread is not None and self._thread.is_alive() and self.pid is not None:
            # tcpdump -w is not in immediate mode: the kernel may still hold up to a block timeout
            # of packets, which SIGINT would drop
            time.sleep(BLOCK_TIMEOUT)
            try:
                res = self._root(f"kill -2 {self.pid}", timeout=10)
                if not res.ok:
                    self.notes.append(f"kill -2 {self.pid}: {res.output.strip()}")
            except HostctlError as exc:
                self.notes.append(f"could not signal tcpdump: {exc}")
            self._thread.join(15)
        if self._thread is not None and self._thread.is_alive():
            self.notes.append("tcpdump did not exit within 15 s of SIGINT; pulled what it wrote (-U)")
        elif self._outcome is not None:
            if isinstance(self._outcome, ShellResult):
                stats = [ln for ln in self._outcome.output.splitlines() if "packet" in ln]
                self.notes.extend(f"tcpdump: {ln.strip()}" for ln in stats)
            else:
                self.notes.append(f"the tcpdump shell ended with: {self._outcome}")
        self._pull()
        try:
            self._root(f"rm -f {self.device_path}", timeout=10)
        except HostctlError:
            self.notes.append(f"the capture also stays on the handset at {self.device_path}")
        return self._result(device_path=self.device_path, pid=self.pid, interface=self.interface)


# --- on a host interface -----------------------------------------------------------------------------


class HostSource(CaptureSource):
    """dumpcap or tcpdump on this host's interface, stopped by SIGINT to the pid started here."""

    name = "host"

    def __init__(
        self, interface: str, *, tool: str | None = None, bpf: str | None = None, timeout: float = 20.0
    ) -> None:
        super().__init__(timeout=timeout)
        self.name = f"host:{interface}"
        self.interface = interface
        self.tool = tool
        self.bpf = bpf
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: list[str] = []
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        self._listening = False

    def _command(self) -> list[str]:
        tools = [self.tool] if self.tool else ["tcpdump", "dumpcap"]
        for tool in tools:
            exe = shutil.which(tool)
            if exe is None:
                continue
            if os.path.basename(exe) == "dumpcap":
                cmd = [exe, "-i", self.interface, "-w", str(self.out)]  # pcapng
                if self.bpf:
                    cmd += ["-f", self.bpf]
                return cmd
            # --immediate-mode: each packet handed over at once, not in blocks up to 1 s late
            cmd = [exe, "-i", self.interface, "-s", "0", "-U", "--immediate-mode", "-n", "-w", str(self.out)]
            return cmd + ([self.bpf] if self.bpf else [])
        raise self._error(f"none of {', '.join(tools)} is installed on this host", kind="not-runnable")

    @property
    def _is_dumpcap(self) -> bool:
        return self.proc is not None and os.path.basename(_argv0(self.proc)) == "dumpcap"

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._stderr.append(line)
                del self._stderr[:-50]
            if "Capturing on" in line or "listening on" in line:
                self._listening = True
                self._ready.set()
        self._ready.set()

    def _start(self) -> None:
        cmd = self._command()
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise self._error(f"cannot run {cmd[0]}: {exc}", kind="not-runnable") from None
        self._reader = threading.Thread(target=self._read_stderr, name="hostctl-capture-stderr", daemon=True)
        self._reader.start()
        if not self._ready.wait(self.timeout) or not self._listening or self.proc.poll() is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(2 if self._ready.is_set() else 0.01)
            code = self.proc.poll()
            if code is None:
                self._terminate()
            raise self._error(
                f"{os.path.basename(cmd[0])} on {self.interface} did not start "
                f"(exit {self.proc.returncode}): {' | '.join(self._stderr[-5:])}",
                kind="not-runnable" if code is not None else "timeout",
            )
        if self._is_dumpcap:
            # dumpcap says "Capturing on" a moment before its capture is live, and has no immediate
            # mode: give it DUMPCAP_SETTLE at the start and at the stop (see _stop)
            out = self.out
            if out is None:
                raise self._error("dumpcap started without an output file", kind="not-runnable")
            deadline = time.monotonic() + self.timeout
            while not (out.exists() and out.stat().st_size > 0) and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(DUMPCAP_SETTLE)
        self.notes.append(f"{' '.join(shlex.quote(c) for c in cmd)} (pid {self.proc.pid})")

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.running = False
            self.result = self._result(tool_exit=self.proc.returncode)
            raise CaptureError(
                f"{_argv0(self.proc)} on {self.interface} exited early ({self.proc.returncode}): "
                + " | ".join(self._stderr[-3:]),
                source=self.name,
                serial=self.serial,
                result=self.result,
            )

    def _terminate(self) -> None:
        assert self.proc is not None
        for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            try:
                os.kill(self.proc.pid, sig)  # the process we started, by its pid
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                self.notes.append(f"{os.path.basename(_argv0(self.proc))} ignored signal {sig.name}")

    def _stop(self) -> CaptureResult:
        assert self.proc is not None
        if self.proc.poll() is None:
            # SIGINT ends the capture loop without draining the kernel's buffer: give the tool time
            # to read what is there (dumpcap gets it in blocks up to 1 s late; tcpdump in
            # immediate mode at once, once it is scheduled)
            time.sleep(BLOCK_TIMEOUT if self._is_dumpcap else IMMEDIATE_GRACE)
        self._terminate()
        if self._reader is not None:
            self._reader.join(5)
        self.notes.extend(ln for ln in self._stderr if "packet" in ln.lower())
        return self._result(tool_exit=self.proc.returncode, interface=self.interface)
