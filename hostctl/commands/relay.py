"""``hostctl relay on|off|cycle``: a serial USB relay board (a handset's power) on the command line."""

from __future__ import annotations

import argparse
from typing import Any

from ..cli import CliError, Environment, ExitStatus, print_json


def add_parsers(sub: Any, P: Any, env: Environment) -> None:
    from .device import _seconds

    relay = sub.add_parser("relay", help="a serial relay board: switch or power-cycle a handset", env=env)
    rsub = relay.add_subparsers(dest="action", required=True, parser_class=type(relay))
    for action, text in (
        ("on", "close the relay (power on)"),
        ("off", "open the relay (power off)"),
        ("cycle", "off, wait --off-seconds, on"),
    ):
        p = rsub.add_parser(action, help=text, env=env)
        p.add_argument(
            "--port",
            metavar="PATH_OR_URL",
            help="serial device, pyserial URL (socket://HOST:PORT), or `lab` for the emulated "
            "lab's board on this adb port (default $HOSTCTL_RELAY_PORT)",
        )
        p.add_argument(
            "--channel",
            type=int,
            default=None,
            help="relay number, from 1 (without it: channel 1, and a note on stderr says so)",
        )
        p.add_argument("--baudrate", type=int, default=9600, help="serial speed (default 9600)")
        p.add_argument("--timeout", type=_seconds, default=2.0, help="seconds to write a frame (default 2)")
        if action == "cycle":
            p.add_argument("--off-seconds", type=_seconds, default=2.0, help="how long the power stays off (default 2)")
        p.add_argument("--json", action="store_true")


def resolve_port(args: argparse.Namespace, env: Environment) -> str:
    port = args.port or env.vars.get("HOSTCTL_RELAY_PORT")
    if not port:
        raise CliError("relay: give --port PATH_OR_URL (or set HOSTCTL_RELAY_PORT)", ExitStatus.USAGE)
    if port != "lab":
        return port
    from .emulator import lab_status

    relay = lab_status(env, "lab").get("relay") or {}
    if not relay.get("url"):
        raise CliError(f"--port lab: the lab on adb port {env.adb_port} has no relay board", ExitStatus.NOT_RUNNABLE)
    if str(args.channel) not in relay.get("channels", {}):
        raise CliError(
            f"--channel {args.channel}: the lab's board has channels {', '.join(relay.get('channels', {}))}",
            ExitStatus.USAGE,
        )
    return relay["url"]


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..lab.relay import Relay

    if args.channel is None:  # switching the wrong handset's power is costly: say which one
        args.channel = 1
        env.stderr.write("hostctl: relay: no --channel given, using channel 1\n")
    if not 1 <= args.channel <= 255:
        raise CliError(f"--channel must be 1..255, not {args.channel}", ExitStatus.USAGE)
    port = resolve_port(args, env)
    with Relay.open(port, channel=args.channel, baudrate=args.baudrate, timeout=args.timeout) as relay:
        if args.action == "on":
            frames = [relay.on()]
        elif args.action == "off":
            frames = [relay.off()]
        else:
            frames = relay.cycle(off_seconds=args.off_seconds)
    result: dict[str, Any] = {
        "port": port,
        "channel": args.channel,
        "action": args.action,
        "state": "on" if relay.state() else "off",
        "frames": [f.hex(" ").upper() for f in frames],
    }
    if args.action == "cycle":
        result["off_seconds"] = args.off_seconds
    if args.json:
        print_json(env, result)
    else:
        what = f"cycled ({args.off_seconds:g} s off)" if args.action == "cycle" else f"switched {args.action}"
        env.stdout.write(f"relay {args.channel} on {port}: {what} [{' | '.join(result['frames'])}]\n")
    return ExitStatus.OK
