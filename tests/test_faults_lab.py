"""The standing fault suite of the emulated lab (issue 18: points 3, 7, 8 and the lab faults).

Each test injects one fault into a lab it started on its own adb server (a free port, killed by
port at the end) and asserts the documented exit status and that nothing it started is left
running: the adb server, the lab process, its app processes (compared with the process list
from before). SIGINT faults of the audit are in ``tests/test_faults.py``.

Faults: the adb server killed and restarted; a handset powered off briefly and for longer than
adb's reconnect attempts last; the lab process killed, and its pid reused by an unrelated
process; the modem unplugged mid-command. And the lab's privacy: file modes and sockets.
"""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostctl.cli import Environment, ExitStatus, main
from hostctl.emulator.lab import (
    LabConfig,
    LabThread,
    adb_binary,
    ensure_adb_server,
    kill_adb_server,
    lab_dir,
    process_start,
    read_lab_file,
)
from tests.conftest import free_port, wait_for


def cli(env_vars: dict[str, str], *argv: str) -> tuple[ExitStatus, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), Environment(stdout=out, stderr=err, vars=env_vars))
    return status, out.getvalue(), err.getvalue()


def adb_devices(port: int) -> dict[str, str]:
    out = subprocess.run([adb_binary(), "-P", str(port), "devices"], capture_output=True, text=True, timeout=30).stdout
    return dict(line.split("\t")[:2] for line in out.splitlines()[1:] if "\t" in line)


def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat_line = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat_line[stat_line.rfind(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo.extend(children.get(p, []))
    return out


def my_children() -> set[int]:
    return descendants(os.getpid()) - {os.getpid()}


@pytest.fixture
def own_adb():
    """A private adb server on a free port (so killing it disturbs no other test), killed at the end."""
    port = free_port()
    ensure_adb_server(port)
    yield port
    kill_adb_server(port)


@pytest.fixture
def small_lab(own_adb, tmp_path):
    before = my_children()
    config = LabConfig(
        adb_port=own_adb,
        handsets=2,
        home=tmp_path / "home",
        with_apps=False,
        modem=False,
        relay=False,
        consoles=False,
        cloud=False,
    )
    with LabThread(config) as lt:
        yield lt
    # nothing of the lab is left (the adb servers fork away as daemons: not our children)
    wait_for(lambda: my_children() <= before, 10)


def env_for(port: int, home: Path) -> dict[str, str]:
    return dict(os.environ, ANDROID_ADB_SERVER_PORT=str(port), HOSTCTL_HOME=str(home))


# --- point 3: the adb server killed and restarted --------------------------------------------------


def test_after_the_adb_server_restarts_the_next_command_reaches_every_handset(small_lab, own_adb):
    lab = small_lab.lab
    serials = [h.serial for h in lab.handsets]
    env = env_for(own_adb, lab.home)
    kill_adb_server(own_adb)
    st, _, err = cli(env, "info", "-s", serials[0])
    assert st == ExitStatus.NOT_RUNNABLE and "adb server" in err  # dead: said, not restarted
    ensure_adb_server(own_adb)
    for serial in serials:  # no `adb connect` by hand: the next command finds each one
        st, out, err = cli(env, "info", "-s", serial, "--json")
        assert st == ExitStatus.OK, err
        assert json.loads(out)["serial"] == serial


def test_the_lab_reattaches_its_handsets_to_a_restarted_adb_server(small_lab, own_adb):
    lab = small_lab.lab
    kill_adb_server(own_adb)
    ensure_adb_server(own_adb)
    # no hostctl command at all: the lab itself notices the new server and connects its handsets
    # (adb lists a transport as "offline" until its CNXN handshake completes: wait for "device")
    want = {h.serial: "device" for h in lab.handsets}
    states = wait_for(lambda: (d := adb_devices(own_adb)) == want and d, 15)
    assert states == want


def test_a_handset_named_by_serial_is_reattached_by_a_library_handset_too(small_lab, own_adb):
    from hostctl.device import AdbAddress, Handset

    lh = small_lab.lab.handsets[1]
    h = Handset(lh.serial, AdbAddress("127.0.0.1", own_adb), timeout=20)
    assert h.shell("echo one").stdout == "one\n"
    subprocess.run([adb_binary(), "-P", str(own_adb), "disconnect", lh.serial], capture_output=True, timeout=30)
    assert h.shell("echo two").stdout == "two\n"  # what the audit and the pytest plugin use


def test_a_user_disconnect_sticks_while_the_server_lives(small_lab, own_adb):
    lh = small_lab.lab.handsets[0]
    subprocess.run([adb_binary(), "-P", str(own_adb), "disconnect", lh.serial], capture_output=True, timeout=30)
    time.sleep(1.5)  # several of the lab's watch intervals
    assert lh.serial not in adb_devices(own_adb)


def test_a_serial_that_is_not_a_network_address_is_not_connected(small_lab, own_adb):
    st, _, err = cli(env_for(own_adb, small_lab.lab.home), "info", "-s", "emulator-5554")
    assert st == ExitStatus.NOT_RUNNABLE and "not found" in err


# --- point 3: power off, short and long ----------------------------------------------------------


def test_power_on_after_a_short_power_off(small_lab, own_adb):
    env = env_for(own_adb, small_lab.lab.home)
    assert cli(env, "emulator", "power", "hs1", "off")[0] == ExitStatus.OK
    assert adb_devices(own_adb)[small_lab.lab.handsets[0].serial] == "offline"
    st, _, err = cli(env, "emulator", "power", "hs1", "on")
    assert st == ExitStatus.OK, err
    assert adb_devices(own_adb)[small_lab.lab.handsets[0].serial] == "device"


def test_power_on_after_adb_dropped_the_handset(small_lab, own_adb):
    """After about a minute offline adb drops a TCP device (62 s measured, adb 36): the handset
    is then absent from `adb devices`. The fast test takes it there at once with `adb disconnect`
    (the same end state); test_power_on_after_three_minutes_off waits it out for real."""
    lh = small_lab.lab.handsets[0]
    env = env_for(own_adb, small_lab.lab.home)
    assert cli(env, "emulator", "power", "hs1", "off")[0] == ExitStatus.OK
    subprocess.run([adb_binary(), "-P", str(own_adb), "disconnect", lh.serial], capture_output=True, timeout=30)
    assert lh.serial not in adb_devices(own_adb)
    st, _, err = cli(env, "emulator", "power", "hs1", "on")
    assert st == ExitStatus.OK, err  # was: exit 5, "last state: absent"
    assert adb_devices(own_adb)[lh.serial] == "device"


@pytest.mark.slow
def test_power_on_after_three_minutes_off(small_lab, own_adb):
    lh = small_lab.lab.handsets[0]
    env = env_for(own_adb, small_lab.lab.home)
    assert cli(env, "emulator", "power", "hs1", "off")[0] == ExitStatus.OK
    wait_for(lambda: lh.serial not in adb_devices(own_adb), 120, 2)  # adb gives up on it
    time.sleep(max(0.0, 180 - 62))
    st, _, err = cli(env, "emulator", "power", "hs1", "on")
    assert st == ExitStatus.OK, err
    assert adb_devices(own_adb)[lh.serial] == "device"


# --- point 7 and the lab process killed: a detached lab -----------------------------------------


def _up(env: dict[str, str], *extra: str) -> dict:
    st, out, err = cli(
        env,
        "emulator",
        "up",
        "--detach",
        "--handsets",
        "1",
        "--no-modem",
        "--no-relay",
        "--no-consoles",
        "--json",
        *extra,
    )
    assert st == ExitStatus.OK, err
    return json.loads(out)


@pytest.fixture
def detached(own_adb, tmp_path):
    """A detached lab (`emulator up --detach`) on a private adb server; whatever the test left is
    stopped by pid at the end."""
    env = env_for(own_adb, tmp_path / "home")
    started: list[int] = []

    def up(*extra: str) -> dict:
        info = _up(env, *extra)
        started.append(int(info["pid"]))
        return info

    yield env, up
    cli(env, "emulator", "down")
    for pid in started:
        with _suppress():
            os.kill(pid, signal.SIGKILL)


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)


def _gone(pid: int) -> bool:
    """Exited (a zombie counts: its parent, maybe this process, has not reaped it yet)."""
    try:
        stat_text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat_text[stat_text.rfind(")") + 2] == "Z"


def test_down_removes_the_registry_and_the_handsets_from_adb(detached, own_adb):
    env, up = detached
    info = up()
    home, serial = Path(env["HOSTCTL_HOME"]), info["handsets"][0]["serial"]
    folder = lab_dir(home, own_adb)
    assert (folder / "lab.json").exists() and (folder / "testbed.yaml").exists()
    procs = descendants(int(info["pid"]))
    st, _, err = cli(env, "emulator", "down")
    assert st == ExitStatus.OK, err
    assert not (folder / "lab.json").exists() and not (folder / "testbed.yaml").exists()
    assert serial not in adb_devices(own_adb)  # no `offline` leftover
    wait_for(lambda: all(_gone(p) for p in procs), 10)  # the lab and its app processes


def test_a_killed_lab_is_reported_gone_and_down_cleans_up_after_it(detached, own_adb):
    env, up = detached
    info = up()
    procs = descendants(int(info["pid"]))
    serial = info["handsets"][0]["serial"]
    os.kill(int(info["pid"]), signal.SIGKILL)
    wait_for(lambda: _gone(int(info["pid"])), 10)
    st, _, err = cli(env, "emulator", "status")
    assert st == ExitStatus.NOT_RUNNABLE and "no emulated lab" in err
    st, out, err = cli(env, "emulator", "down", "--json")
    assert st == ExitStatus.OK, err
    assert json.loads(out)["stale_pid"] == info["pid"]
    folder = lab_dir(Path(env["HOSTCTL_HOME"]), own_adb)
    assert not (folder / "lab.json").exists() and not (folder / "testbed.yaml").exists()
    assert serial not in adb_devices(own_adb)
    # its app processes die with it (they watch their control socket)
    wait_for(lambda: all(_gone(p) for p in procs), 15)


def test_a_stale_registry_whose_pid_was_reused_does_not_block_the_port(detached, own_adb):
    env, up = detached
    info = up()
    pid = int(info["pid"])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _gone(pid), 10)
    # the pid now belongs to an unrelated process: rewrite the registry to name one that lives
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = lab_dir(Path(env["HOSTCTL_HOME"]), own_adb)
        data = json.loads((folder / "lab.json").read_text())
        assert data["process_start"] == data["process_start"] and data["process_start"] is not None
        data["pid"] = stranger.pid  # its start time differs from the one recorded
        (folder / "lab.json").write_text(json.dumps(data))
        assert process_start(stranger.pid) != data["process_start"]
        st, _, err = cli(env, "emulator", "status")
        assert st == ExitStatus.NOT_RUNNABLE, err
        again = up()  # was: "a lab is already running ... (pid <stranger>)"
        assert again["pid"] != stranger.pid
        st, _, err = cli(env, "emulator", "down")
        assert st == ExitStatus.OK, err
        assert stranger.poll() is None  # down never touched the unrelated process
    finally:
        stranger.kill()
        stranger.wait()


def test_a_stale_registry_is_cleared_by_down(detached, own_adb):
    env, up = detached
    info = up()
    pid = int(info["pid"])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _gone(pid), 10)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = lab_dir(Path(env["HOSTCTL_HOME"]), own_adb)
        data = json.loads((folder / "lab.json").read_text())
        data["pid"] = stranger.pid
        (folder / "lab.json").write_text(json.dumps(data))
        st, _, err = cli(env, "emulator", "down")
        assert st == ExitStatus.OK, err
        assert not (folder / "lab.json").exists() and not (folder / "testbed.yaml").exists()
        assert info["handsets"][0]["serial"] not in adb_devices(own_adb)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


# --- point 8: private files, loopback sockets ------------------------------------------------------


def _sockets_of(pids: set[int]) -> list[tuple[str, str]]:
    """(protocol, local address) of every TCP/UDP socket the processes hold, from /proc/net."""
    inodes: set[str] = set()
    for pid in pids:
        with _suppress():
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with _suppress():
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        for pid in sorted(pids)[:1]:
            path = Path(f"/proc/{pid}/net/{proto}")
            for line in path.read_text().splitlines()[1:]:
                parts = line.split()
                if parts[9] in inodes:
                    found.append((proto, parts[1]))
    return found


def _is_loopback(proto: str, hex_addr: str) -> bool:
    addr = hex_addr.split(":")[0]
    if proto.endswith("6"):
        return addr in ("00000000000000000000000001000000",) or (
            addr.startswith("0000000000000000FFFF0000") and addr.endswith("7F")
        )
    return addr.endswith("7F")  # little-endian 127.x.y.z


def test_lab_files_are_private_and_its_sockets_listen_on_loopback_only(own_adb, tmp_path):
    home = tmp_path / "home"
    env = env_for(own_adb, home)
    os.umask(old := os.umask(0o022))
    try:
        st, out, err = cli(env, "emulator", "up", "--detach", "--handsets", "1", "--json")
        assert st == ExitStatus.OK, err
        info = json.loads(out)
        pid = int(info["pid"])
        folder = lab_dir(home, own_adb)
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / "daemon.log").stat().st_mode) == 0o600
        assert stat.S_IMODE((folder / "lab.json").stat().st_mode) == 0o600
        assert stat.S_IMODE((folder / "handsets").stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / "handsets" / "hs1").stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / "handsets" / "hs1" / "identity.json").stat().st_mode) == 0o600
        procs = descendants(pid)
        assert len(procs) >= 2  # the lab and its Messaging app process
        app = info["handsets"][0]["apps"]["com.android.mms"]
        assert app in procs
        socks = _sockets_of(procs)
        assert any(p.startswith("udp") for p, _ in _sockets_of({app}))  # the app's log socket
        outside = [(p, a) for p, a in socks if not _is_loopback(p, a)]
        assert socks and not outside, outside
    finally:
        os.umask(old)
        cli(env, "emulator", "down")


def test_an_in_process_lab_keeps_its_folders_private(small_lab):
    folder = small_lab.lab.dir
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    ident = small_lab.lab.handsets[0].state_dir / "identity.json"
    assert stat.S_IMODE(ident.stat().st_mode) == 0o600
    assert read_lab_file(small_lab.lab.home, small_lab.lab.adb_port)["process_start"] == process_start(os.getpid())


# --- the modem unplugged mid-command -------------------------------------------------------------


@pytest.fixture
def modem_lab(own_adb, tmp_path):
    before = my_children()
    config = LabConfig(
        adb_port=own_adb,
        handsets=1,
        home=tmp_path / "home",
        with_apps=False,
        modem=True,
        relay=False,
        consoles=False,
        cloud=False,
    )
    with LabThread(config) as lt:
        yield lt
    wait_for(lambda: my_children() <= before, 10)


@pytest.mark.parametrize("argv", [["watch", "--duration", "30"]], ids=["watch"])
def test_the_modem_unplugged_mid_command_exits_1_at_once(modem_lab, own_adb, argv):
    """The port vanishes while the command uses it (the USB modem pulled out): exit 1 ("the
    device vanished mid-command", README "Exit codes"), long before the command's own limit."""
    import threading

    env = env_for(own_adb, modem_lab.lab.home)
    threads_before = {t.ident for t in threading.enumerate()}
    timer = threading.Timer(0.5, modem_lab.lab.modem_server.stop)
    timer.start()
    t0 = time.monotonic()
    try:
        st, _, err = cli(env, "modem", argv[0], "--port", "lab", "--timeout", "20", *argv[1:])
    finally:
        timer.join()
    assert st == ExitStatus.ERROR, err
    assert time.monotonic() - t0 < 15 and "Traceback" not in err
    assert "the modem port went away" in err, err
    wait_for(lambda: {t.ident for t in threading.enumerate()} <= threads_before | {timer.ident}, 10)
