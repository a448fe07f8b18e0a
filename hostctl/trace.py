"""Evidence tracing: the agent's hooks in a handset's apps, streamed to JSON Lines.

:class:`Tracer` attaches to each app (by package name) on a Frida device, loads the agent
(``agent/``), starts its hooks (``startTrace``) and writes every event it sends, with the host's
arrival time next to the agent's clock, to ``OUT/events.jsonl`` (schema: :mod:`hostctl.events`).
When an app dies it records the detach, watches for the package to come back, attaches again and
records the :class:`~hostctl.events.Gap` in which the app ran untraced. :meth:`Tracer.stop` stops
the hooks (the agent answers after every event it sent before), detaches, flushes the file to the
disk and writes ``OUT/summary.json``.

TLS secrets the agent extracts (``tls-secret`` events: one NSS key log line each, see
``agent/src/keylog.ts``) are also appended, once each, to ``OUT/sslkeylog.txt`` (mode 0600: it
decrypts the traced apps' TLS) as they arrive, so ``wire-check --keylog OUT/sslkeylog.txt`` (or
Wireshark's ``tls.keylog_file``) decrypts a capture of the same time.

The device is reached as the frida CLI reaches it: through the adb server named by
``ANDROID_ADB_SERVER_PORT`` and frida-server's ``tcp:27042`` on the handset -- on the emulated lab
a Frida portal answers there, with no special case here. Spawning (``spawn=True``) catches what an
app does at start-up where the device supports it; the emulated portal and some MIUI builds do
not, and the tracer then attaches to the running app and says so. Every blocking Frida call has
a deadline (``call_timeout``); a Frida error becomes a :class:`TraceError` that says what to do,
and a client/server major-version mismatch a :class:`FridaVersionError`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from . import agent
from .errors import HostctlError
from .events import (
    AgentError,
    AgentStop,
    Attached,
    Detached,
    Event,
    EventError,
    EventWriter,
    Gap,
    HookStatus,
    InvalidMessage,
    Payload,
    TlsSecret,
    TraceNote,
    TraceStart,
    TraceStop,
    from_agent,
)

__all__ = [
    "DEFAULT_APPS",
    "FridaVersionError",
    "TraceError",
    "TraceOptions",
    "TraceSummary",
    "TraceTimeoutError",
    "Tracer",
    "frida_error",
    "open_device",
]

DEFAULT_APPS = ("com.android.mms",)
EVENTS_FILE = "events.jsonl"
SUMMARY_FILE = "summary.json"
KEYLOG_FILE = "sslkeylog.txt"

T = TypeVar("T")


class TraceError(HostctlError):
    """The trace could not do something; the message says what and what to do about it."""


class TraceTimeoutError(TraceError):
    """A Frida call or an agent RPC did not finish within its deadline."""


class FridaVersionError(TraceError):
    """frida-server (or the portal) on the device does not speak this client's protocol."""


def frida_error(exc: BaseException, what: str, serial: str) -> TraceError:
    """A Frida exception as a TraceError that says what to do.

    Frida reports a client/server major-version mismatch as ``frida.ProtocolError`` with "unable
    to communicate with remote frida-server; please ensure that major versions match ...", raised
    by the first request the server does not understand (enumerate, attach or spawn); a
    connection refused on 27042 is ``ServerNotRunningError``.
    """
    import frida

    text = str(exc)
    client = frida.__version__
    major = client.split(".", 1)[0]
    if isinstance(exc, frida.ProtocolError) or "major versions match" in text:
        return FridaVersionError(
            f"{what} on {serial}: the device's frida-server does not speak this client's protocol "
            f"({text}). Client and server major versions must match: this host runs frida {client}, "
            f"so run a frida-server {major}.x on the handset (`adb shell /data/local/tmp/frida-server "
            f"--version` shows the one there), or install the matching `frida` here"
        )
    if isinstance(exc, frida.ServerNotRunningError):
        return TraceError(
            f"{what}: no frida-server reachable on {serial} ({text}); start frida-server "
            f"{major}.x as root on the handset (it listens on tcp:27042)"
        )
    if isinstance(exc, (frida.TimedOutError, frida.OperationCancelledError)):
        return TraceTimeoutError(f"{what} on {serial} timed out ({text or 'cancelled at the deadline'})")
    if isinstance(exc, frida.PermissionDeniedError):
        return TraceError(f"{what} on {serial}: permission denied ({text}); frida-server must run as root")
    if isinstance(exc, frida.ProcessNotFoundError):
        return TraceError(f"{what} on {serial}: no such process ({text})")
    if isinstance(exc, frida.NotSupportedError):
        return TraceError(f"{what} on {serial}: not supported by this device ({text})")
    if isinstance(exc, (frida.TransportError, frida.InvalidOperationError)):
        return TraceError(f"{what} on {serial}: the connection went away ({text})")
    return TraceError(f"{what} on {serial}: {type(exc).__name__}: {text}")


def open_device(serial: str, *, server: Any = None, timeout: float = 10.0) -> Any:
    """The Frida device for an adb serial, through the adb server named by ANDROID_ADB_SERVER_PORT
    (Frida reads only that one, and keeps following the first it saw). A handset on another adb
    server (``server``, an ``AdbAddress``: a lab of several hosts) is reached as Frida reaches a
    frida-server over the network: ``adb forward tcp:0 tcp:27042`` through its own server, then
    ``add_remote_device`` on the forwarded port (the adb server's host must be this one, where
    the forward listens on loopback)."""
    import frida

    from .device import AdbAddress, servers_from_env

    followed = servers_from_env(os.environ)[0]
    if server is not None and AdbAddress.parse(str(server)) != followed:
        return _open_forwarded(serial, AdbAddress.parse(str(server)), timeout)
    try:
        return frida.get_device_manager().get_device(serial, timeout=timeout)
    except (frida.InvalidArgumentError, frida.TimedOutError) as exc:
        port = os.environ.get("ANDROID_ADB_SERVER_PORT") or "5037"
        raise TraceError(f"Frida does not see {serial} through the adb server on port {port} ({exc})") from exc


FRIDA_SERVER_PORT = 27042


def _open_forwarded(serial: str, server: Any, timeout: float) -> Any:
    import adbutils
    import frida

    if server.host not in ("127.0.0.1", "localhost", "::1"):
        raise TraceError(
            f"{serial} is on the adb server {server}, not this host's, and Frida reaches a "
            "handset only through an adb server of its own host: run the trace there"
        )
    try:
        client = adbutils.AdbClient(host=server.host, port=server.port, socket_timeout=timeout)
        local = client.device(serial).forward_port(f"tcp:{FRIDA_SERVER_PORT}")
    except (adbutils.AdbError, OSError) as exc:
        raise TraceError(f"adb forward to {serial}'s frida-server through {server} failed: {exc}") from exc
    try:
        return frida.get_device_manager().add_remote_device(f"127.0.0.1:{local}")
    except frida.InvalidArgumentError as exc:
        raise TraceError(f"Frida cannot use {serial}'s frida-server forwarded to port {local}: {exc}") from exc


@dataclass(frozen=True)
class TraceOptions:
    apps: tuple[str, ...] = DEFAULT_APPS
    spawn: bool = False  # spawn each app (where supported) instead of attaching
    max_capture: int = 256 * 1024  # bytes kept per payload; the length is always recorded
    unix_sockets: bool = False  # also AF_UNIX socket traffic (IP sockets only by default)
    java: bool = True
    ssl: bool = True
    sockets: bool = True
    evp: bool = False  # OpenSSL/BoringSSL EVP cipher hooks (every TLS record too)
    call_timeout: float = 15.0  # each attach, script load, agent RPC, detach
    poll_interval: float = 0.2  # how often an app that is gone is looked for

    def agent_options(self) -> dict[str, Any]:
        return {
            "maxCapture": self.max_capture,
            "unixSockets": self.unix_sockets,
            "java": self.java,
            "ssl": self.ssl,
            "sockets": self.sockets,
            "evp": self.evp,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "apps": list(self.apps),
            "spawn": self.spawn,
            "max_capture": self.max_capture,
            "unix_sockets": self.unix_sockets,
            "java": self.java,
            "ssl": self.ssl,
            "sockets": self.sockets,
            "evp": self.evp,
            "call_timeout": self.call_timeout,
        }


@dataclass
class _App:
    """One traced package (mutable; the tracer's lock guards it)."""

    package: str
    pid: int | None = None
    session: Any = None
    script: Any = None
    generation: int = 0
    mode: str | None = None
    pids: list[int] = field(default_factory=list)
    attaches: int = 0
    events: int = 0
    gone_since: float | None = None  # host time the agent was lost (None: attached or never seen)
    gone_reason: str | None = None
    gone_pid: int | None = None
    gaps: list[Gap] = field(default_factory=list)
    status: HookStatus | None = None
    agent_stop: AgentStop | None = None
    last_error: str | None = None
    waiting_noted: bool = False

    @property
    def attached(self) -> bool:
        return self.session is not None

    def to_json(self) -> dict[str, Any]:
        status = self.status
        return {
            "attached": self.attached,
            "ever_attached": self.attaches > 0,
            "mode": self.mode,
            "pids": list(self.pids),
            "attaches": self.attaches,
            "events": self.events,
            "gaps": [
                {
                    "start": g.start,
                    "end": g.end,
                    "duration": round(g.duration, 6),
                    "reason": g.reason,
                    "old_pid": g.old_pid,
                    "new_pid": g.new_pid,
                }
                for g in self.gaps
            ],
            "java": status.java if status else None,
            "hooked": list(status.hooked) if status else [],
            "missing": [m.to_json() for m in status.missing] if status else [],
            "agent_events": self.agent_stop.events if self.agent_stop else None,
            "agent_errors": self.agent_stop.errors if self.agent_stop else None,
            "last_error": self.last_error,
        }


@dataclass
class TraceSummary:
    serial: str
    device: str
    out: str
    events_file: str
    started: float
    stopped: float
    stopped_by: str
    events: int
    by_kind: dict[str, int]
    apps: dict[str, dict[str, Any]]
    notes: list[str]
    errors: list[str]
    keylog_file: str | None = None
    tls_secrets: int = 0

    @property
    def duration(self) -> float:
        return self.stopped - self.started

    @property
    def never_attached(self) -> list[str]:
        return [pkg for pkg, a in self.apps.items() if not a["ever_attached"]]

    def to_json(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "device": self.device,
            "out": self.out,
            "events_file": self.events_file,
            "started": self.started,
            "stopped": self.stopped,
            "duration": round(self.duration, 3),
            "stopped_by": self.stopped_by,
            "events": self.events,
            "by_kind": dict(sorted(self.by_kind.items())),
            "apps": self.apps,
            "notes": self.notes,
            "errors": self.errors,
            "keylog_file": self.keylog_file,
            "tls_secrets": self.tls_secrets,
        }


class Tracer:
    """Traces ``options.apps`` on one Frida ``device`` into ``out_dir``.

    Use :meth:`run` (start, poll until the duration or ``stop`` event, stop), or drive it:
    :meth:`start`, :meth:`poll` from one thread every ``poll_interval``, :meth:`stop`. Frida's
    callbacks (messages, detaches) arrive on Frida's threads and only write events and mark
    state; attaching and detaching happen on the thread that calls start/poll/stop.
    """

    def __init__(
        self,
        device: Any,
        out_dir: str | os.PathLike[str],
        *,
        serial: str | None = None,
        options: TraceOptions | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.device = device
        self.serial: str = serial if serial else getattr(device, "id", "?")
        self.out_dir = Path(out_dir)
        self.options = options or TraceOptions()
        if not self.options.apps:
            raise TraceError("no app to trace: name at least one package")
        self.progress = progress or (lambda text: None)
        self.apps = {pkg: _App(pkg) for pkg in dict.fromkeys(self.options.apps)}
        self.notes: list[str] = []
        self.errors: list[str] = []
        self._lock = threading.RLock()
        self._writer: EventWriter | None = None
        self._keylog: Any = None  # OUT/sslkeylog.txt, opened with the events file
        self._secrets: set[str] = set()
        self._code: str | None = None
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hostctl-trace-rpc")
        self._started: float | None = None
        self._summary: TraceSummary | None = None
        self._stopping = False
        self._device_lost = False
        self._next_look = 0.0

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Open the output, then attach to every app that runs (the others are waited for)."""
        if self._started is not None:
            return
        try:
            self._code = agent.source()
        except agent.AgentBundleError as exc:
            raise TraceError(str(exc)) from exc
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._writer = EventWriter(self.out_dir / EVENTS_FILE)
        fd = os.open(self.out_dir / KEYLOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        self._keylog = os.fdopen(fd, "w", encoding="ascii")
        self._keylog.write("# TLS secrets of the traced apps (NSS key log format), from hostctl trace\n")
        self._keylog.flush()
        self._started = time.time()
        import frida

        self._write(
            TraceStart(
                app="",
                host_ts=self._started,
                serial=self.serial,
                device=str(getattr(self.device, "name", "")),
                frida=frida.__version__,
                apps=tuple(self.apps),
                options=self.options.to_json(),
            )
        )
        try:
            self.device.on("lost", self._on_device_lost)
        except Exception:  # noqa: BLE001 - a device without the signal is simply not watched
            pass
        try:
            self._attach_all(initial=True)
        except FridaVersionError:
            self.stop("error")
            raise

    def poll(self) -> None:
        """One supervision step: find apps that are gone or not yet seen, attach, flush."""
        if self._stopping:
            return
        if self._writer is not None:
            self._writer.flush()
        now = time.monotonic()
        if now < self._next_look or all(a.attached for a in self.apps.values()):
            return
        self._next_look = now + self.options.poll_interval
        if self._device_lost and not self._reacquire():
            return
        self._attach_all(initial=False)

    def run(self, *, duration: float | None = None, stop: threading.Event | None = None) -> TraceSummary:
        """Trace until ``duration`` seconds have passed, ``stop`` is set, or Ctrl-C."""
        self.start()
        deadline = None if duration is None else time.monotonic() + duration
        reason = "stop"
        try:
            while True:
                if stop is not None and stop.is_set():
                    reason = "interrupt"
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    reason = "duration"
                    break
                self.poll()
                wait = self.options.poll_interval
                if deadline is not None:
                    wait = max(0.0, min(wait, deadline - time.monotonic()))
                if stop is not None:
                    stop.wait(wait)
                else:
                    time.sleep(wait)
        except KeyboardInterrupt:
            reason = "interrupt"
        except FridaVersionError:
            reason = "error"
            raise
        finally:
            summary = self.stop(reason)
        return summary

    def stop(self, reason: str = "stop") -> TraceSummary:
        """Stop every agent (its answer follows all its events), detach, flush and close the
        events file, write the summary. Never raises for a device that is gone; idempotent."""
        with self._lock:
            if self._summary is not None:
                return self._summary
            self._stopping = True
        stopped = time.time()
        for app in self.apps.values():
            self._stop_app(app)
            if app.gone_since is not None:  # it never came back: the gap runs to the end
                self._record_gap(app, end=stopped, new_pid=None)
        writer = self._writer
        if writer is not None:
            total = writer.total + 1
            self._write(TraceStop(app="", host_ts=time.time(), reason=reason, events=total))
            writer.close()
        with self._lock:
            if self._keylog is not None:
                self._keylog.close()
        self._pool.shutdown(wait=False)
        try:
            self.device.off("lost", self._on_device_lost)
        except Exception:  # noqa: BLE001
            pass
        summary = TraceSummary(
            serial=self.serial,
            device=str(getattr(self.device, "name", "")),
            out=str(self.out_dir),
            events_file=str(self.out_dir / EVENTS_FILE),
            started=self._started or stopped,
            stopped=stopped,
            stopped_by=reason,
            events=writer.total if writer else 0,
            by_kind=dict(writer.counts) if writer else {},
            apps={p: a.to_json() for p, a in self.apps.items()},
            notes=list(self.notes),
            errors=list(self.errors),
            keylog_file=str(self.out_dir / KEYLOG_FILE) if self._keylog is not None else None,
            tls_secrets=len(self._secrets),
        )
        if writer is not None:
            tmp = self.out_dir / (SUMMARY_FILE + ".tmp")
            tmp.write_text(json.dumps(summary.to_json(), indent=2) + "\n", encoding="utf-8")
            tmp.replace(self.out_dir / SUMMARY_FILE)
        self._summary = summary
        return summary

    # -- attaching ----------------------------------------------------------------------------
    def _attach_all(self, *, initial: bool) -> None:
        pending = [a for a in self.apps.values() if not a.attached]
        if not pending:
            return
        try:
            running = self._running_pids()
        except FridaVersionError:
            raise
        except TraceError as exc:
            self._error_once(None, f"listing processes: {exc}")
            return
        for app in pending:
            pid = running.get(app.package)
            try:
                if initial and self.options.spawn:
                    self._spawn_or_attach(app, pid)
                elif pid is not None:
                    self._attach(app, pid, "attach", None)
                elif not app.waiting_noted and app.attaches == 0 and app.gone_since is None:
                    app.waiting_noted = True
                    self._note(app, f"{app.package} is not running on {self.serial}: waiting for it to start")
            except FridaVersionError:
                raise
            except TraceError as exc:
                self._error_once(app, str(exc))

    def _running_pids(self) -> dict[str, int]:
        """Package -> pid of the apps of interest that run: by process name, then (Android,
        where the name is not the package) by application identifier."""
        procs = self._call(self.device.enumerate_processes, "listing processes")
        found = {p.name: p.pid for p in procs if p.name in self.apps}
        if len(found) < len(self.apps):
            wanted = [p for p in self.apps if p not in found]
            try:
                applications = self._call(
                    lambda: self.device.enumerate_applications(identifiers=wanted), "listing applications"
                )
            except TraceError:
                applications = []
            for a in applications:
                if a.identifier in self.apps and a.pid and a.identifier not in found:
                    found[a.identifier] = a.pid
        return found

    def _spawn_or_attach(self, app: _App, pid: int | None) -> None:
        import frida

        try:
            new_pid = self._call(
                lambda: self.device.spawn([app.package]),
                f"spawning {app.package}",
                passthrough=(frida.NotSupportedError,),
            )
        except frida.NotSupportedError as exc:
            note = (
                f"spawn is not supported on {self.serial} ({exc}): attached to the running "
                f"{app.package} instead (what it did before the attach is not traced)"
            )
            if pid is None:
                self._note(app, note.replace("attached to the running", "waiting for") + "; it is not running yet")
                app.waiting_noted = True
                return
            self._attach(app, pid, "attach", note)
            return
        self._attach(app, new_pid, "spawn", None)
        self._call(lambda: self.device.resume(new_pid), f"resuming {app.package} (pid {new_pid})")

    def _attach(self, app: _App, pid: int, mode: str, note: str | None) -> None:
        what = f"attaching to {app.package} (pid {pid})"
        with self._lock:
            app.generation += 1
            gen = app.generation
        session = self._call(lambda: self.device.attach(pid), what)
        session.on("detached", lambda reason, crash: self._on_detached(app, gen, reason, crash))
        try:
            script = self._call(
                lambda: session.create_script(self._code, name="hostctl-agent"), f"loading the agent into {app.package}"
            )
            script.on("message", lambda message, data: self._on_message(app, gen, pid, message, data))
            self._call(script.load, f"loading the agent into {app.package}")
            with self._lock:
                app.session, app.script, app.pid = session, script, pid
            options = self.options.agent_options()
            if mode == "spawn":
                # a spawned Android app has no class loader until resumed: the Java hooks land
                # when Java.perform runs (a later hook-status says so); answer at once
                options["javaTimeoutMs"] = 0
            self._rpc(app, script, "start_trace", options)
        except BaseException:
            with self._lock:
                app.session = app.script = None
                app.generation += 1  # this session's detach is ours, not the app's
                if app.attaches == 0:  # never traced: nothing was interrupted, no gap
                    app.gone_since = app.gone_reason = app.gone_pid = None
            self._quietly(session.detach)
            raise
        hooked_at = time.time()
        with self._lock:
            app.mode = mode
            app.attaches += 1
            app.waiting_noted = False
            app.last_error = None
            if pid not in app.pids:
                app.pids.append(pid)
        if note is not None:
            self._note(app, note)
        self._write(Attached(app=app.package, pid=pid, host_ts=hooked_at, mode=mode, note=note))
        if app.gone_since is not None:
            gap = self._record_gap(app, end=hooked_at, new_pid=pid)
            self.progress(f"{app.package}: back as pid {pid}, agent re-attached; untraced for {gap.duration:.2f} s")
        else:
            self.progress(f"{app.package}: agent attached (pid {pid}, {mode})")

    def _record_gap(self, app: _App, *, end: float, new_pid: int | None) -> Gap:
        with self._lock:
            start, reason, old = app.gone_since or end, app.gone_reason or "unknown", app.gone_pid
            app.gone_since = app.gone_reason = app.gone_pid = None
        gap = Gap(
            app=app.package, pid=new_pid, host_ts=end, start=start, end=end, reason=reason, old_pid=old, new_pid=new_pid
        )
        app.gaps.append(gap)
        self._write(gap)
        return gap

    def _stop_app(self, app: _App) -> None:
        with self._lock:
            session, script = app.session, app.script
        if session is None:
            return
        if script is not None:
            try:
                self._rpc(app, script, "stop_trace", timeout=min(self.options.call_timeout, 5.0))
            except TraceError as exc:
                self.errors.append(f"{app.package}: stopping the agent: {exc}")
            self._quietly(script.unload)
        self._quietly(session.detach)
        with self._lock:
            app.session = app.script = None

    def _reacquire(self) -> bool:
        """After the device went away (power cycle, adb reconnect): find it again."""
        import frida

        try:
            device = frida.get_device_manager().get_device(self.serial, timeout=1.0)
        except (frida.InvalidArgumentError, frida.TimedOutError):
            return False
        self.device = device
        self._device_lost = False
        try:
            device.on("lost", self._on_device_lost)
        except Exception:  # noqa: BLE001
            pass
        self.progress(f"{self.serial}: device is back")
        return True

    # -- Frida callbacks (Frida's threads) -----------------------------------------------------
    def _on_message(self, app: _App, gen: int, pid: int, message: dict[str, Any], data: bytes | None) -> None:
        now = time.time()
        try:
            if message.get("type") == "send":
                payload = message.get("payload")
                try:
                    event: Event = from_agent(payload, data, app=app.package, host_ts=now)
                except EventError as exc:
                    event = InvalidMessage(
                        app=app.package,
                        pid=pid,
                        host_ts=now,
                        error=str(exc),
                        message=payload if isinstance(payload, dict) else {"payload": payload},
                        data=Payload(data=bytes(data), length=len(data)) if data else None,
                    )
            elif message.get("type") == "error":
                text = str(message.get("description", ""))
                if message.get("stack"):
                    text += "\n" + str(message["stack"])
                event = AgentError(app=app.package, pid=pid, host_ts=now, where="script", error=text)
            else:
                return
            with self._lock:
                app.events += 1
                if isinstance(event, HookStatus):
                    app.status = event
                elif isinstance(event, AgentStop):
                    app.agent_stop = event
            self._write(event)
            if isinstance(event, TlsSecret):
                self._keylog_line(event.keylog_line())
        except Exception as exc:  # noqa: BLE001 - never let a bad message kill Frida's thread
            self.errors.append(f"{app.package}: message handling: {type(exc).__name__}: {exc}")

    def _on_detached(self, app: _App, gen: int, reason: str, crash: Any) -> None:
        now = time.time()
        with self._lock:
            if gen != app.generation or self._stopping:
                return
            pid = app.pid
            app.session = app.script = None
            if app.gone_since is None:  # a failed re-attach keeps the gap's first start
                app.gone_since, app.gone_reason, app.gone_pid = now, str(reason), pid
            self._next_look = 0.0
        self._write(
            Detached(
                app=app.package,
                pid=pid,
                host_ts=now,
                reason=str(reason),
                crash=str(crash.summary if hasattr(crash, "summary") else crash) if crash else None,
            )
        )
        self.progress(f"{app.package}: agent detached ({reason}); waiting for the app to come back")

    def _on_device_lost(self) -> None:
        self._device_lost = True

    # -- helpers -----------------------------------------------------------------------------
    def _write(self, event: Event) -> None:
        writer = self._writer
        if writer is not None and not writer.closed:
            try:
                writer.write(event)
            except EventError as exc:
                self.errors.append(str(exc))

    def _keylog_line(self, line: str) -> None:
        with self._lock:
            f = self._keylog
            if f is None or f.closed or line in self._secrets:
                return
            self._secrets.add(line)
            f.write(line + "\n")
            f.flush()

    def _note(self, app: _App | None, text: str) -> None:
        self.notes.append(text)
        self.progress(text)
        self._write(TraceNote(app=app.package if app else "", host_ts=time.time(), message=text))

    def _error_once(self, app: _App | None, text: str) -> None:
        if app is not None:
            if app.last_error == text:
                return
            app.last_error = text
        elif self.errors and self.errors[-1] == text:
            return
        self.errors.append(text)
        self.progress(text)

    def _call(self, fn: Callable[[], T], what: str, *, passthrough: tuple[type[BaseException], ...] = ()) -> T:
        """A blocking Frida call, cancelled at the deadline; its errors mapped by frida_error."""
        import frida

        cancellable = frida.Cancellable()
        timer = threading.Timer(self.options.call_timeout, cancellable.cancel)
        timer.daemon = True
        timer.start()
        try:
            with cancellable:
                return fn()
        except passthrough:
            raise
        except frida.OperationCancelledError as exc:
            raise TraceTimeoutError(
                f"{what} on {self.serial} did not finish within {self.options.call_timeout:g} s"
            ) from exc
        except (
            frida.ProtocolError,
            frida.ServerNotRunningError,
            frida.TimedOutError,
            frida.PermissionDeniedError,
            frida.ProcessNotFoundError,
            frida.NotSupportedError,
            frida.TransportError,
            frida.InvalidOperationError,
            frida.InvalidArgumentError,
            frida.ProcessNotRespondingError,
            frida.ExecutableNotFoundError,
            frida.ExecutableNotSupportedError,
            frida.AddressInUseError,
        ) as exc:
            raise frida_error(exc, what, self.serial) from exc
        finally:
            timer.cancel()

    def _rpc(self, app: _App, script: Any, name: str, *args: Any, timeout: float | None = None) -> Any:
        """An agent RPC with a deadline (Frida's own RPC call waits forever)."""
        import frida

        timeout = self.options.call_timeout if timeout is None else timeout
        future = self._pool.submit(lambda: getattr(script.exports_sync, name)(*args))
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            self._pool.submit(self._quietly, script.unload)  # releases the waiting call
            raise TraceTimeoutError(
                f"the agent in {app.package} on {self.serial} did not answer {name} within {timeout:g} s"
            ) from None
        except frida.core.RPCException as exc:
            raise TraceError(f"the agent in {app.package} failed in {name}: {exc}") from exc
        except frida.InvalidOperationError as exc:
            raise TraceError(f"{app.package} on {self.serial} went away during {name} ({exc})") from exc

    def _quietly(self, fn: Callable[[], Any]) -> None:
        import frida

        cancellable = frida.Cancellable()
        timer = threading.Timer(min(self.options.call_timeout, 5.0), cancellable.cancel)
        timer.daemon = True
        timer.start()
        try:
            with cancellable:
                fn()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        finally:
            timer.cancel()
