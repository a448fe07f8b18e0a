"""``hostctl capture -s SERIAL --out FILE [--source ...] [--duration S] [--json]``: record a
handset's traffic to a pcap/pcapng file (hostctl.capture has the sources)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..cli import CliError, Environment, ExitStatus, print_json

SOURCE_HELP = (
    "lab (the emulated lab's wire tap), pcapdroid (PCAPdroid's app API, no root), tcpdump "
    "(rooted handset), host:IFACE (dumpcap/tcpdump on this host's interface), or auto "
    "(default: lab for an emulated handset, else tcpdump when rooted, else pcapdroid)"
)
PROGRESS_EVERY = 5.0


def add_parsers(sub: Any, P: Any, env: Environment) -> None:
    from .device import _seconds

    cap = sub.add_parser("capture", env=env, help="record a handset's traffic to a pcap/pcapng file")
    cap.add_argument(
        "--adb",
        action="append",
        metavar="HOST:PORT",
        dest="adb_after",
        default=[],
        help="adb server to use (repeatable; default ANDROID_ADB_SERVER_PORT)",
    )
    cap.add_argument("-s", "--serial", help="device serial (default ANDROID_SERIAL, or the only device)")
    cap.add_argument("--out", required=True, metavar="FILE", help="capture file to write (overwritten)")
    cap.add_argument("--source", default="auto", metavar="SOURCE", help=SOURCE_HELP)
    cap.add_argument("--duration", type=_seconds, metavar="S", help="seconds to capture (default: until Ctrl-C)")
    cap.add_argument(
        "--pcapng",
        action="store_true",
        help="pcapdroid: pcapng with PCAPdroid's app metadata (a paid PCAPdroid feature)",
    )
    cap.add_argument("--app", metavar="PKG", help="pcapdroid: only this app's traffic (app_filter)")
    cap.add_argument("--filter", metavar="BPF", help="tcpdump, host:IFACE: a capture filter expression")
    cap.add_argument("--interface", default="any", help="tcpdump: the handset's interface (default any)")
    cap.add_argument("--timeout", type=_seconds, default=20.0, help="seconds per device call (default 20)")
    cap.add_argument("--json", action="store_true", help="print the result as one JSON document")


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from .. import capture as cap
    from ..device import select_handset
    from .device import _serial, servers

    spec = args.source
    handset = None
    if not spec.startswith("host:") or _serial(args, env):
        handset = select_handset(_serial(args, env), servers(args, env), timeout=args.timeout)
    notes: list[str] = []
    if spec == "auto":
        spec, why = _auto(handset, env)
        notes.append(f"source {spec}: {why}")
    try:
        source = cap.source_for(spec, **_options(spec, args, env))
    except cap.CaptureError as exc:
        raise CliError(str(exc), ExitStatus.USAGE if exc.kind == "usage" else ExitStatus.ERROR) from None
    who = handset.serial if handset is not None else "this host"
    until = f"for {args.duration:g} s" if args.duration else "until Ctrl-C"
    env.stderr.write(f"hostctl: capturing {who} via {source.name} into {args.out} {until}\n")
    env.stderr.flush()
    last = [time.monotonic()]

    def progress(p: dict[str, Any]) -> None:
        if time.monotonic() - last[0] < PROGRESS_EVERY - 0.5:
            return
        last[0] = time.monotonic()
        size = f", {p['bytes']} bytes" if p.get("bytes") is not None else ""
        env.stderr.write(f"hostctl: {p['elapsed']:.0f} s{size}\n")
        env.stderr.flush()

    try:
        result = cap.run_capture(
            source,
            handset,
            args.out,
            duration=args.duration,
            progress=progress,
            interval=min(PROGRESS_EVERY, args.duration or PROGRESS_EVERY),
        )
    except cap.CaptureError as exc:  # --json: what was kept, with the error
        raise CliError(
            str(exc),
            {"not-runnable": ExitStatus.NOT_RUNNABLE, "timeout": ExitStatus.TIMEOUT, "usage": ExitStatus.USAGE}.get(
                exc.kind, ExitStatus.ERROR
            ),
            kind="CaptureError",
            document={"ok": False, "source": exc.source, "result": exc.result.to_json() if exc.result else None},
        ) from None
    result.notes[:0] = notes
    if args.json:
        print_json(env, dict(result.to_json(), ok=True))
    else:
        _summary(env, result)
    return ExitStatus.OK


def _options(spec: str, args: argparse.Namespace, env: Environment) -> dict[str, Any]:
    opts: dict[str, Any] = {"timeout": args.timeout}
    if spec == "lab":
        opts["home"] = env.home
    elif spec == "pcapdroid":
        opts.update(pcapng=args.pcapng, app_filter=args.app)
    elif spec == "tcpdump":
        opts.update(interface=args.interface, bpf=args.filter)
    elif spec.startswith("host:"):
        opts["bpf"] = args.filter
    return opts


def _auto(handset: Any, env: Environment) -> tuple[str, str]:
    """lab for a handset of the emulated lab on its adb server, else tcpdump when rooted, else
    PCAPdroid."""
    from ..device import RootStatus
    from ..emulator.lab import running_lab

    if handset is None:
        raise CliError("--source auto needs a handset (-s SERIAL), or name host:IFACE", ExitStatus.USAGE)
    info = running_lab(env.home, handset.server.port) if handset.server.host in ("127.0.0.1", "localhost") else None
    if info and handset.serial in [h.get("serial") for h in info.get("handsets", [])]:
        return "lab", f"{handset.serial} is a handset of the emulated lab on adb port {handset.server.port}"
    status, _ = handset.root_status(probe_su=True)
    if status in (RootStatus.ADBD, RootStatus.SU):
        return "tcpdump", f"{handset.serial} is rooted ({status.value})"
    return "pcapdroid", f"{handset.serial} is not rooted ({status.value})"


def _summary(env: Environment, r: Any) -> None:
    fmt = r.format or "unreadable"
    links = ",".join(str(lt) for lt in r.linktypes) or "-"
    packets = "?" if r.packets is None else r.packets
    env.stdout.write(
        f"{r.path}: {packets} packets, {r.bytes} bytes, {fmt} (link type {links}), "
        f"source {r.source}, {r.duration:.1f} s\n"
    )
    if r.device_path:
        env.stdout.write(f"  on the handset: {r.device_path}\n")
    for note in r.notes:
        env.stdout.write(f"  {note}\n")
