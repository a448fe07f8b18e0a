"""``tcpdump``, ``timeout`` and ``kill`` in the emulated shell: packet capture on a rooted handset.

tcpdump captures from the handset's wire tap (hostctl.emulator.wiretap): what its apps exchange
with the Xiaomi hosts, with the handset's synthetic address (10.64.0.N) and the nominal server
ports. Like the real one it needs root (``su -c``), answers bad options with its usage, writes
classic pcap with ``-w`` (``-i any``: LINKTYPE_LINUX_SLL, ``-i wlan0``: Ethernet; ``-U`` flushes
every packet, otherwise on exit), prints one line per packet without ``-w``, stops after ``-c N``
packets, on SIGINT/SIGTERM (``kill``) or when ``timeout`` ends it, and prints its packet counts
on stderr as it exits. The binary exists only where the lab put one (/system/xbin/tcpdump on
rooted builds); elsewhere the shell answers ``tcpdump: inaccessible or not found``.

Filter expressions: a subset of BPF joined by ``and``: ``tcp``, ``ip``, ``udp`` (matches nothing:
the tap carries TCP only), ``port N``, ``tcp port N``, ``host A``; anything else is tcpdump's
``syntax error``. While it runs, tcpdump is a process in ``ps``/``pidof`` (uid 0) that ``kill``
can signal; the emulation delivers signals only to such native tools (other pids: EPERM).

``timeout`` is toybox's (Android 6.0+; on older builds rooted handsets have busybox's, so the lab
offers it where the build is >= API 23 or rooted); on expiry it ends the command and exits 124.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import ipaddress
import re
import struct
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...wire.pcapwrite import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_RAW, PcapWriter
from ..handset import ProcessInfo
from ..wiretap import TapSink, tap_of
from .files import FsError
from .registry import SH, Ctx, command

VERSION = "tcpdump version 4.9.3\nlibpcap version 1.9.1 (with TPACKET_V3)\n"
USAGE = (
    VERSION
    + """Usage: tcpdump [-aAbdDefhHIJKlLnNOpqStuUvxX#] [ -B size ] [ -c count ]
\t\t[ -C file_size ] [ -E algo:secret ] [ -F file ] [ -G seconds ]
\t\t[ -i interface ] [ -j tstamptype ] [ -M secret ] [ --number ]
\t\t[ -Q in|out|inout ]
\t\t[ -r file ] [ -s snaplen ] [ --time-stamp-precision precision ]
\t\t[ --immediate-mode ] [ -T type ] [ --version ] [ -V file ]
\t\t[ -w file ] [ -W filecount ] [ -y datalinktype ] [ -z postrotate-command ]
\t\t[ -Z user ] [ expression ]
"""
)
_FLAGS = set("aAbdDefhHIJKlLnNOpqStuUvxX#")
_WITH_ARG = set("BcCEFGijMQrsTVwWyzZ")
_SUPPORTED_ARG = set("cisSwZB")  # the rest are valid but not emulated
_BINARIES = ("/system/xbin/tcpdump", "/system/bin/tcpdump")
_INTERFACES = {
    "any": (LINKTYPE_LINUX_SLL, "LINUX_SLL (Linux cooked)"),
    "wlan0": (LINKTYPE_ETHERNET, "EN10MB (Ethernet)"),
    "lo": (LINKTYPE_ETHERNET, "EN10MB (Ethernet)"),
}
SIGNALS = {
    "HUP": 1,
    "INT": 2,
    "QUIT": 3,
    "KILL": 9,
    "USR1": 10,
    "USR2": 12,
    "PIPE": 13,
    "ALRM": 14,
    "TERM": 15,
    "CHLD": 17,
    "CONT": 18,
    "STOP": 19,
}


# --- native processes of the emulated shell ------------------------------------------------------


@dataclass
class _Native:
    pid: int
    name: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    signal: int | None = None

    def deliver(self, sig: int) -> None:
        if sig in (SIGNALS["CONT"], SIGNALS["CHLD"], 0):
            return
        self.signal = sig
        self.stop.set()


_NATIVE: weakref.WeakKeyDictionary[Any, dict[int, _Native]] = weakref.WeakKeyDictionary()


def _spawn(handset: Any, name: str, uid: int, ppid: int, pid: int = 0) -> _Native:
    """A native process in the handset's process table (what ps/pidof show) and in ours (kill).
    ``pid`` is the tool's own process in the sandbox (so the shell's ``kill`` reaches it).
    VirtualHandset has no public call for a non-app process yet: this is the one place that
    adds to its table."""
    with handset._lock:
        pid = pid or max([3000, *handset._processes]) + 1
        handset._processes[pid] = ProcessInfo(
            pid=pid, name=name, uid=uid, ppid=ppid, wchan="poll_schedule_timeout", vsz=5400, rss=1800
        )
    proc = _Native(pid, name)
    _NATIVE.setdefault(handset, {})[pid] = proc
    return proc


def _reap(handset: Any, proc: _Native) -> None:
    with handset._lock:
        handset._processes.pop(proc.pid, None)
    _NATIVE.get(handset, {}).pop(proc.pid, None)


# --- tcpdump -------------------------------------------------------------------------------------


class _Usage(Exception):
    pass


def _parse(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """tcpdump's getopt: bundled flags, option arguments attached or separate, long options."""
    opts: dict[str, Any] = {"flags": set()}
    rest: list[str] = []
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest.extend(argv[i + 1 :])
            break
        if a.startswith("--"):
            name = a[2:].split("=", 1)[0]
            if name in ("version", "help", "immediate-mode", "number", "list-interfaces"):
                opts["flags"].add(name)
            elif name == "time-stamp-precision":
                if "=" not in a:
                    i += 1
            else:
                raise _Usage(f"tcpdump: unrecognized option '{a}'\n")
            i += 1
            continue
        if a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                ch = a[j]
                if ch in _FLAGS:
                    opts["flags"].add(ch)
                    j += 1
                    continue
                if ch in _WITH_ARG:
                    value = a[j + 1 :]
                    if not value:
                        i += 1
                        if i >= len(argv):
                            raise _Usage(f"tcpdump: option requires an argument -- '{ch}'\n")
                        value = argv[i]
                    opts[ch] = value
                    break
                raise _Usage(f"tcpdump: invalid option -- '{ch}'\n")
            i += 1
            continue
        rest.append(a)
        i += 1
    return opts, rest


def _port_is(port: int) -> Callable[[Any], bool]:
    """``port N``: either end of the Connection uses port N."""
    return lambda conn: port in (conn.client[1], conn.server[1])


def _host_is(addr: str) -> Callable[[Any], bool]:
    """``host A``: either end of the Connection is address A."""
    return lambda conn: addr in (conn.client[0], conn.server[0])


def _filter(expr: list[str]) -> Any:
    """The BPF subset: returns a predicate on a Connection, or raises ValueError."""
    if not expr:
        return None
    words = " ".join(expr).split()
    clauses: list[list[str]] = [[]]
    for w in words:
        if w in ("and", "&&"):
            clauses.append([])
        else:
            clauses[-1].append(w)
    tests: list[Callable[[Any], bool]] = []
    for c in clauses:
        if c in (["tcp"], ["ip"]):
            continue
        if c == ["udp"]:
            tests.append(lambda conn: False)
        elif (len(c) == 2 and c[0] == "port") or (len(c) == 3 and c[:2] == ["tcp", "port"]):
            if not c[-1].isdigit() or not 0 <= int(c[-1]) <= 65535:
                raise ValueError(f"illegal port number {c[-1]}")
            port = int(c[-1])
            tests.append(_port_is(port))
        elif len(c) == 2 and c[0] == "host":
            try:
                addr = str(ipaddress.ip_address(c[1]))
            except ValueError:
                raise ValueError(f"unknown host '{c[1]}'") from None
            tests.append(_host_is(addr))
        else:
            raise ValueError("syntax error")
    return (lambda conn: all(t(conn) for t in tests)) if tests else None


class _TextWriter:
    """tcpdump without -w: one line per packet, as ``tcpdump -n`` prints TCP over IPv4."""

    def __init__(self, ctx: Ctx, quiet: bool) -> None:
        self.ctx = ctx
        self.quiet = quiet
        self.packets = 0

    def packet(self, ts: float, data: bytes, *, comment: str | None = None) -> None:
        self.packets += 1
        stamp = _dt.datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")
        if len(data) < 40 or data[0] >> 4 != 4:
            self.ctx.out(f"{stamp} IP, length {len(data)}\n")
            return
        ihl = (data[0] & 15) * 4
        src, dst = ipaddress.IPv4Address(data[12:16]), ipaddress.IPv4Address(data[16:20])
        sport, dport, seq, ack, off, bits, win = struct.unpack("!HHIIBBH", data[ihl : ihl + 16])
        payload = len(data) - ihl - (off >> 4) * 4
        if self.quiet:
            self.ctx.out(f"{stamp} IP {src}.{sport} > {dst}.{dport}: tcp {payload}\n")
            return
        flags = "".join(ch for bit, ch in ((2, "S"), (1, "F"), (4, "R"), (8, "P")) if bits & bit)
        flags += "." if bits & 0x10 else ""
        line = f"{stamp} IP {src}.{sport} > {dst}.{dport}: Flags [{flags or 'none'}]"
        if payload:
            line += f", seq {seq}:{seq + payload}"
        elif bits & 0x07:
            line += f", seq {seq}"
        if bits & 0x10:
            line += f", ack {ack}"
        self.ctx.out(line + f", win {win}, length {payload}\n")

    def flush(self) -> None:
        pass


class _Counting:
    """Counts what reaches the writer (tcpdump's "packets captured"); ends the capture at -c."""

    def __init__(self, writer: Any, limit: int | None, proc: _Native, buffered: bool) -> None:
        self.writer = writer
        self.limit = limit
        self.proc = proc
        self.buffered = buffered
        self.packets = 0

    def packet(self, ts: float, data: bytes, *, comment: str | None = None) -> None:
        if self.limit is not None and self.packets >= self.limit:
            return
        self.writer.packet(ts, data)
        self.packets += 1
        if self.limit is not None and self.packets >= self.limit:
            self.proc.stop.set()

    def flush(self) -> None:
        if not self.buffered:
            self.writer.flush()


class _Discard:
    """``-w /dev/null``: packets counted, nothing kept."""

    packets = 0

    def packet(self, ts: float, data: bytes, *, comment: str | None = None) -> None:
        pass

    def flush(self) -> None:
        pass


class _BytesOut:
    """``-w -``: the pcap stream on stdout."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def write(self, data: bytes) -> int:
        self.ctx.out(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _installed(ctx: Ctx, argv0: str) -> bool:
    if "/" in argv0:
        return ctx.files.exists(ctx.path(argv0))
    return any(ctx.files.exists(p) for p in _BINARIES)


@command("tcpdump")
async def _tcpdump(ctx: Ctx, argv: list[str]) -> int:
    if not _installed(ctx, argv[0]):
        ctx.err(f"{SH}: {argv[0]}: inaccessible or not found\n")
        return 127
    try:
        opts, rest = _parse(argv)
    except _Usage as exc:
        ctx.err(str(exc) + USAGE)
        return 1
    flags: set[str] = opts["flags"]
    if "version" in flags:
        ctx.out(VERSION)
        return 0
    if "h" in flags or "help" in flags:
        ctx.err(USAGE)
        return 0
    if "D" in flags or "list-interfaces" in flags:
        ctx.out(
            "1.wlan0 [Up, Running]\n2.any (Pseudo-device that captures on all interfaces) [Up, Running]\n"
            "3.lo [Up, Running, Loopback]\n"
        )
        return 0
    unsupported = sorted(set(k for k in opts if k != "flags") - _SUPPORTED_ARG)
    if unsupported:
        ctx.err(f"tcpdump: option -{unsupported[0]} is not available in the lab's emulated tcpdump\n")
        return 1
    iface = opts.get("i", "wlan0")
    if iface not in _INTERFACES:
        ctx.err(f"tcpdump: {iface}: No such device exists\n(SIOCGIFHWADDR: No such device)\n")
        return 1
    try:
        snaplen = int(opts.get("s", "262144"), 0) or 262144
        if snaplen < 0:
            raise ValueError
    except ValueError:
        ctx.err(f"tcpdump: invalid snaplen {opts.get('s')}\n")
        return 1
    count = None
    if "c" in opts:
        if not re.fullmatch(r"\d+", opts["c"]) or int(opts["c"]) <= 0:
            ctx.err(f"tcpdump: invalid packet count {opts['c']}\n")
            return 1
        count = int(opts["c"])
    try:
        accept = _filter(rest)
    except ValueError as exc:
        ctx.err(
            f"tcpdump: {exc}\n"
            if "port" in str(exc) or "host" in str(exc)
            else "tcpdump: syntax error in filter expression: syntax error\n"
        )
        return 1
    if ctx.session.uid != 0:
        ctx.err(
            f"tcpdump: {iface}: You don't have permission to capture on that device\n"
            "(socket: Operation not permitted)\n"
        )
        return 1
    linktype, link_name = _INTERFACES[iface]
    out_path = opts.get("w")
    f: Any = None
    try:
        if out_path == "-":
            f = _BytesOut(ctx)
        elif out_path is not None:
            f = ctx.files.open_write(ctx.path(out_path), append=False)
    except FsError as exc:
        ctx.err(f"tcpdump: {out_path}: {exc.reason}\n")
        return 1
    proc = _spawn(ctx.handset, "tcpdump", 0, ctx.session.ppid, ctx.session.pid)
    # SIGINT/SIGTERM to the tool process end the capture, which then prints its counts

    def on_signal(sig: int) -> bool:
        proc.deliver(sig)
        return True

    ctx.extra["on_signal"] = on_signal
    sink = None
    tap = tap_of(ctx.handset)
    try:
        if out_path is None:
            if "v" not in flags:
                ctx.err("tcpdump: verbose output suppressed, use -v or -vv for full protocol decode\n")
            ctx.err(f"listening on {iface}, link-type {link_name}, capture size {snaplen} bytes\n")
            writer: Any = _Counting(_TextWriter(ctx, "q" in flags), count, proc, buffered=False)
            sink = TapSink(writer, linktype=LINKTYPE_RAW, accept=accept, syn_comments=False, name="tcpdump")
        else:
            ctx.err(f"tcpdump: listening on {iface}, link-type {link_name}, capture size {snaplen} bytes\n")
            pcap = PcapWriter(f, linktype=linktype, snaplen=snaplen) if f is not None else _Discard()
            writer = _Counting(pcap, count, proc, buffered="U" not in flags and out_path != "-")
            if f is not None and "U" in flags:
                f.flush()
            sink = TapSink(writer, linktype=linktype, accept=accept, syn_comments=False, name="tcpdump")
        if tap is not None and iface != "lo":  # the apps' traffic does not cross lo
            tap.subscribe(sink)
        await proc.stop.wait()
    finally:
        if sink is not None and tap is not None:
            tap.unsubscribe(sink)
        captured = sink.packets if sink is not None else 0
        if f is not None:
            with contextlib.suppress(OSError, ValueError):
                f.flush()
                f.close()
        _reap(ctx.handset, proc)
        ctx.err(
            f"{captured} packet{'s' if captured != 1 else ''} captured\n"
            f"{captured} packet{'s' if captured != 1 else ''} received by filter\n"
            "0 packets dropped by kernel\n"
        )
    return 0


def _signal(name: str) -> int | None:
    name = name.upper().removeprefix("SIG")
    if name.isdigit():
        return int(name) if 0 <= int(name) <= 64 else None
    return SIGNALS.get(name)
