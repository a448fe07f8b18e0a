"""Emulated app processes joined to a handset's Frida portal -- real processes, real Frida.

Everything listens on 127.0.0.1 with ephemeral ports and lives under tmp_path, so the tests can
run in parallel (pytest-xdist). Only processes these tests start are signalled, by pid.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import frida
import pytest

from hostctl.emulator.apps import AppProcess, AppProcessError, HandsetPortal

PACKAGE = "com.android.mms"

SENDTO_HOOK = """
const sendto = Module.getGlobalExportByName('sendto');
Interceptor.attach(sendto, {
  onEnter(args) {
    const len = args[2].toInt32();
    send({ fn: 'sendto', pid: Process.id, len: len, text: args[1].readUtf8String(len) });
  }
});
"""


def pid_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie is dead too
    except FileNotFoundError:
        return True


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture
def portal():
    p = HandsetPortal(name="handset-test")
    p.start()
    yield p
    p.stop()


@pytest.fixture
def logd():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(3.0)
    yield s
    s.close()


@pytest.fixture
def app(portal, logd, tmp_path):
    a = AppProcess(package=PACKAGE, portal=portal, state_dir=tmp_path, log_port=logd.getsockname()[1])
    a.start()
    yield a
    a.stop()


@pytest.fixture
def controller(portal):
    manager = frida.get_device_manager()
    device = manager.add_remote_device(portal.control_address)
    yield device
    try:
        manager.remove_remote_device(portal.control_address)
    except Exception:
        pass


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address, port) of the TCP listeners owned by ``pid`` (from /proc/net/tcp{,6})."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state == "0A" and inode in inodes:
                addr_hex, port_hex = local.split(":")
                if len(addr_hex) == 8:
                    addr = socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr_hex)[::-1])
                else:
                    addr = "v6:" + addr_hex
                found.add((addr, int(port_hex, 16)))
    return found


# -- portal ------------------------------------------------------------------------------------


def test_portal_binds_ephemeral_loopback_ports_only():
    a, b = HandsetPortal(name="a"), HandsetPortal(name="b")
    a.start()
    b.start()
    try:
        ports = {a.cluster_port, a.control_port, b.cluster_port, b.control_port}
        assert len(ports) == 4 and 27042 not in ports and 27052 not in ports
        listeners = listening_sockets(os.getpid())
        for port in ports:
            assert ("127.0.0.1", port) in listeners
            assert not any(p == port and addr != "127.0.0.1" for addr, p in listeners)
    finally:
        a.stop()
        b.stop()
    a.stop()  # idempotent, never raises


def test_control_endpoint_accepts_the_droidy_handshake(portal):
    # Frida's adb backend opens tcp:27042 and sends exactly this (Host "lolcathost", no Origin).
    with socket.create_connection(("127.0.0.1", portal.control_port), timeout=5) as s:
        s.sendall(
            b"GET /ws HTTP/1.1\r\nHost: lolcathost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"User-Agent: Frida/17.26.0\r\n\r\n"
        )
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 101"), reply


# -- app processes -----------------------------------------------------------------------------


def test_app_runs_under_package_name_and_logs(app, logd):
    assert app.alive
    line = logd.recv(4096).decode()
    assert line == f"I/Mms({app.pid}): heartbeat"
    assert Path(f"/proc/{app.pid}/comm").read_text().strip() == PACKAGE
    assert Path(f"/proc/{app.pid}/cmdline").read_bytes().split(b"\0")[0] == PACKAGE.encode()
    assert app.ping() == {"pong": True, "pid": app.pid, "package": PACKAGE}
    with pytest.raises(AppProcessError, match="unknown command"):
        app.request("no-such-command")
    assert app.portal.members() == {app.pid: PACKAGE}


def test_controller_enumerates_attaches_and_hooks_sendto(app, controller):
    processes = controller.enumerate_processes()
    assert [(p.pid, p.name) for p in processes] == [(app.pid, PACKAGE)]
    assert controller.get_process(PACKAGE).pid == app.pid

    session = controller.attach(app.pid)
    messages: list[dict] = []
    got = threading.Event()

    def on_message(message, data):
        messages.append(message)
        if message.get("type") == "send":
            got.set()

    script = session.create_script(SENDTO_HOOK)
    script.on("message", on_message)
    script.load()
    app.request("log", msg="hello from the lab", tag="Mms")  # one more sendto, on demand
    assert got.wait(5), messages
    sends = [m["payload"] for m in messages if m.get("type") == "send"]
    assert all(p["pid"] == app.pid for p in sends)
    assert any(p["text"].startswith(f"I/Mms({app.pid}): ") for p in sends)
    session.detach()


def test_spawn_through_the_portal_is_not_supported(app, controller):
    with pytest.raises(frida.NotSupportedError):
        controller.spawn([PACKAGE])


def test_stop_kills_and_restart_gives_new_enumerated_pid(app, portal, controller):
    first = app.pid
    app.stop()
    assert not app.alive
    assert pid_gone(first)
    assert portal.wait_left(first, 5)
    app.stop()  # idempotent

    app.restart()
    second = app.pid
    assert app.alive and second != first
    assert [(p.pid, p.name) for p in controller.enumerate_processes()] == [(second, PACKAGE)]


def test_crashed_app_is_not_alive_and_restarts(app, portal, controller):
    first = app.pid
    os.kill(first, signal.SIGKILL)  # our own child, by pid
    assert wait_until(lambda: not app.alive)
    assert portal.wait_left(first, 5)
    assert controller.enumerate_processes() == []
    app.restart()
    assert app.alive and app.pid != first
    assert portal.members() == {app.pid: PACKAGE}


def test_start_without_portal_raises_app_process_error(tmp_path):
    p = HandsetPortal(name="never-started")
    a = AppProcess(package=PACKAGE, portal=p, state_dir=tmp_path)
    with pytest.raises(AppProcessError) as info:
        a.start()
    assert info.value.package == PACKAGE
    assert not a.alive


def test_app_dies_with_the_lab(tmp_path):
    lab = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from hostctl.emulator.apps import AppProcess, HandsetPortal
        portal = HandsetPortal(name="lab"); portal.start()
        app = AppProcess(package={PACKAGE!r}, portal=portal, state_dir=Path({str(tmp_path)!r}))
        app.start()
        print(app.pid, flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", lab], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip().isdigit(), line
        app_pid = int(line)
        assert not pid_gone(app_pid)
        proc.kill()  # the lab dies without cleaning up
        proc.wait(5)
        assert wait_until(lambda: pid_gone(app_pid), timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_byte_for_byte_bridge_to_control_port(app, portal):
    """What the handset does for adb's tcp:27042: relay raw bytes to the portal's control port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    bridge_port = listener.getsockname()[1]
    stop = threading.Event()

    def pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection(("127.0.0.1", portal.control_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    manager = frida.get_device_manager()
    address = f"127.0.0.1:{bridge_port}"
    try:
        device = manager.add_remote_device(address)
        assert [(p.pid, p.name) for p in device.enumerate_processes()] == [(app.pid, PACKAGE)]
        session = device.attach(app.pid)
        script = session.create_script("send(Process.id)")
        got = []
        script.on("message", lambda m, d: got.append(m))
        script.load()
        assert wait_until(lambda: got, 5) and got[0]["payload"] == app.pid
        session.detach()
    finally:
        try:
            manager.remove_remote_device(address)
        except Exception:
            pass
        stop.set()
        listener.close()


def test_join_timeout_raises_app_process_error_with_package_and_pid(portal, tmp_path):
    black_hole = socket.socket()  # accepts TCP, never speaks WebSocket
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(4)
    portal.cluster_port, real_port = black_hole.getsockname()[1], portal.cluster_port
    a = AppProcess(package=PACKAGE, portal=portal, state_dir=tmp_path)
    a.JOIN_TIMEOUT = 1.0
    try:
        t = time.monotonic()
        with pytest.raises(AppProcessError, match="timed out") as info:
            a.start()
        assert time.monotonic() - t < 5
        assert info.value.package == PACKAGE and info.value.pid
        assert pid_gone(info.value.pid) and not a.alive
    finally:
        a.stop()
        portal.cluster_port = real_port
        black_hole.close()
