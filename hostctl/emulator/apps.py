"""The Frida side of an emulated handset: its portal and its app processes.

Each emulated handset owns one :class:`HandsetPortal` (a ``frida.PortalService`` whose cluster and
control endpoints listen on 127.0.0.1, ephemeral ports). Each app of the handset is an
:class:`AppProcess`: a real OS process running :mod:`hostctl.emulator.app_main`, which the lab
attaches locally with Frida and joins to the handset's portal. A controller that connects to the
portal's control endpoint -- directly (``add_remote_device``) or through the handset's adb
``tcp:27042`` stream -- then sees the app as frida-server on an Android handset lists it (package
name as identifier, label as name and process name) with its real pid, attaches to it, loads
scripts and gets messages.

Identity: when Frida's agent joins a portal it reports ``readlink("/proc/self/exe")`` as the
application identifier and its basename as the name (frida-core ``lib/agent/agent.vala``
``join_portal`` -> ``lib/payload/process-glue.c`` ``frida_try_get_executable_path``); argv[0],
``PR_SET_NAME`` and ``/proc/self/comm`` are not consulted and no API overrides it. So app processes
join through the portal's :class:`~hostctl.emulator.frida_bridge.JoinProxy`, which rewrites that
``Join`` call to the package name and label registered for the pid. The app still runs through a
hard link of the interpreter named after the package (``<state_dir>/bin/com.android.mms``; a copy
if a hard link is impossible), which makes ``comm`` the package name (15 characters at most, as on
Android); argv[0] is the package name too, so ``/proc/PID/cmdline`` starts with it like a
zygote-forked app's.
"""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import frida

from .frida_bridge import AppIdentity, JoinProxy

__all__ = ["AppProcessError", "PortalError", "HandsetPortal", "AppProcess"]

LOOPBACK = "127.0.0.1"
APP_MAIN = Path(__file__).with_name("app_main.py")
DEFAULT_TIMEOUT = 10.0

T = TypeVar("T")


class PortalError(RuntimeError):
    """The handset's portal could not be started."""


class AppProcessError(RuntimeError):
    """An app process could not be started, attached or joined (carries package and pid)."""

    def __init__(self, message: str, *, package: str, pid: int | None = None) -> None:
        super().__init__(f"{package} (pid {pid}): {message}")
        self.package = package
        self.pid = pid


def _with_timeout(fn: Callable[[], T], timeout: float) -> T:
    """Run a blocking frida call; cancel it after ``timeout`` s (raises OperationCancelledError)."""
    cancellable = frida.Cancellable()
    timer = threading.Timer(timeout, cancellable.cancel)
    timer.daemon = True
    timer.start()
    try:
        with cancellable:
            return fn()
    finally:
        timer.cancel()


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a private adb server, a portal, a test)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class HandsetPortal:
    """One handset's ``frida.PortalService``: cluster and control endpoints on 127.0.0.1.

    Frida treats port 0 as "default port" (27052/27042), so ephemeral ports are picked by binding
    port 0 ourselves and handing the number over; a lost race (address in use) is retried.
    """

    START_ATTEMPTS = 20

    def __init__(self, *, name: str) -> None:
        self.name = name
        self.cluster_port: int = 0
        self.control_port: int = 0
        self._service: frida.PortalService | None = None
        self._join_proxy: JoinProxy | None = None  # agents join through it (frida_bridge)
        self._cond = threading.Condition()
        self._nodes: dict[int, str] = {}  # pid -> application identifier, of joined nodes

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._service is not None:
            return
        last_error: Exception | None = None
        for _ in range(self.START_ATTEMPTS):
            cluster, control = free_loopback_port(), free_loopback_port()
            if cluster == control:
                continue
            service = frida.PortalService(
                frida.EndpointParameters(address=LOOPBACK, port=cluster),
                frida.EndpointParameters(address=LOOPBACK, port=control),
            )
            service.on("node-joined", self._on_node_joined)
            service.on("node-left", self._on_node_left)
            try:
                service.start()
            except Exception as e:
                # Lost the race for a port. Note: Frida keeps an endpoint it did bind listening
                # (stop() refuses a service that never started) -- a rare, small leak.
                try:
                    service.stop()
                except Exception:  # noqa: BLE001 - clean-up of a failed start; the start's error is what matters
                    pass
                if not isinstance(e, frida.AddressInUseError) and "in use" not in str(e).lower():
                    raise PortalError(f"portal {self.name}: {e}") from e
                last_error = e
                continue
            self._service = service
            self.cluster_port, self.control_port = cluster, control
            proxy = JoinProxy(lambda: (LOOPBACK, self.cluster_port), name=self.name)
            try:
                proxy.start()
            except OSError as e:
                self.stop()
                raise PortalError(f"portal {self.name}: join proxy: {e}") from e
            self._join_proxy = proxy
            return
        raise PortalError(f"portal {self.name}: no free port pair on {LOOPBACK}: {last_error}")

    def stop(self) -> None:
        proxy, self._join_proxy = self._join_proxy, None
        if proxy is not None:
            proxy.stop()
        service, self._service = self._service, None
        if service is None:
            return
        try:
            _with_timeout(service.stop, 5.0)
        except Exception:  # noqa: BLE001 - stopping never raises; the portal is gone either way
            pass
        with self._cond:
            self._nodes.clear()
            self._cond.notify_all()

    def __enter__(self) -> HandsetPortal:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state --------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._service is not None

    @property
    def cluster_address(self) -> str:
        """What app processes pass to ``Session.join_portal``: the join proxy in front of the
        cluster endpoint, which gives a registered app its package name and label."""
        port = self._join_proxy.port if self._join_proxy is not None else self.cluster_port
        return f"{LOOPBACK}:{port}"

    def register_app(self, ident: AppIdentity) -> None:
        """The next join of ``ident.pid`` from ``ident.executable`` shows ``ident.package`` as
        its identifier and ``ident.label`` as its name (as frida-server on Android lists apps)."""
        if self._join_proxy is None:
            raise PortalError(f"portal {self.name} is not running")
        self._join_proxy.register(ident)

    def unregister_app(self, pid: int) -> None:
        if self._join_proxy is not None:
            self._join_proxy.unregister(pid)

    @property
    def control_address(self) -> str:
        """What a controller connects to (``add_remote_device``; the adb tcp:27042 bridge target)."""
        return f"{LOOPBACK}:{self.control_port}"

    def members(self) -> dict[int, str]:
        """Joined processes as seen by the portal: pid -> application identifier."""
        with self._cond:
            return dict(self._nodes)

    def wait_joined(self, pid: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: pid in self._nodes, timeout)

    def wait_left(self, pid: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: pid not in self._nodes, timeout)

    def _on_node_joined(self, connection_id: int, application: Any) -> None:
        with self._cond:
            self._nodes[application.pid] = application.identifier
            self._cond.notify_all()

    def _on_node_left(self, connection_id: int, application: Any) -> None:
        with self._cond:
            self._nodes.pop(application.pid, None)
            self._cond.notify_all()


class AppProcess:
    """One app of an emulated handset: a real OS process joined to the handset's portal."""

    STARTUP_TIMEOUT = DEFAULT_TIMEOUT  # interpreter up and "ready" on the control channel
    ATTACH_TIMEOUT = DEFAULT_TIMEOUT
    JOIN_TIMEOUT = DEFAULT_TIMEOUT
    STOP_GRACE = 2.0

    def __init__(
        self,
        *,
        package: str,
        portal: HandsetPortal,
        state_dir: Path,
        log_port: int | None = None,
        env: dict | None = None,
        label: str | None = None,
    ) -> None:
        if not package or "/" in package or package in (".", ".."):
            raise ValueError(f"invalid package name: {package!r}")
        self.package = package
        self.label = label or package  # the app's label: Frida's name for the app and its process
        self.portal = portal
        self.state_dir = Path(state_dir)
        self.log_port = log_port
        self.env = dict(env or {})
        self._popen: subprocess.Popen | None = None
        self._ctl: socket.socket | None = None
        self._ctl_buf = b""
        self._session: Any = None
        self._membership: Any = None
        self._lock = threading.RLock()
        self._next_id = 1
        self.events: list[dict] = []  # unsolicited lines from the app (e.g. "ready")
        # once started, a reader thread owns the control channel: replies wake their request,
        # and the app's own calls into the handset ({"call": N, "op": ...}) go to ``on_call``
        self.on_call: Callable[[dict], Any] | None = None
        self._reader: threading.Thread | None = None
        self._write_lock = threading.Lock()
        self._replies: dict[int, dict] = {}
        self._reply_cv = threading.Condition()
        self._calls: Any = None

    # -- public state -------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    @property
    def log_path(self) -> Path:
        """The app's stdout/stderr (interpreter errors, Frida agent diagnostics)."""
        return self.state_dir / f"{self.package}.log"

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self.alive:
                return
            self._cleanup()
            if not self.portal.running:
                raise AppProcessError("portal is not running", package=self.package)
            self._launch()
            pid = self.pid
            try:
                self._wait_ready()
                self._attach_and_join()
                self._start_reader()
            except AppProcessError:
                self.stop()
                raise
            except BaseException as e:
                self.stop()
                raise AppProcessError(f"start failed: {e}", package=self.package, pid=pid) from e

    def stop(self) -> None:
        """Detach, terminate the OS process by pid, reap it. Never raises."""
        with self._lock:
            session, self._session, self._membership = self._session, None, None
            if session is not None:
                try:
                    _with_timeout(session.detach, 2.0)
                except Exception:  # noqa: BLE001 - stop() never raises; the process is killed below anyway
                    pass
            popen = self._popen
            if popen is not None and popen.poll() is None:
                try:
                    popen.send_signal(signal.SIGTERM)
                    popen.wait(self.STOP_GRACE)
                except subprocess.TimeoutExpired:
                    try:
                        popen.kill()
                        popen.wait(self.STOP_GRACE)
                    except Exception:  # noqa: BLE001 - stop() never raises
                        pass
                except Exception:  # noqa: BLE001 - stop() never raises
                    pass
            if popen is not None:
                self.portal.unregister_app(popen.pid)
            self._cleanup()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> AppProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control channel ----------------------------------------------------------------------
    def request(self, cmd: str, timeout: float = 5.0, **fields: Any) -> Any:
        """Send ``{"cmd": cmd, ...}`` to the app; return its ``result`` (AppProcessError if not ok)."""
        if self._reader is not None:
            return self._request_via_reader(cmd, timeout, fields)
        with self._lock:
            ctl = self._ctl
            if ctl is None or not self.alive:
                raise AppProcessError("not running", package=self.package, pid=self.pid)
            rid = self._next_id
            self._next_id += 1
            line = json.dumps({**fields, "id": rid, "cmd": cmd}, separators=(",", ":")) + "\n"
            deadline = time.monotonic() + timeout
            try:
                ctl.sendall(line.encode())
                while True:
                    msg = self._read_line(deadline)
                    if msg.get("id") == rid and "ok" in msg:
                        break
                    self.events.append(msg)
            except (OSError, ValueError) as e:
                raise AppProcessError(f"{cmd}: {e}", package=self.package, pid=self.pid) from e
            if not msg["ok"]:
                raise AppProcessError(f"{cmd}: {msg.get('error')}", package=self.package, pid=self.pid)
            return msg.get("result")

    def notify(self, cmd: str, **fields: Any) -> None:
        """Send a request without waiting for its answer (the lab's event loop must not block on
        an app that may call back into the lab)."""
        self._send({**fields, "id": self._new_id(), "cmd": cmd, "noreply": True})

    def _new_id(self) -> int:
        with self._lock:
            rid = self._next_id
            self._next_id += 1
            return rid

    def _send(self, obj: dict) -> None:
        ctl = self._ctl
        if ctl is None or not self.alive:
            raise AppProcessError("not running", package=self.package, pid=self.pid)
        data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        try:
            with self._write_lock:
                ctl.sendall(data)
        except OSError as e:
            raise AppProcessError(f"control channel: {e}", package=self.package, pid=self.pid) from e

    def _request_via_reader(self, cmd: str, timeout: float, fields: dict) -> Any:
        rid = self._new_id()
        self._send({**fields, "id": rid, "cmd": cmd})
        deadline = time.monotonic() + timeout
        with self._reply_cv:
            while rid not in self._replies:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._reader is None or not self.alive:
                    raise AppProcessError(f"{cmd}: no reply on the control channel", package=self.package, pid=self.pid)
                self._reply_cv.wait(min(remaining, 0.2))
            msg = self._replies.pop(rid)
        if not msg["ok"]:
            raise AppProcessError(f"{cmd}: {msg.get('error')}", package=self.package, pid=self.pid)
        return msg.get("result")

    def _start_reader(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._calls = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"{self.package}-calls")
        if self._ctl is not None:
            self._ctl.settimeout(None)  # the reader waits with select; writes block briefly
        self._reader = threading.Thread(target=self._read_loop, name=f"{self.package}-ctl", daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        ctl = self._ctl
        buf = self._ctl_buf
        self._ctl_buf = b""
        while ctl is not None and self._ctl is ctl:
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    self._dispatch(line)
            try:
                ready, _, _ = select.select([ctl], [], [], 0.5)
                if not ready:
                    continue
                data = ctl.recv(65536)
            except (OSError, ValueError):
                break
            if not data:
                break
            buf += data
        with self._reply_cv:
            self._reply_cv.notify_all()

    def _dispatch(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        if "call" in msg:
            self._calls.submit(self._answer_call, msg)
        elif "ok" in msg and isinstance(msg.get("id"), int):
            with self._reply_cv:
                self._replies[msg["id"]] = msg
                if len(self._replies) > 1000:  # answers to notify() nobody collects
                    for k in sorted(self._replies)[:500]:
                        self._replies.pop(k, None)
                self._reply_cv.notify_all()
        else:
            self.events.append(msg)

    def _answer_call(self, msg: dict) -> None:
        try:
            if self.on_call is None:
                raise RuntimeError("the lab takes no calls from this app")
            reply = {"reply": msg["call"], "ok": True, "result": self.on_call(msg)}
        except Exception as e:  # noqa: BLE001 - the app gets the error; the lab goes on
            reply = {"reply": msg.get("call"), "ok": False, "error": f"{type(e).__name__}: {e}"}
        try:
            self._send(reply)
        except AppProcessError:
            pass

    def ping(self, timeout: float = 5.0) -> dict:
        return self.request("ping", timeout=timeout)

    def _read_line(self, deadline: float) -> dict:
        assert self._ctl is not None
        while b"\n" not in self._ctl_buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no reply on the control channel")
            self._ctl.settimeout(remaining)
            try:
                data = self._ctl.recv(65536)
            except TimeoutError:
                raise TimeoutError("no reply on the control channel") from None
            if not data:
                raise ConnectionError("control channel closed (process exited?)")
            self._ctl_buf += data
        line, self._ctl_buf = self._ctl_buf.split(b"\n", 1)
        return json.loads(line)

    # -- internals ----------------------------------------------------------------------------
    def _launch(self) -> None:
        exe, extra_env = self._named_interpreter()
        env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TMPDIR", "TZ") if k in os.environ}
        env.update(extra_env)
        env.update({"ANDROID_PACKAGE": self.package, "HOME": str(self.state_dir)})
        env.update({str(k): str(v) for k, v in self.env.items()})
        lab_end, app_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        args = [
            self.package,
            "-S",
            "-I",
            str(APP_MAIN),
            f"package={self.package}",
            f"ctl={app_end.fileno()}",
        ]
        if self.log_port:
            args.append(f"log={int(self.log_port)}")
        try:
            with open(self.log_path, "ab") as log:
                self._popen = subprocess.Popen(
                    args,
                    executable=str(exe),
                    pass_fds=(app_end.fileno(),),
                    env=env,
                    cwd=str(self.state_dir),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
        except OSError as e:
            lab_end.close()
            raise AppProcessError(f"cannot launch {exe}: {e}", package=self.package) from e
        finally:
            app_end.close()
        self._ctl = lab_end
        self._ctl_buf = b""
        self.events = []

    def _named_interpreter(self) -> tuple[Path, dict[str, str]]:
        """``<state_dir>/bin/<package>``: the running interpreter under the package's name."""
        real = Path(os.path.realpath(sys.executable))
        bindir = self.state_dir / "bin"
        bindir.mkdir(parents=True, exist_ok=True)
        exe = bindir / self.package
        try:
            same = exe.exists() and os.path.samefile(exe, real)
        except OSError:
            same = False
        if not same and not (exe.exists() and _same_content(exe, real)):
            tmp = bindir / f".{self.package}.{os.getpid()}.{id(self):x}.tmp"
            try:
                tmp.unlink(missing_ok=True)
                try:
                    os.link(real, tmp)
                except OSError as e:
                    if e.errno not in (errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP):
                        raise
                    shutil.copy2(real, tmp)  # other file system: a copy (pages not shared)
                os.replace(tmp, exe)
            finally:
                tmp.unlink(missing_ok=True)
        # The interpreter finds its standard library through this, wherever the link lives.
        cfg = bindir / "pyvenv.cfg"
        want = f"home = {real.parent}\ninclude-system-site-packages = false\n"
        if not cfg.exists() or cfg.read_text() != want:
            cfg.write_text(want)
        extra: dict[str, str] = {}
        libdir = real.parent.parent / "lib"  # $ORIGIN/../lib RUNPATH builds (python-build-standalone)
        if libdir.is_dir() and any(p.name.startswith("libpython") for p in libdir.iterdir()):
            paths = [str(libdir)] + [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
            extra["LD_LIBRARY_PATH"] = ":".join(paths)
        return exe, extra

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.STARTUP_TIMEOUT
        try:
            msg = self._read_line(deadline)
        except (OSError, ValueError) as e:
            raise AppProcessError(
                f"did not become ready: {e}; exit code {self.returncode}; log tail: {self._log_tail()!r}",
                package=self.package,
                pid=self.pid,
            ) from e
        if msg.get("event") != "ready" or msg.get("pid") != self.pid:
            raise AppProcessError(f"unexpected first message {msg!r}", package=self.package, pid=self.pid)
        self.events.append(msg)

    def _attach_and_join(self) -> None:
        pid = self.pid
        assert pid is not None
        try:
            session = _with_timeout(lambda: frida.get_local_device().attach(pid), self.ATTACH_TIMEOUT)
        except frida.OperationCancelledError as e:
            raise AppProcessError(
                f"attach timed out after {self.ATTACH_TIMEOUT:g} s", package=self.package, pid=pid
            ) from e
        except Exception as e:
            raise AppProcessError(f"attach failed: {e}", package=self.package, pid=pid) from e
        self._session = session
        address = self.portal.cluster_address
        try:  # what the agent will report (agent.vala join_portal): readlink("/proc/self/exe")
            executable = os.readlink(f"/proc/{pid}/exe")
        except OSError as e:
            raise AppProcessError(f"cannot read /proc/{pid}/exe: {e}", package=self.package, pid=pid) from e
        self.portal.register_app(AppIdentity(pid=pid, executable=executable, package=self.package, label=self.label))
        try:
            self._membership = _with_timeout(lambda: session.join_portal(address), self.JOIN_TIMEOUT)
        except frida.OperationCancelledError as e:
            raise AppProcessError(
                f"join_portal({address}) timed out after {self.JOIN_TIMEOUT:g} s", package=self.package, pid=pid
            ) from e
        except Exception as e:
            raise AppProcessError(f"join_portal({address}) failed: {e}", package=self.package, pid=pid) from e
        if not self.portal.wait_joined(pid, self.JOIN_TIMEOUT):
            raise AppProcessError(f"portal {self.portal.name} never reported the join", package=self.package, pid=pid)
        identifier = self.portal.members().get(pid)
        if identifier != self.package:
            raise AppProcessError(
                f"joined under the identifier {identifier!r}, not the package name", package=self.package, pid=pid
            )

    def _cleanup(self) -> None:
        if self._ctl is not None:
            try:
                self._ctl.close()
            except OSError:
                pass
            self._ctl = None
        self._ctl_buf = b""
        reader, self._reader = self._reader, None
        if reader is not None and reader is not threading.current_thread():
            reader.join(2.0)
        if self._calls is not None:
            self._calls.shutdown(wait=False)
            self._calls = None
        self._replies.clear()

    def _log_tail(self, n: int = 400) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""


def _same_content(a: Path, b: Path) -> bool:
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False
