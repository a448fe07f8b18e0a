"""The audit: MISSION.md's checks on any testbed, with the evidence a lab would sign.

:func:`run_audit` runs the F-Secure protocol (fresh boot; add a contact; SMS in and out with the
peer; a call; Mi Cloud login), then the Cloud Messaging scenarios (opt-in state; enable; send to
an online receiver; to an offline one and to the modem; presence look-ups), with a capture and a
Frida trace running on every handset throughout, then evaluates every check from that evidence.
The same code runs on a rack of real handsets and on the emulated lab: every step goes through
adb (:mod:`hostctl.steps`, :mod:`hostctl.cloud`); only two things ask the lab itself, and only for
an emulated handset (a factory reset, and the server's store for no-retention).

Each phase is timed and kept in the report; the evidence of each handset goes to
``handsets/<label>/`` of the run folder (:class:`hostctl.evidence.RunFolder`): ``wire.pcapng``
(``wire.pcap`` from tcpdump or PCAPdroid),
``trace/events.jsonl``, ``messages.json``, ``logcat.txt``, ``steps.json``, ``wire-check.json``;
the modem's identity and inbox (``modem.json``), ``report.json``, ``junit.xml``, ``report.html`` and ``manifest.json`` at the top.
The manifest is rewritten after every phase, so a Ctrl-C or a crash leaves a consistent folder.

A handset that vanishes mid-audit does not stop it: its remaining steps are skipped with the
reason, and the checks that needed them end NOT-TESTABLE saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .errors import HostctlError
from .report import CHECK_IDS, CHECKS_BY_ID, SCHEMA, summary_of
from .wire.check import jsonable

__all__ = ["AuditError", "AuditOptions", "AuditResult", "EXIT_FAIL", "EXIT_INTERRUPTED", "EXIT_NOT_RUN",
           "EXIT_PASS", "run_audit"]

EXIT_PASS = 0           # every check that ran passed
EXIT_FAIL = 3           # at least one check FAILED (hostctl's CHECK_FAILED)
EXIT_NOT_RUN = 4        # the audit could not run (no handset reachable, bad testbed)
EXIT_INTERRUPTED = 130  # Ctrl-C: the partial report and manifest are still written

CM_HOSTS = ("app.chat.xiaomi.net", "app.chat.global.xiaomi.net")
_ACTIVATION_PATHS = ("/mx/activate", "/pass/activate")


class AuditError(HostctlError):
    """The audit could not start (the message says why)."""


@dataclass
class AuditOptions:
    out: Path
    checks: Sequence[str] | None = None       # None: all ten
    redact: bool = False
    assume_reset: bool = False                # real handsets: the operator reset them by hand
    progress: Callable[[str], None] | None = None
    stop: threading.Event | None = None       # set from another thread: stop as Ctrl-C does
    timeout: float = 30.0                     # per device step
    settle: float | None = None               # seconds to let traffic go out after a step (default:
                                              # the testbed's params.settle, else 0.3 s on an
                                              # emulated lab and 1 s on hardware)
    hash_budget: float = 2.0
    profile: str | None = None
    argv: Sequence[str] = ()
    home: Path | None = None                  # the emulated lab's home (its control channel)


@dataclass
class AuditResult:
    report: dict
    run_dir: Path
    exit_status: int


class _Interrupted(Exception):
    pass


@dataclass
class _Unit:
    """One handset of the testbed during the audit."""

    spec: Any
    handset: Any
    dir: Path
    rel: str
    info: dict = field(default_factory=dict)
    numbers: list[str] = field(default_factory=list)
    gone: str | None = None                   # why it stopped answering
    capture: Any = None
    capture_error: str | None = None
    tracer: Any = None
    trace_thread: threading.Thread | None = None
    trace_stop: threading.Event = field(default_factory=threading.Event)
    trace_error: str | None = None
    steps: list[dict] = field(default_factory=list)
    wire: dict | None = None
    read_ids: list[tuple[str, str, str]] = field(default_factory=list)   # (kind, value, label) read over adb

    @property
    def label(self) -> str:
        return self.spec.label


def _now() -> float:
    return time.time()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Audit:
    def __init__(self, testbed: Any, options: AuditOptions) -> None:
        self.tb = testbed
        self.opt = options
        wanted = list(options.checks) if options.checks else list(CHECK_IDS)
        unknown = [c for c in wanted if c not in CHECK_IDS]
        if unknown:
            raise AuditError(f"unknown check {', '.join(unknown)} (known: {', '.join(CHECK_IDS)})")
        self.wanted = [c for c in CHECK_IDS if c in wanted]
        self.units: list[_Unit] = []
        self.phases: list[dict] = []
        self.marks: dict[str, tuple[float, float]] = {}
        self.facts: dict[str, Any] = {}        # what the steps established, by name
        self.warnings: list[str] = []
        self.texts: dict[str, str] = {}        # message texts used, by purpose
        self.contact: str | None = None
        self.modem: Any = None
        self.interrupted = False
        self.not_run: str | None = None
        self.started = _now()
        self.run = None

    # -- plumbing -----------------------------------------------------------------------------
    def say(self, msg: str) -> None:
        if self.opt.progress is not None:
            self.opt.progress(msg)

    def _check_stop(self) -> None:
        if self.opt.stop is not None and self.opt.stop.is_set():
            raise _Interrupted()

    @contextlib.contextmanager
    def phase(self, name: str):
        self._check_stop()
        t0 = _now()
        rec = {"name": name, "started": _iso(t0), "seconds": 0.0, "status": "ok", "notes": []}
        self.phases.append(rec)
        self.say(f"[{len(self.phases):2d}] {name} ...")
        self._probe(rec)
        try:
            yield rec
        except (KeyboardInterrupt, _Interrupted):
            rec["status"] = "interrupted"
            raise
        except AuditError as exc:
            rec["status"] = "failed"
            rec["notes"].append(str(exc))
            raise
        except HostctlError as exc:
            rec["status"] = "failed"
            rec["notes"].append(f"{type(exc).__name__}: {exc}")
            self.say(f"     {name} failed: {exc}")
        finally:
            t1 = _now()
            rec["seconds"] = round(t1 - t0, 3)
            self.marks[name] = (t0, t1)
            if self.run is not None:
                with contextlib.suppress(Exception):
                    self.run.write_manifest(status="running")

    def _probe(self, rec: dict) -> None:
        """A handset that stopped answering since the last phase is marked gone, with when."""
        for u in self.units:
            if u.gone or u.handset is None:
                continue
            try:
                u.handset.shell("echo", timeout=10)
            except HostctlError as exc:
                u.gone = f"{u.label} stopped answering before '{rec['name']}': {exc}"
                self.warnings.append(u.gone)
                rec["notes"].append(u.gone)

    def step(self, unit: _Unit, name: str, fn: Callable[[], Any], *, rec: dict | None = None) -> Any:
        """Run one device step on ``unit``; a vanished handset is noted (not raised), a step the
        handset cannot do (StepNotPossible) is noted and returns None."""
        from .steps import StepNotPossible

        if unit.gone:
            if rec is not None:
                rec["notes"].append(f"{unit.label}: {name} skipped ({unit.gone})")
            return None
        t0 = _now()
        entry: dict[str, Any] = {"step": name, "t": round(t0 - self.started, 3)}
        try:
            result = fn()
            entry["ok"] = True
            entry["result"] = jsonable(result)
            return result
        except StepNotPossible as exc:
            entry.update(ok=False, not_possible=str(exc))
            if rec is not None:
                rec["notes"].append(f"{unit.label}: {name}: {exc}")
            return None
        except HostctlError as exc:
            entry.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            if _gone(exc):
                unit.gone = f"{unit.label} stopped answering during {name}: {exc}"
                self.warnings.append(unit.gone)
            if rec is not None:
                rec["notes"].append(f"{unit.label}: {name} failed: {exc}")
            return None
        finally:
            entry["seconds"] = round(_now() - t0, 3)
            unit.steps.append(entry)

    def unit(self, label: str) -> _Unit | None:
        return next((u for u in self.units if u.label == label), None)

    # -- the run --------------------------------------------------------------------------------
    def execute(self) -> AuditResult:
        from .evidence import RunFolder

        self.run = RunFolder.create(self.opt.out, self.tb.name, handsets=[h.label for h in self.tb.handsets])
        status = "complete"
        try:
            self._protocol()
        except (KeyboardInterrupt, _Interrupted):
            self.interrupted = True
            status = "interrupted"
            self.say("interrupted: stopping the recorders and writing what was gathered")
        except AuditError as exc:
            self.not_run = str(exc)
            status = "failed"
            self.warnings.append(f"the audit could not run: {exc}")
            self.say(f"the audit could not run: {exc}")
        finally:
            self._finish_recorders()
        report = self._write(self._evaluate(), status)
        return AuditResult(report, self.run.path, report["exit_status"])

    def _protocol(self) -> None:
        from .device import Handset

        token = secrets.token_hex(3)
        self.texts = {"sms_out": f"hostctl sms out {token}", "sms_in": f"hostctl sms in {token}",
                      "ip": f"hostctl ip {token}", "offline": f"hostctl offline {token}",
                      "modem": f"hostctl to modem {token}"}
        with self.phase("prepare") as rec:
            for spec in self.tb.handsets:
                h = Handset(spec.serial, spec.adb)
                d = self.run.handset_dir(spec.label)
                u = _Unit(spec, h, d, f"handsets/{spec.label}", numbers=[s.number for s in spec.sims if s.number])
                self.units.append(u)
                u.info = self.step(u, "info", lambda h=h: h.info().to_json(), rec=rec) or {}
                # what the handset says of itself: the testbed may not name its IMEIs and IMSIs
                ident = self.step(u, "identity", lambda h=h: _read_identity(h, self.opt.timeout), rec=rec)
                for slot in (ident or {}).get("slots", []):
                    for kind in ("imei", "imsi", "iccid", "msisdn"):
                        if slot.get(kind):
                            u.read_ids.append((kind, slot[kind], f"{spec.label} {'number' if kind == 'msisdn' else kind}"
                                                                 f"{slot['slot']}"))
            if not any(not u.gone for u in self.units):
                raise AuditError("no handset of the testbed answers: " + "; ".join(u.gone or "" for u in self.units))
            self._open_modem(rec)
        if self.opt.settle is None:
            emulated = all(u.info.get("emulated") for u in self.units if not u.gone)
            self.opt.settle = float(_param(self.tb, "settle", 0.3 if emulated else 1.0))
        peer_number = self._peer_number()
        self.contact = peer_number
        with self.phase("fresh boot") as rec:
            # every handset at once: reset, boot offline (the boot report waits for the network),
            # start the recorders, then bring the network up
            def boot_offline(u: _Unit) -> None:
                self._reset(u, rec)
                self.step(u, "airplane on", lambda: _steps().set_airplane(u.handset, True, timeout=self.opt.timeout),
                          rec=rec)
                self.step(u, "reboot", lambda: _steps().reboot(u.handset, timeout=max(60.0, self.opt.timeout)),
                          rec=rec)
                self._start_recorders(u, rec)
            self._each(boot_offline)
            self.facts["boot_online_at"] = _now()
            for u in self.units:
                self.step(u, "airplane off", lambda u=u: _steps().set_airplane(u.handset, False, timeout=self.opt.timeout),
                          rec=rec)
            self._settle(2 * self.opt.settle)
        with self.phase("opt-in state") as rec:
            for u in self.units:
                st = self.step(u, "cm status", lambda u=u: _cloud().cm_status(u.handset, ui=True, timeout=self.opt.timeout),
                               rec=rec)
                if st is not None:
                    self.facts.setdefault("cm_default", {})[u.label] = st.to_json()
        first = self._live_units()[:1]
        with self.phase("add contact") as rec:
            for u in first:
                if peer_number:
                    self.step(u, "add contact", lambda u=u: _steps().add_contact(u.handset, peer_number, "hostctl peer",
                                                                               timeout=self.opt.timeout), rec=rec)
            self._settle(self.opt.settle)
        with self.phase("sms in and out") as rec:
            self._sms_in_out(first, rec)
        with self.phase("call") as rec:
            for u in first:
                if peer_number:
                    self.step(u, "call", lambda u=u: _steps().place_call(u.handset, peer_number, seconds=0.5,
                                                                       timeout=self.opt.timeout), rec=rec)
            self._settle(self.opt.settle)
        with self.phase("mi cloud login") as rec:
            for u in first:
                t_login = _now()        # what the build sends on login goes out during the step
                res = self.step(u, "mi cloud login", lambda u=u: _steps().micloud_login(u.handset, timeout=self.opt.timeout),
                                rec=rec)
                if res is not None:
                    self.facts.setdefault("login", {})[u.label] = t_login
            self._settle(self.opt.settle)
        self.facts["opt_in_at"] = _now()
        with self.phase("enable cloud messaging") as rec:
            for u in self._live_units():
                st = self.step(u, "cm on", lambda u=u: _cloud().cm_set(u.handset, True, sim=1, timeout=self.opt.timeout),
                               rec=rec)
                if st is not None:
                    self.facts.setdefault("cm_enabled", {})[u.label] = st.to_json()
                    for c in st.consent:     # evidence: what MIUI asked, and that cm on accepted it
                        rec["notes"].append(f"{u.label}: accepted MIUI's {c['kind']} dialog for SIM {c['sim']} "
                                            f"({c['title']!r}, button {c['accepted']!r}): the audit turns it on")
            self._settle(self.opt.settle)
        sender, receiver = (self.units + [None, None])[:2]
        with self.phase("send to an online receiver") as rec:
            why = _unavailable(sender, receiver)
            if why:
                rec["status"] = "skipped"
                rec["notes"].append(why)
                self.facts["send_online_skipped"] = why
            else:
                # as a tester does: wait until the receiver shows online (blue) to the sender;
                # after a boot its activation and channel bind take a moment
                seen = self.step(sender, "wait for the receiver online",
                                 lambda: _wait_online(sender.handset, receiver.numbers[0],
                                                      max(10.0, self.opt.timeout / 2)), rec=rec)
                self.facts["receiver_presence_before_send"] = seen
                out = self.step(sender, "send ip", lambda: _cloud().send_message(
                    sender.handset, receiver.numbers[0], self.texts["ip"], receiver=receiver.handset,
                    carrier_view=self._carrier_view(), timeout=self.opt.timeout), rec=rec)
                self.facts["send_online"] = None if out is None else out.to_json()
        with self.phase("send to an offline receiver and to the modem") as rec:
            self._send_offline(sender, receiver, rec)
        with self.phase("presence look-ups") as rec:
            looks = []
            if sender is not None and not sender.gone:
                for number in [n for n in ([receiver.numbers[0]] if receiver and receiver.numbers else [])
                               + [self._modem_number()] if n]:
                    t0 = _now()
                    res = self.step(sender, f"presence {number}",
                                    lambda number=number: _cloud().presence(sender.handset, number, timeout=self.opt.timeout),
                                    rec=rec)
                    self._settle(self.opt.settle / 2)
                    looks.append({"number": number, "from": t0, "to": _now(), "handset": sender.label,
                                  "result": None if res is None else res.to_json()})
            self.facts["lookups"] = looks
        with self.phase("server store") as rec:
            if sender is not None and not sender.gone:
                state = self.step(sender, "cloud state", lambda: _steps().lab_cloud_state(sender.handset, home=self.opt.home),
                                  rec=rec)
                self.facts["cloud_state"] = state
                self.facts["cloud_state_by"] = sender.label

    def _each(self, fn: Callable[[_Unit], None]) -> None:
        """``fn`` on every handset at once (one thread each), as a lab runs a rack."""
        threads = [threading.Thread(target=fn, args=(u,), name=f"audit-{u.label}", daemon=True) for u in self.units]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.1)
                self._check_stop()

    def _live_units(self) -> list[_Unit]:
        return [u for u in self.units if not u.gone]

    def _settle(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._check_stop()
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))

    def _reset(self, u: _Unit, rec: dict) -> None:
        res = self.step(u, "factory reset", lambda: _steps().factory_reset(u.handset, home=self.opt.home,
                                                                            timeout=max(60.0, self.opt.timeout)),
                        rec=rec)
        if res is not None:
            self.facts.setdefault("reset", {})[u.label] = "factory reset by the lab"
        elif self.opt.assume_reset:
            self.facts.setdefault("reset", {})[u.label] = "reset by hand (--assume-reset)"

    def _open_modem(self, rec: dict) -> None:
        spec = getattr(self.tb, "modem", None)
        if spec is None or not getattr(spec, "port", None):
            rec["notes"].append("no peer modem in the testbed: SMS with the peer uses the second handset")
            return
        try:
            from .lab.modem import Modem

            self.modem = Modem.open(**spec.controller_config(), timeout=self.opt.timeout)
        except Exception as exc:     # noqa: BLE001 - a modem that does not open is a note, not the end
            rec["notes"].append(f"peer modem {spec.port}: {exc}")
            self.modem = None

    def _modem_number(self) -> str | None:
        spec = getattr(self.tb, "modem", None)
        return getattr(spec, "number", None) if spec is not None else None

    def _peer_number(self) -> str | None:
        if self._modem_number():
            return self._modem_number()
        if len(self.units) >= 2 and self.units[1].numbers:
            return self.units[1].numbers[0]
        return None

    def _carrier_view(self) -> Callable[[], list] | None:
        """The emulated network's records, where there is one (a real network shows none)."""
        u = self.units[0] if self.units else None
        if u is None or not u.info.get("emulated"):
            return None

        def view() -> list:
            return _steps().lab_carrier_records(u.handset, home=self.opt.home, since=self.started)
        return view if hasattr(_steps(), "lab_carrier_records") else None

    def _sms_in_out(self, first: list[_Unit], rec: dict) -> None:
        if not first:
            return
        u = first[0]
        peer = self._peer_number()
        if not peer:
            rec["status"] = "skipped"
            rec["notes"].append("no peer (modem or second handset) to exchange SMS with")
            return
        out = self.step(u, "sms out", lambda: _cloud().send_message(
            u.handset, peer, self.texts["sms_out"], modem=self.modem, timeout=self.opt.timeout), rec=rec)
        self.facts["sms_out"] = None if out is None else out.to_json()
        if not u.numbers:
            return
        if self.modem is not None:
            try:
                self.modem.send_sms(u.numbers[0], self.texts["sms_in"])
                self.facts["sms_in_sent"] = "modem"
            except Exception as exc:    # noqa: BLE001
                rec["notes"].append(f"modem send: {exc}")
        elif len(self.units) >= 2 and not self.units[1].gone:
            other = self.units[1]
            self.step(other, "sms to first", lambda: _cloud().send_message(
                other.handset, u.numbers[0], self.texts["sms_in"], timeout=self.opt.timeout), rec=rec)
        got = self.step(u, "sms in", lambda: _wait_row(u.handset, self.texts["sms_in"], self.opt.timeout), rec=rec)
        self.facts["sms_in"] = got
        self._settle(self.opt.settle)

    def _send_offline(self, sender: _Unit | None, receiver: _Unit | None, rec: dict) -> None:
        why = _unavailable(sender, None)
        if why:
            rec["status"] = "skipped"
            rec["notes"].append(why)
            self.facts["send_offline_skipped"] = why
            return
        why = _unavailable(sender, receiver)
        if why:
            rec["notes"].append(why)
            self.facts["send_offline_skipped"] = why
        else:
            off = self.step(receiver, "receiver offline", lambda: _steps().set_airplane(
                receiver.handset, True, timeout=self.opt.timeout), rec=rec)
            out = None
            if off is None:
                self.facts["send_offline_skipped"] = f"{receiver.label} could not be taken offline (see its steps)"
            else:
                out = self.step(sender, "send offline", lambda: _cloud().send_message(
                    sender.handset, receiver.numbers[0], self.texts["offline"], timeout=self.opt.timeout), rec=rec)
                if out is None:
                    self.facts["send_offline_skipped"] = "the send to the offline receiver failed (see the steps)"
            self.facts["send_offline"] = None if out is None else out.to_json()
            self.step(receiver, "receiver online", lambda: _steps().set_airplane(receiver.handset, False,
                                                                                timeout=self.opt.timeout), rec=rec)
        if self._modem_number():
            out = self.step(sender, "send to modem", lambda: _cloud().send_message(
                sender.handset, self._modem_number(), self.texts["modem"], modem=self.modem,
                timeout=self.opt.timeout), rec=rec)
            self.facts["send_modem"] = None if out is None else out.to_json()

    # -- recorders ------------------------------------------------------------------------------
    def _start_recorders(self, u: _Unit, rec: dict) -> None:
        from .capture import source_for

        if u.gone:
            return
        spec = getattr(u.spec, "capture", None)
        src = getattr(spec, "spec", None) if spec is not None else None
        if src in (None, "none"):
            src = "lab" if u.info.get("emulated") else None
        if src is None:
            u.capture_error = "the testbed names no capture source for this handset"
            rec["notes"].append(f"{u.label}: no capture ({u.capture_error})")
        else:
            try:
                opts = spec.source_options() if spec is not None and hasattr(spec, "source_options") else {}
                if src == "lab" and self.opt.home is not None:
                    opts = dict(opts, home=self.opt.home)
                u.capture = source_for(src, **opts)
                name = _capture_name(src)
                u.capture.start(u.handset, u.dir / name)
                self.run.add_file(f"{u.rel}/{name}", kind=name.rsplit(".", 1)[1])
            except HostctlError as exc:
                u.capture, u.capture_error = None, str(exc)
                rec["notes"].append(f"{u.label}: capture did not start: {exc}")
        try:
            from .trace import Tracer, TraceOptions, open_device

            apps = tuple(getattr(getattr(u.spec, "frida", None), "processes", None) or ("com.android.mms",))
            u.tracer = Tracer(open_device(u.spec.serial, timeout=10), u.dir / "trace", serial=u.spec.serial,
                              options=TraceOptions(apps=apps, evp=True))
            u.tracer.start()
            u.trace_thread = threading.Thread(target=u.tracer.run, kwargs={"stop": u.trace_stop}, daemon=True,
                                              name=f"trace-{u.label}")
            u.trace_thread.start()
            self.run.add_file(f"{u.rel}/trace/events.jsonl", kind="jsonl")
        except HostctlError as exc:
            u.tracer, u.trace_error = None, str(exc)
            rec["notes"].append(f"{u.label}: trace did not start: {exc}")

    def _finish_recorders(self) -> None:
        for u in self.units:
            if u.tracer is not None:
                u.trace_stop.set()
                if u.trace_thread is not None:
                    u.trace_thread.join(30)
                with contextlib.suppress(Exception):
                    u.tracer.stop()
                if (u.dir / "trace" / "summary.json").exists():
                    self.run.add_file(f"{u.rel}/trace/summary.json", kind="json")
            if u.capture is not None:
                try:
                    u.capture.stop()
                except HostctlError as exc:
                    u.capture_error = f"capture ended with an error: {exc}"
            self._collect(u)
        if self.modem is not None:
            doc: dict[str, Any] = {}
            try:
                doc["identity"] = self.modem.identify().to_json()
                doc["inbox"] = [m.to_json() for m in self.modem.inbox()]
            except Exception as exc:     # noqa: BLE001 - the modem's log is evidence, not a step
                doc["error"] = f"{type(exc).__name__}: {exc}"
            self._write_text("modem.json", json.dumps(doc, indent=1, default=str), kind="json")
            with contextlib.suppress(Exception):
                self.modem.close()

    def _collect(self, u: _Unit) -> None:
        from .messages import read_messages

        if not u.gone:
            rows = None
            try:
                rows = [m.to_json() for m in read_messages(u.handset, timeout=self.opt.timeout)]
            except HostctlError as exc:
                u.steps.append({"step": "read messages", "ok": False, "error": str(exc)})
            if rows is not None:
                self._write_text(f"{u.rel}/messages.json", json.dumps(rows, indent=1), kind="json")
            try:
                log = u.handset.shell("logcat -d", timeout=self.opt.timeout).output
                self._write_text(f"{u.rel}/logcat.txt", log, kind="log")
            except HostctlError as exc:
                u.steps.append({"step": "logcat", "ok": False, "error": str(exc)})
        self._write_text(f"{u.rel}/steps.json", json.dumps(u.steps, indent=1, default=str), kind="json")

    def _write_text(self, rel: str, text: str, *, kind: str) -> None:
        if self.opt.redact:
            text = self._redactor().redact(text)
        self.run.add_file(rel, text.encode("utf-8", "surrogateescape"), kind=kind)

    _red = None

    def _redactor(self) -> Any:
        if self._red is None:
            from .evidence import Redactor

            self._red = Redactor.for_testbed(self.tb, extra=[(k, v) for u in self.units for k, v, _ in u.read_ids])
        return self._red

    # -- evaluation -----------------------------------------------------------------------------
    def _identifiers(self) -> list[Any]:
        from .wire.identifiers import Identifier, identifiers_of

        out = identifiers_of(self.tb, [i for u in self.units for i in u.read_ids])
        return out + [Identifier("text", text, f"text {purpose}") for purpose, text in self.texts.items()]

    def _analyse(self) -> None:
        from .wire.check import WireCheck

        idents = self._identifiers()
        for u in self.units:
            cap = _capture_of(u)
            ev = u.dir / "trace" / "events.jsonl"
            if cap is None and not ev.exists():
                continue
            try:
                wc = WireCheck(idents, hash_budget=self.opt.hash_budget)
                if cap is not None and cap.stat().st_size > 0:
                    wc.add_capture(cap)
                if ev.exists():
                    wc.add_agent_events(ev)
                u.wire = wc.report()
            except HostctlError as exc:
                u.wire = None
                self.warnings.append(f"{u.label}: the wire analysis failed: {exc}")
                continue
            self._write_text(f"{u.rel}/wire-check.json", json.dumps(u.wire, indent=1, default=str), kind="json")

    def _sent(self, *, kinds: Sequence[str] | None = None, since: float | None = None,
              until: float | None = None) -> list[tuple[_Unit, dict]]:
        """Findings of identifiers the handsets sent to Xiaomi hosts (readable, encoded or hashed)."""
        from .wire.check import is_vendor_host

        out = []
        for u in self.units:
            for f in (u.wire or {}).get("findings", []):
                if f["direction"] not in ("c2s", "out") or not is_vendor_host(f.get("host")):
                    continue
                if kinds is not None and f["kind"] not in kinds:
                    continue
                ts = f.get("ts")
                if since is not None and (ts is None or ts < since):
                    continue
                if until is not None and (ts is None or ts >= until):
                    continue
                out.append((u, f))
        return out

    def _evidence(self, u: _Unit, f: dict) -> dict:
        if f["source"] == "agent":
            file = f"{u.rel}/trace/events.jsonl"
        else:
            file = _cap_rel(u)
        return {"file": file, "flow": f.get("flow"), "offset": f.get("offset"), "row": None,
                "event": f.get("event"), "host": f.get("host"), "identifier": f["identifier"], "form": f["form"],
                "text": f"{f['identifier']} {f['verdict']} as {f['form']} ({f['layer']}, {f['direction']}) "
                        f"to {f.get('host') or '?'}"}

    def _plaintext_seen(self) -> bool:
        """Whether the agent saw any TLS plaintext (an attached tracer whose SSL hooks fired):
        without it, the inside of TLS is unseen and a check about it cannot PASS."""
        return any(sum(a["events"].get("ssl", 0) for a in (u.wire or {}).get("agent_events", [])) > 0
                   for u in self.units)

    def _have_evidence(self) -> str | None:
        """Why the wire checks cannot be judged, or None."""
        if not any(u.wire for u in self.units):
            reasons = [u.capture_error or u.trace_error or u.gone for u in self.units]
            return "no capture or trace was recorded: " + "; ".join(r for r in reasons if r)
        return None

    def _evaluate(self) -> dict:
        self._analyse()
        checks = []
        for cid in self.wanted:
            try:
                res = getattr(self, "_check_" + cid.replace("-", "_"))()
            except Exception as exc:    # noqa: BLE001 - one broken check must not lose the report
                res = _nt(f"the check could not be evaluated: {type(exc).__name__}: {exc}")
            c = CHECKS_BY_ID[cid]
            checks.append({"id": cid, "title": c.title, "claim": c.claim, "status": res["status"],
                           "reason": res["reason"], "evidence": res.get("evidence", [])[:200],
                           "warnings": res.get("warnings", []),
                           "handsets": res.get("handsets", [u.label for u in self.units])})
        summary = summary_of(checks)
        if self.interrupted:
            code = EXIT_INTERRUPTED
        elif self.not_run or not (summary.get("PASS") or summary.get("FAIL")):
            code = EXIT_NOT_RUN           # nothing could be judged: not a pass
        elif summary.get("FAIL"):
            code = EXIT_FAIL
        else:
            code = EXIT_PASS
        return {
            "schema": SCHEMA,
            "run": {"id": self.run.run_id, "testbed": self.tb.name, "started": _iso(self.started),
                    "finished": _iso(_now()), "complete": not self.interrupted, "interrupted": self.interrupted,
                    "redacted": self.opt.redact, "hostctl": __version__, "profile": self.opt.profile,
                    "argv": list(self.opt.argv)},
            "handsets": [self._handset_doc(u) for u in self.units],
            "phases": self.phases,
            "checks": checks,
            "warnings": self.warnings,
            "timeline": self._timeline(),
            "summary": summary,
            "exit_status": code,
        }

    def _handset_doc(self, u: _Unit) -> dict:
        return {"label": u.label, "serial": u.spec.serial, "model": u.info.get("model"),
                "miui": u.info.get("miui_version_name"), "emulated": bool(u.info.get("emulated")),
                "sims": [{"slot": s.slot, "number": s.number, "imsi": s.imsi, "iccid": s.iccid,
                          "operator": s.operator} for s in u.spec.sims],
                "imeis": [s.imei for s in u.spec.sims if s.imei]}

    def _timeline(self) -> list[dict]:
        out = []
        for u in self.units:
            w = u.wire or {}
            for fl in w.get("flows", []):
                if fl.get("first_ts") is None or not fl.get("vendor"):
                    continue
                p = fl.get("protocol") or {}
                out.append({"t": max(0.0, fl["first_ts"] - self.started), "handset": u.label,
                            "host": fl.get("host") or fl["server"], "kind": "connection", "flow": fl["id"],
                            "identifier": None, "form": None, "verdict": None,
                            "tls": p.get("version") if p.get("name") == "tls" else None})
            for f in w.get("findings", []):
                if f.get("ts") is None:
                    continue
                out.append({"t": max(0.0, f["ts"] - self.started), "handset": u.label, "host": f.get("host") or "?",
                            "kind": "sighting", "flow": f.get("flow"), "identifier": f["identifier"],
                            "form": f["form"], "verdict": f["verdict"], "tls": None})
        out.sort(key=lambda e: e["t"])
        return out

    # -- the ten checks -------------------------------------------------------------------------
    def _check_opt_in_default(self) -> dict:
        reset = self.facts.get("reset", {})
        default = self.facts.get("cm_default", {})
        if not default:
            return _nt("the Cloud Messaging state could not be read before opting in")
        not_reset = [lbl for lbl in default if lbl not in reset]
        if not_reset:
            return _nt(f"{', '.join(not_reset)} not factory-reset: the default state cannot be told "
                       "(reset by hand and run with --assume-reset)")
        ev, bad = [], []
        for lbl, st in default.items():
            on = st.get("enabled") or any(s.get("enabled") for s in st.get("sims", []))
            if on:
                bad.append(lbl)
                ev.append({"file": f"handsets/{lbl}/steps.json", "flow": None, "offset": None, "row": None,
                           "event": None, "host": None, "identifier": None, "form": None,
                           "text": f"{lbl}: Cloud Messaging on after a factory reset "
                                   f"(secure/cloud_messaging_on={st.get('sources', {}).get('setting')})"})
        until = self.facts.get("opt_in_at")
        for u in self.units:
            for fl in (u.wire or {}).get("flows", []):
                p = fl.get("protocol") or {}
                paths = [r.get("path", "") for r in p.get("requests", [])]
                to_cm = (fl.get("host") in CM_HOSTS) or any(x.startswith(_ACTIVATION_PATHS) for x in paths)
                if to_cm and fl.get("first_ts") and until and fl["first_ts"] < until:
                    bad.append(u.label)
                    ev.append({"file": _cap_rel(u), "flow": fl["id"], "offset": 0, "row": None, "event": None,
                               "host": fl.get("host"), "identifier": None, "form": None,
                               "text": f"{u.label}: Cloud Messaging traffic before opting in ({fl.get('host')})"})
            ev += self._activation_before_opt_in(u, until)
        if ev:
            return {"status": "FAIL", "reason": f"Cloud Messaging is on by default on {', '.join(sorted(set(bad)) or ['?'])}",
                    "evidence": ev}
        return {"status": "PASS", "reason": "off after a factory reset; no activation or registration traffic "
                                            "before the user turned it on"}

    def _activation_before_opt_in(self, u: _Unit, until: float | None) -> list[dict]:
        """Agent plaintext of activation / channel binds sent before opting in."""
        ev = []
        path = u.dir / "trace" / "events.jsonl"
        if not path.exists() or until is None:
            return ev
        from .events import SslData, read_events

        for line, e in read_events(path, errors=[]):
            if not isinstance(e, SslData) or e.direction != "out" or (e.agent_ts or e.host_ts) >= until:
                continue
            data = bytes(e.data)[:200]
            first = data.split(b"\r\n")[0][:80].decode("latin-1")
            if any(p.encode() in data for p in _ACTIVATION_PATHS) or b'"type":"bind"' in data:
                ev.append({"file": f"{u.rel}/trace/events.jsonl", "flow": None, "offset": None, "row": None,
                           "event": line, "host": e.sni, "identifier": None, "form": None,
                           "text": f"{u.label}: {first} before opting in"})
                if len(ev) >= 5:
                    break
        return ev

    def _check_no_identifiers_before_opt_in(self) -> dict:
        why = self._have_evidence()
        if why:
            return _nt(why)
        until = self.facts.get("opt_in_at")
        login = self.facts.get("login") or {}
        # before opting in: boot, contact, SMS and call; a handset's Mi Cloud login (and what
        # follows it) is imsi-after-login's to judge
        found = [(u, f) for u, f in self._sent(until=until)
                 if login.get(u.label) is None or (f.get("ts") or 0) < login[u.label]]
        if found:
            idents = sorted({f["identifier"] for _, f in found})
            return {"status": "FAIL", "reason": f"before opting in, the handsets sent {', '.join(idents)} to "
                                                 f"{', '.join(sorted({f.get('host') or '?' for _, f in found}))}",
                    "evidence": [self._evidence(u, f) for u, f in found]}
        if not self._plaintext_seen():
            return _nt("no TLS plaintext (trace) to look inside TLS; the wire alone shows nothing readable")
        return {"status": "PASS", "reason": "boot, contact, SMS and call sent no identifier to Xiaomi hosts "
                                            "before opting in"}

    def _check_ip_when_online(self) -> dict:
        out = self.facts.get("send_online")
        if out is None:
            return _nt(self.facts.get("send_online_skipped")
                       or "no send to an online receiver was made (it failed: see the phase notes)")
        ev = [_row_evidence(self, out, "sender"), _row_evidence(self, out, "receiver")]
        carrier = (out.get("evidence") or {}).get("carrier")
        if out.get("route") == "ip" and not carrier:
            recv = (out.get("evidence") or {}).get("receiver")
            if recv is None:
                return {"status": "FAIL", "reason": "sent over IP but the receiver never got it", "evidence": ev}
            return {"status": "PASS", "reason": "the message went over IP (mx_status %s) and the network carried no SMS"
                    % (out["evidence"]["sender"] or {}).get("mx_status"), "evidence": ev}
        return {"status": "FAIL", "reason": f"route {out.get('route')!r}" + (", the carrier carried it as SMS" if carrier else ""),
                "evidence": ev}

    def _check_sms_fallback_when_offline(self) -> dict:
        off, modem = self.facts.get("send_offline"), self.facts.get("send_modem")
        if off is None and modem is None:
            return _nt(self.facts.get("send_offline_skipped")
                       or "no send to an offline receiver or to the modem was made")
        ev, bad = [], []
        if off is not None:
            ev.append(_row_evidence(self, off, "sender"))
            if off.get("route") != "sms":
                bad.append(f"to the offline receiver: route {off.get('route')!r}")
        if modem is not None:
            ev.append(_row_evidence(self, modem, "sender"))
            got = (modem.get("evidence") or {}).get("modem")
            if modem.get("route") != "sms" or (self.modem is not None and not got):
                bad.append(f"to the modem: route {modem.get('route')!r}, modem received {'it' if got else 'nothing'}")
        if bad:
            return {"status": "FAIL", "reason": "; ".join(bad), "evidence": ev}
        skipped = self.facts.get("send_offline_skipped")
        return {"status": "PASS", "reason": "delivered as SMS when the receiver was offline or not a Cloud Messaging user"
                + (f" (the offline-receiver case was not run: {skipped})" if skipped else ""), "evidence": ev}

    def _check_presence_lookup_minimal(self) -> dict:
        looks = self.facts.get("lookups") or []
        if not looks:
            return _nt("no presence look-up was made")
        if not self._plaintext_seen():
            return _nt("needs the TLS plaintext of the look-up (trace)")
        ev = []
        for i, lk in enumerate(looks):
            # the window: from this look-up to the next one (or its settle time), its handset only
            end = looks[i + 1]["from"] if i + 1 < len(looks) else lk["to"]
            for u, f in self._sent(since=lk["from"], until=end):
                if u.label != lk["handset"]:
                    continue
                if f["kind"] == "msisdn" and f["value"] == lk["number"]:
                    continue
                if f["kind"] == "text":
                    continue
                ev.append(self._evidence(u, f))
        if ev:
            return {"status": "FAIL", "reason": "a look-up sent more than the looked-up number: "
                                                + ", ".join(sorted({e["identifier"] for e in ev})), "evidence": ev}
        return {"status": "PASS", "reason": f"{len(looks)} look-up(s) sent no identifier but the looked-up number"}

    def _check_phone_numbers_encrypted(self) -> dict:
        why = self._have_evidence()
        if why:
            return _nt(why)
        found = self._sent(kinds=("msisdn",))
        warnings = self._deterministic_warnings()
        if found:
            return {"status": "FAIL", "reason": "phone numbers reached Xiaomi hosts "
                                                + ", ".join(sorted({f["verdict"] for _, f in found})),
                    "evidence": [self._evidence(u, f) for u, f in found], "warnings": warnings}
        if not self._plaintext_seen():
            return _nt("the wire shows no readable number, but without TLS plaintext (trace) the inside of TLS is unseen")
        return {"status": "PASS", "reason": "no phone number readable, encoded or merely hashed in what was sent",
                "warnings": warnings}

    def _deterministic_warnings(self) -> list[str]:
        out = []
        for u in self.units:
            for d in (u.wire or {}).get("deterministic", []):
                who = d["identifier"] or "an opaque value"
                out.append(f"deterministic encryption: {who} in field {', '.join(d['fields']) or '?'} on {u.label}: "
                           f"{d['why']} (linkable)")
            for c in (u.wire or {}).get("cipher_calls", []):
                if c.get("iv_reused") and c.get("identifiers") and c.get("algorithm") and "cbc" in str(c["algorithm"]).lower():
                    out.append(f"fixed IV: {c['algorithm']} key {c['key'][:8]}... IV {c['iv']} encrypted "
                               f"{c['operations']} values ({', '.join(c['identifiers'])}) on {u.label}")
        return sorted(set(out))

    def _check_content_encrypted(self) -> dict:
        why = self._have_evidence()
        if why:
            return _nt(why)
        found = self._sent(kinds=("text",))
        if found:
            return {"status": "FAIL", "reason": "message text reached Xiaomi hosts "
                                                + ", ".join(sorted({f["verdict"] for _, f in found})),
                    "evidence": [self._evidence(u, f) for u, f in found]}
        if not self._plaintext_seen():
            return _nt("without TLS plaintext (trace) the inside of TLS is unseen")
        if (self.facts.get("send_online") or {}).get("route") != "ip":
            return _nt("no message went over IP, so no message content went to the service")
        return {"status": "PASS", "reason": "no message text readable in what was sent"}

    def _check_transport_secure(self) -> dict:
        if not any(u.wire and u.wire.get("captures") for u in self.units):
            return _nt("no capture was recorded: " + "; ".join(u.capture_error or "" for u in self.units))
        ev, warnings = [], []
        for u in self.units:
            w = u.wire or {}
            for t in w.get("weak_tls", []):
                ev.append({"file": _cap_rel(u), "flow": t["flow"], "offset": 0, "row": None, "event": None,
                           "host": t["host"], "identifier": None, "form": None,
                           "text": f"{t['host']} over {t['version']}"})
            for c in w.get("clear_http", []):
                if c["findings"]:
                    ev.append({"file": _cap_rel(u), "flow": c["flow"], "offset": 0, "row": None,
                               "event": None, "host": c["host"], "identifier": ", ".join(c["identifiers"]), "form": None,
                               "text": f"clear HTTP to {c['host']} carries {', '.join(c['identifiers'])}"})
                else:
                    reqs = ", ".join(f"{r.get('method')} {r.get('path')}" for r in c["requests"][:3])
                    warnings.append(f"clear HTTP to {c['host']} ({reqs}): no identifier, but not TLS")
            for fl in w.get("flows", []):
                p = fl.get("protocol") or {}
                if fl.get("vendor") and p.get("name") not in ("tls", "http") and fl["bytes"]["c2s"] > 0:
                    ev.append({"file": _cap_rel(u), "flow": fl["id"], "offset": 0, "row": None,
                               "event": None, "host": fl.get("host"), "identifier": None, "form": None,
                               "text": f"{fl['server']}: {fl['bytes']['c2s']} bytes in a protocol that is not TLS"})
        if ev:
            return {"status": "FAIL", "reason": "a connection to a Xiaomi host is not TLS 1.2+ or carries data in clear",
                    "evidence": ev, "warnings": sorted(set(warnings))}
        return {"status": "PASS", "reason": "every connection to a Xiaomi host carrying data is TLS 1.2 or later",
                "warnings": sorted(set(warnings))}

    def _check_imsi_after_login(self) -> dict:
        why = self._have_evidence()
        if why:
            return _nt(why)
        login = self.facts.get("login") or {}
        sent = self._sent(kinds=("imsi",))
        # each handset against its own login: one that never logged in has no "after"
        before = [(u, f) for u, f in sent if login.get(u.label) is None or (f.get("ts") or 0) < login[u.label]]
        if before:
            return {"status": "FAIL", "reason": "the IMSI left "
                    + ", ".join(sorted({u.label for u, _ in before})) + " before any Mi Cloud login on it",
                    "evidence": [self._evidence(u, f) for u, f in before]}
        if not login:
            return _nt("Mi Cloud login could not be done on this testbed (no IMSI was sent before it)")
        early = {id(f) for _, f in before}
        after = [(u, f) for u, f in sent if id(f) not in early]
        if after:
            return {"status": "PASS", "reason": "the IMSI leaves the device only after Mi Cloud login (reported)",
                    "evidence": [self._evidence(u, f) for u, f in after],
                    "warnings": ["IMSI sent after Mi Cloud login to "
                                 + ", ".join(sorted({f.get('host') or '?' for _, f in after}))]}
        return {"status": "PASS", "reason": "no IMSI left the device, before or after Mi Cloud login"}

    def _check_no_retention(self) -> dict:
        state = self.facts.get("cloud_state")
        if state is None:
            return _nt("the server's store can only be inspected on the emulated lab")
        retained = dict(state.get("retained") or {}) if isinstance(state, dict) else {}
        count = max(_count(retained.get("bodies")), _count(retained.get("messages")))
        if count:
            by = self.facts.get("cloud_state_by")
            return {"status": "FAIL", "reason": f"the server still holds {count} message bodies after delivery",
                    "evidence": [{"file": f"handsets/{by}/steps.json" if by else None, "flow": None, "offset": None,
                                  "row": None, "event": None, "host": None, "identifier": None, "form": None,
                                  "text": json.dumps(state)[:300]}]}
        return {"status": "PASS", "reason": "the server's store holds no message content after delivery"}

    # -- reports --------------------------------------------------------------------------------
    def _write(self, report: dict, status: str) -> dict:
        """report.json, junit.xml, report.html and the manifest; the report as written (redacted
        with --redact: what the caller prints is what the files hold)."""
        from .report import write_html, write_json, write_junit

        if self.opt.redact:
            report = self._redactor().redact_obj(report)
            report["run"]["redacted"] = True
        for name, fn in (("report.json", write_json), ("junit.xml", write_junit), ("report.html", write_html)):
            fn(report, self.run.path_for(name))
            self.run.add_file(name, kind=None)
        self.run.write_manifest(status=status)
        return report


def _count(x: Any) -> int:
    return x if isinstance(x, int) else len(x) if isinstance(x, (list, dict)) else 0


def _unavailable(sender: _Unit | None, receiver: _Unit | None) -> str | None:
    """Why a send from ``sender`` to ``receiver`` cannot be made (None: it can)."""
    if sender is None:
        return "needs a handset to send from"
    if sender.gone:
        return sender.gone
    if receiver is None and sender is not None:
        return None
    if receiver is None or not receiver.numbers:
        return "needs a second handset with a number"
    return receiver.gone


def _nt(reason: str) -> dict:
    return {"status": "NOT-TESTABLE", "reason": reason}


def _row_evidence(audit: Audit, out: dict, side: str) -> dict:
    ev = (out.get("evidence") or {}).get(side) or {}
    label = next((u.label for u in audit.units if u.spec.serial == out.get("serial")), None)
    if side == "receiver":
        label = next((u.label for u in audit.units if out.get("to") in u.numbers), label)
    return {"file": f"handsets/{label}/messages.json" if label else None, "flow": None, "offset": None,
            "row": ev.get("id"), "event": None, "host": None, "identifier": None, "form": None,
            "text": f"{side} row {ev.get('id')}: type {ev.get('type')} mx_status {ev.get('mx_status')} "
                    f"route {out.get('route')}" if ev else f"{side}: no row"}


def _capture_name(source: str) -> str:
    """The lab's tap writes pcapng; tcpdump (handset or host) and PCAPdroid's default dump, pcap."""
    return "wire.pcapng" if source == "lab" else "wire.pcap"


def _cap_rel(u: _Unit) -> str:
    cap = _capture_of(u)
    return f"{u.rel}/{cap.name if cap else 'wire.pcapng'}"


def _capture_of(u: _Unit) -> Path | None:
    for name in ("wire.pcapng", "wire.pcap"):
        if (u.dir / name).exists():
            return u.dir / name
    return None


def _param(tb: Any, name: str, default: Any) -> Any:
    params = getattr(tb, "params", None) or {}
    return params.get(name, default) if isinstance(params, dict) else default


def _read_identity(h: Any, timeout: float) -> dict:
    from .identity import read_identity

    return read_identity(h, timeout=timeout, require=False).to_json()


def _wait_online(h: Any, number: str, timeout: float) -> dict:
    """Presence look-ups of ``number`` until it shows online or ``timeout``; the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        p = _cloud().presence(h, number, timeout=min(15.0, timeout)).to_json()
        if p.get("online") or time.monotonic() >= deadline:
            return p
        time.sleep(0.3)


def _wait_row(h: Any, text: str, timeout: float) -> dict | None:
    from .messages import read_messages

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in read_messages(h, limit=20, timeout=timeout):
            if m.body == text:
                return m.to_json()
        time.sleep(0.1)
    return None


def _gone(exc: Exception) -> bool:
    from .errors import AdbServerError, DeviceGoneError, DeviceNotFoundError, DeviceStateError

    return isinstance(exc, (AdbServerError, DeviceGoneError, DeviceNotFoundError, DeviceStateError))


def _steps() -> Any:
    from . import steps

    return steps


def _cloud() -> Any:
    from . import cloud

    return cloud


def run_audit(testbed: Any, options: AuditOptions) -> AuditResult:
    """Run the audit on ``testbed``; never raises for a check that fails or a handset that
    vanishes (they are in the report); AuditError when it cannot start."""
    os.makedirs(options.out, exist_ok=True)
    return Audit(testbed, options).execute()
