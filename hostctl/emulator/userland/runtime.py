"""One handset's running userland: its sandbox (started once, kept), the launcher inside it that
forks a shell per request (native/zygote.c, reached over an inherited SOCK_SEQPACKET socket), and
the framework tools' server. A ``shell:`` request costs a fork+exec of mksh in a ready sandbox,
not a new sandbox.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import termios
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import facts, image, rootfs
from .mkshrc import mkshrc
from .rpc import SOCKET_NAME, FrameworkServer
from .sandbox import Limits, Mount, Op, SandboxSpec, render

if TYPE_CHECKING:
    from ..handset import VirtualHandset
    from ..shell.registry import Ctx

log = logging.getLogger("hostctl.emulator.userland")

SH = "/system/bin/sh"
LAUNCHER = "/sbin/adbd"
START_TIMEOUT = 10.0
# adbd's shell groups (AOSP adb/daemon/main.cpp drop_privileges, Android 11): input, log, adb,
# sdcard_rw, sdcard_r, net_bt_admin, net_bt, inet, net_bw_stats, readproc, uhid; KitKat's
# (adb.c) lacks readproc and uhid and has graphics, mount.
GROUPS_KITKAT = (1003, 1004, 1007, 1009, 1011, 1015, 1028, 3001, 3002, 3003, 3006)
GROUPS_MODERN = (1004, 1007, 1011, 1015, 1028, 3001, 3002, 3003, 3006, 3009, 3011)

# the launcher's own: to become the shell (SETUID, SETGID, SETPCAP: cut a root shell's bounding
# set), to signal it (KILL), and the file capabilities su's root shell keeps (zygote.c)
LAUNCHER_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_KILL", "CAP_CHOWN",
                 "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER")

_MSG_READY, _MSG_SPAWN, _MSG_SIGNAL, _MSG_STARTED, _MSG_FAILED, _MSG_EXITED = 0, 1, 2, 3, 4, 5


class UserlandError(RuntimeError):
    """The handset's sandbox could not start (what to install or enable is in the message)."""


def shell_env(handset: "VirtualHandset", *, interactive: bool = False, term: str | None = None) -> dict[str, str]:
    """The environment adbd gives a shell on the profile's release (init.environ.rc + adbd)."""
    sdk = handset.profile.sdk
    if sdk < 26:
        # KitKat init.environ.rc.in (Lollipop alike); adbd adds nothing but TERM for a pty
        env = {"PATH": "/sbin:/vendor/bin:/system/sbin:/system/bin:/system/xbin",
               "ANDROID_BOOTLOGO": "1", "ANDROID_ROOT": "/system", "ANDROID_ASSETS": "/system/app",
               "ANDROID_DATA": "/data", "ANDROID_STORAGE": "/storage",
               "EXTERNAL_STORAGE": "/storage/emulated/legacy", "ASEC_MOUNTPOINT": "/mnt/asec",
               "LOOP_MOUNTPOINT": "/mnt/obb",
               "BOOTCLASSPATH": "/system/framework/core.jar:/system/framework/conscrypt.jar:"
                                "/system/framework/okhttp.jar:/system/framework/core-junit.jar:"
                                "/system/framework/bouncycastle.jar:/system/framework/ext.jar:"
                                "/system/framework/framework.jar"}
    else:
        # Android 11 as the corpus's reference recorded it (adbd: HOME, USER, LOGNAME, SHELL,
        # HOSTNAME, TMPDIR; init.environ.rc: PATH, ANDROID_*, EXTERNAL_STORAGE)
        env = {"PATH": "/product/bin:/apex/com.android.runtime/bin:/apex/com.android.art/bin:"
                       "/system_ext/bin:/system/bin:/system/xbin:/odm/bin:/vendor/bin:/vendor/xbin",
               "HOME": "/", "USER": "shell", "LOGNAME": "shell", "SHELL": SH,
               "HOSTNAME": handset.getprop("ro.product.device") or "localhost",
               "TMPDIR": "/data/local/tmp", "ANDROID_DATA": "/data", "ANDROID_ROOT": "/system",
               "ANDROID_STORAGE": "/storage", "EXTERNAL_STORAGE": "/sdcard",
               "ANDROID_ASSETS": "/system/app", "ASEC_MOUNTPOINT": "/mnt/asec"}
    if term:
        env["TERM"] = term
    if interactive:
        env["ENV"] = "/system/etc/mkshrc"
    return env


def privileged() -> bool:
    return os.geteuid() == 0


def preflight() -> None:
    """Raises UserlandError saying what to enable when no sandbox can start on this machine."""
    missing = image.missing_tools() + [t for t in ("bwrap", "unshare") if shutil.which(t) is None]
    if missing:
        raise UserlandError(
            f"the emulated handsets run Android's shell in a bubblewrap sandbox; missing: {', '.join(missing)}. "
            "Install them: `make debian-clients` (apt-get install mksh toybox original-awk bubblewrap)")
    if privileged():
        return
    probe = subprocess.run(["bwrap", "--unshare-user", "--unshare-pid", "--ro-bind", "/", "/", "true"],
                           capture_output=True, text=True, timeout=10)
    if probe.returncode:
        raise UserlandError(
            "the emulated handsets' sandbox needs root or unprivileged user namespaces, and this "
            f"machine allows neither ({probe.stderr.strip()}). Enable them with "
            "`sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=15000` "
            "(and, on Ubuntu 24.04+, `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`), "
            "or run the lab as root")


class _Child:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.started: asyncio.Future[int] = loop.create_future()
        self.exited: asyncio.Future[int] = loop.create_future()


class Userland:
    """The sandbox of one handset and its launcher; see the module docstring."""

    def __init__(self, handset: "VirtualHandset") -> None:
        self.handset = handset
        # a short host path: a unix socket's path is at most 107 bytes
        self.run_dir = Path(tempfile.mkdtemp(prefix="hostctl-ul-"))
        (self.run_dir / "socket").mkdir()
        (self.run_dir / "proc").mkdir()
        # explicit modes: a detached lab runs with umask 077, and the shell user (uid 2000) must
        # reach the framework socket
        for d in (self.run_dir, self.run_dir / "socket"):
            d.chmod(0o755)
        self._lock = threading.RLock()
        self._proc: subprocess.Popen | None = None
        self._ctl: socket.socket | None = None
        self._children: dict[int, _Child] = {}
        self._next_id = 1
        self._server: FrameworkServer | None = None
        self._closed = False
        self.limits = Limits()        # set before the first command to change the bounds
        self._finalizer = weakref.finalize(self, _cleanup, self.run_dir, [None])

    # --- the sandbox -------------------------------------------------------------------------

    def spec(self, img: image.SystemImage) -> SandboxSpec:
        h = self.handset
        root = h.fs.root
        mounts = [Mount(Op.RO_BIND, "/", str(root)),
                  Mount(Op.BIND, "/data", str(root / "data")),
                  Mount(Op.BIND, "/sdcard", str(root / "sdcard")),
                  Mount(Op.BIND, "/storage/emulated/0", str(root / "sdcard")),
                  Mount(Op.BIND, "/storage/emulated/legacy", str(root / "sdcard")),
                  Mount(Op.RO_BIND, "/system/bin", str(img.bin))]
        mounts += [Mount(Op.RO_BIND, f"/{d}", str(img.root / d)) for d in img.lib_dirs()]
        mounts.append(Mount(Op.RO_BIND, LAUNCHER, str(img.launcher)))
        if (root / "bugreports").is_dir():    # the shell app's (uid 2000) bugreport directory
            mounts.append(Mount(Op.BIND, "/bugreports", str(root / "bugreports")))
        for tool in ("su", "tcpdump"):   # the profile's own binaries (stubs on disk) run the model's
            if (root / "system/xbin" / tool).is_file():
                mounts.append(Mount(Op.RO_BIND, f"/system/xbin/{tool}", str(img.framework)))
        mounts += [Mount(Op.DEV, "/dev"),
                   Mount(Op.BIND, "/dev/socket", str(self.run_dir / "socket")),
                   Mount(Op.PROC, "/proc")]
        abi = h.getprop("ro.product.cpu.abi") or "armeabi-v7a"
        for dest, src in sorted(facts.write_proc(self.run_dir / "proc", abi).items()):
            mounts.append(Mount(Op.RO_BIND, dest, src))
        groups = GROUPS_KITKAT if h.profile.sdk < 26 else GROUPS_MODERN
        boot = None
        if privileged():     # /proc/uptime counts from the handset's boot: the sandbox's start
            boot = -int(time.clock_gettime(time.CLOCK_BOOTTIME))
        return SandboxSpec(hostname="localhost", mounts=tuple(mounts), launcher=LAUNCHER,
                           groups=(2000, *groups), limits=self.limits, boottime_offset=boot,
                           user_namespace=not privileged(),
                           keep_caps=LAUNCHER_CAPS)

    def _prepare_root(self) -> None:
        root = self.handset.fs.root
        rootfs.prepare(root, own=privileged())
        if self.handset.profile.sdk >= 26:
            # /bugreports (8.0+ init.rc: a link to com.android.shell's files/bugreports; here its
            # own directory, bound writable): what bugreportz writes, the shell may remove
            rootfs.shell_dir(root / "bugreports", own=privileged())
        rc = root / "system/etc/mkshrc"
        text = mkshrc(self.handset.profile.sdk)
        if not rc.exists() or rc.read_text() != text:
            rc.write_text(text)
            rc.chmod(0o644)

    def start(self) -> None:
        with self._lock:
            if self._closed:
                raise UserlandError(f"{self.handset.label}: the handset is closed")
            if self._proc is not None and self._proc.poll() is None and self._ctl is not None:
                return
            self._prepare_root()
            from ..shell.registry import COMMANDS   # the framework tools' names
            h = self.handset
            # toybox's timeout came with Android 6.0; rooted KitKat builds carry one (busybox)
            absent = ("timeout",) if h.profile.sdk < 23 and not h.profile.su else ()
            from ..shell import cmd_android   # framework tools a release does not have yet
            absent += tuple(t for t, sdk in (("cmd", cmd_android.CMD_MIN_SDK),
                                             ("bugreportz", cmd_android.BUGREPORTZ_MIN_SDK))
                            if h.profile.sdk < sdk)
            img = image.build(tuple(sorted(n for n in COMMANDS if n not in TOYBOX_OWNED + absent)),
                              absent=absent)
            rootfs.mountpoints(self.handset.fs.root, img.lib_dirs(), [LAUNCHER.lstrip("/")])
            argv = render(self.spec(img))
            parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            cfd = child.fileno()

            def at_fd3() -> None:
                os.dup2(cfd, 3)

            try:
                self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.PIPE, pass_fds=(3,), preexec_fn=at_fd3,
                                              start_new_session=True)
            except OSError as exc:
                raise UserlandError(f"{self.handset.label}: cannot start the sandbox: {exc}") from exc
            finally:
                child.close()
            parent.settimeout(START_TIMEOUT)
            try:
                ready = parent.recv(16)
            except OSError:
                ready = b""
            if len(ready) != 16:
                self._proc.kill()
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self._proc.wait()
                raise UserlandError(f"{self.handset.label}: the sandbox did not start: {err.strip()}")
            parent.settimeout(None)
            self._ctl = parent
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _cleanup, self.run_dir, [self._proc])
            threading.Thread(target=self._read_control, args=(parent, self._proc),
                             name=f"userland-{self.handset.label}", daemon=True).start()
            log.info("%s: sandbox up (%s)", self.handset.label, " ".join(argv))

    def _read_control(self, ctl: socket.socket, proc: subprocess.Popen) -> None:
        while True:
            try:
                msg = ctl.recv(16)
            except OSError:
                msg = b""
            if len(msg) != 16:
                break
            kind, cid, value, _ = struct.unpack("<4I", msg)
            with self._lock:
                child = self._children.get(cid)
                if kind in (_MSG_FAILED, _MSG_EXITED):
                    self._children.pop(cid, None)
            if child is None:
                continue
            if kind == _MSG_STARTED:
                _resolve(child.loop, child.started, value)
            elif kind == _MSG_FAILED:
                _fail(child.loop, child.started, UserlandError(f"fork failed: {os.strerror(value)}"))
                _resolve(child.loop, child.exited, 126)
            elif kind == _MSG_EXITED:
                _resolve(child.loop, child.started, 0)
                _resolve(child.loop, child.exited, _exit_code(value))
        with self._lock:     # the sandbox is gone: everything waiting ends
            children, self._children = self._children, {}
            if self._ctl is ctl:
                self._ctl = None
        for child in children.values():
            _fail(child.loop, child.started, UserlandError("the handset's sandbox stopped"))
            _resolve(child.loop, child.exited, 255)

    async def _ensure(self) -> None:
        loop = asyncio.get_running_loop()
        if self._ctl is None:
            self.start()
        server = self._server
        if server is None or server.loop is not loop or loop.is_closed():
            if server is not None:
                server.close()
            self._server = FrameworkServer(self.handset, str(self.run_dir / "socket" / SOCKET_NAME),
                                           shell_env(self.handset), self.run_as_root)
            await self._server.start()

    async def spawn(self, argv: list[str], fds: tuple[int, int, int], *, env: dict[str, str],
                    uid: int = 2000, pty: bool = False, cwd: str = "/") -> tuple[int, _Child]:
        """Starts argv in the sandbox on these fds; returns (request id, child)."""
        await self._ensure()
        rootfs.close_app_dirs(self.handset.fs.root)
        loop = asyncio.get_running_loop()
        child = _Child(loop)
        payload = b"\0".join(s.encode("utf-8", "surrogateescape") for s in
                             [cwd, *argv, "", *(f"{k}={v}" for k, v in env.items()), ""]) + b"\0"
        with self._lock:
            cid = self._next_id
            self._next_id += 1
            self._children[cid] = child
            ctl = self._ctl
            if ctl is None:
                raise UserlandError("the handset's sandbox stopped")
            msg = struct.pack("<4I", _MSG_SPAWN, cid, uid, 1 if pty else 0) + payload
            ctl.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        await child.started
        return cid, child

    def signal(self, cid: int, sig: int) -> None:
        with self._lock:
            if self._ctl is not None and cid in self._children:
                with contextlib.suppress(OSError):
                    self._ctl.send(struct.pack("<4I", _MSG_SIGNAL, cid, sig, 0))

    # --- running commands ----------------------------------------------------------------------

    async def run(self, command: str, io: Any, *, pty: bool = False, term: str | None = None,
                  uid: int = 2000) -> int:
        """``sh -c command`` (or an interactive ``sh -`` when command is empty) with io's streams."""
        interactive = not command
        argv = [SH, "-"] if interactive else [SH, "-c", command]
        env = shell_env(self.handset, interactive=interactive and pty, term=term or ("vt100" if pty else None))
        if pty:
            return await self._run_pty(argv, env, io, uid)
        return await self._run_pipes(argv, env, io, uid)

    async def _run_pipes(self, argv: list[str], env: dict[str, str], io: Any, uid: int) -> int:
        r_in, w_in = os.pipe()
        r_out, w_out = os.pipe()
        r_err, w_err = os.pipe()
        try:
            cid, child = await self.spawn(argv, (r_in, w_out, w_err), env=env, uid=uid)
        finally:
            for fd in (r_in, w_out, w_err):
                os.close(fd)
        for fd in (w_in, r_out, r_err):
            os.set_blocking(fd, False)
        stdin = _Fd(w_in)
        feeding = asyncio.ensure_future(_feed(io, stdin))
        outs = [asyncio.ensure_future(_drain(r_out, io.write_stdout, io)),
                asyncio.ensure_future(_drain(r_err, io.write_stderr, io, MkshPrefixFilter()))]
        try:
            rc = await child.exited
            await asyncio.gather(*outs)    # as adbd: until every writer of the pipes is gone
            return rc
        except asyncio.CancelledError:
            self._hang_up(cid)
            raise
        finally:
            feeding.cancel()
            for t in outs:
                t.cancel()
            for fd in (r_out, r_err):
                os.close(fd)
            stdin.close()

    async def _run_pty(self, argv: list[str], env: dict[str, str], io: Any, uid: int) -> int:
        master, slave = os.openpty()
        _set_window(master, 24, 80)
        try:
            cid, child = await self.spawn(argv, (slave, slave, slave), env=env, uid=uid, pty=True)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)

        def window(data: bytes) -> None:
            from ..adb import shellv2
            size = shellv2.parse_window_size(data)
            if size:
                _set_window(master, size[0], size[1])

        with contextlib.suppress(AttributeError):
            io.on_window_size = window
        feeding = asyncio.ensure_future(_feed(io, _Fd(master, owned=False), eof=b"\x04"))
        out = asyncio.ensure_future(_drain(master, io.write_stdout, io, MkshPrefixFilter()))
        try:
            rc = await child.exited
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(out), 2)
            return rc
        except asyncio.CancelledError:
            self._hang_up(cid)
            raise
        finally:
            feeding.cancel()
            out.cancel()
            os.close(master)

    def _hang_up(self, cid: int) -> None:
        """The client went away: SIGHUP as a closed terminal sends, SIGKILL a moment later."""
        self.signal(cid, 1)
        threading.Timer(1.0, self.signal, (cid, 9)).start()

    async def run_as_root(self, script: str, ctx: "Ctx") -> int:
        """su: the script in a root shell of the sandbox (uid 0, no capabilities)."""
        class _CtxIO:
            async def read_stdin(self) -> bytes:
                return b""

            def write_stdout(self, data: bytes) -> None:
                ctx.out(data)

            def write_stderr(self, data: bytes) -> None:
                ctx.err(data)

        env = {**shell_env(self.handset), "USER": "root", "LOGNAME": "root"}
        return await self._run_pipes([SH, "-c", script], env, _CtxIO(), 0)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._server is not None:
                self._server.close()
            self._finalizer()


TOYBOX_OWNED = ("id", "whoami", "kill", "timeout", "su", "tcpdump")


def _cleanup(run_dir: Path, procs: list) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, 9)
            with contextlib.suppress(Exception):
                proc.wait(5)
    shutil.rmtree(run_dir, ignore_errors=True)


def _exit_code(status: int) -> int:
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return (128 + os.WTERMSIG(status)) & 0xFF
    return 255


def _resolve(loop: asyncio.AbstractEventLoop, fut: asyncio.Future, value: Any) -> None:
    def set_it() -> None:
        if not fut.done():
            fut.set_result(value)
    with contextlib.suppress(RuntimeError):   # the loop is closed: nobody waits
        loop.call_soon_threadsafe(set_it)


def _fail(loop: asyncio.AbstractEventLoop, fut: asyncio.Future, exc: Exception) -> None:
    def set_it() -> None:
        if not fut.done():
            fut.set_exception(exc)
            fut.exception()     # retrieved: a failed start nobody awaits is not an error
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(set_it)


def _set_window(fd: int, rows: int, cols: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def _wait_fd(fd: int, writable: bool = False) -> None:
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if writable else (loop.add_reader, loop.remove_reader)
    add(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        remove(fd)


async def _drain(fd: int, write, io: Any, filt: MkshPrefixFilter | None = None) -> None:
    """Copies fd to write() until EOF (or EIO: a pty whose last slave is closed)."""
    drain = getattr(io, "drain", None)
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            await _wait_fd(fd)
            continue
        except OSError:
            data = b""
        if not data:
            if filt is not None and (rest := filt.flush()):
                write(rest)
            return
        if filt is not None:
            data = filt.feed(data)
        if data:
            write(data)
        if drain is not None:
            await drain()


class MkshPrefixFilter:
    """Debian's mksh R59c starts its own diagnostics with "E: " or "W: " (a Debian build choice;
    Android's mksh prints ``/system/bin/sh: x: inaccessible or not found``). Drops that prefix
    where a line starts with it and the shell's name, as a stream (chunks split anywhere)."""

    PREFIXES = (b"E: " + SH.encode() + b": ", b"W: " + SH.encode() + b": ")
    _LONGEST = max(len(p) for p in PREFIXES)

    def __init__(self) -> None:
        self._held = b""          # bytes at a line start that may still become a prefix
        self._at_start = True

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        data = self._held + data
        self._held = b""
        i = 0
        while i < len(data):
            if self._at_start:
                rest = data[i:i + self._LONGEST]
                if any(p.startswith(rest) for p in self.PREFIXES) and len(rest) < self._LONGEST \
                        and i + len(rest) == len(data):
                    self._held = rest           # wait for more bytes to decide
                    break
                if rest.startswith((b"E: ", b"W: ")) and any(rest.startswith(p) for p in self.PREFIXES):
                    i += 3                       # drop "E: ", keep the shell's name
                self._at_start = False
            nl = data.find(b"\n", i)
            end = len(data) if nl < 0 else nl + 1
            out += data[i:end]
            i = end
            self._at_start = nl >= 0
        return bytes(out)

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held


class _Fd:
    """An fd closed once, by whoever is done with it first."""

    def __init__(self, fd: int, owned: bool = True) -> None:
        self.fd = fd
        self.owned = owned

    def close(self) -> None:
        if self.owned and self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd = -1


async def _feed(io: Any, target: _Fd, eof: bytes | None = None) -> None:
    """Copies io's stdin to the fd; at its end closes a pipe, or sends ^D to a pty."""
    try:
        while (data := await io.read_stdin()):
            view = memoryview(data)
            while view and target.fd >= 0:
                try:
                    view = view[os.write(target.fd, view):]
                except BlockingIOError:
                    await _wait_fd(target.fd, writable=True)
        if eof is not None and target.fd >= 0:
            with contextlib.suppress(OSError):
                os.write(target.fd, eof)
    except OSError:
        pass   # the shell closed its stdin
    finally:
        if eof is None:
            target.close()


_USERLANDS: "weakref.WeakKeyDictionary[VirtualHandset, Userland]" = weakref.WeakKeyDictionary()
_REGISTRY_LOCK = threading.Lock()


def userland_of(handset: "VirtualHandset") -> Userland:
    with _REGISTRY_LOCK:
        if getattr(handset, "_closed", False):
            raise UserlandError(f"{handset.label}: the handset is closed")
        ul = _USERLANDS.get(handset)
        if ul is None or ul._closed:
            ul = _USERLANDS[handset] = Userland(handset)
        return ul


def close_userland(handset: "VirtualHandset") -> None:
    """Stops the handset's sandbox, if it has one (VirtualHandset.close calls this)."""
    with _REGISTRY_LOCK:
        ul = _USERLANDS.pop(handset, None)
    if ul is not None:
        ul.close()
