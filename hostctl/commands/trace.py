"""``hostctl trace``: the agent's evidence hooks in a handset's apps, streamed to JSON Lines.

Progress goes to stderr, the summary to stdout (``--json``: one JSON document). Ctrl-C (SIGINT)
or SIGTERM stops the trace cleanly -- agents stopped, every event received written and flushed,
``summary.json`` written -- and exits 130 as any command interrupted by Ctrl-C does; a second
Ctrl-C gives up waiting on the device.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from ..cli import CliError, Environment, ExitStatus, error_object, print_json


def add_parsers(sub: Any, P: Any, env: Environment) -> None:
    from .device import _seconds

    t = sub.add_parser(
        "trace",
        env=env,
        help="trace apps with the Frida agent (TLS plaintext, sockets, identifiers, "
        "ciphers, SMS, MX) into OUT/events.jsonl",
    )
    t.add_argument("-s", "--serial", help="device serial (default ANDROID_SERIAL, or the only device)")
    t.add_argument(
        "--adb",
        action="append",
        metavar="HOST:PORT",
        dest="adb_after",
        default=[],
        help="adb server (default ANDROID_ADB_SERVER_PORT; Frida uses only that one)",
    )
    t.add_argument(
        "--app",
        action="append",
        metavar="PKG",
        dest="apps",
        default=[],
        help="package to trace (repeatable; default com.android.mms)",
    )
    t.add_argument("--duration", type=_seconds, default=None, help="stop after this many seconds (default: Ctrl-C)")
    t.add_argument(
        "--out", required=True, metavar="DIR", help="output directory (events.jsonl, summary.json, sslkeylog.txt)"
    )
    t.add_argument(
        "--spawn",
        action="store_true",
        help="spawn the apps to catch their start-up (falls back to attach where the device "
        "cannot spawn, e.g. the emulated lab and some MIUI builds)",
    )
    t.add_argument(
        "--max-capture",
        type=int,
        default=256 * 1024,
        metavar="BYTES",
        help="bytes kept per payload (default 262144; the full length is always recorded)",
    )
    t.add_argument("--unix-sockets", action="store_true", help="also trace AF_UNIX socket traffic")
    t.add_argument("--no-java", action="store_true", help="native hooks only")
    t.add_argument(
        "--evp",
        action="store_true",
        help="also OpenSSL/BoringSSL EVP cipher calls (key, IV, input, output; includes every TLS record)",
    )
    t.add_argument(
        "--timeout", type=_seconds, default=15.0, help="seconds for each attach, agent load and agent call (default 15)"
    )
    t.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..device import select_handset
    from ..frida_identity import FridaIdentityError, frida_device
    from ..trace import FridaVersionError, TraceError, TraceOptions, Tracer, TraceTimeoutError
    from .device import _serial, servers

    if args.max_capture < 0:
        raise CliError("--max-capture must be 0 or more", ExitStatus.USAGE)
    handset = select_handset(_serial(args, env), servers(args, env), timeout=args.timeout)
    try:
        device = frida_device(handset, timeout=min(args.timeout, 10.0))
    except FridaIdentityError as exc:
        raise CliError(str(exc), ExitStatus.NOT_RUNNABLE) from None
    options = TraceOptions(
        apps=tuple(args.apps) or TraceOptions().apps,
        spawn=args.spawn,
        max_capture=args.max_capture,
        unix_sockets=args.unix_sockets,
        java=not args.no_java,
        evp=args.evp,
        call_timeout=args.timeout,
    )

    def progress(text: str) -> None:
        env.stderr.write(f"hostctl trace: {text}\n")
        env.stderr.flush()

    tracer = Tracer(device, args.out, serial=handset.serial, options=options, progress=progress)
    stop = threading.Event()
    restore = _install_stop_handlers(stop, progress)
    try:
        progress(
            f"tracing {', '.join(options.apps)} on {handset.serial} into {args.out}/events.jsonl "
            f"({'for %g s' % args.duration if args.duration else 'until Ctrl-C'})"
        )
        summary = tracer.run(duration=args.duration, stop=stop)
    except FridaVersionError as exc:
        raise CliError(str(exc), ExitStatus.NOT_RUNNABLE) from None
    except TraceTimeoutError as exc:
        raise CliError(str(exc), ExitStatus.TIMEOUT) from None
    except TraceError as exc:
        raise CliError(str(exc), ExitStatus.ERROR) from None
    finally:
        restore()
    doc = summary.to_json()
    never = (
        (f"never attached to {', '.join(summary.never_attached)} on {handset.serial} (not running during the trace?)")
        if summary.never_attached
        else ""
    )
    if args.json and never and summary.stopped_by != "interrupt":
        doc = dict(doc, error=error_object(ExitStatus.ERROR, never))
    if args.json:
        print_json(env, doc)
    else:
        _print_human(env, doc)
    progress(
        f"stopped ({summary.stopped_by}) after {summary.duration:.1f} s: {summary.events} events "
        f"in {summary.events_file}"
    )
    if summary.stopped_by == "interrupt":
        return ExitStatus.INTERRUPTED
    if summary.never_attached:
        env.stderr.write(f"hostctl: {never}\n")
        return ExitStatus.ERROR
    return ExitStatus.OK


def _install_stop_handlers(stop: threading.Event, progress: Any) -> Any:
    """SIGINT/SIGTERM set ``stop`` (the trace then stops cleanly); a second one interrupts.
    Only the main thread can install handlers: elsewhere (in-process tests) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        progress(f"{signal.Signals(signum).name}: stopping (flushing events; again to give up waiting)")

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def _print_human(env: Environment, doc: dict[str, Any]) -> None:
    out = env.stdout
    out.write(f"{doc['events']} events in {doc['events_file']} ({doc['duration']} s, stopped by {doc['stopped_by']})\n")
    for kind, n in doc["by_kind"].items():
        out.write(f"  {kind:<16} {n}\n")
    if doc.get("keylog_file"):
        out.write(
            f"{doc.get('tls_secrets', 0)} TLS secrets in {doc['keylog_file']} "
            f"(wire-check --keylog decrypts a capture of the same time with it)\n"
        )
    for pkg, app in doc["apps"].items():
        pids = ", ".join(map(str, app["pids"])) or "-"
        out.write(
            f"{pkg}: pids {pids}, {app['attaches']} attach(es), {len(app['gaps'])} gap(s), "
            f"java {'yes' if app['java'] else 'no' if app['java'] is False else '?'}\n"
        )
        for gap in app["gaps"]:
            out.write(f"  gap {gap['duration']:.3f} s ({gap['reason']}): pid {gap['old_pid']} -> {gap['new_pid']}\n")
        if app["missing"]:
            out.write(
                f"  not hooked: {len(app['missing'])} target(s), e.g. {app['missing'][0]['target']} "
                f"({app['missing'][0]['reason']})\n"
            )
    for note in doc["notes"]:
        out.write(f"note: {note}\n")
    for err in doc["errors"]:
        out.write(f"error: {err}\n")
