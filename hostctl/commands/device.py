"""``hostctl devices|info|identity|shell``: the device layer on the command line."""

from __future__ import annotations

import argparse
import math
from typing import Any

from ..cli import CliError, Environment, ExitStatus, error_object, print_json, print_table
from ..device import (
    AdbAddress,
    AdbServerError,
    DeviceEntry,
    DeviceError,
    Handset,
    for_each,
    list_devices,
    select_handset,
    servers_from_env,
)
from ..identity import (
    DEFAULT_STRATEGIES,
    IDENTIFIERS,
    STRATEGIES,
    IdentityError,
    IdentityReport,
    read_identity,
    redact_value,
)


def add_parsers(sub: Any, P: Any, env: Environment) -> None:
    """Register the device commands on the top-level subparsers."""
    common = P(add_help=False)
    common.add_argument(
        "--adb",
        action="append",
        metavar="HOST:PORT",
        dest="adb_after",
        default=[],
        help="adb server to use (repeatable; default ANDROID_ADB_SERVER_PORT)",
    )
    common.add_argument("--timeout", type=_seconds, default=20.0, help="seconds per device call (default 20)")
    one = P(add_help=False)
    one.add_argument("-s", "--serial", help="device serial (default ANDROID_SERIAL, or the only device)")

    d = sub.add_parser("devices", parents=[common], env=env, help="list devices on the adb server(s)")
    d.add_argument("--json", action="store_true")

    i = sub.add_parser(
        "info", parents=[common, one], env=env, help="model, MIUI/Android version, root, input injection"
    )
    i.add_argument("--probe-root", action="store_true", help="run `su -c id` (may prompt on the handset)")
    i.add_argument("--json", action="store_true")

    ident = sub.add_parser("identity", parents=[common, one], env=env, help="IMEI/IMSI/ICCID/number per SIM slot")
    ident.add_argument("--all", action="store_true", help="every device on every server, in parallel")
    ident.add_argument(
        "--frida", action="store_true", help="also try the Frida agent in com.android.phone (needs frida-server)"
    )
    ident.add_argument(
        "--strategies",
        metavar="LIST",
        help=f"comma-separated, in order (default {','.join(DEFAULT_STRATEGIES)}; known: {','.join(STRATEGIES)})",
    )
    ident.add_argument("--redact", action="store_true", help="mask identifiers (keep the last 4 digits)")
    ident.add_argument("--json", action="store_true")

    cm = sub.add_parser(
        "cm", parents=[common, one], env=env, help="Cloud Messaging: status, or turn it on/off through the UI"
    )
    cm.add_argument("action", choices=["status", "on", "off"])
    cm.add_argument("--sim", type=int, help="1-based SIM slot (default: every SIM)")
    cm.add_argument("--ui", action="store_true", help="status: also read the switches on screen")
    cm.add_argument(
        "--via",
        choices=["ui", "frida"],
        default="ui",
        help="on/off: through the UI (default) or, on a real handset with frida-server, "
        "ENABLE_MX/DISABLE_MX started inside com.android.mms",
    )
    cm.add_argument("--json", action="store_true")

    snd = sub.add_parser(
        "send", parents=[common, one], env=env, help="send a message as a user does and report its route with evidence"
    )
    snd.add_argument("--to", required=True, help="the receiver's number")
    snd.add_argument("--text", required=True)
    snd.add_argument("--expect", choices=["ip", "sms"], help="exit 3 if the route differs")
    snd.add_argument("--receiver", metavar="SERIAL", help="the receiving handset, for its row")
    snd.add_argument(
        "--modem", metavar="PORT", help="the peer is the lab's GSM modem on PORT (path, URL or 'lab'): its receipt"
    )
    snd.add_argument("--json", action="store_true")

    pres = sub.add_parser(
        "presence",
        parents=[common, one],
        env=env,
        help="is NUMBER online for Cloud Messaging, as the app shows it (the compose hint)",
    )
    pres.add_argument("number")
    pres.add_argument(
        "--settle",
        type=float,
        default=3.0,
        metavar="S",
        help="seconds the SMS hint must stand before it counts as offline (the app's "
        "presence look-up answers after the screen opens; default 3, a guess)",
    )
    pres.add_argument("--json", action="store_true")

    msgs = sub.add_parser(
        "messages",
        parents=[common, one],
        env=env,
        help="SMS and Cloud Messaging rows, each with its route (sms/ip/...)",
    )
    msgs.add_argument("--limit", type=int, help="newest N rows only")
    msgs.add_argument("--redact", action="store_true", help="mask addresses, hide bodies")
    msgs.add_argument("--json", action="store_true")

    sh = sub.add_parser("shell", parents=[common, one], env=env, help="run a shell command on a device")
    sh.add_argument("cmd", nargs=argparse.REMAINDER, help="the command and its arguments")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r}: a timeout must be a positive finite number")
    return value


def servers(args: argparse.Namespace, env: Environment) -> list[AdbAddress]:
    try:
        # --adb before the command and after it both count
        given = list(getattr(args, "adb", None) or []) + list(getattr(args, "adb_after", []) or [])
        if given:
            return list(dict.fromkeys(AdbAddress.parse(a) for a in given))  # once each, in order
        return servers_from_env(env.vars)
    except ValueError as exc:
        raise CliError(str(exc), ExitStatus.USAGE) from exc


def _serial(args: argparse.Namespace, env: Environment) -> str | None:
    return args.serial or env.vars.get("ANDROID_SERIAL") or None


def run(args: argparse.Namespace, env: Environment) -> ExitStatus | int:
    srv = servers(args, env)
    if args.command == "devices":
        return _devices(args, env, srv)
    if args.command == "identity" and args.all:
        if args.serial:
            raise CliError(
                "identity: -s/--serial and --all exclude each other (--all reads every device)", ExitStatus.USAGE
            )
        return _identity_all(args, env, srv)
    if args.command == "send":  # bad input is refused before any handset is touched
        from ..sms.outgoing import OutgoingError, check_number, check_text

        try:
            check_number(args.to)
            check_text(args.text)
        except OutgoingError as exc:
            raise CliError(str(exc), ExitStatus.USAGE) from None
    handset = select_handset(_serial(args, env), srv, timeout=args.timeout)
    if args.command == "info":
        info = handset.info(probe_su=args.probe_root)
        if args.json:
            print_json(env, info.to_json())
        else:
            rows = [[k, _human(v)] for k, v in info.to_json().items() if k != "input_injection_hint"]
            print_table(env, ["FIELD", "VALUE"], rows)
            if info.input_injection_hint:
                env.stderr.write(f"hostctl: {info.input_injection_hint}\n")
        return ExitStatus.OK
    if args.command == "identity":
        return _identity_one(args, env, handset)
    if args.command == "shell":
        return _shell(args, env, handset)
    if args.command == "cm":
        return _cm(args, env, handset)
    if args.command == "messages":
        return _messages(args, env, handset)
    if args.command == "send":
        return _send(args, env, handset, srv)
    if args.command == "presence":
        from ..cloud import presence

        if not 0 <= args.settle < args.timeout:
            raise CliError(
                f"--settle ({args.settle:g}) must be >= 0 and less than --timeout ({args.timeout:g})", ExitStatus.USAGE
            )
        p = presence(handset, args.number, timeout=args.timeout, settle=args.settle)
        if args.json:
            print_json(env, p.to_json())
        else:
            word = {
                True: f"online (hint {p.shown!r}: Mi Message)",
                False: f"offline (hint {p.shown!r}: SMS)",
                None: "unknown",
            }[p.online]
            env.stdout.write(f"{args.number}: {word}\n")
        return ExitStatus.OK if p.online is not None else ExitStatus.TIMEOUT
    raise CliError(f"unknown command {args.command}", ExitStatus.USAGE)


def _human(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


# --- devices ----------------------------------------------------------------------------------


def _devices(args: argparse.Namespace, env: Environment, srv: list[AdbAddress]) -> ExitStatus:
    entries: list[DeviceEntry] = []
    errors: list[AdbServerError] = []
    for server in srv:
        try:
            entries += list_devices([server], timeout=args.timeout)
        except AdbServerError as exc:
            errors.append(exc)
    status = ExitStatus.OK
    if errors:
        status = status_for(errors[0]) if len(errors) == len(srv) else ExitStatus.ERROR
    if args.json:
        doc: dict[str, Any] = {
            "servers": [str(s) for s in srv],
            "devices": [e.to_json() for e in entries],
            "errors": [{"server": str(e.server), "error": str(e)} for e in errors],
        }
        if errors:
            doc["error"] = error_object(status, str(errors[0]), type(errors[0]).__name__)
        print_json(env, doc)
    else:
        if entries:
            print_table(
                env,
                ["SERIAL", "STATE", "MODEL", "PRODUCT", "SERVER", "TRANSPORT"],
                [[e.serial, e.state, e.model, e.product, str(e.server), e.transport_id] for e in entries],
            )
        elif not errors:
            env.stderr.write(f"hostctl: no devices on {', '.join(str(s) for s in srv)}\n")
    for problem in errors:
        env.stderr.write(f"hostctl: {problem}\n")
    if errors:
        return status
    return ExitStatus.OK


# --- identity ---------------------------------------------------------------------------------


def _strategies(args: argparse.Namespace) -> list[str]:
    if args.strategies:
        chosen = [s.strip() for s in args.strategies.split(",") if s.strip()]
        unknown = [s for s in chosen if s not in STRATEGIES]
        if unknown or not chosen:
            raise CliError(
                f"unknown strategies {unknown or args.strategies!r}; known: {', '.join(STRATEGIES)}", ExitStatus.USAGE
            )
    else:
        chosen = list(DEFAULT_STRATEGIES)
    if args.frida and "frida" not in chosen:
        chosen.append("frida")
    return chosen


def _print_identity(env: Environment, report: IdentityReport, redact: bool, heading: bool) -> None:
    if heading:
        env.stdout.write(f"== {report.serial} ({report.server}) ==\n")
    rows = []
    for slot in report.slots:
        for key in IDENTIFIERS + ("sim_operator", "mcc_mnc", "network_operator"):
            value = getattr(slot, key)
            if redact and key in IDENTIFIERS:
                value = redact_value(value)
            valid = slot.valid.get(key)
            rows.append(
                [
                    str(slot.slot),
                    key,
                    value or "-",
                    "-" if valid is None else ("yes" if valid else "NO"),
                    slot.sources.get(key, "not found"),
                ]
            )
    print_table(env, ["SLOT", "FIELD", "VALUE", "VALID", "SOURCE"], rows)


def _identity_one(args: argparse.Namespace, env: Environment, handset: Handset) -> ExitStatus:
    try:
        report = read_identity(handset, strategies=_strategies(args), timeout=args.timeout)
    except IdentityError as exc:  # --json: the attempts are still shown, with the error
        raise CliError(
            exc.describe(args.redact), ExitStatus.ERROR, kind="IdentityError", document=exc.report.to_json(args.redact)
        ) from exc
    if args.json:
        print_json(env, report.to_json(args.redact))
    else:
        _print_identity(env, report, args.redact, heading=False)
    return ExitStatus.OK


def _identity_all(args: argparse.Namespace, env: Environment, srv: list[AdbAddress]) -> ExitStatus:
    strategies = _strategies(args)
    entries: list[DeviceEntry] = []
    errors: list[dict[str, str]] = []
    failures: list[Exception] = []
    for server in srv:
        try:
            entries += list_devices([server], timeout=args.timeout)
        except AdbServerError as exc:
            errors.append({"serial": "", "server": str(server), "error": str(exc)})
            failures.append(exc)
    usable: dict[str, DeviceEntry] = {}
    duplicates: list[dict[str, str]] = []
    for e in entries:
        if e.state != "device":
            errors.append({"serial": e.serial, "server": str(e.server), "error": f"device is {e.state}"})
        elif e.serial in usable and not e.serial.startswith("emulator-"):
            # one handset attached to two servers (adb connect from both): read it once.
            # `emulator-NNNN` serials are local to each host, so those are distinct handsets.
            duplicates.append({"serial": e.serial, "server": str(e.server), "same_as": str(usable[e.serial].server)})
        else:
            usable.setdefault(e.serial if not e.serial.startswith("emulator-") else f"{e.server}/{e.serial}", e)
    if not usable and not errors:
        raise CliError(f"no devices on {', '.join(str(s) for s in srv)}", ExitStatus.NOT_RUNNABLE)
    handsets = [Handset(e.serial, e.server, timeout=args.timeout, transport_id=e.transport_id) for e in usable.values()]
    if not args.json:
        env.stderr.write(f"hostctl: reading identity of {len(handsets)} device(s)\n")
    reports: list[dict[str, Any]] = []
    for handset, report, failure in for_each(
        handsets, lambda h: read_identity(h, strategies=strategies, timeout=args.timeout)
    ):
        if failure is not None or report is None:
            message = failure.describe(args.redact) if isinstance(failure, IdentityError) else str(failure)
            if isinstance(failure, IdentityError):
                reports.append(failure.report.to_json(args.redact))
            errors.append({"serial": handset.serial, "server": str(handset.server), "error": message})
            failures.append(failure if isinstance(failure, Exception) else RuntimeError(message))
            continue
        reports.append(report.to_json(args.redact))
        if not args.json:
            _print_identity(env, report, args.redact, heading=True)
    status = ExitStatus.OK
    if errors:
        found = [r for r in reports if any(s[k] for s in r["slots"] for k in IDENTIFIERS)]
        status = ExitStatus.ERROR if found else status_for(failures[0]) if failures else ExitStatus.NOT_RUNNABLE
    if args.json:
        doc: dict[str, Any] = {"handsets": reports, "errors": errors, "duplicates": duplicates}
        if errors:
            first = errors[0]
            doc["error"] = error_object(
                status,
                f"{len(errors)} device(s) or server(s) failed; first: "
                f"{first['serial'] or first['server']}: {first['error']}",
                type(failures[0]).__name__ if failures else None,
            )
        print_json(env, doc)
    for dup in duplicates:
        env.stderr.write(f"hostctl: {dup['serial']} is on {dup['server']} too; read once, through {dup['same_as']}\n")
    for err in errors:
        env.stderr.write(f"hostctl: {err['serial'] or err['server']}: {err['error']}\n")
    return status


# --- cm ---------------------------------------------------------------------------------------


def _cm(args: argparse.Namespace, env: Environment, handset: Handset) -> ExitStatus:
    from ..cloud import cm_set, cm_set_frida, cm_status

    if args.action == "status":
        state = cm_status(handset, ui=args.ui, timeout=args.timeout)
    elif args.via == "frida":
        state = cm_set_frida(handset, args.action == "on", sim=args.sim, timeout=args.timeout)
    else:
        state = cm_set(handset, args.action == "on", sim=args.sim, timeout=args.timeout)
    if args.json:
        print_json(env, state.to_json())
    else:
        word = {True: "on", False: "off", None: "unknown"}[state.enabled]
        sims = ", ".join(f"SIM {s['sim']} {'on' if s['enabled'] else 'off'}" for s in state.sims)
        env.stdout.write(
            f"{state.serial}: Cloud Messaging {word}"
            + (f" ({sims})" if sims else "")
            + (" (changed)" if state.changed else "")
            + "\n"
        )
        for c in state.consent:  # MIUI's dialog before a SIM goes on, accepted because `cm on` asked
            what = (
                ("activation consent", "activation sends a chargeable SMS")
                if c.get("kind") != "networking_allow_title"
                else ("data notice", "presence look-ups use mobile data")
            )
            env.stderr.write(
                f"{state.serial}: accepted MIUI's {what[0]} for SIM {c['sim']} ({c['title']!r}: {what[1]})\n"
            )
    return ExitStatus.OK


def _send(args: argparse.Namespace, env: Environment, handset: Handset, srv: list[AdbAddress]) -> ExitStatus:
    from ..cloud import send_message

    receiver = select_handset(args.receiver, srv, timeout=args.timeout) if args.receiver else None
    # the lab of this handset's adb server, if it is an emulated one
    lab_env = Environment(
        stdout=env.stdout, stderr=env.stderr, vars=dict(env.vars, ANDROID_ADB_SERVER_PORT=str(handset.server.port))
    )
    carrier_view = _lab_carrier_view(lab_env)
    modem = None
    if args.modem:
        from ..lab.modem import Modem
        from .modem import resolve_port

        modem = Modem.open(resolve_port(argparse.Namespace(port=args.modem), lab_env), timeout=args.timeout)
    try:
        outcome = send_message(
            handset, args.to, args.text, receiver=receiver, carrier_view=carrier_view, modem=modem, timeout=args.timeout
        )
    finally:
        if modem is not None:
            modem.close()
    ok = outcome.route in ("ip", "sms") and (args.expect is None or outcome.route == args.expect)
    status, problem = ExitStatus.OK, ""
    if outcome.route is None:
        status, problem = ExitStatus.TIMEOUT, "the message did not settle in time"
    elif outcome.route == "failed":
        status = ExitStatus.CHECK_FAILED if args.expect else ExitStatus.ERROR
        problem = "the send failed (the sender's row is in the failed box)"
    elif not ok:
        status, problem = ExitStatus.CHECK_FAILED, f"expected route {args.expect}, got {outcome.route}"
    if args.json:
        doc = dict(outcome.to_json(), expect=args.expect, ok=ok)
        if status not in (ExitStatus.OK, ExitStatus.CHECK_FAILED):  # 3 is a verdict, not an error
            doc["error"] = error_object(status, problem)
        print_json(env, doc)
    else:
        s = outcome.evidence.get("sender") or {}
        r = outcome.evidence.get("receiver")
        env.stdout.write(
            f"{handset.serial} -> {args.to}: route {outcome.route or 'unsettled'}"
            f"{' (after the SMS fallback)' if outcome.fallback else ''}; sender row "
            f"{s.get('id')} type {s.get('type')} mx_status {s.get('mx_status')}"
            + (f"; receiver row {r['id']} mx_status {r['mx_status']}" if r else "")
            + "\n"
        )
    if problem:
        env.stderr.write(f"hostctl: {problem}\n")
    return status


def _lab_carrier_view(env: Environment):
    """On an emulated lab (one is registered for this adb port), what its carrier saw; None on
    real networks, which show nothing."""
    import time as _time

    from ..emulator.lab import running_lab
    from .emulator import _request

    info = running_lab(env.home, env.adb_port)
    if info is None:
        return None
    since = _time.time() - 1.0

    def view() -> list[dict[str, Any]]:
        return _request(info, {"cmd": "carrier", "since": since}, timeout=10)

    return view


def _messages(args: argparse.Namespace, env: Environment, handset: Handset) -> ExitStatus:
    from ..messages import read_messages

    rows = read_messages(handset, limit=args.limit, timeout=args.timeout)
    if args.json:
        print_json(env, {"serial": handset.serial, "messages": [m.to_json(args.redact) for m in rows]})
        return ExitStatus.OK
    table = []
    for m in rows:
        d = m.to_json(args.redact)
        body = (d["body"] or "").replace("\n", " ")
        table.append(
            [
                d["id"],
                d["box"],
                d["route"],
                d["mx_status"],
                "-" if d["sim_id"] is None else d["sim_id"],
                "-" if d["slot"] is None else d["slot"],
                d["address"] or "-",
                body[:40] + ("..." if len(body) > 40 else ""),
            ]
        )
    # SIM_ID as MIUI stores it (the subscription id), SLOT the 0-based SIM slot it maps to
    print_table(env, ["ID", "BOX", "ROUTE", "MX_STATUS", "SIM_ID", "SLOT", "ADDRESS", "BODY"], table)
    return ExitStatus.OK


# --- shell ------------------------------------------------------------------------------------


def _shell(args: argparse.Namespace, env: Environment, handset: Handset) -> int:
    cmd = list(args.cmd)
    if cmd[:1] == ["--"]:
        cmd = cmd[1:]
    if not cmd:
        raise CliError("shell: give a command (interactive shells: use `adb shell`)", ExitStatus.USAGE)
    # adb's convention: the words are joined with spaces and run by the device's sh.
    try:
        result = handset.shell(" ".join(cmd), timeout=args.timeout)
    except ValueError as exc:
        raise CliError(f"shell: {exc}", ExitStatus.USAGE) from exc
    env.stdout.write(result.stdout)
    env.stderr.write(result.stderr)
    return result.exit_code


def status_for(exc: Exception) -> ExitStatus:
    """The exit status a device-layer error maps to (README, "Exit codes")."""
    from ..device import DeviceNotFoundError, DeviceStateError, DeviceTimeoutError
    from ..lab.modem import ModemOpenError, ModemTimeoutError

    if isinstance(exc, DeviceTimeoutError) or (isinstance(exc, AdbServerError) and exc.timed_out):
        return ExitStatus.TIMEOUT
    from ..errors import ConfigError
    from ..lab.console import ConsoleOpenError
    from ..lab.relay import RelayOpenError, RelayTimeoutError

    if isinstance(exc, (ModemTimeoutError, RelayTimeoutError)):
        return ExitStatus.TIMEOUT
    if isinstance(exc, (ModemOpenError, RelayOpenError, ConsoleOpenError)):
        return ExitStatus.NOT_RUNNABLE
    if isinstance(exc, ConfigError):
        return ExitStatus.USAGE
    if isinstance(exc, (AdbServerError, DeviceNotFoundError, DeviceStateError)):
        return ExitStatus.NOT_RUNNABLE
    if isinstance(exc, DeviceError):
        return ExitStatus.ERROR
    return ExitStatus.ERROR
