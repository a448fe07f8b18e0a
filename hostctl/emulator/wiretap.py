"""The lab's wire tap: every byte a handset exchanges with the Cloud Messaging service, as packets.

Each emulated handset gets its own tap. For every Xiaomi host in the service's resolver map the tap
listens on ``127.0.0.1:0`` and relays each connection to the service's real address, so the
handset's resolver (``HOSTCTL_HOSTS``) points at the tap and the service is reached only through
it. The relay is a plain TCP proxy on the lab's event loop: TLS passes through untouched, reads
wait while the other side's buffer drains (back-pressure), a half-close is passed on as one, an
idle connection or a peer that stops reading is dropped, and both sides are closed when done.

What crosses is written as synthetic TCP packets (built with hostctl.wire.pcapwrite) with correct
sequence numbers, so Wireshark and tshark reassemble the streams. Each connection has its own
initial sequence numbers, shared by every file that records it, so the same bytes carry the same
numbers in the continuous file and in a live capture. The addresses are
synthetic and fixed, so flows compare across runs and captures:

=========================  ============================================================
handset N (hsN)            ``10.64.0.N`` (``10.64.0.0/16``: hs256 is ``10.64.1.0``)
its client port            the app's REAL ephemeral port on loopback, so Frida agent events
                           (which see the real local port) match the wire flow
api.account.xiaomi.com     ``198.18.0.10`` port 443
app.chat.xiaomi.net        ``198.18.0.20`` port 5222
app.chat.global.xiaomi.net ``198.18.0.21`` port 5222
resolver.msg.xiaomi.net    ``198.18.0.30`` port 80
mixin.xiaomi.net           ``198.18.0.40`` port 443
any other host             ``198.19.X.Y`` (stable, from a hash of the name)
=========================  ============================================================

Server ports are the NOMINAL ones (the build's ``behaviour.endpoints``), not the service's
loopback ports. Every pcapng file the tap writes carries a name resolution block with these names,
and the SYN of each connection carries a comment naming the app, its pid and the real loopback
endpoints. Timestamps are the real times the bytes were relayed.

Consumers are sinks (`TapSink`): the handset's continuous file
``<lab dir>/handsets/<label>/wire.pcapng`` (Ethernet, flushed after every batch so a reader can
follow it; rotated to ``wire.1.pcapng`` at lab start and past `CONTINUOUS_MAX_BYTES`), live
subscriptions from the lab's control channel (``capture-start`` / ``capture-stop``), the emulated
``tcpdump`` and PCAPdroid. A sink that joins while a connection is open gets a synthetic
handshake for it at that moment, with sequence numbers continuing where the stream is, so its
file is well-formed for tshark; a sink that leaves does not close the connections it saw (a
capture stopped mid-connection ends mid-connection, as a real one does).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import ipaddress
import itertools
import logging
import os
import threading
import time
import weakref
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol

from ..wire.pcapwrite import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_RAW,
    PcapngWriter,
    PcapWriter,
    TcpConversation,
)

__all__ = [
    "CONTINUOUS_MAX_BYTES",
    "Connection",
    "HANDSET_NETWORK",
    "HOST_ADDRESSES",
    "LINKTYPES",
    "Route",
    "TapSink",
    "WireTap",
    "handset_address",
    "host_address",
    "open_file_sink",
    "tap_of",
]

log = logging.getLogger("hostctl.emulator.wiretap")

LOOPBACK = "127.0.0.1"
HANDSET_NETWORK = ipaddress.IPv4Network("10.64.0.0/16")
HOST_ADDRESSES = {
    "api.account.xiaomi.com": "198.18.0.10",
    "app.chat.xiaomi.net": "198.18.0.20",
    "app.chat.global.xiaomi.net": "198.18.0.21",
    "resolver.msg.xiaomi.net": "198.18.0.30",
    "mixin.xiaomi.net": "198.18.0.40",
}
LINKTYPES = {"ethernet": LINKTYPE_ETHERNET, "raw": LINKTYPE_RAW, "sll": LINKTYPE_LINUX_SLL}
CONTINUOUS_MAX_BYTES = 64 << 20  # the continuous file rotates past this size
CONNECT_TIMEOUT = 10.0  # to the service
IO_TIMEOUT = 30.0  # a peer that does not read for this long is dropped
IDLE_TIMEOUT = 900.0  # nothing either way for this long: the connection is dropped
READ_SIZE = 64 * 1024
MSS = 1460
RECENT_MAX = 1000  # finished connections kept for info()


def handset_address(index: int) -> str:
    """The synthetic address of the lab's handset number ``index`` (1-based)."""
    if not 1 <= index < HANDSET_NETWORK.num_addresses - 1:
        raise ValueError(f"handset index {index} is outside 1..{HANDSET_NETWORK.num_addresses - 2}")
    return str(HANDSET_NETWORK.network_address + index)


def host_address(host: str) -> str:
    """The synthetic server address of a Xiaomi host name (fixed; others hashed into 198.19/16)."""
    if host in HOST_ADDRESSES:
        return HOST_ADDRESSES[host]
    h = hashlib.sha256(host.lower().encode()).digest()
    return f"198.19.{h[0]}.{max(1, h[1])}"


@dataclass(frozen=True, slots=True)
class Route:
    """One host the tap answers for: where it relays to and how the wire shows the server."""

    host: str
    target: tuple[str, int]  # the service's real loopback address
    nominal_port: int  # what the build connects to (443, 5222, 80)
    address: str = ""  # synthetic server address (default: host_address(host))

    @property
    def server(self) -> tuple[str, int]:
        return (self.address or host_address(self.host), self.nominal_port)


@dataclass
class Connection:
    """One relayed connection, as the sinks see it."""

    id: int
    handset: str
    route: Route
    client: tuple[str, int]  # synthetic address, REAL ephemeral port
    real_client: tuple[str, int]  # the app's socket on loopback
    tap_port: int
    opened_at: float
    owner: tuple[int, str, int] | None = None  # (pid, package, uid) of the app, if found
    sent: dict[str, int] = field(default_factory=lambda: {"c2s": 0, "s2c": 0})
    fin: dict[str, bool] = field(default_factory=lambda: {"c2s": False, "s2c": False})
    closed_at: float | None = None
    ended: str = ""  # "fin" | "reset" | "refused" | "idle" | "stalled" | "tap-stopped"
    last_activity: float = 0.0
    isn: dict[str, int] = field(default_factory=dict)  # initial sequence numbers, both sides

    def __post_init__(self) -> None:
        if not self.isn:  # from the endpoints and the time: a reused port gets new ones
            seed = zlib.crc32(f"{self.client}|{self.route.server}|{self.opened_at!r}".encode())
            self.isn = {"c2s": seed, "s2c": zlib.crc32(seed.to_bytes(4, "big"))}

    @property
    def server(self) -> tuple[str, int]:
        return self.route.server

    @property
    def package(self) -> str | None:
        return self.owner[1] if self.owner else None

    def describe(self) -> str:
        who = f"{self.owner[1]} pid {self.owner[0]} uid {self.owner[2]}" if self.owner else "unknown app"
        return (
            f"{self.handset} {who} -> {self.route.host} "
            f"(real {self.real_client[0]}:{self.real_client[1]} -> {LOOPBACK}:{self.tap_port}, "
            f"service {self.route.target[0]}:{self.route.target[1]})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.route.host,
            "client": list(self.client),
            "server": list(self.server),
            "real_client": list(self.real_client),
            "tap_port": self.tap_port,
            "service": list(self.route.target),
            "app": self.package,
            "pid": self.owner[0] if self.owner else None,
            "uid": self.owner[2] if self.owner else None,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "ended": self.ended or None,
            "bytes_c2s": self.sent["c2s"],
            "bytes_s2c": self.sent["s2c"],
        }


class _Stream(TcpConversation):
    """One connection as TCP packets for one sink, numbered with the connection's own ISNs so
    that every file numbers the same bytes alike and a sink that joins late continues the stream
    exactly (:meth:`TcpConversation.open` with ``sent_*``). The relay goes on whatever the record
    does: data or a FIN for a half already closed, or after the stream ended, is dropped silently
    instead of raising."""

    def __init__(
        self,
        sink: Callable[[float, bytes], None],
        conn: Connection,
        *,
        client_address: str | None,
        linktype: int,
        mss: int = MSS,
    ) -> None:
        super().__init__(
            sink,
            client=(client_address or conn.client[0], conn.client[1]),
            server=conn.server,
            linktype=linktype,
            mss=mss,
        )
        self.isns = {"c2s": conn.isn["c2s"], "s2c": conn.isn["s2c"]}  # of the SYNs

    def open(self, ts: float, *, sent_c2s: int = 0, sent_s2c: int = 0) -> None:  # type: ignore[override]
        super().open(ts, isns=self.isns, sent_c2s=sent_c2s, sent_s2c=sent_s2c)

    def refused(self, ts: float) -> None:  # type: ignore[override]
        super().refused(ts, isns=self.isns)

    def send(self, ts: float, direction: str, data: bytes) -> None:
        if self.state == "open" and direction not in self.fins:
            super().send(ts, direction, data)  # type: ignore[arg-type]

    def fin(self, ts: float, direction: str) -> None:
        if self.state == "open" and direction not in self.fins:
            super().fin(ts, direction)  # type: ignore[arg-type]


def _direction(direction: str) -> Literal["c2s", "s2c"]:
    if direction == "c2s":
        return "c2s"
    if direction == "s2c":
        return "s2c"
    raise ValueError(f"direction {direction!r}: c2s or s2c")


class PacketWriter(Protocol):
    """What a sink writes to: PcapngWriter, PcapWriter, or PCAPdroid's own format."""

    packets: int

    def packet(self, ts: float, data: bytes, *, comment: str | None = None) -> None: ...
    def flush(self) -> None: ...


class TapSink:
    """One consumer of a tap's connections: turns their events into packets for ``writer``.

    ``client_address`` replaces the handset's address (PCAPdroid's VPN address); ``accept``
    filters connections (PCAPdroid's ``app_filter``); ``file`` is closed with the sink.
    ``max_bytes`` stops recording (not the relay) once the file reaches that size.
    """

    def __init__(
        self,
        writer: PacketWriter,
        *,
        linktype: int,
        file: BinaryIO | None = None,
        client_address: str | None = None,
        accept: Callable[[Connection], bool] | None = None,
        max_bytes: int | None = None,
        syn_comments: bool = True,
        name: str = "",
    ) -> None:
        self.writer = writer
        self.linktype = linktype
        self.file = file
        self.client_address = client_address
        self.accept = accept
        self.max_bytes = max_bytes
        self.syn_comments = syn_comments
        self.name = name
        self.streams: dict[int, _Stream] = {}
        self.connections = 0
        self.payload_bytes = 0
        self.closed = False
        self.full = False
        self._last_ts = 0.0
        self._comment: str | None = None

    @property
    def packets(self) -> int:
        return self.writer.packets

    def _write(self, ts: float, frame: bytes) -> None:
        ts = max(ts, self._last_ts + 1e-6)  # one clock per file: never backwards
        self._last_ts = ts
        comment, self._comment = self._comment, None
        self.writer.packet(ts, frame, comment=comment)

    def _stream(self, conn: Connection) -> _Stream | None:
        if self.closed or self.full:
            return None
        return self.streams.get(conn.id)

    def _start(self, conn: Connection, ts: float, *, joined: bool) -> None:
        if self.closed or self.full or conn.id in self.streams:
            return
        if self.accept is not None and not self.accept(conn):
            return
        st = _Stream(self._write, conn, client_address=self.client_address, linktype=self.linktype)
        if self.syn_comments:
            self._comment = conn.describe() + (" (joined mid-connection: synthetic handshake)" if joined else "")
        st.open(ts, sent_c2s=conn.sent["c2s"] if joined else 0, sent_s2c=conn.sent["s2c"] if joined else 0)
        self.streams[conn.id] = st
        self.connections += 1
        for direction in ("c2s", "s2c"):
            if joined and conn.fin[direction]:
                st.fin(ts, direction)
        if st.state == "closed":
            self.streams.pop(conn.id, None)

    # events from the tap
    def opened(self, conn: Connection, ts: float) -> None:
        self._start(conn, ts, joined=False)

    def join(self, conn: Connection, ts: float) -> None:
        self._start(conn, ts, joined=True)

    def data(self, conn: Connection, ts: float, direction: str, data: bytes) -> None:
        st = self._stream(conn)
        if st is not None and st.state == "open":
            st.send(ts, direction, data)
            self.payload_bytes += len(data)

    def fin(self, conn: Connection, ts: float, direction: str) -> None:
        st = self._stream(conn)
        if st is not None:
            st.fin(ts, direction)
            if st.state == "closed":
                self.streams.pop(conn.id, None)

    def reset(self, conn: Connection, ts: float, direction: str) -> None:
        st = self._stream(conn)
        if st is not None:
            st.reset(ts, _direction(direction))
        self.streams.pop(conn.id, None)

    def refused(self, conn: Connection, ts: float) -> None:
        """The service did not accept: the app's SYN answered by a RST."""
        if self.closed or self.full or (self.accept is not None and not self.accept(conn)):
            return
        st = _Stream(self._write, conn, client_address=self.client_address, linktype=self.linktype)
        if self.syn_comments:
            self._comment = conn.describe() + " (refused by the service)"
        st.refused(ts)
        self.connections += 1

    def flush(self) -> None:
        if self.closed:
            return
        self.writer.flush()
        if self.max_bytes is not None and self.file is not None and not self.full:
            with contextlib.suppress(OSError, ValueError):
                if self.file.tell() >= self.max_bytes:
                    self.full = True
                    log.info("capture %s reached %d bytes: recording stopped", self.name, self.max_bytes)

    def close(self) -> None:
        if self.closed:
            return
        with contextlib.suppress(OSError, ValueError):
            self.writer.flush()
        self.closed = True
        self.streams.clear()
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.close()

    def stats(self) -> dict[str, Any]:
        return {
            "packets": self.packets,
            "payload_bytes": self.payload_bytes,
            "connections": self.connections,
            "full": self.full,
        }


def open_file_sink(
    path: Path,
    *,
    fmt: str = "pcapng",
    linktype: int = LINKTYPE_ETHERNET,
    names: dict[str, str] | None = None,
    comment: str | None = None,
    snaplen: int = 262144,
    max_bytes: int | None = None,
    interface_name: str | None = None,
    name: str = "",
) -> TapSink:
    """A sink writing a new pcapng (with a name resolution block) or classic pcap file."""
    f = open(path, "wb")  # noqa: SIM115 - the sink closes it
    try:
        writer: PacketWriter
        if fmt == "pcapng":
            w = PcapngWriter(
                f,
                linktype=linktype,
                snaplen=snaplen,
                application="hostctl emulated lab wire tap",
                comment=comment,
                interface_name=interface_name,
            )
            if names:
                w.add_names(names)
            writer = w
        elif fmt == "pcap":
            writer = PcapWriter(f, linktype=linktype, snaplen=snaplen)
        else:
            raise ValueError(f"capture format must be pcapng or pcap, not {fmt!r}")
        f.flush()
    except BaseException:
        f.close()
        raise
    return TapSink(writer, linktype=linktype, file=f, max_bytes=max_bytes, syn_comments=fmt == "pcapng", name=name)


OwnerLookup = Callable[[int, int], "tuple[int, str, int] | None"]


class WireTap:
    """One handset's tap: listeners for its routes, the relays, and the sinks.

    All methods run on the lab's event loop (sinks may be added from its control channel, the
    emulated shell and PCAPdroid, which run there too); a lock keeps a sink from being added
    while an event is being written, should another thread call in.
    """

    def __init__(
        self,
        label: str,
        address: str,
        routes: Iterable[Route],
        *,
        state_dir: Path | None = None,
        owner: OwnerLookup | None = None,
        continuous: bool = True,
        continuous_max_bytes: int = CONTINUOUS_MAX_BYTES,
        idle_timeout: float = IDLE_TIMEOUT,
        io_timeout: float = IO_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.label = label
        self.address = address
        self.routes = list(routes)
        self.state_dir = Path(state_dir) if state_dir else None
        self.owner = owner
        self.continuous = continuous and self.state_dir is not None
        self.continuous_max_bytes = continuous_max_bytes
        self.idle_timeout = idle_timeout
        self.io_timeout = io_timeout
        self.connect_timeout = connect_timeout
        self.ports: dict[str, int] = {}  # host -> tap port
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ids = itertools.count(1)
        self.open: dict[int, Connection] = {}
        self.recent: deque[Connection] = deque(maxlen=RECENT_MAX)
        self.sinks: list[TapSink] = []
        self._lock = threading.RLock()
        self._continuous_sink: TapSink | None = None
        self.running = False
        self._stopping = False

    # -- names and files ------------------------------------------------------------------------
    def names(self) -> dict[str, str]:
        """Synthetic address -> name, for the pcapng name resolution block."""
        names = {r.server[0]: r.host for r in self.routes}
        names[self.address] = self.label
        return names

    @property
    def continuous_path(self) -> Path | None:
        return self.state_dir / "wire.pcapng" if self.state_dir else None

    def hosts_env(self) -> dict[str, str]:
        """The handset's resolver map: host -> "127.0.0.1:tap port" (HOSTCTL_HOSTS)."""
        return {host: f"{LOOPBACK}:{port}" for host, port in self.ports.items()}

    def info(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "file": str(self.continuous_path) if self.continuous else None,
            "hosts": {
                r.host: {
                    "tap_port": self.ports.get(r.host),
                    "address": r.server[0],
                    "port": r.server[1],
                    "service": f"{r.target[0]}:{r.target[1]}",
                }
                for r in self.routes
            },
            "open_connections": len(self.open),
            "sinks": len(self.sinks),
        }

    def connections(self) -> list[Connection]:
        """Finished (most recent last) then open connections."""
        return list(self.recent) + list(self.open.values())

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.running:
            return
        self._stopping = False
        try:
            for route in self.routes:
                server = await asyncio.start_server(functools.partial(self._accept, route), LOOPBACK, 0)
                self._servers.append(server)
                self.ports[route.host] = server.sockets[0].getsockname()[1]
            if self.continuous:
                self._open_continuous(rotate=True)
        except BaseException:
            await self.stop()
            raise
        self.running = True

    async def stop(self) -> None:
        """Close the listeners, drop every relayed connection (recorded as reset by the tap),
        close every sink."""
        self.running = False
        for server in self._servers:
            server.close()
        for conn in list(self.open.values()):
            if not conn.ended:
                conn.ended = "tap-stopped"
                self._fanout("reset", conn, "s2c")
        self._stopping = True  # what the aborted relays still see is not recorded
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.transport.abort()
        tasks = list(self._tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=5)
            for task in late:  # a relay that did not end with its sockets
                task.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
        self._servers.clear()
        with self._lock:
            for sink in list(self.sinks):
                sink.close()
            self.sinks.clear()
            self._continuous_sink = None

    def _open_continuous(self, *, rotate: bool) -> None:
        path = self.continuous_path
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        old = self._continuous_sink
        if old is not None:
            self.unsubscribe(old)
        if rotate and path.exists():
            with contextlib.suppress(OSError):
                os.replace(path, path.with_name("wire.1.pcapng"))
        sink = open_file_sink(
            path,
            names=self.names(),
            name=f"{self.label} continuous",
            comment=f"hostctl emulated lab: every byte handset {self.label} "
            f"({self.address}) exchanged with the Xiaomi hosts",
            interface_name=f"{self.label}-tap",
        )
        self._continuous_sink = sink
        self.subscribe(sink)

    def _check_continuous_size(self) -> None:
        sink = self._continuous_sink
        if sink is None or sink.file is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if sink.file.tell() > self.continuous_max_bytes:
                self._open_continuous(rotate=True)

    # -- sinks ----------------------------------------------------------------------------------
    def subscribe(self, sink: TapSink) -> TapSink:
        """Add a sink; it gets a synthetic handshake for each connection already open."""
        with self._lock:
            now = time.time()
            for conn in list(self.open.values()):
                sink.join(conn, now)
            sink.flush()
            self.sinks.append(sink)
        return sink

    def unsubscribe(self, sink: TapSink) -> dict[str, Any]:
        with self._lock:
            if sink in self.sinks:
                self.sinks.remove(sink)
            sink.close()
            if sink is self._continuous_sink:
                self._continuous_sink = None
        return sink.stats()

    def _fanout(self, event: str, conn: Connection, *args: Any) -> None:
        if self._stopping:
            return
        with self._lock:
            ts = time.time()
            for sink in list(self.sinks):
                try:
                    getattr(sink, event)(conn, ts, *args)
                    sink.flush()
                except (OSError, ValueError) as exc:  # a full disk or a closed file: that sink ends
                    log.warning("%s: capture %s failed (%s): it stops recording", self.label, sink.name, exc)
                    self.sinks.remove(sink)
                    sink.close()
        if event == "data":
            self._check_continuous_size()

    # -- the relay --------------------------------------------------------------------------------
    async def _accept(self, route: Route, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        peer = writer.get_extra_info("peername") or (LOOPBACK, 0)
        tap_port = writer.get_extra_info("sockname")[1]
        conn = Connection(
            next(self._ids),
            self.label,
            route,
            (self.address, int(peer[1])),
            (str(peer[0]), int(peer[1])),
            tap_port,
            time.time(),
            last_activity=time.monotonic(),
        )
        if self.owner is not None:
            with contextlib.suppress(Exception):
                conn.owner = self.owner(int(peer[1]), tap_port)
        up_writer: asyncio.StreamWriter | None = None
        try:
            try:
                up_reader, upstream = await asyncio.wait_for(
                    asyncio.open_connection(*route.target), self.connect_timeout
                )
                up_writer = upstream  # for the finally below
            except (TimeoutError, OSError) as exc:
                log.info("%s: %s refused (%s)", self.label, route.host, exc)
                conn.ended, conn.closed_at = "refused", time.time()
                self._fanout("refused", conn)
                self.recent.append(conn)
                writer.transport.abort()
                return
            self._writers.add(upstream)
            self.open[conn.id] = conn
            self._fanout("opened", conn)
            await self._relay(conn, reader, writer, up_reader, upstream)
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    self._writers.discard(w)
                    if not w.is_closing():
                        w.close()
            if self.open.pop(conn.id, None) is not None:
                conn.closed_at = time.time()
                self.recent.append(conn)
            if task is not None:
                self._tasks.discard(task)

    async def _relay(
        self,
        conn: Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        pumps = {
            asyncio.ensure_future(self._pump(conn, "c2s", reader, up_writer)): "c2s",
            asyncio.ensure_future(self._pump(conn, "s2c", up_reader, writer)): "s2c",
        }
        try:
            done, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            failed = next((t for t in done if t.exception() is not None), None)
            if failed is None:
                conn.ended = "fin"
                return
            for t in pending:
                t.cancel()
            exc = failed.exception()
            direction = pumps[failed]
            # who broke it: a read error is the sender's reset; a stalled write is the reader's fault
            if isinstance(exc, _Stalled):
                conn.ended, culprit = "stalled", ("s2c" if direction == "c2s" else "c2s")
            elif isinstance(exc, _Idle):
                conn.ended, culprit = "idle", "s2c"
            else:
                conn.ended, culprit = "reset", direction
            self._fanout("reset", conn, culprit)
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.transport.abort()
        finally:
            for t in pumps:
                if not t.done():
                    t.cancel()
            for t in pumps:
                with contextlib.suppress(BaseException):
                    await t

    async def _pump(
        self, conn: Connection, direction: str, src: asyncio.StreamReader, dst: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                data = await asyncio.wait_for(src.read(READ_SIZE), min(self.idle_timeout, 60.0))
            except TimeoutError:
                if time.monotonic() - conn.last_activity >= self.idle_timeout:
                    raise _Idle(f"nothing either way for {self.idle_timeout:.0f} s") from None
                continue
            if not data:
                break
            conn.last_activity = time.monotonic()
            self._fanout("data", conn, direction, data)
            conn.sent[direction] += len(data)
            dst.write(data)
            try:
                await asyncio.wait_for(dst.drain(), self.io_timeout)
            except TimeoutError:
                raise _Stalled(
                    f"the {'service' if direction == 'c2s' else 'app'} did not read for {self.io_timeout:.0f} s"
                ) from None
        conn.fin[direction] = True
        self._fanout("fin", conn, direction)
        if dst.can_write_eof() and not dst.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                dst.write_eof()


class _Idle(Exception):
    pass


class _Stalled(Exception):
    pass


# --- the handset's tap, for the emulated shell (tcpdump) and PCAPdroid ----------------------------

_TAPS: weakref.WeakKeyDictionary[Any, WireTap] = weakref.WeakKeyDictionary()


def register(handset: Any, tap: WireTap | None) -> None:
    """Tie a tap to a VirtualHandset, so its shell's tcpdump can find it (None unties)."""
    if tap is None:
        _TAPS.pop(handset, None)
    else:
        _TAPS[handset] = tap


def tap_of(handset: Any) -> WireTap | None:
    """The tap of a VirtualHandset, or None (a handset outside a lab, or a lab without service)."""
    return _TAPS.get(handset)


def socket_owner(
    client_port: int, server_port: int, candidates: Iterable[tuple[int, str, int]]
) -> tuple[int, str, int] | None:
    """Which of ``candidates`` (pid, package, uid) holds the loopback socket ``client_port`` ->
    ``server_port``: /proc/net/tcp gives the socket's inode, /proc/PID/fd the process holding it.
    With one candidate it is that one (every connection to a handset's tap is its own)."""
    cands = list(candidates)
    if len(cands) <= 1:
        return cands[0] if cands else None
    inode = None
    want_local, want_remote = f":{client_port:04X}", f":{server_port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh, None)
                for line in fh:
                    parts = line.split()
                    if len(parts) > 9 and parts[1].endswith(want_local) and parts[2].endswith(want_remote):
                        inode = parts[9]
                        break
        except OSError:
            continue
        if inode:
            break
    if not inode:
        return None
    link = f"socket:[{inode}]"
    for cand in cands:
        try:
            fds = os.listdir(f"/proc/{cand[0]}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{cand[0]}/fd/{fd}") == link:
                    return cand
    return None
