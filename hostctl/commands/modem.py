"""``hostctl modem info|send|inbox|watch``: the lab's GSM modem (the peer phone) on the command line."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from ..cli import CliError, Environment, ExitStatus, error_object, print_json, print_table


def add_parsers(sub: Any, P: Any, env: Environment) -> None:
    from .device import _seconds

    common = P(add_help=False)
    common.add_argument(
        "--port",
        metavar="PATH_OR_URL",
        help="serial device, pyserial URL (socket://HOST:PORT, loop://), or `lab` for "
        "the emulated lab's modem on this adb port (default $HOSTCTL_MODEM_PORT)",
    )
    common.add_argument("--baudrate", type=int, default=115200, help="serial speed (default 115200)")
    common.add_argument("--timeout", type=_seconds, default=10.0, help="seconds per modem command (default 10)")
    common.add_argument("--json", action="store_true")

    modem = sub.add_parser("modem", help="the lab's GSM modem: identity, send, inbox, watch", env=env)
    msub = modem.add_subparsers(dest="action", required=True, parser_class=type(modem))
    msub.add_parser(
        "info",
        parents=[common],
        env=env,
        help="manufacturer, model, revision, IMEI, IMSI, ICCID, number, SIM, network, signal",
    )
    send = msub.add_parser("send", parents=[common], env=env, help="send an SMS")
    send.add_argument("to", help="recipient number (+CC... or national)")
    send.add_argument("text", help="message text (long text is sent concatenated)")
    send.add_argument("--text-mode", action="store_true", help="AT+CMGF=1 instead of PDU mode (one part only)")
    send.add_argument("--ucs2", action="store_true", help="UCS-2 even when GSM 7-bit would do")
    send.add_argument("--report", action="store_true", help="request a delivery report and wait for it")
    inbox = msub.add_parser("inbox", parents=[common], env=env, help="list received messages (parts joined)")
    inbox.add_argument("--unread", action="store_true", help="only messages not read yet")
    inbox.add_argument("--delete", action="store_true", help="delete the listed messages from the modem")
    watch = msub.add_parser(
        "watch",
        parents=[common],
        env=env,
        help="print messages as they arrive (+CMTI), until Ctrl-C, --count or --duration",
    )
    watch.add_argument("--count", type=int, default=0, help="stop after this many messages")
    watch.add_argument("--duration", type=_seconds, default=None, help="stop after this many seconds")
    watch.add_argument("--delete", action="store_true", help="delete each message once printed")


def resolve_port(args: argparse.Namespace, env: Environment) -> str:
    port = args.port or env.vars.get("HOSTCTL_MODEM_PORT")
    if not port:
        raise CliError("modem: give --port PATH_OR_URL (or set HOSTCTL_MODEM_PORT)", ExitStatus.USAGE)
    if port != "lab":
        return port
    from .emulator import lab_status

    modem = lab_status(env, "lab").get("modem") or {}
    if not modem.get("url"):
        raise CliError(f"--port lab: the lab on adb port {env.adb_port} has no modem", ExitStatus.NOT_RUNNABLE)
    return modem["url"]


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..lab.modem import Modem

    port = resolve_port(args, env)
    with Modem.open(port, baudrate=args.baudrate, timeout=args.timeout) as modem:
        if args.action == "info":
            return _info(modem, args, env)
        if args.action == "send":
            return _send(modem, args, env)
        if args.action == "inbox":
            return _inbox(modem, args, env)
        if args.action == "watch":
            return _watch(modem, args, env)
    raise CliError(f"unknown action {args.action}", ExitStatus.USAGE)


def _info(modem: Any, args: argparse.Namespace, env: Environment) -> ExitStatus:
    info = modem.identify().to_json()
    info["port"] = modem.name
    if args.json:
        print_json(env, info)
        return ExitStatus.OK
    rows = []
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
        rows.append([key, "-" if value in (None, "") else value])
    print_table(env, ["FIELD", "VALUE"], rows)
    return ExitStatus.OK


def _send(modem: Any, args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..sms import GsmEncodingError

    try:
        refs = modem.send_sms(
            args.to,
            args.text,
            mode="text" if args.text_mode else "pdu",
            coding="ucs2" if args.ucs2 else None,
            status_report=args.report,
            timeout=max(args.timeout, 30.0),
        )
    except (ValueError, GsmEncodingError) as exc:
        raise CliError(f"modem send: {exc}", ExitStatus.USAGE) from None
    result: dict[str, Any] = {"to": args.to, "parts": len(refs), "message_refs": refs}
    if args.report:
        reports = [modem.wait_status_report(mr, timeout=max(args.timeout, 30.0)) for mr in refs]
        result["reports"] = [
            {
                "message_ref": r.message_ref,
                "status": r.status,
                "meaning": r.meaning,
                "delivered": r.delivered,
                "discharge": r.discharge.isoformat(),
            }
            for r in reports
        ]
        result["delivered"] = all(r.delivered for r in reports)
        if not result["delivered"]:
            result["error"] = error_object(ExitStatus.ERROR, "a delivery report says not delivered")
    if args.json:
        print_json(env, result)
    else:
        env.stdout.write(f"sent to {args.to} in {len(refs)} part(s), TP-MR {', '.join(map(str, refs))}\n")
        for r in result.get("reports", []):
            env.stdout.write(f"report for TP-MR {r['message_ref']}: {r['meaning']}\n")
    if args.report and not result["delivered"]:
        return ExitStatus.ERROR
    return ExitStatus.OK


def _inbox(modem: Any, args: argparse.Namespace, env: Environment) -> ExitStatus:
    messages = modem.inbox(status="REC UNREAD" if args.unread else "ALL")
    if args.delete:
        for sms in messages:
            for index in sms.indexes:
                modem.delete_sms(index)
    if args.json:
        print_json(env, {"port": modem.name, "messages": [m.to_json() for m in messages], "deleted": bool(args.delete)})
        return ExitStatus.OK
    if not messages:
        env.stderr.write("hostctl: no messages\n")
        return ExitStatus.OK
    print_table(
        env,
        ["FROM", "TIME", "INDEX", "TEXT"],
        [
            [
                m.sender,
                m.timestamp.isoformat(sep=" ") if m.timestamp else "-",
                ",".join(map(str, m.indexes)) + ("" if m.complete else " (incomplete)"),
                m.text.replace("\n", " "),
            ]
            for m in messages
        ],
    )
    return ExitStatus.OK


def _watch(modem: Any, args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..lab.modem import ModemTimeoutError, join_parts

    deadline = None if args.duration is None else time.monotonic() + args.duration
    if not args.json:
        env.stderr.write(f"hostctl: watching {modem.name} for messages (Ctrl-C stops)\n")
        env.stderr.flush()
    got, pending = 0, []
    try:
        while not args.count or got < args.count:
            wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                pending.append(modem.wait_sms(timeout=wait))
            except ModemTimeoutError:
                continue
            for sms in join_parts(pending):
                if not sms.complete:
                    continue
                pending = [p for p in pending if p not in sms.parts]
                got += 1
                if args.json:
                    env.stdout.write(json.dumps(sms.to_json()) + "\n")
                else:
                    env.stdout.write(
                        f"{sms.timestamp.isoformat(sep=' ') if sms.timestamp else '-'}  {sms.sender}: {sms.text}\n"
                    )
                env.stdout.flush()
                if args.delete:
                    for index in sms.indexes:
                        if index:  # 0: routed straight to us (+CMT), never stored
                            modem.delete_sms(index)
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    return ExitStatus.OK
