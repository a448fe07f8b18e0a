"""``hostctl audit``: the main job. MISSION.md's checks on a testbed, or on an emulated lab booted
for the run, with an evidence folder, report.json / junit.xml / report.html and a summary.

Exit status (hostctl.status.ExitStatus): 0 every check that ran passed; 3 a check FAILED; 4 the
audit could not run, or the host's own tooling broke (agent missing, a recorder that did not start
or died, an analysis error) so that a check ended NOT-TESTABLE: the run is "degraded", never 0 or 3;
130 interrupted (the partial report and manifest are written).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..cli import CliError, Environment, ExitStatus


def add_parsers(sub: Any, P: Any, env: Environment) -> None:
    a = sub.add_parser(
        "audit",
        env=env,
        help="audit Cloud Messaging on a testbed (or an emulated lab): "
        "every check PASS / FAIL / NOT-TESTABLE with evidence",
    )
    where = a.add_mutually_exclusive_group(required=True)
    where.add_argument("--testbed", metavar="FILE", help="testbed file (YAML; see README)")
    where.add_argument("--emulator", action="store_true", help="boot an emulated lab for the run")
    a.add_argument("--testbed-name", metavar="NAME", help="which testbed of the file (default: the only one)")
    a.add_argument("--profile", default="miui-v5-2014-08-10", help="--emulator: firmware profile name or path")
    a.add_argument("--handsets", type=int, default=2, help="--emulator: number of handsets (default 2)")
    a.add_argument(
        "--out",
        default="hostctl-runs",
        metavar="DIR",
        help="evidence folder (<out>/<testbed>/<timestamp>/, with a `latest` link; default ./hostctl-runs)",
    )
    a.add_argument("--checks", metavar="ID,...", help="only these checks (comma-separated ids)")
    a.add_argument("--redact", action="store_true", help="no raw identifier in any report or log (hashes instead)")
    a.add_argument(
        "--assume-reset",
        action="store_true",
        help="real handsets: they were factory-reset by hand just before (opt-in-default needs it)",
    )
    a.add_argument("--timeout", type=float, default=30.0, help="seconds per device step (default 30)")
    a.add_argument("--json", action="store_true", help="print report.json's document")


def run(args: argparse.Namespace, env: Environment) -> ExitStatus | int:
    from ..audit import AuditError, AuditOptions, run_audit
    from ..report import CHECK_IDS, render_json, summary_table

    checks = [c.strip() for c in args.checks.split(",") if c.strip()] if args.checks else None
    unknown = [c for c in checks or () if c not in CHECK_IDS]
    if unknown:
        raise CliError(f"audit: unknown check {', '.join(unknown)} (known: {', '.join(CHECK_IDS)})", ExitStatus.USAGE)

    def progress(msg: str) -> None:
        env.stderr.write(f"audit: {msg}\n")
        env.stderr.flush()

    opts = AuditOptions(
        out=Path(args.out),
        checks=checks,
        redact=args.redact,
        assume_reset=args.assume_reset,
        progress=progress,
        timeout=args.timeout,
        argv=["hostctl", *sys.argv[1:]],
        stop=threading.Event(),
    )
    try:
        with _testbed(args, env, opts, progress) as tb:
            result = run_audit(tb, opts)
    except AuditError as exc:
        raise CliError(f"audit: {exc}", ExitStatus.NOT_RUNNABLE) from exc
    if args.json:
        env.stdout.write(render_json(result.report))
    else:
        env.stdout.write(wrap_summary(summary_table(result.report, width=None), _width(env)) + "\n")
        env.stdout.write(f"evidence: {result.run_dir}\n")
    return result.exit_status


def _width(env: Environment) -> int | None:
    """Where the summary wraps: $COLUMNS, else the terminal's width; None (no wrapping) when
    stdout is not a terminal, so a file or a pipe gets whole lines."""
    columns = env.vars.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    isatty = getattr(env.stdout, "isatty", None)
    if isatty is None or not isatty():
        return None
    return shutil.get_terminal_size().columns


def wrap_summary(text: str, width: int | None) -> str:
    """The audit's summary with long lines wrapped at ``width`` (never cut): a check's reason and
    evidence continue under the reason column, a warning under its text."""
    if width is None:
        return text
    lines = text.split("\n")
    header = next((line for line in lines if line.startswith("CHECK ")), "")
    column = header.find("REASON") if header else -1
    out: list[str] = []
    for line in lines:
        if len(line) <= width or not line.strip(" -"):  # short, or a rule of dashes
            out.append(line[:width] if len(line) > width else line)
            continue
        if line.startswith("  - "):  # a warning
            split, indent = 4, 4
        elif column > 0 and not line[:column].strip():  # a FAIL's evidence lines
            split = len(line) - len(line.lstrip(" "))
            indent = column + 3
        elif column > 0 and not line.startswith("hostctl audit"):  # a check's row
            split, indent = column, column
        else:
            split, indent = 0, 2
        if width - max(split, indent) < 24:  # too narrow to keep the columns: a hanging indent
            out.extend(textwrap.wrap(line, width=width, subsequent_indent="    ", break_on_hyphens=False))
            continue
        body = textwrap.wrap(line[split:], width=width - indent, break_on_hyphens=False)
        if body and len(body[0]) > width - split:
            body = textwrap.wrap(line[split:], width=width - split, break_on_hyphens=False)
        out.append(line[:split] + (body[0] if body else ""))
        out.extend(" " * indent + b for b in body[1:])
    return "\n".join(out)


def _refuse_stale_lab(testbed: Any, path: str) -> None:
    """A testbed file ``hostctl emulator up`` wrote names a lab's ptys and ports: once that lab
    stopped, nothing answers there, and the fix is a new lab, not an adb server."""
    from ..emulator.lab import running_lab

    emu = getattr(testbed, "emulator", None)
    if emu is None or not getattr(emu, "lab_dir", None):
        return
    home = Path(emu.lab_dir).parent.parent  # <home>/labs/<adb port>
    if running_lab(home, int(emu.adb_port)) is None:
        raise CliError(
            f"audit: {path} describes the emulated lab on adb port {emu.adb_port}, which is not "
            f"running (the file is valid only while its lab runs): start one with `hostctl "
            f"emulator up --testbed-out {path}` (or `hostctl audit --emulator` boots its own)",
            ExitStatus.NOT_RUNNABLE,
        )


@contextlib.contextmanager
def _signals_noted(opts: Any, progress: Any) -> Iterator[None]:
    """While the emulated lab boots or stops, SIGINT/SIGTERM are noted, not raised: a lab cut
    half-way leaves an adb server, app processes and "Event loop is closed" tracebacks behind.
    A signal noted during the boot sets ``opts.stop``, so the audit stops at its first phase and
    writes its (interrupted) run folder; the lab is then stopped as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum: int, frame: Any) -> None:
        if not opts.stop.is_set():
            progress(f"{signal.Signals(signum).name}: stopping once the emulated lab is in a state to stop")
        opts.stop.set()

    old = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _testbed(args: argparse.Namespace, env: Environment, opts: Any, progress: Any) -> Iterator[Any]:
    from ..testbed import load_testbed

    if args.testbed:
        tb = load_testbed(args.testbed, name=args.testbed_name)
        _refuse_stale_lab(tb, args.testbed)
        yield tb
        return
    from ..emulator.lab import LabConfig, LabError, LabThread, free_loopback_port, kill_adb_server
    from ..emulator.profiles import load_profile
    from ..testbed import testbed_for_lab

    try:
        profile = load_profile(args.profile)
    except Exception as exc:
        raise CliError(f"audit: --profile {args.profile}: {exc}", ExitStatus.USAGE) from exc
    port = free_loopback_port()
    # Frida finds the adb server through this variable, read at each connect: the lab's own
    # server on a free port, so a developer's adb server on 5037 is never touched
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(port)
    # the lab's state (lab.json, its CA, identities) in a private folder of its own, removed when
    # the lab stops: the run folder keeps the evidence, nothing of the lab stays behind
    home = Path(tempfile.mkdtemp(prefix="hostctl-audit-lab-"))
    progress(f"booting an emulated lab: {args.handsets} handsets, profile {profile.name}, adb server on port {port}")
    lt = LabThread(
        LabConfig(adb_port=port, handsets=args.handsets, profile=args.profile, home=home, relay=False, consoles=False)
    )
    try:
        # noted from the boot to the lab's stop; the audit raises on them itself while it runs its
        # protocol, and checks opts.stop at every phase for one noted before it began
        with _signals_noted(opts, progress):
            try:
                lt.start()
            except LabError as exc:
                kill_adb_server(port)
                raise CliError(f"audit: the emulated lab did not start: {exc}", ExitStatus.NOT_RUNNABLE) from exc
            try:
                opts.profile = profile.name
                opts.home = home
                yield testbed_for_lab(lt.lab, name=f"emulator-{profile.name}")
            finally:
                progress("stopping the emulated lab")
                lt.stop()
                kill_adb_server(port)
    finally:
        shutil.rmtree(home, ignore_errors=True)
