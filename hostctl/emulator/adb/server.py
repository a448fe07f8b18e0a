"""The asyncio driver for an emulated adbd: sockets in, DeviceConnection in the middle, services out.

All protocol decisions live in ``connection.DeviceConnection``, ``sync.SyncParser`` and
``shellv2``; this module only moves bytes and runs services. A connection that breaks the
protocol is closed with a logged reason; nothing a host sends can stop the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import stat as stat_mod
from collections import deque
from pathlib import Path
from typing import Protocol

from ..fs import DeviceFS, DevicePathError
from ..shell.io import ShellIO
from . import services as svc
from . import shellv2, sync
from .auth import KeyStore
from .connection import (
    DEFAULT_FEATURES,
    Connected,
    DataReceived,
    DeviceConnection,
    OpenRequested,
    StreamClosed,
    StreamDrained,
    StreamOpened,
    make_banner,
    protocol_for_sdk,
)
from .packets import ProtocolError

log = logging.getLogger("hostctl.emulator.adbd")

LOOPBACK = ("127.0.0.1", "::1", "localhost")
TCP_CONNECT_TIMEOUT = 5.0
READ_ONLY_ROOTS = ("/system", "/vendor", "/proc", "/sys")
REVERSE_MIN_SDK = 21      # adbd's reverse: service (adb.cpp handle_forward_request on the device) is Lollipop's
UNROOT_MIN_SDK = 23       # unroot: (restart_unroot_service) came with Marshmallow's services.cpp; a
                          # KitKat/Lollipop services.c has root: only, so adbd refuses unroot:


class Shell(Protocol):
    async def run(self, command: str, io: ShellIO, *, pty: bool = False, term: str | None = None) -> int: ...


class DeviceBackend(Protocol):
    """What adbd needs from a handset."""

    fs: DeviceFS

    def banner_props(self) -> dict[str, str]: ...
    def new_shell(self) -> Shell: ...
    def tcp_target(self, port: int) -> tuple[str, int] | None:
        """Where a device-side ``tcp:PORT`` leads on this host (loopback only), or None."""


# --- streams ---------------------------------------------------------------------------------

class Channel:
    """One ADB stream as the service sees it: read(), write(), close().

    Input is acknowledged as soon as it is queued while little is buffered, so the host's next
    WRTE overlaps our processing; past one maxdata of unread input the OKAY waits for read().
    Output keeps up to two maxdata queued so every WRTE the core sends is full-sized.
    """

    def __init__(self, proto: "_AdbdProtocol", sid: int) -> None:
        self._proto = proto
        self.sid = sid
        self._inbox: deque[bytes] = deque()
        self._buffered = 0
        self._owed: deque[int] = deque()   # sizes of queued chunks not yet acknowledged
        self._readable = asyncio.Event()
        self._progress = asyncio.Event()
        self.remote_closed = False
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()   # for streams we open

    # driver side
    def _feed(self, data: bytes) -> None:
        self._inbox.append(data)
        self._buffered += len(data)
        if self._buffered <= self._proto.conn.max_payload and not self._owed:
            self._proto.conn.ack(self.sid, len(data))
        else:
            self._owed.append(len(data))
        self._readable.set()

    def _closed_by_remote(self) -> None:
        if not self.opened.done():
            self.opened.set_result(False)
        self.remote_closed = True
        self._readable.set()
        self._progress.set()

    def _on_progress(self) -> None:
        self._progress.set()

    # service side
    async def read(self) -> bytes:
        """Next chunk the host wrote; b"" once the host closed the stream."""
        while not self._inbox:
            if self.remote_closed:
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = self._inbox.popleft()
        self._buffered -= len(data)
        if self._owed:
            self._proto.conn.ack(self.sid, self._owed.popleft())
            self._proto.flush()
        return data

    def write_nowait(self, data: bytes) -> None:
        if self.remote_closed or not data or not self._proto.conn.is_open(self.sid):
            return
        self._proto.conn.write(self.sid, data)
        self._proto.flush()

    async def write(self, data: bytes) -> None:
        """Write with backpressure: waits while more than two maxdata are queued."""
        self.write_nowait(data)
        limit = 2 * self._proto.conn.max_payload
        while self._proto.conn.pending(self.sid) > limit and not self.remote_closed:
            self._progress.clear()
            await self._progress.wait()

    async def drain(self) -> None:
        while self._proto.conn.pending(self.sid) and not self.remote_closed:
            self._progress.clear()
            await self._progress.wait()

    def close(self) -> None:
        if self._proto.conn.is_open(self.sid):
            self._proto.conn.close(self.sid)
            self._proto.flush()


# --- the connection --------------------------------------------------------------------------

class _AdbdProtocol(asyncio.Protocol):
    def __init__(self, server: "AdbdServer") -> None:
        self.server = server
        banner = make_banner(server.backend.banner_props(), server.features)
        handset = getattr(server.backend, "handset", None)
        kwargs = {}
        if handset is not None:   # the protocol version and payload size of the release's adbd
            version, max_payload = protocol_for_sdk(handset.profile.sdk)
            kwargs = {"max_version": version, "max_payload": max_payload}
        self.conn = DeviceConnection(banner, features=server.features, auth_keys=server.auth_keys, **kwargs)
        self.transport: asyncio.Transport | None = None
        self.channels: dict[int, Channel] = {}
        self.tasks: dict[int, asyncio.Task] = {}
        self.peer = "?"
        self.reverses: dict[str, tuple[str, asyncio.base_events.Server]] = {}   # device spec -> (host spec, listener)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = str(transport.get_extra_info("peername"))
        self.server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        for device in list(self.reverses):   # reverse listeners live as long as the transport
            _drop_reverse(self, device)
        for task in self.tasks.values():
            task.cancel()
        for ch in self.channels.values():
            ch._closed_by_remote()

    def data_received(self, data: bytes) -> None:
        try:
            self.conn.receive_data(data)
        except ProtocolError as exc:
            log.warning("adbd %s: closing connection from %s: %s", self.server.name, self.peer, exc)
            self.abort()
            return
        for ev in self.conn.events():
            if isinstance(ev, OpenRequested):
                self._open(ev.stream_id, ev.service)
            elif isinstance(ev, DataReceived):
                ch = self.channels.get(ev.stream_id)
                if ch is not None:
                    ch._feed(ev.data)
            elif isinstance(ev, StreamDrained):
                ch = self.channels.get(ev.stream_id)
                if ch is not None:
                    ch._on_progress()
            elif isinstance(ev, StreamOpened):
                ch = self.channels.get(ev.stream_id)
                if ch is not None and not ch.opened.done():
                    ch.opened.set_result(True)
            elif isinstance(ev, StreamClosed):
                ch = self.channels.pop(ev.stream_id, None)
                if ch is not None:
                    ch._closed_by_remote()
            elif isinstance(ev, Connected):
                log.debug("adbd %s: host connected, features %s", self.server.name, sorted(ev.host_features))
        self.flush()

    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _open(self, sid: int, name: str) -> None:
        service = svc.parse_service(name)
        if "shell_v2" not in self.server.features and isinstance(service, svc.ShellService):
            # A pre-7.0 adbd knows only "shell:" (the host never asks it otherwise), and runs
            # every shell, command or not, on a pty: output comes back with CRLF line ends.
            service = (svc.UnknownService(name, "shell arguments need shell_v2")
                       if name.startswith("shell,") else dataclasses.replace(service, pty=True))
        handset = getattr(self.server.backend, "handset", None)
        if isinstance(service, svc.ReverseService) and handset is not None and handset.profile.sdk < REVERSE_MIN_SDK:
            service = svc.UnknownService(name, "reverse: came with Android 5.0's adbd")
        if (isinstance(service, svc.RootService) and not service.root and handset is not None
                and handset.profile.sdk < UNROOT_MIN_SDK):
            service = svc.UnknownService(name, "unroot: came with Android 6.0's adbd")
        if isinstance(service, svc.UnknownService):
            log.info("adbd %s: refusing %r: %s", self.server.name, name, service.reason)
            self.conn.refuse(sid)
            return
        ch = Channel(self, sid)
        self.channels[sid] = ch
        task = asyncio.ensure_future(self._run(service, ch))
        self.tasks[sid] = task

    async def _run(self, service: svc.Service, ch: Channel) -> None:
        try:
            if isinstance(service, svc.TcpService):
                await _serve_tcp(self, service, ch)  # accepts only once connected
                return
            self.conn.accept(ch.sid)
            self.flush()
            if isinstance(service, svc.ShellService):
                await _serve_shell(self.server.backend, service, ch)
            elif isinstance(service, svc.ExecService):
                await _serve_shell(self.server.backend, svc.ShellService(service.command, False, False, None), ch)
            elif isinstance(service, svc.SyncService):
                await _serve_sync(self.server.backend.fs, ch)
            elif isinstance(service, svc.RebootService):
                await _serve_reboot(self, service, ch)
            elif isinstance(service, (svc.RootService, svc.RemountService)):
                await _serve_root(self, service, ch)
            elif isinstance(service, svc.FramebufferService):
                await _serve_framebuffer(self, ch)
            elif isinstance(service, svc.ReverseService):
                await _serve_reverse(self, service, ch)
        except asyncio.CancelledError:
            pass
        except ProtocolError as exc:
            log.warning("adbd %s: stream %d: %s", self.server.name, ch.sid, exc)
            self.abort()
        except Exception:  # a service bug must not take the device down
            log.exception("adbd %s: service failed on stream %d", self.server.name, ch.sid)
        finally:
            self.tasks.pop(ch.sid, None)
            if not ch.remote_closed:
                ch.close()
            self.channels.pop(ch.sid, None)


class AdbdServer:
    """One emulated handset's adbd on a loopback port."""

    def __init__(self, backend: DeviceBackend, *, host: str = "127.0.0.1", port: int = 0,
                 name: str = "handset", auth_keys: KeyStore | None = None,
                 features: tuple[str, ...] = DEFAULT_FEATURES) -> None:
        if host not in LOOPBACK:
            raise ValueError(f"emulated adbd binds to loopback only, not {host!r}")
        self.backend = backend
        self.host = host
        self.port = port
        self.name = name
        self.auth_keys = auth_keys
        self.features = features
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[_AdbdProtocol] = set()
        self.reverse_ports: dict[int, int] = {}    # device tcp port -> loopback port of its listener

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _AdbdProtocol(self), self.host, self.port,
                                                reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def serving(self) -> bool:
        return self._server is not None

    async def stop(self) -> None:
        """Stop listening and drop every host connection (the cable is pulled)."""
        if self._server is not None:
            self._server.close()
            for proto in list(self._connections):
                proto.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None


# --- shell -----------------------------------------------------------------------------------

class _StreamShellIO:
    """ShellIO over an ADB stream: v2 packets or raw bytes (stderr merged for v1)."""

    def __init__(self, ch: Channel, v2: bool) -> None:
        self.ch = ch
        self.v2 = v2
        self._decoder = shellv2.ShellV2Decoder()
        self._stdin: deque[bytes] = deque()
        self._eof = False
        self.on_window_size = None

    async def read_stdin(self) -> bytes:
        while not self._stdin:
            if self._eof:
                return b""
            data = await self.ch.read()
            if not data:
                self._eof = True
                return b""
            if not self.v2:
                return data
            for pkt in self._decoder.feed(data):
                if pkt.id is shellv2.ShellId.STDIN:
                    if pkt.data:
                        self._stdin.append(pkt.data)
                elif pkt.id is shellv2.ShellId.CLOSE_STDIN:
                    self._eof = True
                elif pkt.id is shellv2.ShellId.WINDOW_SIZE and self.on_window_size:
                    self.on_window_size(pkt.data)
        return self._stdin.popleft()

    def write_stdout(self, data: bytes) -> None:
        if data:
            self.ch.write_nowait(shellv2.encode(shellv2.ShellId.STDOUT, data) if self.v2 else data)

    def write_stderr(self, data: bytes) -> None:
        if data:
            self.ch.write_nowait(shellv2.encode(shellv2.ShellId.STDERR, data) if self.v2 else data)

    async def drain(self) -> None:
        """Waits while the stream holds more than the host has acknowledged (back-pressure)."""
        await self.ch.drain()


async def _serve_shell(backend: DeviceBackend, service: svc.ShellService, ch: Channel) -> None:
    """Runs the request in the handset's sandbox (a pty when asked: the shell gets a controlling
    terminal, so ^C interrupts its foreground job); v2 ends with the exit packet."""
    shell = backend.new_shell()
    io = _StreamShellIO(ch, service.v2)
    rc = await shell.run(service.command, io, pty=service.pty, term=service.term)
    if service.v2 and not ch.remote_closed:
        ch.write_nowait(shellv2.encode_exit(rc))
    await ch.drain()


# --- adbd's own services -----------------------------------------------------------------------

def _handset(proto: _AdbdProtocol):
    return getattr(proto.server.backend, "handset", None)


async def _serve_reboot(proto: _AdbdProtocol, service: svc.RebootService, ch: Channel) -> None:
    """daemon/services.cpp reboot_service: sync, set sys.powerctl to ``reboot,<target|adb>`` and
    wait: the stream dies with adbd as the handset goes down (the lab power-cycles it)."""
    h = _handset(proto)
    if h is None:
        await ch.write(b"reboot: not supported by this device\n")
        return
    h.request_reboot(service.target or "adb")
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(ch.read(), 30)


def adbd_is_root(handset) -> bool:
    """adbd keeps root when the build is debuggable and ``service.adb.root`` is 1 (a runtime
    property: a reboot drops it), as daemon/main.cpp ``should_drop_privileges`` decides."""
    return (handset is not None and handset.getprop("ro.debuggable", "0") == "1"
            and handset.getprop("service.adb.root", "0") == "1")


def remount_reply(sdk: int, root: bool) -> bytes:
    """What adbd's remount service answers, per release. KitKat's remount_service.c has no uid
    check: mount(MS_REMOUNT) as the shell user fails, ``remount failed: <strerror>``; Lollipop's
    remounts each partition, ``remount of system failed: <strerror>`` then ``remount failed``;
    from 6.0 remount_service.cpp refuses a non-root adbd (``Not running as root. Try "adb root"
    first.``), and from 10 (which runs /system/bin/remount) adds ``remount failed``. As root the
    emulated /system still cannot be made writable."""
    if sdk < 21:
        return b"remount failed: Operation not permitted\n" if not root else \
            b"remount failed: Read-only file system\n"
    if sdk < 23:
        why = b"Operation not permitted" if not root else b"Read-only file system"
        return b"remount of system failed: " + why + b"\nremount failed\n"
    if not root:
        return b'Not running as root. Try "adb root" first.\n' + (b"remount failed\n" if sdk >= 29 else b"")
    return b"remount failed: the emulated /system is read-only\n"


async def _serve_root(proto: _AdbdProtocol, service: svc.RootService | svc.RemountService, ch: Channel) -> None:
    """daemon/restart_service.cpp (root:/unroot:) and remount_service.cpp: only a debuggable
    build (ro.debuggable=1: userdebug/eng) lets adbd keep root; restarting drops the transport."""
    h = _handset(proto)
    debuggable = h is not None and h.getprop("ro.debuggable", "0") == "1"
    root = adbd_is_root(h)
    if isinstance(service, svc.RemountService):
        await ch.write(remount_reply(h.profile.sdk if h is not None else 30, root))
        await ch.drain()
        return
    if service.root:
        if not debuggable:
            message, restart = b"adbd cannot run as root in production builds\n", False
        elif root:
            message, restart = b"adbd is already running as root\n", False
        else:
            message, restart = b"restarting adbd as root\n", True
    else:
        if not root:
            message, restart = b"adbd not running as root\n", False
        else:
            message, restart = b"restarting adbd as non root\n", True
    await ch.write(message)
    await ch.drain()
    if restart:
        h.setprop("service.adb.root", "1" if service.root else "0")
        asyncio.get_running_loop().call_later(0.1, proto.abort)   # adbd exits; init restarts it


async def _serve_framebuffer(proto: _AdbdProtocol, ch: Channel) -> None:
    """daemon/framebuffer_service.cpp: the fbinfo header and the pixels of ``screencap``."""
    from .. import render
    from ..shell.cmd_android import screen_image

    h = _handset(proto)
    if h is None:
        return
    await ch.write(render.framebuffer(screen_image(h), h.profile.sdk))
    await ch.drain()


def _okay() -> bytes:
    return b"OKAY"


def _fail(message: str) -> bytes:
    data = message.encode()
    return b"FAIL" + f"{len(data):04x}".encode() + data


def _tcp_port(spec: str) -> int | None:
    if spec.startswith("tcp:") and spec[4:].isdigit() and 0 <= int(spec[4:]) < 65536:
        return int(spec[4:])
    return None


def _drop_reverse(proto: _AdbdProtocol, device: str) -> bool:
    entry = proto.reverses.pop(device, None)
    if entry is None:
        return False
    entry[1].close()
    port = _tcp_port(device)
    if port is not None:
        proto.server.reverse_ports.pop(port, None)
    return True


async def _serve_reverse(proto: _AdbdProtocol, service: svc.ReverseService, ch: Channel) -> None:
    """adb.cpp handle_forward_request as adbd runs it: one OKAY (the host adds the first) or
    FAIL+message; ``list-forward`` answers with the length-prefixed list only."""
    if service.verb == "list-forward":
        text = "".join(f"host-{proto.server.port} {d} {hspec}\n" for d, (hspec, _) in proto.reverses.items())
        data = text.encode()
        await ch.write(f"{len(data):04x}".encode() + data)
    elif service.verb == "killforward-all":
        for device in list(proto.reverses):
            _drop_reverse(proto, device)
        await ch.write(_okay())
    elif service.verb == "killforward":
        ok = _drop_reverse(proto, service.device)
        await ch.write(_okay() if ok else _fail(f"listener '{service.device}' not found"))
    elif service.verb == "forward":
        await ch.write(await _add_reverse(proto, service))
    else:
        await ch.write(_fail(f"unknown reverse request: {service.device}"))
    await ch.drain()


async def _add_reverse(proto: _AdbdProtocol, service: svc.ReverseService) -> bytes:
    port = _tcp_port(service.device)
    if port is None or port == 0:
        return _fail(f"cannot bind listener: unsupported device spec '{service.device}' (tcp:PORT only)")
    if service.device in proto.reverses:
        if service.norebind:
            return _fail(f"cannot rebind existing socket")
        _drop_reverse(proto, service.device)
    if port in proto.server.reverse_ports:
        return _fail(f"cannot bind listener: Address already in use")

    async def on_device_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _reverse_connection(proto, service.host, reader, writer)

    listener = await asyncio.start_server(on_device_connection, "127.0.0.1", 0)
    proto.reverses[service.device] = (service.host, listener)
    proto.server.reverse_ports[port] = listener.sockets[0].getsockname()[1]
    return _okay()


async def _reverse_connection(proto: _AdbdProtocol, host_spec: str, reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
    """A device-side client connected to a reversed port: OPEN the host's spec on the
    transport and pump bytes both ways until either side closes."""
    try:
        sid = proto.conn.open(host_spec)
    except ProtocolError:
        writer.close()
        return
    ch = Channel(proto, sid)
    proto.channels[sid] = ch
    proto.flush()
    try:
        ok = await asyncio.wait_for(ch.opened, TCP_CONNECT_TIMEOUT)
    except asyncio.TimeoutError:
        ok = False
    if not ok:
        proto.channels.pop(sid, None)
        ch.close()
        writer.close()
        return
    await _pump_socket(proto, ch, reader, writer)
    proto.channels.pop(sid, None)


async def _pump_socket(proto: _AdbdProtocol, ch: Channel, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
    async def host_to_socket() -> None:
        while (data := await ch.read()):
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    async def socket_to_host() -> None:
        while (data := await reader.read(proto.conn.max_payload)):
            await ch.write(data)
        await ch.drain()

    up = asyncio.ensure_future(host_to_socket())
    down = asyncio.ensure_future(socket_to_host())
    try:
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if not down.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(down), 5)
    finally:
        up.cancel()
        down.cancel()
        writer.close()
        if not ch.remote_closed:
            ch.close()


# --- tcp forwarding --------------------------------------------------------------------------

async def _serve_tcp(proto: _AdbdProtocol, service: svc.TcpService, ch: Channel) -> None:
    target = proto.server.backend.tcp_target(service.port) if service.host in (None, "localhost", "127.0.0.1") else None
    if target is None or target[0] not in LOOPBACK:
        log.info("adbd %s: tcp:%d has no target", proto.server.name, service.port)
        proto.conn.refuse(ch.sid)
        proto.flush()
        return
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*target), TCP_CONNECT_TIMEOUT)
    except (OSError, asyncio.TimeoutError) as exc:
        log.info("adbd %s: tcp:%d -> %s:%d refused: %s", proto.server.name, service.port, *target, exc)
        proto.conn.refuse(ch.sid)
        proto.flush()
        return
    proto.conn.accept(ch.sid)
    proto.flush()

    async def host_to_socket() -> None:
        while (data := await ch.read()):
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    async def socket_to_host() -> None:
        while (data := await reader.read(proto.conn.max_payload)):
            await ch.write(data)
        await ch.drain()

    up = asyncio.ensure_future(host_to_socket())
    down = asyncio.ensure_future(socket_to_host())
    try:
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if down.done():
            pass  # the device-side socket closed: close the stream
        else:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(down), 5)
    finally:
        up.cancel()
        down.cancel()
        writer.close()


# --- sync ------------------------------------------------------------------------------------

def _file_stat(st: os.stat_result) -> sync.FileStat:
    return sync.FileStat(mode=st.st_mode, size=st.st_size, mtime=int(st.st_mtime), atime=int(st.st_atime),
                         ctime=int(st.st_ctime), dev=st.st_dev, ino=st.st_ino, nlink=st.st_nlink,
                         uid=2000 if stat_mod.S_ISREG(st.st_mode) else 0, gid=2000 if stat_mod.S_ISREG(st.st_mode) else 0)


def _read_only(fs: DeviceFS, path: str) -> bool:
    norm = fs.normalize(path)
    return any(norm == r or norm.startswith(r + "/") for r in READ_ONLY_ROOTS)


async def _serve_sync(fs: DeviceFS, ch: Channel) -> None:
    parser = sync.SyncParser()
    upload: _Upload | None = None
    while True:
        data = await ch.read()
        if not data:
            if upload:
                upload.abort()
            return
        for ev in parser.feed(data):
            if isinstance(ev, sync.Quit):
                return
            if isinstance(ev, sync.Stat):
                await ch.write(_stat_reply(fs, ev))
            elif isinstance(ev, sync.ListDir):
                await ch.write(_list_reply(fs, ev))
            elif isinstance(ev, sync.SendBegin):
                upload = _Upload(fs, ev)
            elif isinstance(ev, sync.SendData):
                upload.write(ev.data)  # type: ignore[union-attr]
            elif isinstance(ev, sync.SendDone):
                await ch.write(upload.finish(ev.mtime))  # type: ignore[union-attr]
                upload = None
            elif isinstance(ev, sync.Recv):
                await _send_file(fs, ev, ch)


def _stat_reply(fs: DeviceFS, ev: sync.Stat) -> bytes:
    try:
        host = fs.host_path(ev.path)
        st = os.stat(host) if ev.verb == "STA2" else os.lstat(host)
    except DevicePathError:
        return sync.reply_stat_v1(None) if ev.verb == "STAT" else sync.reply_stat_v2(ev.verb, None, errno.EACCES)
    except OSError as exc:
        return sync.reply_stat_v1(None) if ev.verb == "STAT" else sync.reply_stat_v2(ev.verb, None, exc.errno or errno.EIO)
    fst = _file_stat(st)
    return sync.reply_stat_v1(fst) if ev.verb == "STAT" else sync.reply_stat_v2(ev.verb, fst)


def _list_reply(fs: DeviceFS, ev: sync.ListDir) -> bytes:
    out = bytearray()
    try:
        host = fs.host_path(ev.path)
        entries = [(".", host), ("..", host.parent if host != fs.root else host)]
        with os.scandir(host) as it:
            entries += [(e.name, Path(e.path)) for e in it]
        for name, p in entries:
            with contextlib.suppress(OSError):
                out += sync.reply_dent(name.encode("utf-8", "surrogateescape"), _file_stat(os.lstat(p)), ev.v2)
    except (OSError, DevicePathError):
        pass  # adbd answers an unreadable directory with an empty listing
    out += sync.reply_list_done(ev.v2)
    return bytes(out)


class _Upload:
    """A SEND in progress: data goes to a temp file, renamed into place on DONE."""

    def __init__(self, fs: DeviceFS, ev: sync.SendBegin) -> None:
        self.error: str | None = None
        self.fh = None
        self.final: Path | None = None
        self.tmp: Path | None = None
        if ev.flags:
            self.error = "compression is not supported by this device"
            return
        if _read_only(fs, ev.path):
            self.error = "couldn't create file: Read-only file system"
            return
        try:
            self.final = fs.host_path(ev.path)
            self.final.parent.mkdir(parents=True, exist_ok=True)   # fixed_push_mkdir
            if self.final.is_dir():
                raise IsADirectoryError(errno.EISDIR, "Is a directory")
            self.tmp = self.final.with_name(f".{self.final.name}.hostctl-upload")
            self.fh = open(self.tmp, "wb")
            self.mode = stat_mod.S_IMODE(ev.mode) or 0o644
        except DevicePathError:
            self.error = "couldn't create file: Permission denied"
        except OSError as exc:
            self.error = f"couldn't create file: {exc.strerror}"

    def write(self, data: bytes) -> None:
        if self.fh is not None:
            try:
                self.fh.write(data)
            except OSError as exc:
                self.error = f"write failed: {exc.strerror}"
                self.abort()

    def finish(self, mtime: int) -> bytes:
        if self.error or self.fh is None:
            self.abort()
            return sync.reply_fail(self.error or "write failed")
        try:
            self.fh.close()
            os.chmod(self.tmp, self.mode)
            if os.geteuid() == 0:    # adbd's sync runs as the shell user: the file is the shell's
                os.chown(self.tmp, 2000, 2000)
            os.utime(self.tmp, (mtime, mtime))
            os.replace(self.tmp, self.final)
        except OSError as exc:
            self.abort()
            return sync.reply_fail(f"write failed: {exc.strerror}")
        return sync.reply_okay()

    def abort(self) -> None:
        if self.fh is not None:
            with contextlib.suppress(OSError):
                self.fh.close()
            self.fh = None
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                self.tmp.unlink()


async def _send_file(fs: DeviceFS, ev: sync.Recv, ch: Channel) -> None:
    if ev.flags:
        await ch.write(sync.reply_fail("compression is not supported by this device"))
        return
    try:
        fh = open(fs.host_path(ev.path), "rb")
    except DevicePathError:
        await ch.write(sync.reply_fail("open failed: Permission denied"))
        return
    except OSError as exc:
        await ch.write(sync.reply_fail(f"open failed: {exc.strerror}"))
        return
    block = 16 * sync.SYNC_DATA_MAX
    with fh:
        while True:
            try:
                data = fh.read(block)
            except OSError as exc:
                await ch.write(sync.reply_fail(f"read failed: {exc.strerror}"))
                return
            if not data:
                break
            out = bytearray()
            for i in range(0, len(data), sync.SYNC_DATA_MAX):
                out += sync.reply_data(data[i : i + sync.SYNC_DATA_MAX])
            await ch.write(bytes(out))
            if ch.remote_closed:
                return
    await ch.write(sync.reply_done())
