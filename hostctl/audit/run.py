"""The audit's run: the protocol's phases on a testbed, the recorders, the analysis, and the
:class:`~hostctl.audit.evidence.Evidence` the checks are judged on.

:func:`run_audit` runs the F-Secure protocol (fresh boot; add a contact; SMS in and out with the
peer; a call; Mi Cloud login), then the Cloud Messaging scenarios (opt-in state; enable; send to
an online receiver; to an offline one and to the modem; presence look-ups), with a capture and a
Frida trace running on every handset throughout, then evaluates every check of
:mod:`hostctl.audit.checks` on that evidence. The same code runs on a rack of real handsets and on
the emulated lab: every step goes through adb (:mod:`hostctl.steps`, :mod:`hostctl.cloud`); only
two things ask the lab itself, and only for an emulated handset (a factory reset, and the server's
store for no-retention).

Each phase is timed and kept in the report; the evidence of each handset goes to
``handsets/<label>/`` of the run folder (:class:`hostctl.evidence.RunFolder`): ``wire.pcapng``
(``wire.pcap`` from tcpdump or PCAPdroid), ``trace/events.jsonl``, ``messages.json``,
``logcat.txt``, ``steps.json``, ``wire-check.json``; the modem's identity and inbox
(``modem.json``), ``report.json``, ``junit.xml``, ``report.html`` and ``manifest.json`` at the top.

Stopping at any moment leaves a consistent run (one mechanism, :meth:`Audit.execute`): a Ctrl-C
(SIGINT, or SIGTERM) during the protocol ends the protocol; from then on, while the recorders stop,
the analysis runs and the reports are written, further signals are only noted (the rest of the
analysis is skipped, the checks it would have fed end NOT-TESTABLE saying so), and the reports and
the manifest (``interrupted``) are always written. Exit 130.

Host faults (our own tooling broke: a recorder that did not start or died, an analysis or check
that raised, the peer modem, the adb server) are said at once on the progress stream, kept in the
report (``run.status`` ``degraded``, ``run.host_faults``), keep the checks whose evidence they
weakened from PASS, and make a NOT-TESTABLE they caused exit 4.

A handset that vanishes mid-audit does not stop it: its remaining steps are skipped with the
reason, and the checks that needed them end NOT-TESTABLE saying so.

``HOSTCTL_AUDIT_SIGNAL_AT=<point>`` (tests only): send this process SIGINT at a named point
(``phase:<name>``, ``boot:<label>`` (in a handset's thread, as the fresh boot starts its recorders),
``wind-down``, ``recorders:<label>``, ``collect:<label>``, ``analysis:<label>``,
``evaluate:<check id>``, ``report:<file>``), so the fault tests can stop the run anywhere.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import HostctlError
from ..status import ExitStatus
from ..wire.check import jsonable
from .checks import modules as check_modules
from .evidence import AgentWrite, Evidence, HandsetEvidence
from .record import CheckRecord, NotTestable, Status

if TYPE_CHECKING:
    from ..evidence import RunFolder

__all__ = [
    "Audit",
    "AuditError",
    "AuditOptions",
    "AuditResult",
    "EXIT_FAIL",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_RUN",
    "EXIT_PASS",
    "FAULT_WEAKENS",
    "SIGNAL_AT_ENV",
    "decrypt_and_cross_check",
    "judge",
    "run_audit",
]

# the audit's exit codes, from the one table (hostctl.status)
EXIT_PASS = ExitStatus.OK  # every check that ran passed
EXIT_FAIL = ExitStatus.CHECK_FAILED  # at least one check FAILED
EXIT_NOT_RUN = ExitStatus.NOT_RUNNABLE  # could not run, or a check was not judged because the host broke
EXIT_INTERRUPTED = ExitStatus.INTERRUPTED  # Ctrl-C: the partial report and manifest are still written

SIGNAL_AT_ENV = "HOSTCTL_AUDIT_SIGNAL_AT"
_log = logging.getLogger("hostctl.audit")

# which of a check's NEEDS (hostctl.audit.checks) a host fault of each kind weakens
FAULT_WEAKENS: dict[str, frozenset[str]] = {
    "capture": frozenset({"capture"}),
    "trace": frozenset({"trace"}),
    "analysis": frozenset({"capture", "trace"}),
    "modem": frozenset({"modem"}),
    "adb": frozenset({"device", "capture", "trace", "lab", "modem"}),
}


class AuditError(HostctlError):
    """The audit could not start (the message says why)."""


@dataclass
class AuditOptions:
    out: Path
    checks: Sequence[str] | None = None  # None: all of them
    redact: bool = False
    assume_reset: bool = False  # real handsets: the operator reset them by hand
    progress: Callable[[str], None] | None = None
    stop: threading.Event | None = None  # set from another thread: stop as Ctrl-C does
    timeout: float = 30.0  # per device step
    settle: float | None = None  # seconds to let traffic go out after a step (default:
    # the testbed's params.settle, else 0.3 s on an
    # emulated lab and 1 s on hardware)
    hash_budget: float = 2.0
    profile: str | None = None
    argv: Sequence[str] = ()
    home: Path | None = None  # the emulated lab's home (its control channel)


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
    gone: str | None = None  # why it stopped answering
    capture: Any = None
    capture_error: str | None = None
    tracer: Any = None
    trace_thread: threading.Thread | None = None
    trace_stop: threading.Event = field(default_factory=threading.Event)
    trace_error: str | None = None
    trace_died: bool = False
    recorders_lock: threading.Lock = field(default_factory=threading.Lock)
    recorders_closed: bool = False  # the wind-down stopped them: start none any more
    steps: list[dict] = field(default_factory=list)
    wire: dict | None = None
    agent_writes: tuple[AgentWrite, ...] = ()
    analysis_skipped: str | None = None  # why its analysis was not run (interrupted)
    tls: dict | None = None  # its capture decrypted and cross-checked (_decrypt)
    tls_error: str | None = None
    read_ids: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, value, label) read over adb

    @property
    def label(self) -> str:
        return self.spec.label


def _now() -> float:
    return time.time()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Audit:
    def __init__(self, testbed: Any, options: AuditOptions) -> None:
        self.tb = testbed
        self.opt = options
        known = {m.ID: m for m in check_modules()}
        wanted = list(options.checks) if options.checks else list(known)
        unknown = [c for c in wanted if c not in known]
        if unknown:
            raise AuditError(f"unknown check {', '.join(unknown)} (known: {', '.join(known)})")
        self.wanted = [m for cid, m in known.items() if cid in wanted]
        self.units: list[_Unit] = []
        self.phases: list[dict] = []
        self.marks: dict[str, tuple[float, float]] = {}
        self.facts: dict[str, Any] = {}  # what the steps established, by name
        self.warnings: list[str] = []
        self.texts: dict[str, str] = {}  # message texts used, by purpose
        self.contact: str | None = None
        self.modem: Any = None
        self.interrupted = False
        self.not_run: str | None = None
        self.host_faults: list[dict] = []  # {"kind", "handset", "message"}: our tooling broke
        self.started = _now()
        self._run: RunFolder | None = None  # created by execute(); see the run property
        self.report: dict = {}
        self._winding_down = False
        self._threads: list[threading.Thread] = []
        self._skip_analysis = False  # a signal came during the wind-down: analyse no more

    # -- plumbing -----------------------------------------------------------------------------
    @property
    def run(self) -> RunFolder:
        """The run folder: it exists from the start of :meth:`execute` on."""
        if self._run is None:
            raise RuntimeError("the audit's run folder is used before execute() created it")
        return self._run

    @property
    def settle(self) -> float:
        """Seconds to let traffic go out after a step: the option, else set by the prepare phase."""
        if self.opt.settle is None:
            raise RuntimeError("the settle time is used before the prepare phase set it")
        return self.opt.settle

    def say(self, msg: str) -> None:
        if self.opt.progress is not None:
            self.opt.progress(msg)

    def host_fault(self, kind: str, unit: _Unit | None, message: str) -> None:
        """Our own tooling broke in a way that weakens the evidence: said on stderr now, kept in
        the report (run.status "degraded") and in the final summary."""
        label = unit.label if unit is not None else None
        text = f"{label}: {message}" if label else message
        if any(f["kind"] == kind and f["handset"] == label and f["message"] == message for f in self.host_faults):
            return
        self.host_faults.append({"kind": kind, "handset": label, "message": message})
        if self.opt.progress is not None:
            self.say(f"HOST FAULT ({kind}): {text}")
        else:  # a library caller without progress still hears it (stderr)
            _log.warning("host fault (%s): %s", kind, text)

    def _check_stop(self) -> None:
        if self.opt.stop is not None and self.opt.stop.is_set():
            raise _Interrupted()

    @contextlib.contextmanager
    def phase(self, name: str):
        self._check_stop()
        t0 = _now()
        rec: dict[str, Any] = {"name": name, "started": _iso(t0), "seconds": 0.0, "status": "ok", "notes": []}
        self.phases.append(rec)
        self.say(f"[{len(self.phases):2d}] {name} ...")
        self._probe(rec)
        try:
            self._point(f"phase:{name}")
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
            if self._run is not None:
                with contextlib.suppress(Exception):
                    self._run.write_manifest(status="running")

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
                if _host_side(exc):
                    self.host_fault("adb", u, f"before '{rec['name']}': {type(exc).__name__}: {exc}")

    def step(self, unit: _Unit, name: str, fn: Callable[[], Any], *, rec: dict | None = None) -> Any:
        """Run one device step on ``unit``; a vanished handset is noted (not raised), a step the
        handset cannot do (StepNotPossible) is noted and returns None."""
        from ..steps import StepNotPossible

        if unit.gone:
            if rec is not None:
                rec["notes"].append(f"{unit.label}: {name} skipped ({unit.gone})")
            return None
        if self._stopping():  # a handset's thread after a Ctrl-C: no new step
            if rec is not None:
                rec["notes"].append(f"{unit.label}: {name} skipped (interrupted)")
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
            if _host_side(exc):
                self.host_fault("adb", unit, f"{name}: {type(exc).__name__}: {exc}")
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
        """The protocol, then the wind-down (recorders stopped, analysis, checks, reports), which
        always runs to the end: see the module's docstring."""
        from ..evidence import RunFolder

        self._run = RunFolder.create(self.opt.out, self.tb.name, handsets=[h.label for h in self.tb.handsets])
        with self._signals():
            try:
                self._protocol()
                self._winding_down = True
            except (KeyboardInterrupt, _Interrupted):
                self._winding_down = True
                self._note_interrupt("interrupted: stopping the recorders and writing what was gathered")
            except AuditError as exc:
                self._winding_down = True
                self.not_run = str(exc)
                self.warnings.append(f"the audit could not run: {exc}")
                self.say(f"the audit could not run: {exc}")
            except Exception as exc:  # noqa: BLE001 - our own bug: still a consistent run, and said
                self._winding_down = True
                self.not_run = f"the audit stopped on an internal error: {type(exc).__name__}: {exc}"
                self.host_fault("audit", None, self.not_run + " (traceback: audit-error.txt)")
                with contextlib.suppress(Exception):
                    self._write_text("audit-error.txt", traceback.format_exc(), kind="log")
            self._wind_down()
        return AuditResult(self.report, self.run.path, self.report["exit_status"])

    def _stopping(self) -> bool:
        return self._winding_down or self.interrupted or (self.opt.stop is not None and self.opt.stop.is_set())

    def _wind_down(self) -> None:
        # the handsets' threads (a Ctrl-C may have cut the protocol while they ran) end their
        # current step and start nothing new: wait, so every recorder they started is stopped below
        for t in self._threads:
            t.join(max(60.0, self.opt.timeout) + 30)
        self._point("wind-down")
        self._finish_recorders()
        report = self._evaluate()
        while True:
            was = self.interrupted
            status = (
                "interrupted"
                if self.interrupted
                else "failed"
                if self.not_run
                else "degraded"
                if report["run"]["status"] == "degraded"
                else "complete"
            )
            self.report = self._write(report, status)
            if self.interrupted == was:
                return
            # stopped while the reports were written: write them again, saying so
            report["run"].update(complete=False, interrupted=True, status="interrupted")
            report["exit_status"] = int(EXIT_INTERRUPTED)

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM: during the protocol they stop it (KeyboardInterrupt); once it is
        over they are only noted, so the wind-down always leaves a consistent run."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach the main thread only; ``stop`` is the way in
            return

        def on_signal(signum: int, frame: Any) -> None:
            if self._winding_down:
                self._skip_analysis = True
                self._note_interrupt(
                    f"{signal.Signals(signum).name}: the rest of the analysis is skipped; writing the reports"
                )
                return
            raise KeyboardInterrupt

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _note_interrupt(self, msg: str) -> None:
        if not self.interrupted:
            self.interrupted = True
            self.say(msg)

    def _point(self, name: str) -> None:
        """A named moment of the run; ``HOSTCTL_AUDIT_SIGNAL_AT`` sends SIGINT here (fault tests)."""
        if os.environ.get(SIGNAL_AT_ENV) == name:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # let the handler run here, as a Ctrl-C at this moment would

    def _protocol(self) -> None:
        from ..device import Handset

        token = secrets.token_hex(3)
        self.texts = {
            "sms_out": f"hostctl sms out {token}",
            "sms_in": f"hostctl sms in {token}",
            "ip": f"hostctl ip {token}",
            "offline": f"hostctl offline {token}",
            "modem": f"hostctl to modem {token}",
        }
        with self.phase("prepare") as rec:
            for spec in self.tb.handsets:
                h = Handset(spec.serial, spec.adb)
                d = self.run.handset_dir(spec.label)
                u = _Unit(spec, h, d, f"handsets/{spec.label}", numbers=[s.number for s in spec.sims if s.number])
                self.units.append(u)

                def info(h: Handset = h) -> Any:
                    return h.info().to_json()

                def identity(h: Handset = h) -> Any:
                    return _read_identity(h, self.opt.timeout)

                u.info = self.step(u, "info", info, rec=rec) or {}
                # what the handset says of itself: the testbed may not name its IMEIs and IMSIs
                ident = self.step(u, "identity", identity, rec=rec)
                for slot in (ident or {}).get("slots", []):
                    for kind in ("imei", "imsi", "iccid", "msisdn"):
                        if slot.get(kind):
                            u.read_ids.append(
                                (
                                    kind,
                                    slot[kind],
                                    f"{spec.label} {'number' if kind == 'msisdn' else kind}{slot['slot']}",
                                )
                            )
            if not any(not u.gone for u in self.units):
                reasons = "; ".join(u.gone for u in self.units if u.gone)
                raise AuditError(
                    "no handset of the testbed answers" + (f": {reasons}" if reasons else " (the testbed lists none)")
                )
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
                self.step(
                    u, "airplane on", lambda: _steps().set_airplane(u.handset, True, timeout=self.opt.timeout), rec=rec
                )
                self.step(u, "reboot", lambda: _steps().reboot(u.handset, timeout=max(60.0, self.opt.timeout)), rec=rec)
                self._point(f"boot:{u.label}")
                if not self._stopping():
                    self._start_recorders(u, rec)

            self._each(boot_offline)
            self.facts["boot_online_at"] = _now()
            for u in self.units:

                def airplane_off(u: _Unit = u) -> Any:
                    return _steps().set_airplane(u.handset, False, timeout=self.opt.timeout)

                self.step(u, "airplane off", airplane_off, rec=rec)
            self._settle(2 * self.opt.settle)
        with self.phase("opt-in state") as rec:
            for u in self.units:

                def cm_status(u: _Unit = u) -> Any:
                    return _cloud().cm_status(u.handset, ui=True, timeout=self.opt.timeout)

                st = self.step(u, "cm status", cm_status, rec=rec)
                if st is not None:
                    self.facts.setdefault("cm_default", {})[u.label] = st.to_json()
        first = self._live_units()[:1]
        with self.phase("add contact") as rec:
            for u in first:
                if peer_number:

                    def add_contact(u: _Unit = u, number: str = peer_number) -> Any:
                        return _steps().add_contact(u.handset, number, "hostctl peer", timeout=self.opt.timeout)

                    self.step(u, "add contact", add_contact, rec=rec)
            self._settle(self.opt.settle)
        with self.phase("sms in and out") as rec:
            self._sms_in_out(first, rec)
        with self.phase("call") as rec:
            for u in first:
                if peer_number:

                    def call(u: _Unit = u, number: str = peer_number) -> Any:
                        return _steps().place_call(u.handset, number, seconds=0.5, timeout=self.opt.timeout)

                    self.step(u, "call", call, rec=rec)
            self._settle(self.opt.settle)
        with self.phase("mi cloud login") as rec:
            for u in first:
                t_login = _now()  # what the build sends on login goes out during the step

                def login(u: _Unit = u) -> Any:
                    return _steps().micloud_login(u.handset, timeout=self.opt.timeout)

                res = self.step(u, "mi cloud login", login, rec=rec)
                if res is not None:
                    self.facts.setdefault("login", {})[u.label] = t_login
            self._settle(self.opt.settle)
        self.facts["opt_in_at"] = _now()
        with self.phase("enable cloud messaging") as rec:
            for u in self._live_units():

                def cm_on(u: _Unit = u) -> Any:
                    return _cloud().cm_set(u.handset, True, sim=1, timeout=self.opt.timeout)

                st = self.step(u, "cm on", cm_on, rec=rec)
                if st is not None:
                    self.facts.setdefault("cm_enabled", {})[u.label] = st.to_json()
                    for c in st.consent:  # evidence: what MIUI asked, and that cm on accepted it
                        rec["notes"].append(
                            f"{u.label}: accepted MIUI's {c['kind']} dialog for SIM {c['sim']} "
                            f"({c['title']!r}, button {c['accepted']!r}): the audit turns it on"
                        )
            self._settle(self.opt.settle)
        sender, receiver = (self.units + [None, None])[:2]
        with self.phase("send to an online receiver") as rec:
            why = _unavailable(sender, receiver)
            if why:
                rec["status"] = "skipped"
                rec["notes"].append(why)
                self.facts["send_online_skipped"] = why
            else:
                if sender is None or receiver is None:  # _unavailable() said why: not reached
                    raise RuntimeError("a send to an online receiver needs both handsets")
                # as a tester does: wait until the receiver shows online (blue) to the sender;
                # after a boot its activation and channel bind take a moment (0.1-0.8 s measured on
                # an idle emulated lab, far longer on a loaded host). The claim is about an online
                # receiver: the wait is generous, and a receiver never seen online leaves
                # ip-when-online NOT-TESTABLE instead of a FAIL that depends on the host's load
                seen = self.step(
                    sender,
                    "wait for the receiver online",
                    lambda: _wait_online(sender.handset, receiver.numbers[0], max(30.0, self.opt.timeout)),
                    rec=rec,
                )
                self.facts["receiver_presence_before_send"] = seen
                out = self.step(
                    sender,
                    "send ip",
                    lambda: _cloud().send_message(
                        sender.handset,
                        receiver.numbers[0],
                        self.texts["ip"],
                        receiver=receiver.handset,
                        carrier_view=self._carrier_view(),
                        timeout=self.opt.timeout,
                    ),
                    rec=rec,
                )
                self.facts["send_online"] = None if out is None else out.to_json()
        with self.phase("send to an offline receiver and to the modem") as rec:
            self._send_offline(sender, receiver, rec)
        with self.phase("presence look-ups") as rec:
            looks = []
            if sender is not None and not sender.gone:
                for number in [
                    n
                    for n in ([receiver.numbers[0]] if receiver and receiver.numbers else []) + [self._modem_number()]
                    if n
                ]:
                    t0 = _now()

                    def presence(u: _Unit = sender, number: str = number) -> Any:
                        return _cloud().presence(u.handset, number, timeout=self.opt.timeout)

                    res = self.step(sender, f"presence {number}", presence, rec=rec)
                    self._settle(self.opt.settle / 2)
                    looks.append(
                        {
                            "number": number,
                            "from": t0,
                            "to": _now(),
                            "handset": sender.label,
                            "result": None if res is None else res.to_json(),
                        }
                    )
            self.facts["lookups"] = looks
        with self.phase("server store") as rec:
            if sender is not None and not sender.gone:
                state = self.step(
                    sender, "cloud state", lambda: _steps().lab_cloud_state(sender.handset, home=self.opt.home), rec=rec
                )
                self.facts["cloud_state"] = state
                self.facts["cloud_state_by"] = sender.label

    def _each(self, fn: Callable[[_Unit], None]) -> None:
        """``fn`` on every handset at once (one thread each), as a lab runs a rack."""
        threads = [threading.Thread(target=fn, args=(u,), name=f"audit-{u.label}", daemon=True) for u in self.units]
        self._threads += threads
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
        res = self.step(
            u,
            "factory reset",
            lambda: _steps().factory_reset(u.handset, home=self.opt.home, timeout=max(60.0, self.opt.timeout)),
            rec=rec,
        )
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
            from ..lab.modem import Modem

            self.modem = Modem.open(**spec.controller_config(), timeout=self.opt.timeout)
        except Exception as exc:  # noqa: BLE001 - a modem that does not open is a note, not the end
            rec["notes"].append(f"peer modem {spec.port}: {exc}")
            self.host_fault("modem", None, f"the peer modem {spec.port} did not open: {exc}")
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
        out = self.step(
            u,
            "sms out",
            lambda: _cloud().send_message(
                u.handset, peer, self.texts["sms_out"], modem=self.modem, timeout=self.opt.timeout
            ),
            rec=rec,
        )
        self.facts["sms_out"] = None if out is None else out.to_json()
        if not u.numbers:
            return
        if self.modem is not None:
            try:
                self.modem.send_sms(u.numbers[0], self.texts["sms_in"])
                self.facts["sms_in_sent"] = "modem"
            except Exception as exc:  # noqa: BLE001
                rec["notes"].append(f"modem send: {exc}")
        elif len(self.units) >= 2 and not self.units[1].gone:
            other = self.units[1]
            self.step(
                other,
                "sms to first",
                lambda: _cloud().send_message(
                    other.handset, u.numbers[0], self.texts["sms_in"], timeout=self.opt.timeout
                ),
                rec=rec,
            )
        got = self.step(u, "sms in", lambda: _wait_row(u.handset, self.texts["sms_in"], self.opt.timeout), rec=rec)
        self.facts["sms_in"] = got
        self._settle(self.settle)

    def _send_offline(self, sender: _Unit | None, receiver: _Unit | None, rec: dict) -> None:
        why = _unavailable(sender, None)
        if why:
            rec["status"] = "skipped"
            rec["notes"].append(why)
            self.facts["send_offline_skipped"] = why
            return
        if sender is None:  # _unavailable() said why: not reached
            raise RuntimeError("a send to an offline receiver needs a sender")
        why = _unavailable(sender, receiver)
        if why:
            rec["notes"].append(why)
            self.facts["send_offline_skipped"] = why
        else:
            if receiver is None:  # _unavailable() said why: not reached
                raise RuntimeError("a send to an offline receiver needs a receiver")
            off = self.step(
                receiver,
                "receiver offline",
                lambda: _steps().set_airplane(receiver.handset, True, timeout=self.opt.timeout),
                rec=rec,
            )
            out = None
            if off is None:
                self.facts["send_offline_skipped"] = f"{receiver.label} could not be taken offline (see its steps)"
            else:
                out = self.step(
                    sender,
                    "send offline",
                    lambda: _cloud().send_message(
                        sender.handset, receiver.numbers[0], self.texts["offline"], timeout=self.opt.timeout
                    ),
                    rec=rec,
                )
                if out is None:
                    self.facts["send_offline_skipped"] = "the send to the offline receiver failed (see the steps)"
            self.facts["send_offline"] = None if out is None else out.to_json()
            self.step(
                receiver,
                "receiver online",
                lambda: _steps().set_airplane(receiver.handset, False, timeout=self.opt.timeout),
                rec=rec,
            )
        if self._modem_number():
            out = self.step(
                sender,
                "send to modem",
                lambda: _cloud().send_message(
                    sender.handset,
                    self._modem_number(),
                    self.texts["modem"],
                    modem=self.modem,
                    timeout=self.opt.timeout,
                ),
                rec=rec,
            )
            self.facts["send_modem"] = None if out is None else out.to_json()

    # -- recorders ------------------------------------------------------------------------------
    def _start_recorders(self, u: _Unit, rec: dict) -> None:
        # under the unit's lock: the wind-down stops a unit's recorders under it too, and marks
        # them closed, so a handset's thread cut by a Ctrl-C never starts one after they stopped
        with u.recorders_lock:
            if u.gone or u.recorders_closed:
                return
            self._start_recorders_locked(u, rec)

    def _start_recorders_locked(self, u: _Unit, rec: dict) -> None:
        from ..capture import source_for

        spec = getattr(u.spec, "capture", None)
        src = getattr(spec, "spec", None) if spec is not None else None
        if src in (None, "none"):
            src = "lab" if u.info.get("emulated") else None
        if src is None:
            u.capture_error = "the testbed names no capture source for this handset"
            rec["notes"].append(f"{u.label}: no capture ({u.capture_error})")
            self.host_fault("capture", u, f"no capture: {u.capture_error}")
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
                u.capture, u.capture_error = None, f"capture did not start: {exc}"
                rec["notes"].append(f"{u.label}: capture did not start: {exc}")
                self.host_fault("capture", u, f"capture did not start: {exc}")
        try:
            from ..trace import TraceOptions, Tracer, open_device

            apps = tuple(getattr(getattr(u.spec, "frida", None), "processes", None) or ("com.android.mms",))
            u.tracer = Tracer(
                open_device(u.spec.serial, server=u.spec.adb, timeout=10),
                u.dir / "trace",
                serial=u.spec.serial,
                options=TraceOptions(apps=apps, evp=True),
            )
            u.tracer.start()
            u.trace_thread = threading.Thread(target=self._trace_run, args=(u,), daemon=True, name=f"trace-{u.label}")
            u.trace_thread.start()
            self.run.add_file(f"{u.rel}/trace/events.jsonl", kind="jsonl")
            self.run.add_file(f"{u.rel}/trace/sslkeylog.txt", kind="keylog")  # the trace's TLS secrets
        except Exception as exc:  # noqa: BLE001 - Frida's own errors too: a host fault, never a traceback
            with contextlib.suppress(Exception):
                if u.tracer is not None:
                    u.tracer.stop("error")
            what = str(exc) if isinstance(exc, HostctlError) else f"{type(exc).__name__}: {exc}"
            u.tracer, u.trace_error = None, f"trace did not start: {what}"
            rec["notes"].append(f"{u.label}: trace did not start: {what}")
            self.host_fault("trace", u, f"tracing failed: the trace did not start: {what}")

    def _trace_run(self, u: _Unit) -> None:
        """The tracer's loop on its thread; if it dies before it was told to stop, that is a host
        fault (the agent's evidence ends there)."""
        try:
            u.tracer.run(stop=u.trace_stop)
        except Exception as exc:  # noqa: BLE001 - any way the trace ends early weakens the evidence
            u.trace_error = f"the trace died: {type(exc).__name__}: {exc}"
            u.trace_died = True
            self.say(f"{u.label}: {u.trace_error}")

    def _finish_recorders(self) -> None:
        for u in self.units:
            self._point(f"recorders:{u.label}")
            with u.recorders_lock:
                u.recorders_closed = True
                self._finish_unit(u)
        self._finish_modem()

    def _finish_unit(self, u: _Unit) -> None:
        if u.tracer is not None:
            u.trace_stop.set()
            if u.trace_thread is not None:
                u.trace_thread.join(30)
            if u.trace_died and not u.gone:
                # a trace that died on a handset that still answers: our tooling's fault (a
                # handset that vanished takes its trace with it, and says so itself)
                self.host_fault("trace", u, f"tracing failed: {u.trace_error}")
            with contextlib.suppress(Exception):
                u.tracer.stop()
            if (u.dir / "trace" / "summary.json").exists():
                self.run.add_file(f"{u.rel}/trace/summary.json", kind="json")
        if u.capture is not None:
            try:
                u.capture.stop()
            except HostctlError as exc:
                u.capture_error = f"capture ended with an error: {exc}"
                self.host_fault("capture", u, u.capture_error)
        self._point(f"collect:{u.label}")
        self._collect(u)

    def _finish_modem(self) -> None:
        if self.modem is not None:
            doc: dict[str, Any] = {}
            try:
                doc["identity"] = self.modem.identify().to_json()
                doc["inbox"] = [m.to_json() for m in self.modem.inbox()]
            except Exception as exc:  # noqa: BLE001 - the modem's log is evidence, not a step
                doc["error"] = f"{type(exc).__name__}: {exc}"
            self._write_text("modem.json", json.dumps(doc, indent=1, default=str), kind="json")
            with contextlib.suppress(Exception):
                self.modem.close()

    def _collect(self, u: _Unit) -> None:
        from ..messages import read_messages

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
            from ..evidence import Redactor

            self._red = Redactor.for_testbed(self.tb, extra=[(k, v) for u in self.units for k, v, _ in u.read_ids])
        return self._red

    # -- evaluation -----------------------------------------------------------------------------
    def _identifiers(self) -> list[Any]:
        from ..wire.identifiers import Identifier, identifiers_of

        out = identifiers_of(self.tb, [i for u in self.units for i in u.read_ids])
        return out + [Identifier("text", text, f"text {purpose}") for purpose, text in self.texts.items()]

    def _analyse(self) -> None:
        from ..wire.check import WireCheck

        idents = self._identifiers()
        for u in self.units:
            cap = _capture_of(u)
            ev = u.dir / "trace" / "events.jsonl"
            if cap is None and not ev.exists():
                continue
            self._point(f"analysis:{u.label}")
            if self.opt.stop is not None and self.opt.stop.is_set() and not self.interrupted:
                self._skip_analysis = True
                self._note_interrupt("interrupted: the rest of the analysis is skipped")
            if self._skip_analysis:
                u.analysis_skipped = "interrupted before its wire analysis"
                continue
            try:
                wc = WireCheck(idents, hash_budget=self.opt.hash_budget)
                if ev.exists():  # the trace's TLS secrets decrypt the capture (findings in
                    wc.add_agent_secrets(ev)  # layer tls-decrypted cite flow, record, wire offset)
                if cap is not None and cap.stat().st_size > 0:
                    wc.add_capture(cap)
                if ev.exists():
                    wc.add_agent_events(ev)
                u.wire = wc.report()
                u.agent_writes = _agent_writes(ev) if ev.exists() else ()
            except Exception as exc:  # noqa: BLE001 - a broken analysis is a host fault, never a crash
                u.wire = None
                self.host_fault("analysis", u, f"the wire analysis failed: {type(exc).__name__}: {exc}")
                continue
            self._write_text(f"{u.rel}/wire-check.json", json.dumps(u.wire, indent=1, default=str), kind="json")
            self._decrypt(u, cap, ev)

    def _decrypt(self, u: _Unit, cap: Path | None, ev: Path) -> None:
        """The handset's capture decrypted with the secrets its trace collected, and each TLS flow's
        plaintext compared with the agent's SSL events (:func:`hostctl.wire.crosscheck.cross_check`):
        ``u.tls`` (``handsets/<label>/tls-crosscheck.json``) for the check ``tls-plaintext-agrees``
        and report.html. Without a capture or a trace there is nothing to compare (``tls_error``);
        a decryption that breaks is a host fault."""
        if cap is None or cap.stat().st_size == 0 or not ev.exists():
            u.tls_error = "no capture" if cap is None or cap.stat().st_size == 0 else "no trace"
            return
        try:
            u.tls = decrypt_and_cross_check(cap, u.dir / "trace")
        except Exception as exc:  # noqa: BLE001 - broken decryption is a host fault, never a crash
            u.tls_error = f"decrypting the capture failed: {type(exc).__name__}: {exc}"
            self.host_fault("analysis", u, u.tls_error)
            return
        doc = u.tls
        if self.opt.redact:  # the bytes samples (hex) could hold identifiers in a form the redactor misses
            doc = json.loads(json.dumps(u.tls, default=str))
            for f in doc["cross_check"]["flows"]:
                for e in f["evidence"]:
                    for k in ("sample", "agent", "wire"):
                        e.pop(k, None)
                for d in f["directions"]:
                    for k in ("agent", "wire"):
                        (d.get("first_difference") or {}).pop(k, None)
        self._write_text(f"{u.rel}/tls-crosscheck.json", json.dumps(doc, indent=1, default=str), kind="json")

    def evidence(self) -> Evidence:
        """What the run established, for the checks."""
        f = self.facts
        handsets = [
            HandsetEvidence(
                label=u.label,
                serial=u.spec.serial,
                numbers=tuple(u.numbers),
                capture_file=_cap_rel(u) if _capture_of(u) else None,
                events_file=f"{u.rel}/trace/events.jsonl" if (u.dir / "trace" / "events.jsonl").exists() else None,
                wire=u.wire,
                agent_writes=tuple(u.agent_writes),
                capture_error=u.capture_error,
                trace_error=u.trace_error or u.analysis_skipped,
                gone=u.gone or u.analysis_skipped,
                tls=u.tls,
                tls_error=u.tls_error or u.analysis_skipped,
            )
            for u in self.units
        ]
        return Evidence(
            handsets=handsets,
            started=self.started,
            reset=dict(f.get("reset") or {}),
            cm_default=dict(f.get("cm_default") or {}),
            opt_in_at=f.get("opt_in_at"),
            login=dict(f.get("login") or {}),
            receiver_presence_before_send=f.get("receiver_presence_before_send"),
            send_online=f.get("send_online"),
            send_online_skipped=f.get("send_online_skipped"),
            send_offline=f.get("send_offline"),
            send_offline_skipped=f.get("send_offline_skipped"),
            send_modem=f.get("send_modem"),
            modem_present=self.modem is not None,
            lookups=list(f.get("lookups") or []),
            cloud_state=f.get("cloud_state"),
            cloud_state_by=f.get("cloud_state_by"),
            host_faults=list(self.host_faults),
        )

    def _evaluate(self) -> dict:
        self._analyse()
        ev = self.evidence()
        checks, host_not_testable = [], []
        for check in self.wanted:
            self._point(f"evaluate:{check.ID}")
            rec = judge(check, ev, on_fault=lambda msg: self.host_fault("check", None, msg))
            if rec.status is Status.NOT_TESTABLE and rec.host:
                host_not_testable.append(check.ID)
            checks.append(
                {
                    "id": check.ID,
                    "title": check.TITLE,
                    "claim": check.CLAIM,
                    "status": rec.status.value,
                    "reason": rec.reason,
                    "evidence": [e.to_json() for e in rec.evidence[:200]],
                    "warnings": list(rec.warnings),
                    "handsets": list(rec.handsets) if rec.handsets is not None else [u.label for u in self.units],
                }
            )
        from ..report import SCHEMA, summary_of

        summary = summary_of(checks)
        if self.interrupted:
            code = EXIT_INTERRUPTED
        elif self.not_run or not (summary.get("PASS") or summary.get("FAIL")):
            code = EXIT_NOT_RUN  # nothing could be judged: not a pass
        elif host_not_testable:
            code = EXIT_NOT_RUN  # the host, not the handset, left a check unjudged: not 0, not 3
        elif summary.get("FAIL"):
            code = EXIT_FAIL
        else:
            code = EXIT_PASS
        return {
            "schema": SCHEMA,
            "run": {
                "id": self.run.run_id,
                "testbed": self.tb.name,
                "started": _iso(self.started),
                "finished": _iso(_now()),
                "complete": not self.interrupted,
                "interrupted": self.interrupted,
                "redacted": self.opt.redact,
                "hostctl": __version__,
                "profile": self.opt.profile,
                "argv": list(self.opt.argv),
                "status": self._run_status(),
                "host_faults": list(self.host_faults),
            },
            "handsets": [self._handset_doc(u) for u in self.units],
            "phases": self.phases,
            "checks": checks,
            "warnings": self.warnings,
            "timeline": self._timeline(),
            "summary": summary,
            "exit_status": int(code),
            "tls_flows": self._tls_flows(),
        }

    def _run_status(self) -> str:
        if self.interrupted:
            return "interrupted"
        if self.not_run:
            return "not-run"
        return "degraded" if self.host_faults else "complete"

    def _handset_doc(self, u: _Unit) -> dict:
        return {
            "label": u.label,
            "serial": u.spec.serial,
            "model": u.info.get("model"),
            "miui": u.info.get("miui_version_name"),
            "emulated": bool(u.info.get("emulated")),
            "sims": [
                {"slot": s.slot, "number": s.number, "imsi": s.imsi, "iccid": s.iccid, "operator": s.operator}
                for s in u.spec.sims
            ],
            "imeis": [s.imei for s in u.spec.sims if s.imei],
        }

    def _tls_flows(self) -> list[dict]:
        """Every TLS flow of each handset's capture: decrypted or not, and the cross-check's word."""
        out = []
        for u in self.units:
            hosts = {fl["id"]: fl.get("host") for fl in (u.wire or {}).get("flows", [])}
            for f in (u.tls or {}).get("flows", []):
                out.append(
                    {
                        "handset": u.label,
                        "flow": f["flow"],
                        "client": f["client"],
                        "server": f["server"],
                        "host": hosts.get(f["flow"]),
                        "tls_status": f["tls_status"],
                        "decrypted": f["decrypted"],
                        "cross_check": f["cross_check"],
                    }
                )
        return out

    def _timeline(self) -> list[dict]:
        out = []
        for u in self.units:
            w = u.wire or {}
            for fl in w.get("flows", []):
                if fl.get("first_ts") is None or not fl.get("vendor"):
                    continue
                p = fl.get("protocol") or {}
                out.append(
                    {
                        "t": max(0.0, fl["first_ts"] - self.started),
                        "handset": u.label,
                        "host": fl.get("host") or fl["server"],
                        "kind": "connection",
                        "flow": fl["id"],
                        "identifier": None,
                        "form": None,
                        "verdict": None,
                        "tls": p.get("version") if p.get("name") == "tls" else None,
                    }
                )
            for f in w.get("findings", []):
                if f.get("ts") is None:
                    continue
                out.append(
                    {
                        "t": max(0.0, f["ts"] - self.started),
                        "handset": u.label,
                        "host": f.get("host") or "?",
                        "kind": "sighting",
                        "flow": f.get("flow"),
                        "identifier": f["identifier"],
                        "form": f["form"],
                        "verdict": f["verdict"],
                        "tls": None,
                    }
                )
        out.sort(key=lambda e: e["t"])
        return out

    # -- reports --------------------------------------------------------------------------------
    def _write(self, report: dict, status: str) -> dict:
        """report.json, junit.xml, report.html and the manifest; the report as written (redacted
        with --redact: what the caller prints is what the files hold)."""
        from ..report import write_html, write_json, write_junit

        if self.opt.redact:
            report = self._redactor().redact_obj(report)
            report["run"]["redacted"] = True
        for name, fn in (("report.json", write_json), ("junit.xml", write_junit), ("report.html", write_html)):
            self._point(f"report:{name}")
            fn(report, self.run.path_for(name))
            self.run.add_file(name, kind=None)
        self.run.write_manifest(status=status)
        return report


def decrypt_and_cross_check(capture: Path, trace_dir: Path) -> dict:
    """A handset's capture decrypted with the TLS secrets its trace collected (``sslkeylog.txt``,
    ``tls-secret`` events, the capture's own DSBs), and each TLS flow's plaintext compared with the
    agent's ``ssl`` events of ``trace_dir/events.jsonl``. Flows that began outside the hooks' time
    (first ``hook-status`` to the trace's ``stopped`` in ``summary.json``) are left out unless a
    hooked session names them. Returns what ``HandsetEvidence.tls`` holds: ``decryption`` (flow
    counts per status, key log sessions and secrets), ``window``, ``flows`` (per TLS flow: its
    endpoints, TLS status, ``decrypted``, its cross-check status) and ``cross_check``
    (`hostctl.wire.crosscheck.CrossCheck.to_json`). Raises on unreadable input."""
    from ..events import HookStatus, read_jsonl
    from ..wire.crosscheck import cross_check
    from ..wire.decrypt import decrypt_trace_capture

    flows, tls = decrypt_trace_capture(capture, trace_dir)
    events = list(read_jsonl(trace_dir / "events.jsonl"))
    hooked = [e.host_ts for e in events if isinstance(e, HookStatus)]
    stopped = None
    if (trace_dir / "summary.json").exists():
        stopped = json.loads((trace_dir / "summary.json").read_text()).get("stopped")
    window = (min(hooked), float(stopped) if stopped is not None else float("inf")) if hooked else None
    cc = cross_check(flows, events, window=window)
    judged = {f.flow: f for f in cc.flows}
    kl = tls.get("keylog") or {}
    return {
        "decryption": {
            "flows": dict(tls.get("flows") or {}),
            "sessions": kl.get("sessions", 0),
            "secrets": kl.get("secrets", 0),
        },
        "window": {"start": window[0], "stopped": stopped} if window else None,
        "flows": [
            {
                "flow": f.id,
                "client": f"{f.key.client[0]}:{f.key.client[1]}",
                "server": f"{f.key.server[0]}:{f.key.server[1]}",
                "tls_status": (f.summary or {}).get("status", "unknown"),
                "decrypted": (f.summary or {}).get("status") == "decrypted",
                "cross_check": judged[f.id].status if f.id in judged else None,
            }
            for f in flows
        ],
        "cross_check": cc.to_json(),
    }


def judge(check: ModuleType, ev: Evidence, *, on_fault: Callable[[str], None] | None = None) -> CheckRecord:
    """One check's verdict on ``ev``, failing closed: a check that raises is a host fault (told to
    ``on_fault``); a host fault in ``ev.host_faults`` that weakened what the check NEEDS keeps it
    from PASS, and makes its NOT-TESTABLE the host's doing (``host``: the audit exits 4)."""
    try:
        rec = check.evaluate(ev)
    except NotTestable as nt:
        rec = CheckRecord.not_testable(nt)
    except Exception as exc:  # noqa: BLE001 - one broken check must not lose the report
        msg = f"{check.ID} could not be evaluated: {type(exc).__name__}: {exc}"
        if on_fault is not None:
            on_fault(msg)
        return CheckRecord(
            Status.NOT_TESTABLE,
            f"the check could not be evaluated (host fault): {type(exc).__name__}: {exc}",
            host=True,
        )
    faults = [f for f in ev.host_faults if FAULT_WEAKENS.get(f["kind"], frozenset()) & set(check.NEEDS)]
    why = "; ".join(f"{f['handset'] + ': ' if f.get('handset') else ''}{f['message']}" for f in faults)
    if rec.status is Status.PASS and faults:
        return CheckRecord(
            Status.NOT_TESTABLE,
            f"not judged: a host fault weakened the evidence ({why})",
            rec.evidence,
            rec.warnings,
            host=True,
        )
    if rec.status is Status.NOT_TESTABLE and faults and not rec.host:
        return CheckRecord(
            Status.NOT_TESTABLE, f"{rec.reason} (host fault: {why})", rec.evidence, rec.warnings, host=True
        )
    return rec


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
    from ..identity import read_identity

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
    from ..messages import read_messages

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in read_messages(h, limit=20, timeout=timeout):
            if m.body == text:
                return m.to_json()
        time.sleep(0.1)
    return None


def _host_side(exc: Exception) -> bool:
    """The fault is the host's (its adb server), not the handset's."""
    from ..errors import AdbServerError

    return isinstance(exc, AdbServerError)


def _gone(exc: Exception) -> bool:
    from ..errors import AdbServerError, DeviceGoneError, DeviceNotFoundError, DeviceStateError

    return isinstance(exc, (AdbServerError, DeviceGoneError, DeviceNotFoundError, DeviceStateError))


def _steps() -> Any:
    from .. import steps

    return steps


def _cloud() -> Any:
    from .. import cloud

    return cloud


def run_audit(testbed: Any, options: AuditOptions) -> AuditResult:
    """Run the audit on ``testbed``; never raises for a check that fails or a handset that
    vanishes (they are in the report); AuditError when it cannot start."""
    from ..evidence import make_private_dirs

    make_private_dirs(Path(options.out))
    return Audit(testbed, options).execute()


def _agent_writes(path: Path) -> tuple[AgentWrite, ...]:
    """The agent's TLS writes (their first 200 bytes), for checks that read what went out when."""
    from ..events import SslData, read_events

    return tuple(
        AgentWrite(line, e.agent_ts or e.host_ts, e.sni, bytes(e.data)[:200])
        for line, e in read_events(path, errors=[])
        if isinstance(e, SslData) and e.direction == "out"
    )
