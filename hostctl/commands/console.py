"""``hostctl console record``: record a handset's UART console into a file."""

from __future__ import annotations

import argparse
from typing import Any

from ..cli import CliError, Environment, ExitStatus, print_json


def add_parsers(sub: Any, P: Any, env: Environment) -> None:
    from .device import _seconds

    console = sub.add_parser("console", help="a handset's UART console: record its serial log", env=env)
    csub = console.add_subparsers(dest="action", required=True, parser_class=type(console))
    rec = csub.add_parser(
        "record",
        env=env,
        help="record the console into a file, one timestamped line per console line, until Ctrl-C or --duration",
    )
    rec.add_argument(
        "--port",
        metavar="PATH_OR_URL",
        help="serial device, pyserial URL, or `lab[:LABEL]` for an emulated handset's console "
        "on this adb port (default $HOSTCTL_CONSOLE_PORT)",
    )
    rec.add_argument("--out", required=True, metavar="FILE", help="file to append the log to")
    rec.add_argument("--duration", type=_seconds, default=None, help="stop after this many seconds")
    rec.add_argument("--baudrate", type=int, default=115200, help="serial speed (default 115200)")
    rec.add_argument("--json", action="store_true")


def resolve_port(args: argparse.Namespace, env: Environment) -> str:
    from .emulator import lab_status

    port = args.port or env.vars.get("HOSTCTL_CONSOLE_PORT")
    if not port:
        raise CliError("console: give --port PATH_OR_URL (or set HOSTCTL_CONSOLE_PORT)", ExitStatus.USAGE)
    if port != "lab" and not port.startswith("lab:"):
        return port
    status = lab_status(env, port)
    consoles = status.get("consoles") or {}
    if not consoles:
        raise CliError(
            f"--port {port}: the lab on adb port {env.adb_port} has no UART consoles", ExitStatus.NOT_RUNNABLE
        )
    key = port.partition(":")[2]
    if not key:
        if len(consoles) != 1:
            raise CliError(
                f"--port lab: the lab has {len(consoles)} consoles; say which: "
                f"{', '.join('lab:' + c for c in consoles)}",
                ExitStatus.USAGE,
            )
        key = next(iter(consoles))
    for h in status.get("handsets", []):  # a serial names its handset's console too
        if key == h.get("serial"):
            key = h.get("label", key)
    if key not in consoles:
        raise CliError(f"--port {port}: no console {key!r} (have: {', '.join(consoles)})", ExitStatus.USAGE)
    return consoles[key]["url"]


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..lab.console import Console

    port = resolve_port(args, env)
    console = Console.open(port, args.out, baudrate=args.baudrate)
    interrupted = False
    try:
        console.start(args.duration)
        if not args.json:
            env.stderr.write(
                f"hostctl: recording {port} into {args.out} "
                f"({'for %g s' % args.duration if args.duration is not None else 'Ctrl-C stops'})\n"
            )
            env.stderr.flush()
        try:
            while not console.wait(0.2):
                pass
        except KeyboardInterrupt:
            interrupted = True
        rec = console.stop()
    finally:
        console.destroy()
    assert rec is not None
    result = rec.to_json()
    if interrupted:
        result["ended_by"] = "interrupted"
    if console.error is not None:  # --json: the recording's document, with the error
        if not args.json:
            _print_recording(env, rec, result)
        raise CliError(str(console.error), ExitStatus.ERROR, kind=type(console.error).__name__, document=result)
    if args.json:
        print_json(env, result)
    else:
        _print_recording(env, rec, result)
    return ExitStatus.OK


def _print_recording(env: Environment, rec: Any, result: dict[str, Any]) -> None:
    env.stdout.write(
        f"{rec.lines} line(s), {rec.bytes} byte(s) in {result['seconds']:g} s -> {rec.path} ({result['ended_by']})\n"
    )
