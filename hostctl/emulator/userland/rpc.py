"""The framework tools' channel: the multi-call client in the sandbox (native/framework.c) talks
to the handset model over /dev/socket/hostctl_framework. Frames are adb's shell-protocol-v2 frames
(id byte, uint32 LE length, data) with the ids listed in framework.c; ``FrameDecoder`` is the
sans-IO half, ``FrameworkServer`` runs one registered command per connection against a ``Ctx``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from ..shell.registry import COMMANDS, Caller, Ctx, ExitShell, StdinReader, Streams

if TYPE_CHECKING:
    from ..handset import VirtualHandset

log = logging.getLogger("hostctl.emulator.userland")

MAX_FRAME = 65536
SOCKET_NAME = "hostctl_framework"


class Frame(IntEnum):
    STDIN = 0
    STDOUT = 1
    STDERR = 2
    EXIT = 3
    CLOSE_STDIN = 4
    REQUEST = 6
    WANT_STDIN = 7
    SIGNAL = 8
    DIE = 9


class FrameError(ValueError):
    """A peer sent a frame that is not in the protocol."""


@dataclass(frozen=True)
class Request:
    cwd: str
    pid: int
    argv: list[str]


def encode(kind: Frame, data: bytes = b"") -> bytes:
    return struct.pack("<BI", kind, len(data)) + data


def chunks(kind: Frame, data: bytes) -> bytes:
    """``data`` as frames no larger than the client's buffer."""
    return b"".join(encode(kind, data[i:i + MAX_FRAME]) for i in range(0, len(data), MAX_FRAME))


def parse_request(data: bytes) -> Request:
    parts = data.split(b"\0")
    if len(parts) < 4 or parts[-1] != b"" or not parts[1].isdigit():
        raise FrameError("malformed request")
    text = [p.decode("utf-8", "surrogateescape") for p in parts[:-1]]
    return Request(cwd=text[0], pid=int(text[1]), argv=text[2:])


class FrameDecoder:
    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[Frame, bytes]]:
        self._buf += data
        out = []
        while len(self._buf) >= 5:
            kind, length = struct.unpack_from("<BI", self._buf)
            if length > MAX_FRAME or kind not in Frame._value2member_map_:
                raise FrameError(f"frame id {kind} length {length}")
            if len(self._buf) < 5 + length:
                break
            out.append((Frame(kind), bytes(self._buf[5:5 + length])))
            del self._buf[:5 + length]
        return out


RootRunner = Callable[[str, Ctx], Awaitable[int]]


class FrameworkServer:
    """Serves one handset's tools on a unix socket in the running event loop."""

    def __init__(self, handset: "VirtualHandset", path: str, env: dict[str, str],
                 run_as_root: RootRunner | None) -> None:
        self.handset = handset
        self.path = path
        self.env = env
        self.run_as_root = run_as_root
        self._server: asyncio.AbstractServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        # sun_path holds 108 bytes: a lab state folder deep in a temp dir (an audit's private
        # one, pytest's) is longer, so bind through the folder's /proc/self/fd alias
        folder, name = os.path.split(self.path)
        if len(os.fsencode(self.path)) < 100:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        else:
            fd = os.open(folder or ".", os.O_PATH | os.O_DIRECTORY)
            try:
                self._server = await asyncio.start_unix_server(self._serve, path=f"/proc/self/fd/{fd}/{name}")
            finally:
                os.close(fd)
        os.chmod(self.path, 0o666)      # the shell user (uid 2000) connects
        self.loop = asyncio.get_running_loop()

    def close(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve_one(reader, writer)
        except (FrameError, ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("%s: framework tool: %s", self.handset.label, exc)
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        frames: list[tuple[Frame, bytes]] = []
        while not frames:
            data = await asyncio.wait_for(reader.read(65536), 10)
            if not data:
                return
            frames = decoder.feed(data)
        kind, payload = frames.pop(0)
        if kind is not Frame.REQUEST:
            raise FrameError("first frame is not a request")
        req = parse_request(payload)
        sock = writer.get_extra_info("socket")
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
        if uid != 0:
            uid = 2000      # the shell user (under a user namespace the host sees the caller's uid)
        stdin: asyncio.Queue[bytes] = asyncio.Queue()
        asked = False

        def send(kind: Frame, data: bytes) -> None:
            if data and not writer.is_closing():
                writer.write(chunks(kind, data))

        async def read_chunk() -> bytes:
            nonlocal asked
            if not asked:      # the tool reads its stdin only from now on
                asked = True
                writer.write(encode(Frame.WANT_STDIN))
            return await stdin.get()

        ctx = Ctx(handset=self.handset, session=Caller(uid=uid, pid=req.pid), cwd=req.cwd,
                  env=dict(self.env), write_out=lambda d: send(Frame.STDOUT, d),
                  write_err=lambda d: send(Frame.STDERR, d), streams=Streams(StdinReader(read_chunk)),
                  run_as_root=self.run_as_root)
        name = req.argv[0]
        fn = COMMANDS.get(name)
        task = asyncio.ensure_future(self._run(fn, ctx, req.argv))
        died: list[int] = []

        def on_frame(kind: Frame, data: bytes) -> None:
            if kind is Frame.STDIN:
                if data:
                    stdin.put_nowait(data)
            elif kind is Frame.CLOSE_STDIN:
                stdin.put_nowait(b"")
            elif kind is Frame.SIGNAL and data:
                handler = ctx.extra.get("on_signal")
                if handler is not None and handler(data[0]):
                    return          # the command handles it (tcpdump ends and prints counts)
                died.append(data[0])
                task.cancel()

        for f in frames:
            on_frame(*f)

        async def pump() -> None:
            while (data := await reader.read(65536)):
                for f in decoder.feed(data):
                    on_frame(*f)
            stdin.put_nowait(b"")
            task.cancel()           # the tool process is gone (killed, or its pipe closed)

        pumping = asyncio.ensure_future(pump())
        try:
            rc = await task
        except asyncio.CancelledError:
            if not died:
                return
            rc = None
        finally:
            pumping.cancel()
        if died:
            writer.write(encode(Frame.DIE, bytes([died[0]])))
        else:
            writer.write(encode(Frame.EXIT, bytes([rc & 0xFF])))
        with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.drain(), 10)

    async def _run(self, fn, ctx: Ctx, argv: list[str]) -> int:
        name = argv[0]
        if fn is None:
            ctx.err(f"{name}: inaccessible or not found\n")
            return 127
        try:
            return await fn(ctx, argv)
        except ExitShell as exc:
            return exc.code
        except asyncio.CancelledError:
            raise
        except Exception as exc:       # a model bug prints like a crashed tool, never kills the server
            log.exception("%s: %s failed", self.handset.label, name)
            ctx.err(f"{name}: {type(exc).__name__}: {exc}\n")
            return 1
