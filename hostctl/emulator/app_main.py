"""Entry point of one emulated Android app process (e.g. ``com.android.mms``).

The lab (``hostctl.emulator.apps.AppProcess``) runs this file as a script, by path, with
``python -S -I`` through a hard link of the interpreter named after the package, so that
``/proc/PID/exe`` ends in the package name -- that basename is the process name Frida's agent
reports when it joins the handset's portal. The file therefore imports the standard library only
(and little of it): it must not need ``hostctl`` on ``sys.path`` and should stay small in memory.

Command line: ``app_main.py package=NAME ctl=FD [log=PORT] [tag=TAG]``.

Behaviour:

* Every ~200 ms it sends one "logd" datagram with ``socket.sendto`` to ``127.0.0.1:PORT``:
  ``I/<tag>(<pid>): heartbeat``. Without a log port the datagrams go to a private UDP sink that
  the process drains itself, so native ``sendto`` hooks always see traffic.
* Control channel: the inherited stream socket ``ctl`` carries JSON lines. At start the app writes
  ``{"event": "ready", "pid": N, "package": NAME}``. Each request ``{"id": I, "cmd": C, ...}`` gets
  one reply ``{"id": I, "ok": true, "result": ...}`` or ``{"id": I, "ok": false, "error": ...}``,
  and every line received also produces one logd datagram. New behaviour is added by registering a
  function in ``COMMANDS`` (``fn(app, request) -> result``).
* End of file on the control channel means the lab is gone: the process exits. (No
  PR_SET_PDEATHSIG: it fires when the lab *thread* that forked us exits, not the lab process.)
* Under Yama ptrace_scope 1 the app allows any process to ptrace it (PR_SET_PTRACER_ANY), as
  Frida's injector is not its ancestor.
"""

import json
import os
import select
import socket
import sys
import time

HEARTBEAT_INTERVAL = 0.2
MAX_LINE = 1 << 20


class App:
    def __init__(self, package, ctl_fd, log_port, tag):
        self.package = package
        self.pid = os.getpid()
        self.tag = tag
        self.ctl = socket.socket(fileno=ctl_fd)
        self.ctl.setblocking(True)
        self.log = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink = None
        if log_port:
            self.log_addr = ("127.0.0.1", log_port)
        else:
            self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sink.bind(("127.0.0.1", 0))
            self.sink.setblocking(False)
            self.log_addr = self.sink.getsockname()
        self.log.setblocking(False)
        self.buf = b""
        self.running = True

    # -- logd ---------------------------------------------------------------------------------
    def logd(self, message, level="I", tag=None):
        line = "%s/%s(%d): %s" % (level, tag or self.tag, self.pid, message)
        try:
            self.log.sendto(line.encode("utf-8", "replace"), self.log_addr)
        except OSError:
            pass  # logd gone or its buffer full: Android drops log lines too
        if self.sink is not None:
            try:
                while True:
                    self.sink.recv(65536)
            except OSError:
                pass

    # -- control channel ----------------------------------------------------------------------
    def write(self, obj):
        self.ctl.sendall(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    def on_readable(self):
        data = self.ctl.recv(65536)
        if not data:
            self.running = False
            return
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if line.strip():
                self.handle(line)
        if len(self.buf) > MAX_LINE:
            self.buf = b""

    def handle(self, line):
        rid = None
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("request must be a JSON object")
            rid = req.get("id")
            fn = COMMANDS.get(req.get("cmd"))
            if fn is None:
                raise ValueError("unknown command: %r" % (req.get("cmd"),))
            reply = {"id": rid, "ok": True, "result": fn(self, req)}
        except Exception as e:  # the app never dies of a bad request
            reply = {"id": rid, "ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        if not (isinstance(reply.get("result"), dict) and reply["result"].get("logged")):
            self.logd("heartbeat")
        self.write(reply)

    # -- main loop ----------------------------------------------------------------------------
    def run(self):
        self.write({"event": "ready", "pid": self.pid, "package": self.package})
        next_beat = time.monotonic()
        while self.running:
            now = time.monotonic()
            if now >= next_beat:
                self.logd("heartbeat")
                next_beat = max(next_beat + HEARTBEAT_INTERVAL, now)
            try:
                readable, _, _ = select.select([self.ctl], [], [], max(0.0, next_beat - now))
            except InterruptedError:
                continue
            if readable:
                try:
                    self.on_readable()
                except OSError:
                    self.running = False
        return 0


def cmd_ping(app, req):
    return {"pong": True, "pid": app.pid, "package": app.package}


def cmd_log(app, req):
    app.logd(str(req.get("msg", "")), str(req.get("level", "I"))[:1] or "I", req.get("tag"))
    return {"logged": True}


def cmd_exit(app, req):
    app.running = False
    return {"exiting": True}


COMMANDS = {"ping": cmd_ping, "log": cmd_log, "exit": cmd_exit}


def parse_args(argv):
    opts = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise SystemExit("app_main: bad argument %r (want key=value)" % arg)
        opts[key] = value
    return opts


def allow_ptrace_by_anyone():
    """Under Yama ptrace_scope 1 only ancestors may ptrace us, and Frida's injector is not one."""
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            if f.read().strip() != "1":
                return
    except OSError:
        return  # no Yama: nothing to do (and ctypes, ~1 MB, stays unloaded)
    try:
        import ctypes

        PR_SET_PTRACER, PR_SET_PTRACER_ANY = 0x59616D61, -1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PTRACER, ctypes.c_ulong(PR_SET_PTRACER_ANY), 0, 0, 0)
    except Exception:
        pass


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    allow_ptrace_by_anyone()
    package = opts["package"]
    tag = opts.get("tag") or package.rsplit(".", 1)[-1].capitalize()
    app = App(package, int(opts["ctl"]), int(opts.get("log") or 0), tag)
    return app.run()


if __name__ == "__main__":
    sys.exit(main())
